"""Text classification fine-tuning: data, token cache, batching, training loop, metrics, export.

Modules here may import numpy and pandas at the top; torch and transformers only in the
modules that train or export (``train``, ``model``, ``checkpoint``, ``export``), which are
imported lazily by the ``text_classification`` objective, so ``import tunelab`` never imports
torch.
"""
