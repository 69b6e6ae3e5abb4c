"""The validated study config: the YAML file and the Python API share these fields.

Everything a user can get wrong is checked here, before any trial runs, and reported as a
``ConfigError`` that names the field and the fix.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from tunelab.errors import ConfigError, shown
from tunelab.identity import parse_on_change
from tunelab.metrics import MetricSet
from tunelab.names import check_study_name
from tunelab.samplers import SAMPLERS, default_sampler
from tunelab.space import Space

TOP_KEYS = ("name", "storage", "objective", "metrics", "space", "search", "scheduler", "budget",
            "execution", "tracking", "on_change")
BACKENDS = ("local", "inprocess", "ray", "spark")
OBJECTIVE_TYPES = ("function", "command", "text_classification")
# Bounds on values that are valid in type but would exhaust memory or never end (issue 10).
MAX_WORKERS = 4096
MAX_TRIALS = 10_000_000
MAX_DURATION_S = 366 * 86400.0
MAX_GPUS_PER_TRIAL = 64
MAX_KEEP_CHECKPOINTS = 10_000
MAX_SEED = 2**32 - 1  # numpy's seed range
MAX_FILE_BYTES = 10 * 2**20
MAX_YAML_NODES = 100_000  # nodes after expanding aliases: a "billion laughs" file stops here
_EXECUTION_KEYS = {"backend", "workers", "gpus_per_trial", "cpus_per_trial", "timeout", "trial_dir",
                   "keep_checkpoints", "gpus", "address", "master", "preload"}


@dataclass(frozen=True)
class Budget:
    trials: int | None = None
    time_s: float | None = None
    target: float | None = None
    #: Training steps (epochs, or the objective's step unit) summed over trials; a clone counts
    #: only the steps it trained itself.
    epochs: float | None = None


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
    #: The Spark master (``local[N]``, ``spark://HOST:7077``); None: the active SparkSession.
    master: str | None = None
    #: Local trials forked from a worker that has imported torch/transformers (where fork is safe).
    preload: bool = True


@dataclass(frozen=True)
class Search:
    sampler: str
    seed: int | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    #: Seed repeats of the best configs after the search (``tunelab.repeats``).
    repeats: Any = None
    #: Earlier studies whose trials the sampler starts from (``tunelab.warm_start``).
    warm_start: tuple[Any, ...] = ()


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
    #: Configs queued first in a new study (``tunelab.finetune_defaults``: a fine-tuning study with no space).
    start_points: tuple[Mapping[str, Any], ...] = ()
    #: The sections tunelab filled with its fine-tuning defaults (``space``, ``scheduler``), to say so.
    defaulted: tuple[str, ...] = ()

    def with_overrides(self, *, workers: int | None = None, trials: int | None = None) -> "StudyConfig":
        cfg = self
        if workers is not None:
            cfg = replace(cfg, execution=replace(cfg.execution, workers=_positive_int("--workers", workers, MAX_WORKERS)))
        if trials is not None:
            cfg = replace(cfg, budget=replace(cfg.budget, trials=_positive_int("--trials", trials, MAX_TRIALS)))
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
                               "address": e.address, "master": e.master, "preload": e.preload}
        if given.get("backend", "ray") != "ray":
            raw.update(address=None)  # the study file's cluster address means nothing to another backend
        if given.get("backend", "spark") != "spark":
            raw.update(master=None)
        if given.get("backend", "local") in ("ray", "spark"):
            raw.update(gpus=None)
        raw.update(given)
        return replace(self, execution=parse_execution({k: v for k, v in raw.items() if v is not None}))


# ---- YAML -------------------------------------------------------------------------------------


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file safely: duplicate keys refused (PyYAML would keep the last one), the
    size and the alias expansion bounded, and every failure a ``ConfigError`` naming the file."""
    import yaml

    path = Path(path)
    where = str(path)
    text = _read_text(path)

    class _StrictLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)  # a complete key, to hash and show
            line = key_node.start_mark.line + 1
            try:
                hash(key)
            except TypeError:
                raise ConfigError(shown(key), f"is not a valid key (line {line} of {where}).",
                                  "keys are names or numbers; quote the key.") from None
            if key in seen:
                raise ConfigError(str(key), f"is defined twice (line {line} of {where}).", "keep one definition.")
            seen[key] = loader.construct_object(value_node, deep=deep)
        return seen

    _StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    loader = None
    try:
        loader = _StrictLoader(text)  # reads the text at once: may raise for a control character
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expanded_size(node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(where, f"is not valid YAML: {problem}{at}.",
                          "check the indentation, brackets and quotes there.") from None
    except RecursionError:
        raise ConfigError(where, "is nested too deeply.", "flatten the structure.") from None
    finally:
        if loader is not None:
            loader.dispose()


def _read_text(path: Path) -> str:
    where = str(path)
    if path.is_dir():
        raise ConfigError(where, "is a directory, not a study file.",
                          f"give the study's YAML file, e.g. `{path / 'study.yaml'}`.")
    if not path.exists():
        raise ConfigError(where, "does not exist.", "check the path.")
    if not path.is_file():  # a FIFO or a device could block or never end
        raise ConfigError(where, "is not a regular file.", "write the study to a file and give its path.")
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(where, f"cannot be read ({exc.strerror or exc}).", "check its permissions.") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(where, f"is larger than {MAX_FILE_BYTES // 2**20} MiB, too large for a study file.",
                          "give the study's YAML file.")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(where, f"is not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}).",
                          "save the file as UTF-8.") from None


def _check_expanded_size(root: Any, where: str) -> None:
    """Refuse documents whose aliases expand past ``MAX_YAML_NODES`` nodes, or refer to themselves.

    Sizes are computed per composed node (an alias shares its anchor's node), so the check
    costs the document's size, not its expansion's.
    """
    import yaml

    sizes: dict[int, int] = {}
    ancestors: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        if done:
            ancestors.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            if sizes[key] > MAX_YAML_NODES:
                raise ConfigError(where, f"expands to more than {MAX_YAML_NODES:,} values through its aliases "
                                  f"(line {node.start_mark.line + 1}).", "write the values out; use fewer aliases.")
            continue
        if key in sizes:
            continue
        if key in ancestors:
            raise ConfigError(where, f"has an alias inside its own anchor (line {node.start_mark.line + 1}).",
                              "an anchor cannot contain itself.")
        ancestors.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children)


