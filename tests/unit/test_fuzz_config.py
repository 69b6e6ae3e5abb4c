"""Property-based fuzzing of everything a user can write: study files and ``tune()``-style values.

The contract (issue 10, "Bad input"): a malformed input either parses, or raises ``ConfigError``
whose message is one line and names a field; never another exception, never a hang. Values that
make no sense (NaN anywhere, infinity, booleans for numbers) must be refused, not accepted.
Deterministic (``derandomize=True``) and bounded, so it runs in seconds on a busy machine.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tunelab.config import load_config, parse_budget, parse_execution, parse_search
from tunelab.errors import ConfigError
from tunelab.metrics import MetricSet
from tunelab.space import Space

NAN = float("nan")
INF = float("inf")
FUZZ = settings(derandomize=True, max_examples=250, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

OBJECTIVE_MODULE = "fz_objective_mod"
OBJECTIVES: list[dict[str, Any]] = [
    {"type": "function", "function": f"{OBJECTIVE_MODULE}:fn"},
    {"type": "command", "command": ["python", "-c", "print('loss=1')", "{x}", "{n}"],
     "metrics": [{"name": "loss", "regex": "loss=([0-9.]+)"}]},
]
BASE: dict[str, Any] = {
    "name": "fz",
    "objective": OBJECTIVES[0],
    "metrics": [{"name": "loss", "goal": "minimize"}],
    "space": {"x": {"float": [0.0, 1.0]}, "n": {"int": [1, 4], "step": 1}, "c": {"choice": ["a", "b"]},
              "y": {"float": [0.1, 1.0], "log": True, "when": {"c": "a"}}, "k": {"fixed": 3}},
    "search": {"sampler": "tpe", "seed": 0},
    "budget": {"trials": 3, "time": "1h", "target": 0.0},
    "execution": {"backend": "inprocess", "workers": 1, "timeout": "30s", "gpus_per_trial": 0,
                  "cpus_per_trial": 1, "keep_checkpoints": 1, "trial_dir": "runs"},
    "scheduler": {"type": "asha", "min_resource": 1, "max_resource": 9, "reduction_factor": 3},
    "tracking": {"mlflow": False},
}
# Leaves where a number (or a duration) is expected: NaN, infinity and booleans make no sense there.
NUMERIC = [
    ("space", "x", "float", 0), ("space", "x", "float", 1), ("space", "x", "step"), ("space", "n", "int", 0),
    ("space", "n", "int", 1), ("space", "n", "step"), ("space", "y", "float", 0), ("space", "y", "float", 1),
    ("search", "seed"), ("budget", "trials"), ("budget", "time"), ("budget", "target"), ("execution", "workers"),
    ("execution", "timeout"), ("execution", "gpus_per_trial"), ("execution", "cpus_per_trial"),
    ("execution", "keep_checkpoints"), ("scheduler", "min_resource"), ("scheduler", "max_resource"),
    ("scheduler", "reduction_factor"),
]
# Fields of other slices, fuzzed for "ConfigError or parse" only (their refusal rules live there):
# metric bounds (metrics.py), sampler options (samplers.py), names (the shared name validator).
OTHER_SLICES = [("metrics", 0, "min"), ("metrics", 0, "max"), ("search", "gamma"), ("name",)]
PATHS = [
    *NUMERIC, *OTHER_SLICES,
    ("name",), ("objective",), ("objective", "type"), ("objective", "function"), ("metrics",), ("metrics", 0),
    ("metrics", 0, "name"), ("metrics", 0, "goal"), ("space",), ("space", "x"), ("space", "x", "float"),
    ("space", "x", "log"), ("space", "c", "choice"), ("space", "c", "choice", 0), ("space", "y", "when"),
    ("space", "y", "when", "c"), ("space", "k", "fixed"), ("space", "new"), ("search",), ("search", "sampler"),
    ("budget",), ("execution",), ("execution", "backend"), ("execution", "trial_dir"), ("execution", "gpus"),
    ("execution", "address"), ("scheduler",), ("scheduler", "type"), ("tracking",), ("tracking", "mlflow"),
    ("storage",), ("unknown_key",), ("budget", "unknown"), ("execution", "unknown"),
    # the command objective (when drawn): its template, regexes and options
    ("objective", "command"), ("objective", "command", 3), ("objective", "command", 0), ("objective", "metrics"),
    ("objective", "metrics", 0), ("objective", "metrics", 0, "regex"), ("objective", "metrics", 0, "name"),
    ("objective", "step_regex"), ("objective", "env"), ("objective", "cwd"),
]
SPECIAL = [
    None, True, False, 0, -1, 1, 2, 0.5, -0.0, NAN, INF, -INF, 10**30, 2**63, 1e30, 1e308, 1000000000, 4097,
    "", " ", "x", "nan", ".nan", "inf", "-1", "1e400", "1e-5", "1h-5m", "0s", "1h30m", "999999999999999999d",
    "..", "../x", "/abs/path", "a:b", "../obj:train", ":", "mod:", "os:system", "\x00", "ü", "{x}", "{y}", "{x",
    "}", "{x!z}", "{x:zz}", "{0}", "{}", "(", "([0-9.]+)", "(?P<x", "x*+", "{c:>4}",
    [], {}, [[]], [None], [1, 2, 3], [0, INF], [NAN, 1], [True, False], ["a", "a"], {"a": 1}, {"type": 1},
    {"float": [0, 1]}, {"choice": []},
]
NONSENSE = [NAN, INF, -INF, True, False]
JUNK = st.one_of(
    st.sampled_from(NONSENSE),
    st.sampled_from(SPECIAL),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.one_of(st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=2)), max_size=3),
)


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fuzz")
    (d / f"{OBJECTIVE_MODULE}.py").write_text("def fn(config, reporter):\n    return 1.0\n")
    return d


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        if isinstance(doc, dict) and key in doc:
            doc = doc[key]
        elif isinstance(doc, list) and isinstance(key, int) and key < len(doc):
            doc = doc[key]
        else:
            return  # an earlier mutation replaced the section: nothing to set
    if isinstance(doc, dict) or (isinstance(doc, list) and isinstance(path[-1], int) and path[-1] < len(doc)):
        doc[path[-1]] = value


def _delete(doc: Any, path: tuple[Any, ...]) -> None:
    for key in path[:-1]:
        if isinstance(doc, dict) and key in doc or isinstance(doc, list) and isinstance(key, int) and key < len(doc):
            doc = doc[key]
        else:
            return
    if isinstance(doc, dict):
        doc.pop(path[-1], None)


@st.composite
def study_docs(draw: st.DrawFn) -> tuple[dict[str, Any], list[tuple[Any, ...]]]:
    doc = copy.deepcopy(BASE)
    doc["objective"] = copy.deepcopy(draw(st.sampled_from(OBJECTIVES)))
    changed = []
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        if draw(st.integers(0, 9)) == 0:
            _delete(doc, path)
        else:
            _set(doc, path, draw(st.sampled_from(NONSENSE) if path in NUMERIC and draw(st.booleans()) else JUNK))
        changed.append(path)
    return doc, changed


def prework_checks(cfg: Any) -> None:
    """What ``run_study`` checks before it opens the storage or starts a trial."""
    from tunelab.api import effective_trials
    from tunelab.objectives.base import validate_objective
    from tunelab.samplers import make_sampler
    from tunelab.schedulers import make_scheduler
    from tunelab.tracking import parse_tracking

    make_scheduler(cfg.scheduler, cfg.metrics.primary.name, cfg.metrics.primary.goal)
    parse_tracking(cfg.tracking, base_dir=cfg.base_dir, study_name=cfg.name)
    validate_objective(cfg.objective, cfg.space, cfg.metrics)
    effective_trials(cfg)
    make_sampler(cfg.search.sampler, space=cfg.space, seed=cfg.search.seed, workers=cfg.execution.workers,
                 multi_objective=cfg.metrics.is_multi_objective, options=cfg.search.options)


def assert_one_line_naming_a_field(exc: ConfigError) -> None:
    text = str(exc)
    assert exc.field and exc.field.strip(), f"no field named: {text!r}"
    assert "\n" not in text and "\r" not in text, f"not one line: {text!r}"
    assert text.startswith(exc.field), text
    assert len(text) < 2000, f"too long ({len(text)} chars)"


def check_file(path: Path) -> Any:
    """Load and pre-check ``path``: the config, or None after a well-formed ConfigError."""
    before = sorted(p.name for p in path.parent.iterdir())
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        assert_one_line_naming_a_field(exc)
        cfg = None
    assert sorted(p.name for p in path.parent.iterdir()) == before, "parsing created files"
    if cfg is None:
        return None
    try:
        prework_checks(cfg)
    except ConfigError as exc:
        assert_one_line_naming_a_field(exc)
        return None
    return cfg


def _leaf(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        try:
            doc = doc[key]
        except (KeyError, IndexError, TypeError):
            return None
    return doc


def _nonsense(value: Any) -> bool:
    return isinstance(value, bool) or isinstance(value, float) and not math.isfinite(value)


@settings(FUZZ, max_examples=600)
@given(study_docs())
def test_fuzzed_study_files_parse_or_name_the_field(study_dir: Path, drawn: tuple[dict[str, Any], list]) -> None:
    doc, changed = drawn
    path = study_dir / "study.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    cfg = check_file(path)
    if cfg is None:
        return
    # Accepted: then no numeric field may hold NaN, infinity or a boolean.
    for p in changed:
        if p in NUMERIC and p[:2] != ("search", "seed"):
            value = _leaf(doc, p)
            assert not _nonsense(value), f"{'.'.join(map(str, p))} = {value!r} was accepted"
    for choice in cfg.space.params.values():
        for c in getattr(choice, "choices", ()):
            assert not (isinstance(c, float) and math.isnan(c)), "a NaN choice was accepted"
    assert cfg.execution.workers <= 4096 and (cfg.budget.trials or 0) <= 10**9


@FUZZ
@given(st.binary(max_size=64), st.integers(0, 400), st.sampled_from([b"\xff", b"\xc3", b"\x80\x81", b"\x00"]))
def test_fuzzed_bytes_never_crash_the_loader(study_dir: Path, noise: bytes, where: int, bad: bytes) -> None:
    text = yaml.safe_dump(BASE, sort_keys=False).encode()
    where = min(where, len(text))
    path = study_dir / "bytes.yaml"
    path.write_bytes(text[:where] + bad + noise + text[where:])
    check_file(path)


@FUZZ
@given(st.integers(1, 12), st.integers(1, 12))
def test_alias_chains_are_limited(study_dir: Path, width: int, depth: int) -> None:
    """Billion laughs inside a valid field: each level repeats the previous one ``width`` times."""
    levels = ["&b0 [lol]"] + [f"&b{i} [{', '.join([f'*b{i - 1}'] * width)}]" for i in range(1, depth + 1)]
    doc = copy.deepcopy(BASE)
    doc["space"]["k"] = {"fixed": "BOMB"}
    path = study_dir / "aliases.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False).replace("BOMB", f"[{', '.join(levels)}]"))
    cfg = check_file(path)
    if cfg is not None:  # accepted: then its values are few enough to store, print and compare
        assert width**depth <= 100_000, f"{width}**{depth} values were accepted"


# ---- tune()-style values: the section parsers that tune() calls, with Python values --------------

PY_JUNK = st.one_of(JUNK, st.sampled_from([(1, 2), {1, 2}, object(), b"bytes", 1j, range(3), Path("x")]))


@FUZZ
@given(trials=PY_JUNK, time=PY_JUNK, target=PY_JUNK)
def test_fuzzed_budget(trials: Any, time: Any, target: Any) -> None:
    metrics = MetricSet.parse([{"name": "loss", "goal": "minimize"}])
    try:
        budget = parse_budget({k: v for k, v in {"trials": trials, "time": time, "target": target}.items()
                               if v is not None}, metrics)
    except ConfigError as exc:
        assert_one_line_naming_a_field(exc)
        return
    for value in (budget.trials, budget.time_s, budget.target):
        assert value is None or (not isinstance(value, bool) and math.isfinite(value)), budget
    assert budget.trials is None or isinstance(budget.trials, int)


@FUZZ
@given(key=st.sampled_from(["backend", "workers", "gpus_per_trial", "cpus_per_trial", "timeout", "trial_dir",
                            "keep_checkpoints", "gpus", "address", "nope"]), value=PY_JUNK, ray=st.booleans())
def test_fuzzed_execution(key: str, value: Any, ray: bool) -> None:
    raw = {"backend": "ray" if ray else "local", key: value}
    try:
        e = parse_execution(raw)
    except ConfigError as exc:
        assert_one_line_naming_a_field(exc)
        return
    assert isinstance(e.workers, int) and 1 <= e.workers <= 4096
    assert math.isfinite(e.gpus_per_trial) and (e.timeout_s is None or math.isfinite(e.timeout_s))
    assert isinstance(e.trial_dir, str)


@FUZZ
@given(sampler=PY_JUNK, seed=PY_JUNK)
def test_fuzzed_search(sampler: Any, seed: Any) -> None:
    metrics = MetricSet.parse([{"name": "loss", "goal": "minimize"}])
    try:
        parse_search({"sampler": sampler, "seed": seed}, metrics)
    except ConfigError as exc:
        assert_one_line_naming_a_field(exc)


@FUZZ
@given(kind=st.sampled_from(["float", "int", "choice", "fixed"]),
       spec=st.one_of(PY_JUNK, st.lists(st.one_of(st.sampled_from(NONSENSE), JUNK), min_size=2, max_size=2)),
       option=st.one_of(st.sampled_from(NONSENSE), PY_JUNK),
       key=st.sampled_from(["log", "step", "when", None]))
def test_fuzzed_space(kind: str, spec: Any, option: Any, key: str | None) -> None:
    raw: dict[str, Any] = {kind: spec}
    if key is not None:
        raw[key] = option
    try:
        space = Space.from_dict({"c": ["a", "b"], "p": raw})
    except ConfigError as exc:
        assert_one_line_naming_a_field(exc)
        return
    p = space.params["p"]
    for bound in (getattr(p, "low", 0), getattr(p, "high", 0), getattr(p, "step", 0) or 0):
        assert math.isfinite(bound), p
    space.to_dict()
    if kind != "float" or getattr(p, "step", None) is not None:
        try:
            space.grid_size()
        except ConfigError as exc:
            assert_one_line_naming_a_field(exc)


# ---- the text_classification objective's options and the settings a space may tune ----------------

TC_BASE: dict[str, Any] = {
    "type": "text_classification", "model": "org/model",
    "data": {"train": "train.csv", "validation": "dev.csv", "text": "text", "label": "label"},
    "max_length": 64, "num_train_epochs": 1, "eval_steps": 5, "per_device_eval_batch_size": 8,
    "defaults": {"weight_decay": 0.0}, "device": "cpu",
}
TC_SPACE: dict[str, Any] = {"learning_rate": {"float": [1e-5, 1e-3], "log": True}, "batch_size": {"choice": [8, 16]},
                            "max_length": {"choice": [32, 64]}, "seed": 1, "warmup_ratio": {"float": [0.0, 0.2]}}
TC_PATHS = [
    ("model",), ("model_kwargs",), ("data",), ("data", "train"), ("data", "text"), ("data", "validation_split"),
    ("data", "max_train_samples"), ("data", "format"), ("data", "nope"), ("data", 1), ("max_length",), ("eval_steps",),
    ("evals_per_epoch",), ("per_device_eval_batch_size",), ("cache_dir",), ("device",), ("freeze_embeddings",),
    ("fast_path",), ("defaults",), ("defaults", "learning_rate"), ("defaults", "seed"), ("learning_rate",),
    ("batch_size",), ("num_train_epochs",), ("gradient_accumulation_steps",), ("lr_scheduler_type",),
    ("fault_injection",), ("nope",), (1,),
]
TC_SPACE_PATHS = [("learning_rate", "float", 1), ("learning_rate",), ("batch_size", "choice", 0), ("batch_size",),
                  ("max_length", "choice", 1), ("seed",), ("warmup_ratio", "float", 1), ("num_train_epochs",),
                  ("per_device_train_batch_size",), ("lr_scheduler_type",), ("nope",)]


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(TC_PATHS + [("space", *p) for p in TC_SPACE_PATHS]), JUNK),
                min_size=1, max_size=3))
def test_fuzzed_text_classification(study_dir: Path, changes: list[tuple[tuple[Any, ...], Any]]) -> None:
    from tunelab.objectives.text_classification import TextClassification

    (study_dir / "train.csv").write_text("text,label\na b,0\nc d,1\n")
    (study_dir / "dev.csv").write_text("text,label\na b,0\nc d,1\n")
    raw, space_raw = copy.deepcopy(TC_BASE), copy.deepcopy(TC_SPACE)
    for path, value in changes:
        if path[0] == "space":
            _set(space_raw, path[1:], value)
        else:
            _set(raw, path, value)
    try:
        objective = TextClassification.from_config(raw, base_dir=study_dir)
        objective.validate(Space.from_dict(space_raw), MetricSet.parse([{"name": "loss", "goal": "minimize"}]))
    except ConfigError as exc:
        assert_one_line_naming_a_field(exc)
        return
    for name, value in objective.defaults.items():
        assert not _nonsense(value), f"{name} = {value!r} was accepted"


# ---- tune() itself, stopped where the study would start ----------------------------------------------

TUNE_ARGS = ["sampler", "seed", "scheduler", "trials", "time", "target", "workers", "backend", "gpus_per_trial",
             "timeout", "trial_dir", "keep_checkpoints", "space", "metrics", "storage", "study_name", "on_progress",
             "progress", "on_change"]


class _StudyWouldStart(Exception):
    """Raised by the stubbed ``run_study``: every check before the study opens has passed."""


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(TUNE_ARGS), st.one_of(st.sampled_from(NONSENSE), PY_JUNK)),
                min_size=1, max_size=3))
def test_fuzzed_tune_arguments(monkeypatch: pytest.MonkeyPatch, changes: list[tuple[str, Any]]) -> None:
    import tunelab.api as api

    started: list[Any] = []
    def stub(config: Any, **_: Any) -> None:
        started.append(config)
        raise _StudyWouldStart()

    monkeypatch.setattr(api, "run_study", stub)
    kwargs: dict[str, Any] = {"metrics": [{"name": "loss", "goal": "minimize"}], "backend": "inprocess",
                              "storage": "memory", "trials": 2}
    space: Any = {"x": {"float": [0.0, 1.0]}}
    for name, value in changes:
        if name == "space":
            space = value
        else:
            kwargs[name] = value
    try:
        try:
            api.tune(lambda config, reporter: 0.0, space, **kwargs)
        except _StudyWouldStart:
            prework_checks(started[0])
    except ConfigError as exc:
        assert_one_line_naming_a_field(exc)
        return
    cfg = started[0]
    assert cfg.budget.time_s is None or math.isfinite(cfg.budget.time_s)
    assert cfg.budget.target is None or math.isfinite(cfg.budget.target)
    assert math.isfinite(cfg.execution.gpus_per_trial) and 1 <= cfg.execution.workers <= 4096
