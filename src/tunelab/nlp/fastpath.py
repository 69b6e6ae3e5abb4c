"""Exact speed-ups for fine-tuning encoder classifiers (BERT, RoBERTa, ELECTRA, DistilBERT).

Two changes, neither of which changes what the model computes:

* **The last layer for the first token only.** A sequence classifier reads the last layer at
  position 0 alone (BERT's pooler, RoBERTa's and DistilBERT's heads). That layer still needs
  the keys and values of every token, but its query, attention output, feed-forward network and
  layer norms are needed for position 0 only, so the last layer costs about a sixth of a
  layer. Logits and gradients are those of the full model (tested to float precision).
* **Dropout masks from a fast generator on the CPU.** PyTorch draws CPU dropout masks with
  ``bernoulli_``, which uses MKL only on Intel CPUs and otherwise a per-element Mersenne
  twister: about 7 ns an element, 15-20 % of a BERT training step on an AMD EPYC. Here the
  masks come from numpy's SFC64 generator as 16-bit integers (under 1 ns an element),
  seeded from the trial's seed. The drop probability is rounded to a multiple of 2**-16
  (0.1 becomes 0.100006). Attention dropout then needs its own attention function, since
  SDPA draws inside the kernel; it runs only for CPU training with dropout, everything else
  goes to PyTorch's SDPA as before.

``apply(model, seed, device)`` patches one loaded model in place (its weights, state dict and
saved files are untouched; a reloaded export is a plain Hugging Face model). Models whose
structure is not recognised are left as they are, and so is every model when the installed
transformers lacks the attention interface the fast path plugs into (``unavailable()`` says why).
transformers is imported only by ``apply``: with ``fast_path: false`` this module needs torch alone.
"""

from __future__ import annotations

import logging
import math
import types
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

log = logging.getLogger("tunelab.nlp")

ATTENTION_NAME = "tunelab"
#: Model types whose classification head reads position 0 of the last layer only, by layer kind.
BERT_LIKE = frozenset({"bert", "roberta", "xlm-roberta", "camembert", "electra"})
DISTILBERT = "distilbert"
_MASK_STEPS = 1 << 16


class KeepMasks:
    """Dropout keep-masks (True = keep) from a seeded numpy SFC64 generator."""

    def __init__(self, seed: int) -> None:
        self.generator = np.random.Generator(np.random.SFC64(seed))

    def keep(self, shape: torch.Size | tuple[int, ...], p: float) -> torch.Tensor:
        n = math.prod(shape)
        words = self.generator.bit_generator.random_raw(-(-n // 4))  # 4 uint16 draws per 64-bit word
        draws = words.view(np.uint16)[:n]
        return torch.from_numpy(draws >= round(p * _MASK_STEPS)).view(shape)


class FastDropout(nn.Dropout):
    """``nn.Dropout`` with masks from :class:`KeepMasks` on the CPU; stock dropout elsewhere."""

    def __init__(self, p: float, masks: KeepMasks) -> None:
        super().__init__(p)
        self.masks = masks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu" or self.p >= 1.0:
            return super().forward(x)
        # `where` on the boolean mask: multiplying by it would first copy it to floats.
        return torch.where(self.masks.keep(x.shape, self.p), x, 0.0) * (1.0 / (1.0 - self.p))


def fast_attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                   attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                   **kwargs: Any) -> tuple[torch.Tensor, None]:
    """Bidirectional attention with :class:`KeepMasks` dropout for CPU training; SDPA otherwise."""
    masks: KeepMasks | None = getattr(module, "tunelab_masks", None)
    if (masks is None or not 0.0 < dropout < 1.0 or query.device.type != "cpu" or getattr(module, "is_causal", False)
            or key.shape[1] != query.shape[1]):
        # Imported here, not at the top: `fast_path: false` must work on any transformers. Only
        # registered once `unavailable()` found it, and a loaded module's import is a dict lookup.
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    scale = query.shape[-1] ** -0.5 if scaling is None else scaling
    scores = torch.matmul(query * scale, key.transpose(-1, -2))
    if attention_mask is not None:
        if attention_mask.dtype == torch.bool:
            scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + attention_mask
    probs = torch.where(masks.keep(scores.shape, dropout), scores.softmax(-1), 0.0)
    # The 1/(1-p) of dropout, applied to the (much smaller) output instead of the weights.
    output = torch.matmul(probs, value) * (1.0 / (1.0 - dropout))
    return output.transpose(1, 2).contiguous(), None


#: What the fast path imports from transformers (BERT on the attention interface: transformers >= 5.0).
NEEDED = (
    ("transformers", "AttentionInterface"),
    ("transformers.integrations.sdpa_attention", "sdpa_attention_forward"),
    ("transformers.masking_utils", "AttentionMaskInterface"),
    ("transformers.masking_utils", "sdpa_mask"),
    ("transformers.modeling_utils", "ALL_ATTENTION_FUNCTIONS"),
    ("transformers.models.bert.modeling_bert", "eager_attention_forward"),
)


def unavailable() -> str | None:
    """Why the installed transformers cannot run the fast path, or None when it can."""
    import importlib

    try:
        import transformers
    except ImportError:
        return "transformers is not installed"
    for module, name in NEEDED:
        try:
            found = hasattr(importlib.import_module(module), name)
        except ImportError:
            found = False
        if not found:
            return (f"transformers {getattr(transformers, '__version__', '?')} has no {module}.{name} "
                    f"(the fast path needs transformers >= 5.0)")
    return None


def _register_attention() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, fast_attention)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)  # boolean masks, None without padding


