"""Building the model, the optimizer and the precision policy for one trial."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

import torch

from tunelab.errors import ConfigError
from tunelab.nlp.settings import DROPOUTS, TrainSettings

#: ``from_pretrained`` options (not config attributes) that ``model_kwargs`` may hold.
LOADER_KEYS = frozenset({"dtype", "torch_dtype", "attn_implementation", "revision", "trust_remote_code",
                         "ignore_mismatched_sizes", "subfolder", "local_files_only", "cache_dir", "token"})
#: Where models name our dropout settings differently.
DROPOUT_NAMES = {
    "distilbert": {"hidden_dropout_prob": "dropout", "attention_probs_dropout_prob": "attention_dropout",
                   "classifier_dropout": "seq_classif_dropout"},
}


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide the expected "newly initialized classifier" warnings and the per-file progress bars
    while loading or saving, then restore transformers' settings as they were."""
    from transformers.utils import logging

    level = logging.get_verbosity()
    bars = logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(level)
        if bars:
            logging.enable_progress_bar()


def split_model_kwargs(config: Any, model_kwargs: Mapping[str, Any],
                       field: str = "objective.model_kwargs") -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``model_kwargs`` into config overrides (``num_hidden_layers``) and loader options."""
    config_kw, loader_kw = {}, {}
    for key, value in model_kwargs.items():
        if key in LOADER_KEYS:
            loader_kw[key] = value
        elif hasattr(config, key):
            config_kw[key] = value
        else:
            raise ConfigError(f"{field}.{key}", f"is neither a setting of the model's config "
                              f"(model_type {getattr(config, 'model_type', '?')!r}) nor a from_pretrained option.",
                              f"use a config attribute (e.g. num_hidden_layers) or one of {sorted(LOADER_KEYS)}.")
    return config_kw, loader_kw


def dropout_overrides(config: Any, settings: Mapping[str, Any], field: str = "space") -> dict[str, Any]:
    """Config attributes for the dropout settings that are set, under the model's own names."""
    names = DROPOUT_NAMES.get(getattr(config, "model_type", ""), {})
    out = {}
    for name in DROPOUTS:
        value = settings.get(name)
        if value is None:
            continue
        attr = names.get(name, name)
        if not hasattr(config, attr):
            raise ConfigError(f"{field}.{name}", f"is not a setting of {getattr(config, 'model_type', '?')!r} "
                              "models.", "drop it from the space for this model.")
        out[attr] = value
    return out


def build_config(source: str, label_names: Sequence[str], settings: TrainSettings,
                 model_kwargs: Mapping[str, Any], pad_id: int) -> tuple[Any, dict[str, Any]]:
    """The model config with labels, dropouts and ``model_kwargs`` applied; plus loader options."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source)
    config_kw, loader_kw = split_model_kwargs(config, model_kwargs)
    overrides = {**config_kw, **dropout_overrides(config, settings.to_dict())}
    for key, value in overrides.items():
        setattr(config, key, value)
    config.id2label = {i: name for i, name in enumerate(label_names)}
    config.label2id = {name: i for i, name in enumerate(label_names)}
    if getattr(config, "pad_token_id", None) is None:
        config.pad_token_id = pad_id
    return config, loader_kw


def load_model(source: str, label_names: Sequence[str], settings: TrainSettings,
               model_kwargs: Mapping[str, Any], pad_id: int, freeze_embeddings: bool = False) -> Any:
    """A sequence-classification model in float32 (autocast handles lower precision).

    ``freeze_embeddings`` keeps the token embedding matrix fixed: with few layers it holds most
    of the parameters, so its gradient and optimizer update dominate a CPU step.
    """
    from transformers import AutoModelForSequenceClassification

    config, loader_kw = build_config(source, label_names, settings, model_kwargs, pad_id)
    loader_kw.setdefault("ignore_mismatched_sizes", True)  # a fine-tuned head with other labels
    if "torch_dtype" not in loader_kw:
        loader_kw.setdefault("dtype", torch.float32)  # master weights in fp32, whatever was saved
    with quiet_transformers():
        model = AutoModelForSequenceClassification.from_pretrained(source, config=config, **loader_kw)
    if freeze_embeddings:
        model.get_input_embeddings().weight.requires_grad_(False)
    return model


def make_optimizer(model: Any, settings: TrainSettings, device: torch.device) -> torch.optim.Optimizer:
    """AdamW with no weight decay on biases and normalization weights (the 1-d parameters)."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 else decay).append(param)
    groups = [{"params": decay, "weight_decay": settings.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel is one pass over all parameters, on the GPU and (torch >= 2.4) the CPU too.
    extra = {"fused": True} if device.type in ("cuda", "cpu") else {}
    return torch.optim.AdamW(groups, lr=settings.learning_rate, betas=(settings.adam_beta1, settings.adam_beta2),
                             eps=settings.adam_epsilon, **extra)


@dataclass
class Precision:
    """Autocast dtype (None: fp32) and the gradient scaler fp16 needs."""

    device: torch.device
    dtype: torch.dtype | None = None
    scaler: Any = None

    @property
    def name(self) -> str:
        return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(self.dtype, "fp32")  # type: ignore[arg-type]

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)


def choose_precision(device: torch.device) -> Precision:
    """bf16 on GPUs that have it, fp16 with a gradient scaler on older GPUs, fp32 on CPU."""
    if device.type != "cuda":
        return Precision(device)
    if torch.cuda.is_bf16_supported(including_emulation=False):  # emulated bf16 is slow
        return Precision(device, torch.bfloat16)
    return Precision(device, torch.float16, torch.amp.GradScaler("cuda"))


def choose_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("objective.device", f"is {name!r}, but no CUDA GPU is visible to this trial.",
                          "use `device: auto` or give the study GPUs (`execution.gpus_per_trial`).")
    return device