def load_config(path: str | Path) -> StudyConfig:
    path = Path(path)
    raw = load_yaml(path)
    if not isinstance(raw, Mapping):
        raise ConfigError(str(path), "must hold a mapping with the study's fields.", f"use the fields {list(TOP_KEYS)}.")
    _refuse_nul(raw, "")
    return parse_config(raw, base_dir=path.resolve().parent, default_name=path.stem)


def _refuse_nul(value: Any, where: str) -> None:
    """A NUL character (YAML's "\\0") cannot be in a path, an argument or a name: refuse it anywhere."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ConfigError(where or "(top)", f"holds a NUL character: {shown(value)}.", "remove the `\\0`.")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            key_text = str(key).replace("\x00", "\\0")
            name = f"{where}.{key_text}" if where else key_text
            _refuse_nul(key, name)
            _refuse_nul(item, name)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _refuse_nul(item, f"{where}[{i}]")


def parse_config(raw: Mapping[str, Any], *, base_dir: Path, default_name: str = "study") -> StudyConfig:
    unknown = sorted(str(k) for k in raw if k not in TOP_KEYS)
    if unknown:
        raise ConfigError(unknown[0], "is not a study field.", f"valid fields are {list(TOP_KEYS)}.")
    fine_tuning = isinstance(raw.get("objective"), Mapping) and raw["objective"].get("type") == "text_classification"
    for required in ("objective", "space", "metrics"):
        if required == "space" and fine_tuning:
            continue  # a fine-tuning study has a default space (tunelab.finetune_defaults)
        if required not in raw:
            raise ConfigError(required, "is missing.", "see DESIGN.md or the README for the study format.")
    name = check_study_name(raw.get("name", default_name), "name")
    on_change = parse_on_change(raw.get("on_change", "error"), "on_change")
    defaulted: tuple[str, ...] = ()
    if "space" not in raw:  # a fine-tuning study: tunelab.finetune_defaults, once the objective is known
        defaulted = ("space",) if "scheduler" in raw else ("space", "scheduler")
    space: Space | None = Space.from_dict(raw["space"]) if "space" in raw else None
    metrics = MetricSet.parse(raw["metrics"])
    # Only a missing key or null means "absent": `search: []` is a mistake, not the defaults.
    execution = parse_execution(_section(raw, "execution"))
    budget = parse_budget(_section(raw, "budget"), metrics)
    search = parse_search(_section(raw, "search"), metrics)
    objective = build_objective(raw["objective"], base_dir)
    scheduler = raw.get("scheduler")
    start_points: tuple[Mapping[str, Any], ...] = ()
    if defaulted:
        from tunelab.finetune_defaults import default_scheduler, default_space, default_start_points

        searched = default_space(objective)
        if not searched:
            raise ConfigError("space", "is missing, and the objective fixes every setting the default space searches.",
                              "give a `space` (see the README, \"Defaults for fine-tuning\").")
        space = Space.from_dict(searched)
        if "scheduler" in defaulted:
            scheduler = default_scheduler(objective)
        start_points = default_start_points(objective)  # run_study queues what a third of the budget holds
    _check_scheduler(scheduler, metrics, space, objective)
    storage = raw.get("storage")
    if storage is not None and (not isinstance(storage, str) or not storage.strip() or "\x00" in storage):
        raise ConfigError("storage", f"is {shown(storage)}; it must be a path or a storage URL.",
                          "write e.g. `storage: study.db` or `storage: postgresql://host/db`.")
    tracking = _section(raw, "tracking")
    if not isinstance(tracking, Mapping):
        raise ConfigError("tracking", f"is {shown(tracking)}, but must be a mapping.",
                          "write e.g. `tracking: {mlflow: {uri: sqlite:///mlflow.db}}`.")
    return StudyConfig(name=name, objective=objective, space=space, metrics=metrics, search=search,
                       scheduler=scheduler, budget=budget, execution=execution, storage=storage,
                       tracking=tracking, base_dir=base_dir, raw=dict(raw), on_change=on_change,
                       start_points=start_points, defaulted=defaulted)


# ---- sections ---------------------------------------------------------------------------------


def _section(raw: Mapping[str, Any], key: str) -> Any:
    value = raw.get(key)
    return {} if value is None else value


def _check_scheduler(spec: Any, metrics: MetricSet, space: Space, objective: Any) -> None:
    """Build the scheduler once to check it (with the space and objective it must fit: PBT),
    so its errors come before anything else runs."""
    from tunelab.schedulers import make_scheduler

    make_scheduler(spec, metrics.primary.name, metrics.primary.goal, space=space, objective=objective)


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

        _check_command_types(raw)
        return CommandObjective.from_config(raw, base_dir)
    if kind == "text_classification":
        from tunelab.objectives.text_classification import TextClassification

        return TextClassification.from_config(raw, base_dir=base_dir)
    raise ConfigError("objective.type", f"is {kind!r}.", f"use one of {list(OBJECTIVE_TYPES)}.")


def _check_command_types(raw: Mapping[str, Any]) -> None:
    """The YAML types of a command objective's options, before the objective reads them."""
    import shlex

    command = raw.get("command")
    if isinstance(command, str):
        try:
            command = shlex.split(command)
        except ValueError as exc:
            raise ConfigError("objective.command", f"cannot be split into arguments ({exc}).",
                              "close the quotes, or give a list of arguments.") from None
    if command is not None and not (
            isinstance(command, list) and all(isinstance(a, (str, int, float)) and not isinstance(a, bool)
                                              and "\x00" not in str(a) for a in command)):
        raise ConfigError("objective.command", f"is {shown(command)}, but must be a list of arguments.",
                          'write e.g. `["python", "train.py", "--lr", "{learning_rate}"]`.')
    metrics = raw.get("metrics")
    if metrics is not None and not (isinstance(metrics, list) and all(
            isinstance(m, Mapping) and isinstance(m.get("name"), str) and isinstance(m.get("regex"), str)
            for m in metrics)):
        raise ConfigError("objective.metrics", f"is {shown(metrics)}, but must list `{{name, regex}}` mappings.",
                          "write e.g. `metrics: [{name: f1, regex: 'f1 = ([0-9.]+)'}]`.")
    for key in ("step_regex", "cwd"):
        if raw.get(key) is not None and (not isinstance(raw[key], str) or "\x00" in raw[key]):
            raise ConfigError(f"objective.{key}", f"is {shown(raw[key])}, but must be a string.",
                              "write e.g. `step_regex: 'epoch ([0-9]+)'`" if key == "step_regex" else
                              "write e.g. `cwd: ./train`.")
    env = raw.get("env")
    if env is not None and not (isinstance(env, Mapping) and all(
            isinstance(k, str) and isinstance(v, (str, int, float)) and "\x00" not in f"{k}{v}" and "=" not in k
            for k, v in env.items())):
        raise ConfigError("objective.env", f"is {shown(env)}, but must map variable names to values.",
                          "write e.g. `env: {OMP_NUM_THREADS: 1}`.")


