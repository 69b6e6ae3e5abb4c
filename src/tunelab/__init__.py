"""tunelab: hyperparameter tuning for transformer fine-tuning and any training code.

Importing ``tunelab`` is cheap and has no side effects: the API is loaded on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "tune": "tunelab.api", "load_study": "tunelab.api", "run_study": "tunelab.api", "TunelabWarning": "tunelab.api",
    "Space": "tunelab.space", "Float": "tunelab.space", "Int": "tunelab.space", "Choice": "tunelab.space",
    "Fixed": "tunelab.space", "Metric": "tunelab.metrics", "Reporter": "tunelab.worker",
    "StudyView": "tunelab.study", "TrialInfo": "tunelab.study",
    "TunelabError": "tunelab.errors", "ConfigError": "tunelab.errors", "TrialPruned": "tunelab.errors",
    "TrialFailed": "tunelab.errors", "load_config": "tunelab.config",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tunelab' has no attribute {name!r}")
