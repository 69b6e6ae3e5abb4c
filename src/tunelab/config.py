"""The validated study config: the YAML file and the Python API share these fields.

Everything a user can get wrong is checked here, before any trial runs, and reported as a
``ConfigError`` that names the field and the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from tunelab.errors import ConfigError
from tunelab.identity import parse_on_change
from tunelab.metrics import MetricSet
from tunelab.names import check_study_name
from tunelab.samplers import SAMPLERS, default_sampler
from tunelab.space import Space

TOP_KEYS = ("name", "storage", "objective", "metrics", "space", "search", "scheduler", "budget",
            "execution", "tracking", "on_change")
BACKENDS = ("local", "inprocess", "ray")
OBJECTIVE_TYPES = ("function", "command", "text_classification")
_EXECUTION_KEYS = {"backend", "workers", "gpus_per_trial", "cpus_per_trial", "timeout", "trial_dir",
                   "keep_checkpoints", "gpus", "address"}


@dataclass(frozen=True)
class Budget:
    trials: int | None = None
    time_s: float | None = None
    target: float | None = None


@dataclass(frozen=True)
class Execution:
    backend: str = "local"
    workers: int = 1
    gpus_per_trial: float = 0.0
    cpus_per_trial: int | None = None
    timeout_s: float | None = None
    trial_dir: str = "tunelab_runs"
    keep_checkpoints: int = 3
    gpus: tuple[int, ...] | None = None
    address: str | None = None


@dataclass(frozen=True)
class Search:
    sampler: str
    seed: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StudyConfig:
    name: str
    objective: Any
    space: Space
    metrics: MetricSet
    search: Search
    scheduler: Any = None
    budget: Budget = Budget()
    execution: Execution = Execution()
    storage: str | None = None
    tracking: Mapping[str, Any] = field(default_factory=dict)
    base_dir: Path = field(default_factory=Path.cwd)
    raw: Mapping[str, Any] = field(default_factory=dict)
    #: What to do when the stored study was defined differently: error | restart | continue.
    on_change: str = "error"

    def with_overrides(self, *, workers: int | None = None, trials: int | None = None) -> "StudyConfig":
        cfg = self
        if workers is not None:
            cfg = replace(cfg, execution=replace(cfg.execution, workers=_positive_int("--workers", workers)))
        if trials is not None:
            cfg = replace(cfg, budget=replace(cfg.budget, trials=_positive_int("--trials", trials)))
        return cfg

    def with_execution(self, **changes: Any) -> "StudyConfig":
        """A copy with execution fields changed (``tunelab run --backend ray --address ...``),
        validated as the YAML is; ``None`` values leave a field as it is."""
        given = {k: v for k, v in changes.items() if v is not None}
        if not given:
            return self
        e = self.execution
        raw: dict[str, Any] = {"backend": e.backend, "workers": e.workers, "gpus_per_trial": e.gpus_per_trial,
                               "cpus_per_trial": e.cpus_per_trial, "timeout": e.timeout_s, "trial_dir": e.trial_dir,
                               "keep_checkpoints": e.keep_checkpoints, "gpus": list(e.gpus) if e.gpus else None,
                               "address": e.address}
        if given.get("backend", "ray") != "ray":
            raw.update(address=None)  # the study file's cluster address means nothing to another backend
        if given.get("backend", "local") == "ray":
            raw.update(gpus=None)
        raw.update(given)
        return replace(self, execution=parse_execution({k: v for k, v in raw.items() if v is not None}))


# ---- YAML -------------------------------------------------------------------------------------


def load_yaml(path: str | Path) -> Any:
    """Read YAML, rejecting duplicate keys (PyYAML would silently keep the last one)."""
    import yaml

    class _StrictLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise ConfigError(str(key), f"is defined twice (line {line} of {path}).", "keep one definition.")
            seen[key] = loader.construct_object(value_node, deep=deep)
        return seen

    _StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    path = Path(path)
    if not path.exists():
        raise ConfigError("", f"The study file {path} does not exist.", "check the path.")
    try:
        return yaml.load(path.read_text(), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{path} is not valid YAML: {exc}") from None


def load_config(path: str | Path) -> StudyConfig:
    path = Path(path)
    raw = load_yaml(path)
    if not isinstance(raw, Mapping):
        raise ConfigError("", f"{path} must hold a mapping with the study's fields.", f"use the fields {list(TOP_KEYS)}.")
    return parse_config(raw, base_dir=path.resolve().parent, default_name=path.stem)


def parse_config(raw: Mapping[str, Any], *, base_dir: Path, default_name: str = "study") -> StudyConfig:
    unknown = set(raw) - set(TOP_KEYS)
    if unknown:
        raise ConfigError(sorted(unknown)[0], "is not a study field.", f"valid fields are {list(TOP_KEYS)}.")
    for required in ("objective", "space", "metrics"):
        if required not in raw:
            raise ConfigError(required, "is missing.", "see DESIGN.md or the README for the study format.")
    name = check_study_name(raw.get("name", default_name), "name")
    on_change = parse_on_change(raw.get("on_change", "error"), "on_change")
    space = Space.from_dict(raw["space"])
    metrics = MetricSet.parse(raw["metrics"])
    execution = parse_execution(raw.get("execution") or {})
    budget = parse_budget(raw.get("budget") or {}, metrics)
    search = parse_search(raw.get("search") or {}, metrics)
    objective = build_objective(raw["objective"], base_dir)
    storage = raw.get("storage")
    if storage is not None and not isinstance(storage, str):
        raise ConfigError("storage", f"is {storage!r}; it must be a path or a storage URL.")
    tracking = raw.get("tracking") or {}
    if not isinstance(tracking, Mapping):
        raise ConfigError("tracking", "must be a mapping, e.g. `{mlflow: {uri: sqlite:///mlflow.db}}`.")
    return StudyConfig(name=name, objective=objective, space=space, metrics=metrics, search=search,
                       scheduler=raw.get("scheduler"), budget=budget, execution=execution, storage=storage,
                       tracking=tracking, base_dir=base_dir, raw=dict(raw), on_change=on_change)


# ---- sections ---------------------------------------------------------------------------------


def build_objective(raw: Any, base_dir: Path) -> Any:
    if callable(raw):
        return raw
    if not isinstance(raw, Mapping) or "type" not in raw:
        raise ConfigError("objective.type", "is missing.", f"use one of {list(OBJECTIVE_TYPES)}.")
    kind = raw["type"]
    if kind == "function":
        from tunelab.objectives.function import FunctionObjective

        extra = set(raw) - {"type", "function"}
        if extra:
            raise ConfigError("objective", f"unknown keys {sorted(extra)} for a function objective.",
                              "a function objective has only `function: module:callable`.")
        return FunctionObjective(raw.get("function", ""), base_dir)
    if kind == "command":
        from tunelab.objectives.command import CommandObjective

        return CommandObjective.from_config(raw, base_dir)
    if kind == "text_classification":
        from tunelab.objectives.text_classification import TextClassification

        return TextClassification.from_config(raw, base_dir=base_dir)
    raise ConfigError("objective.type", f"is {kind!r}.", f"use one of {list(OBJECTIVE_TYPES)}.")


def parse_search(raw: Any, metrics: MetricSet) -> Search:
    if isinstance(raw, str):
        raw = {"sampler": raw}
    if not isinstance(raw, Mapping):
        raise ConfigError("search", "must be a mapping like `{sampler: tpe, seed: 0}`.")
    sampler = raw.get("sampler", default_sampler(metrics.is_multi_objective))
    if sampler not in SAMPLERS:
        raise ConfigError("search.sampler", f"is {sampler!r}, which is not a sampler.", f"use one of {list(SAMPLERS)}.")
    seed = raw.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ConfigError("search.seed", f"is {seed!r}, but must be an integer.")
    options = {k: v for k, v in raw.items() if k not in ("sampler", "seed")}
    return Search(sampler, seed, options)


def parse_budget(raw: Any, metrics: MetricSet) -> Budget:
    if not isinstance(raw, Mapping):
        raise ConfigError("budget", "must be a mapping like `{trials: 20, time: 2h}`.")
    unknown = set(raw) - {"trials", "time", "target"}
    if unknown:
        raise ConfigError(f"budget.{sorted(unknown)[0]}", "is not a budget field.", "use `trials`, `time` or `target`.")
    trials = _positive_int("budget.trials", raw["trials"]) if raw.get("trials") is not None else None
    time_s = parse_duration("budget.time", raw["time"]) if raw.get("time") is not None else None
    target = raw.get("target")
    if target is not None:
        if metrics.is_multi_objective:
            raise ConfigError("budget.target", "needs a single optimized metric.", "drop it for a multi-objective study.")
        try:
            target = float(target)
        except (TypeError, ValueError):
            raise ConfigError("budget.target", f"is {target!r}, which is not a number.") from None
    return Budget(trials, time_s, target)


def parse_execution(raw: Any) -> Execution:
    if not isinstance(raw, Mapping):
        raise ConfigError("execution", "must be a mapping like `{backend: local, workers: 2}`.")
    unknown = set(raw) - _EXECUTION_KEYS
    if unknown:
        raise ConfigError(f"execution.{sorted(unknown)[0]}", "is not an execution field.",
                          f"valid fields are {sorted(_EXECUTION_KEYS)}.")
    backend = raw.get("backend", "local")
    if backend not in BACKENDS:
        raise ConfigError("execution.backend", f"is {backend!r}.", f"use one of {list(BACKENDS)}.")
    gpus_per_trial = raw.get("gpus_per_trial", 0)
    if isinstance(gpus_per_trial, bool) or not isinstance(gpus_per_trial, (int, float)) or gpus_per_trial < 0:
        raise ConfigError("execution.gpus_per_trial", f"is {gpus_per_trial!r}, but must be a number >= 0.",
                          "use 0 (CPU), 0.5 (two trials per GPU), 1, 2, ...")
    cpus = raw.get("cpus_per_trial")
    gpus = raw.get("gpus")
    if gpus is not None and (not isinstance(gpus, list) or not all(isinstance(g, int) for g in gpus)):
        raise ConfigError("execution.gpus", f"is {gpus!r}, but must be a list of GPU indices like [0, 1].")
    if gpus is not None and backend == "ray":
        raise ConfigError("execution.gpus", "is not used by the `ray` backend: Ray assigns the GPUs.",
                          "drop `gpus` and set `gpus_per_trial`.")
    keep = raw.get("keep_checkpoints", 3)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
        raise ConfigError("execution.keep_checkpoints", f"is {keep!r}, but must be an integer >= 0.")
    return Execution(
        backend=backend,
        workers=_positive_int("execution.workers", raw.get("workers", 1)),
        gpus_per_trial=float(gpus_per_trial),
        cpus_per_trial=_positive_int("execution.cpus_per_trial", cpus) if cpus is not None else None,
        timeout_s=parse_duration("execution.timeout", raw["timeout"]) if raw.get("timeout") is not None else None,
        trial_dir=_trial_dir(raw.get("trial_dir", "tunelab_runs")),
        keep_checkpoints=keep,
        gpus=tuple(gpus) if gpus is not None else None,
        address=parse_address(raw.get("address"), backend),
    )


def _trial_dir(value: Any) -> str:
    text = str(value)
    if "://" in text:  # would silently become a local directory named "s3:"
        raise ConfigError("execution.trial_dir", f"is {text!r}; object-store URLs are not supported yet.",
                          "mount the bucket at the same path on every node and the driver (s3fs, gcsfuse, NFS) "
                          "and give that path.")
    return text


_HOST_PORT = re.compile(r"^(ray://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


def parse_address(value: Any, backend: str) -> str | None:
    """``execution.address``: where the Ray cluster is (``auto``, ``HOST:PORT``, ``ray://HOST:PORT``)."""
    if value is None:
        return None
    if backend != "ray":
        raise ConfigError("execution.address", f"is {value!r}, but only the `ray` backend connects to a cluster.",
                          "add `backend: ray`, or drop `address`.")
    if not isinstance(value, str) or not (value in ("auto", "local") or _HOST_PORT.match(value)):
        raise ConfigError("execution.address", f"is {value!r}, which is not a Ray cluster address.",
                          "use `auto` (the cluster this machine joined), `HOST:6379` (the head's GCS port) or "
                          "`ray://HOST:10001` (Ray Client).")
    return value


_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*"
                       r"(?:(\d+(?:\.\d+)?)\s*s?)?\s*$")


def parse_duration(field_name: str, value: Any) -> float:
    """Seconds from ``90``, ``"90s"``, ``"30m"``, ``"2h"`` or ``"1h30m"``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value)) if isinstance(value, str) and value.strip() else None
        if match is None or not any(match.groups()):
            raise ConfigError(field_name, f"is {value!r}, which is not a duration.", "write e.g. `90s`, `30m`, `2h` or `1h30m`.")
        d, h, m, s = (float(x) if x else 0.0 for x in match.groups())
        seconds = d * 86400 + h * 3600 + m * 60 + s
    if seconds <= 0:
        raise ConfigError(field_name, f"is {value!r}, but must be positive.")
    return seconds


def _positive_int(field_name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(field_name, f"is {value!r}, but must be an integer >= 1.")
    return value