def parse_search(raw: Any, metrics: MetricSet) -> Search:
    if isinstance(raw, str):
        raw = {"sampler": raw}
    if not isinstance(raw, Mapping):
        raise ConfigError("search", f"is {shown(raw)}, but must be a mapping.", "write e.g. `{sampler: tpe, seed: 0}`.")
    sampler = raw.get("sampler", default_sampler(metrics.is_multi_objective))
    if not isinstance(sampler, str) or sampler not in SAMPLERS:
        raise ConfigError("search.sampler", f"is {shown(sampler)}, which is not a sampler.",
                          f"use one of {list(SAMPLERS)}.")
    seed = raw.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
        raise ConfigError("search.seed", f"is {shown(seed)}, but must be an integer from 0 to {MAX_SEED}.",
                          "use e.g. `seed: 0`.")
    from tunelab.repeats import parse_repeats
    from tunelab.warm_start import parse_sources

    repeats = parse_repeats(raw.get("repeats"), metrics)
    warm_start = parse_sources(raw.get("warm_start"))
    options = {str(k): v for k, v in raw.items() if k not in ("sampler", "seed", "repeats", "warm_start")}
    return Search(sampler, seed, options, repeats, warm_start)


def parse_budget(raw: Any, metrics: MetricSet) -> Budget:
    if not isinstance(raw, Mapping):
        raise ConfigError("budget", f"is {shown(raw)}, but must be a mapping.", "write e.g. `{trials: 20, time: 2h}`.")
    unknown = sorted(str(k) for k in raw if k not in ("trials", "time", "target", "epochs"))
    if unknown:
        raise ConfigError(f"budget.{unknown[0]}", "is not a budget field.",
                          "use `trials`, `time`, `epochs` or `target`.")
    trials = None
    if raw.get("trials") is not None:
        trials = _positive_int("budget.trials", raw["trials"], MAX_TRIALS,
                               "bound a longer study by `time` (e.g. `time: 48h`) or a `target`.")
    time_s = parse_duration("budget.time", raw["time"]) if raw.get("time") is not None else None
    target = raw.get("target")
    if target is not None:
        if metrics.is_multi_objective:
            raise ConfigError("budget.target", "needs a single optimized metric.", "drop it for a multi-objective study.")
        target = _finite_number("budget.target", target, "give the metric value that ends the study, e.g. 0.95.")
    epochs = None
    if raw.get("epochs") is not None:
        fix = "give the training steps all trials may use together, in the objective's step unit, e.g. 60."
        epochs = _finite_number("budget.epochs", raw["epochs"], fix)
        if not epochs > 0:
            raise ConfigError("budget.epochs", f"is {shown(raw['epochs'])}, but must be a number > 0.", fix)
    return Budget(trials, time_s, target, epochs)