def _attention_function(module: nn.Module) -> Callable[..., tuple[torch.Tensor, Any]]:
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
    from transformers.models.bert.modeling_bert import eager_attention_forward

    name = module.config._attn_implementation
    if hasattr(ALL_ATTENTION_FUNCTIONS, "get_interface"):  # newer transformers: it also checks the name
        return ALL_ATTENTION_FUNCTIONS.get_interface(name, eager_attention_forward)
    return eager_attention_forward if name == "eager" else ALL_ATTENTION_FUNCTIONS[name]  # as 5.0's BERT does


def _first_row(mask: torch.Tensor | None) -> torch.Tensor | None:
    """The attention mask for the query at position 0 (a 4-d mask has a row per query)."""
    return mask[:, :, :1, :] if mask is not None and mask.dim() == 4 and mask.shape[2] > 1 else mask


def _attend_first(attention: nn.Module, q_proj: nn.Module, k_proj: nn.Module, v_proj: nn.Module,
                  head_size: int, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Self-attention output at position 0 only, over the keys and values of every position."""
    batch, length, _ = hidden.shape
    query = q_proj(hidden[:, :1]).view(batch, 1, -1, head_size).transpose(1, 2)
    key = k_proj(hidden).view(batch, length, -1, head_size).transpose(1, 2)
    value = v_proj(hidden).view(batch, length, -1, head_size).transpose(1, 2)
    output, _ = _attention_function(attention)(
        attention, query, key, value, _first_row(mask),
        dropout=attention.dropout.p if attention.training else 0.0, scaling=attention.scaling)
    return output.reshape(batch, 1, -1)


def _bert_first_token_forward(layer: nn.Module, hidden_states: torch.Tensor,
                              attention_mask: torch.Tensor | None = None, *args: Any, **kwargs: Any) -> torch.Tensor:
    attn = layer.attention.self
    context = _attend_first(attn, attn.query, attn.key, attn.value, attn.attention_head_size,
                            hidden_states, attention_mask)
    attended = layer.attention.output(context, hidden_states[:, :1])
    return layer.feed_forward_chunk(attended)


def _distilbert_first_token_forward(block: nn.Module, hidden_states: torch.Tensor,
                                    attention_mask: torch.Tensor | None = None, *args: Any,
                                    **kwargs: Any) -> torch.Tensor:
    attn = block.attention
    context = _attend_first(attn, attn.q_lin, attn.k_lin, attn.v_lin, attn.attention_head_size,
                            hidden_states, attention_mask)
    attended = block.sa_layer_norm(attn.out_lin(context) + hidden_states[:, :1])
    return block.output_layer_norm(block.ffn(attended) + attended)


def _last_layer(model: nn.Module) -> tuple[nn.Module, Callable[..., torch.Tensor]] | None:
    """The last encoder layer and its first-token forward, when the head reads position 0 only."""
    config = model.config
    cls = type(model)
    # transformers' own classes only: a remote-code class may pool differently under the same model_type.
    if (not cls.__name__.endswith("ForSequenceClassification") or not cls.__module__.startswith("transformers.models.")
            or getattr(config, "is_decoder", False)):
        return None
    base = getattr(model, model.base_model_prefix, None)
    encoder = getattr(base, "encoder", None) if config.model_type in BERT_LIKE else getattr(base, "transformer", None)
    layers = getattr(encoder, "layer", None)
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        return None
    last = layers[-1]
    if config.model_type in BERT_LIKE and all(hasattr(last, a) for a in ("attention", "intermediate", "output")):
        if getattr(last, "add_cross_attention", False) or last.chunk_size_feed_forward:
            return None
        return last, _bert_first_token_forward
    if config.model_type == DISTILBERT and all(hasattr(last, a) for a in ("attention", "ffn", "sa_layer_norm")):
        return last, _distilbert_first_token_forward
    return None


def apply(model: nn.Module, seed: int, device: torch.device) -> list[str]:
    """Patch ``model`` in place; return what was applied (for the trial log)."""
    reason = unavailable()
    if reason is not None:
        log.warning("fast path off: %s; training the stock model", reason)
        return []
    applied = []
    found = _last_layer(model)
    if found is not None:
        layer, forward = found
        layer.forward = types.MethodType(forward, layer)
        applied.append("first-token last layer")
    if device.type == "cpu":
        masks = KeepMasks(seed)
        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is nn.Dropout:
                    setattr(parent, name, FastDropout(child.p, masks))
        applied.append("fast CPU dropout")
        # Attention dropout is drawn inside SDPA: swap in fast_attention, for the encoders we know.
        known = model.config.model_type in BERT_LIKE or model.config.model_type == DISTILBERT
        if known and model.config._attn_implementation in ("sdpa", "eager"):
            for module in model.modules():
                if hasattr(module, "scaling") and isinstance(getattr(module, "dropout", None), nn.Dropout):
                    module.tunelab_masks = masks  # a self-attention module
            _register_attention()
            model.config._attn_implementation = ATTENTION_NAME
            applied.append("fast CPU attention dropout")
    if applied:
        log.debug("fast path: %s", ", ".join(applied))
    return applied