def parse_execution(raw: Any) -> Execution:
    if not isinstance(raw, Mapping):
        raise ConfigError("execution", f"is {shown(raw)}, but must be a mapping.",
                          "write e.g. `{backend: local, workers: 2}`.")
    unknown = sorted(str(k) for k in raw if k not in _EXECUTION_KEYS)
    if unknown:
        raise ConfigError(f"execution.{unknown[0]}", "is not an execution field.",
                          f"valid fields are {sorted(_EXECUTION_KEYS)}.")
    backend = raw.get("backend", "local")
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ConfigError("execution.backend", f"is {shown(backend)}.", f"use one of {list(BACKENDS)}.")
    gpus_per_trial = _finite_number("execution.gpus_per_trial", raw.get("gpus_per_trial", 0),
                                    "use 0 (CPU), 0.5 (two trials per GPU), 1, 2, ...")
    if not 0 <= gpus_per_trial <= MAX_GPUS_PER_TRIAL:
        raise ConfigError("execution.gpus_per_trial", f"is {shown(gpus_per_trial)}, but must be a number from 0 "
                          f"to {MAX_GPUS_PER_TRIAL}.", "use 0 (CPU), 0.5 (two trials per GPU), 1, 2, ...")
    cpus = raw.get("cpus_per_trial")
    gpus = raw.get("gpus")
    if gpus is not None and (not isinstance(gpus, list) or len(gpus) > 1024
                             or not all(isinstance(g, int) and not isinstance(g, bool) and 0 <= g < 1024 for g in gpus)
                             or len(set(gpus)) != len(gpus)):
        raise ConfigError("execution.gpus", f"is {shown(gpus)}, but must be a list of distinct GPU indices.",
                          "write e.g. `gpus: [0, 1]`, or leave it out to use every visible GPU.")
    if gpus is not None and backend in ("ray", "spark"):
        raise ConfigError("execution.gpus", f"is not used by the `{backend}` backend: {backend.title()} assigns "
                          "the GPUs.", "drop `gpus` and set `gpus_per_trial`.")
    keep = raw.get("keep_checkpoints", 3)
    if isinstance(keep, bool) or not isinstance(keep, int) or not 0 <= keep <= MAX_KEEP_CHECKPOINTS:
        raise ConfigError("execution.keep_checkpoints", f"is {shown(keep)}, but must be an integer from 0 to "
                          f"{MAX_KEEP_CHECKPOINTS}.", "use e.g. 3 (the default).")
    workers_fix = f"use at most {MAX_WORKERS}; trials beyond the machine's capacity only wait in line."
    return Execution(
        backend=backend,
        workers=_positive_int("execution.workers", raw.get("workers", 1), MAX_WORKERS, workers_fix),
        gpus_per_trial=gpus_per_trial,
        cpus_per_trial=_positive_int("execution.cpus_per_trial", cpus, MAX_WORKERS) if cpus is not None else None,
        timeout_s=parse_duration("execution.timeout", raw["timeout"]) if raw.get("timeout") is not None else None,
        trial_dir=_trial_dir(raw.get("trial_dir", "tunelab_runs")),
        keep_checkpoints=keep,
        gpus=tuple(gpus) if gpus is not None else None,
        address=parse_address(raw.get("address"), backend),
        master=parse_master(raw.get("master"), backend),
        preload=_preload(raw.get("preload", True)),
    )


def _preload(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError("execution.preload", f"is {shown(value)}, but must be true or false.",
                          "write `preload: false` to start every local trial as a fresh interpreter.")
    return value


def _trial_dir(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        raise ConfigError("execution.trial_dir", f"is {shown(value)}, but must be a directory path.",
                          "write e.g. `trial_dir: tunelab_runs` (relative paths are read from the study file's "
                          "directory).")
    text = value
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
    if not isinstance(value, str) or not (value in ("auto", "local") or _HOST_PORT.fullmatch(value)) or (
            value not in ("auto", "local") and not 1 <= int(value.rsplit(":", 1)[1]) <= 65535):
        raise ConfigError("execution.address", f"is {shown(value)}, which is not a Ray cluster address.",
                          "use `auto` (the cluster this machine joined), `HOST:6379` (the head's GCS port) or "
                          "`ray://HOST:10001` (Ray Client).")
    return value


_MASTER = re.compile(r"^(local(\[(\*|[1-9]\d{0,4})(,[1-9]\d{0,2})?\])?|(spark|k8s|mesos)://\S+|yarn)$")


def parse_master(value: Any, backend: str) -> str | None:
    """``execution.master``: the Spark master (``local[N]``, ``spark://HOST:7077``, ``yarn``, ``k8s://...``)."""
    if value is None:
        return None
    if backend != "spark":
        raise ConfigError("execution.master", f"is {shown(value)}, but only the `spark` backend has a master.",
                          "add `backend: spark`, or drop `master`.")
    if not isinstance(value, str) or not _MASTER.fullmatch(value.strip()):
        raise ConfigError("execution.master", f"is {shown(value)}, which is not a Spark master URL.",
                          "use `local[4]` (this machine, 4 cores), `spark://HOST:7077` (a standalone cluster), "
                          "or leave it out to use the active SparkSession.")
    return value.strip()


_DURATION = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*"
                       r"(?:(\d+(?:\.\d+)?)\s*s?)?\s*$")


def parse_duration(field_name: str, value: Any) -> float:
    """Seconds from ``90``, ``"90s"``, ``"30m"``, ``"2h"`` or ``"1h30m"``: finite, positive, at most a year."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            seconds = math.inf
    else:
        match = _DURATION.match(value) if isinstance(value, str) and value.strip() else None
        if match is None or not any(match.groups()):
            raise ConfigError(field_name, f"is {shown(value)}, which is not a duration.",
                              "write e.g. `90s`, `30m`, `2h` or `1h30m`.")
        d, h, m, s = (float(x) if x else 0.0 for x in match.groups())
        seconds = d * 86400 + h * 3600 + m * 60 + s
    if math.isnan(seconds) or seconds <= 0:
        raise ConfigError(field_name, f"is {shown(value)}, but must be a positive duration.",
                          "write e.g. `90s`, `30m`, `2h` or `1h30m`.")
    if seconds > MAX_DURATION_S:
        raise ConfigError(field_name, f"is {shown(value)}, longer than {MAX_DURATION_S / 86400:.0f} days.",
                          "leave it out for no limit, or give a shorter duration.")
    return seconds


def _positive_int(field_name: str, value: Any, maximum: int | None = None, fix: str | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(field_name, f"is {shown(value)}, but must be an integer >= 1.", "write e.g. 4.")
    if maximum is not None and value > maximum:
        raise ConfigError(field_name, f"is {shown(value)}, more than the limit of {maximum}.",
                          fix or f"use at most {maximum}.")
    return value


def _finite_number(field_name: str, value: Any, fix: str) -> float:
    """A real number given as a number (or as YAML 1.1 reads `1e-5`: a string); never NaN, inf or a bool."""
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None:
        raise ConfigError(field_name, f"is {shown(value)}, which is not a number.", fix)
    if not math.isfinite(number):
        raise ConfigError(field_name, f"is {shown(value)}, but must be a finite number.", fix)
    return number
