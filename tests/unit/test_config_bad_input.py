"""Issue 10, "Bad input": each malformed input the fuzzing found, refused with the field and the fix."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tunelab.config import load_config, parse_budget, parse_execution, parse_search
from tunelab.errors import ConfigError
from tunelab.metrics import MetricSet
from tunelab.objectives.base import validate_objective
from tunelab.space import Space

GOOD = """\
name: demo
objective: {type: function, function: "mod:fn"}
metrics: [{name: loss, goal: minimize}]
space:
  x: {float: [0.0, 1.0]}
  n: {int: [1, 4]}
budget: {trials: 5, time: 1h}
execution: {backend: inprocess, workers: 2, timeout: 90s}
"""
LOSS = MetricSet.parse([{"name": "loss", "goal": "minimize"}])


def write(tmp_path: Path, text: str | bytes) -> Path:
    (tmp_path / "mod.py").write_text("def fn(config, reporter):\n    return 1.0\n")
    path = tmp_path / "study.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def refused(tmp_path: Path, text: str | bytes, field: str) -> ConfigError:
    """``text`` is refused, naming ``field``, in one line with a fix, and without creating files."""
    path = write(tmp_path, text)
    before = sorted(tmp_path.iterdir())
    with pytest.raises(ConfigError) as err:
        cfg = load_config(path)
        validate_objective(cfg.objective, cfg.space, cfg.metrics)
    assert sorted(tmp_path.iterdir()) == before
    assert err.value.field == field, str(err.value)
    assert "\n" not in str(err.value)
    return err.value


def edit(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


# ---- exit 1 with an internal exception before ---------------------------------------------------


def test_non_utf8_study_file(tmp_path: Path) -> None:
    exc = refused(tmp_path, GOOD.encode().replace(b"demo", b"d\xffmo"), str(tmp_path / "study.yaml"))
    assert "UTF-8" in exc.problem and exc.fix


def test_study_file_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "somedir").mkdir()
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "somedir")
    assert err.value.field == str(tmp_path / "somedir") and "directory" in err.value.problem


def test_missing_study_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "nope.yaml")
    assert err.value.field == str(tmp_path / "nope.yaml") and err.value.fix


def test_yaml_syntax_error_is_one_line(tmp_path: Path) -> None:
    exc = refused(tmp_path, "a: [1, 2\nb: {", str(tmp_path / "study.yaml"))
    assert "line" in exc.problem


def test_infinite_float_bound(tmp_path: Path) -> None:
    refused(tmp_path, edit("x: {float: [0.0, 1.0]}", "x: {float: [0, .inf]}"), "space.x.high")


@pytest.mark.parametrize("function", ["../obj:train", "/abs/obj:train", "obj.py:train", "obj:1x", "a..b:fn"])
def test_function_reference_must_be_a_dotted_name(tmp_path: Path, function: str) -> None:
    exc = refused(tmp_path, edit('"mod:fn"', f'"{function}"'), "objective.function")
    assert "package.module:function" in exc.problem or "not a module" in exc.problem


def test_function_module_that_fails_to_import(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("raise RuntimeError('boom\\nsecond line')\n")
    exc = refused(tmp_path, edit('"mod:fn"', '"broken:fn"'), "objective.function")
    assert "RuntimeError" in exc.problem and "boom" in exc.problem


def test_workers_are_bounded(tmp_path: Path) -> None:
    exc = refused(tmp_path, edit("workers: 2", "workers: 1000000000"), "execution.workers")
    assert "4096" in exc.problem and exc.fix


@pytest.mark.parametrize("step", [".nan", ".inf", "-.inf", "1.0e-320"])
def test_float_step_must_be_finite(tmp_path: Path, step: str) -> None:
    refused(tmp_path, edit("x: {float: [0.0, 1.0]}", f"x: {{float: [0.0, 1.0], step: {step}}}"), "space.x.step")


def test_int_step_nan(tmp_path: Path) -> None:
    refused(tmp_path, edit("n: {int: [1, 4]}", "n: {int: [1, 4], step: .nan}"), "space.n.step")


def test_huge_numbers_do_not_overflow(tmp_path: Path) -> None:
    refused(tmp_path, edit("n: {int: [1, 4]}", f"n: {{int: [1, {10**400}]}}"), "space.n.high")
    refused(tmp_path, edit("x: {float: [0.0, 1.0]}", "x: {float: [-1.0e308, 1.0e308]}"), "space.x")
    with pytest.raises(ConfigError) as err:
        parse_budget({"target": 10**400}, LOSS)
    assert err.value.field == "budget.target"


def test_unhashable_and_mixed_keys(tmp_path: Path) -> None:
    refused(tmp_path, GOOD + "[1, 2]: 3\n", "[1, 2]")
    refused(tmp_path, GOOD + "1: 3\n2: 4\n", "1")


def test_grid_too_large_is_refused() -> None:
    space = Space.from_dict({"n": {"int": [0, 2**40]}})
    with pytest.raises(ConfigError) as err:
        space.grid()
    assert err.value.field == "space.n"
    with pytest.raises(ConfigError):
        Space.from_dict({f"p{i}": {"int": [0, 99]} for i in range(5)}).grid_size()


# ---- accepted before, refused now ---------------------------------------------------------------


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "true"])
@pytest.mark.parametrize("field", ["budget.time", "budget.target", "execution.timeout",
                                   "execution.gpus_per_trial"])
def test_nonsense_numbers_are_refused(tmp_path: Path, field: str, value: str) -> None:
    section, key = field.split(".")
    line = {"budget": "budget: {trials: 5, time: 1h}", "execution": "execution: {backend: inprocess, workers: 2, timeout: 90s}"}
    text = edit(line[section], f"{section}: {{{key}: {value}}}")
    refused(tmp_path, text, field)


@pytest.mark.parametrize("section", ["search", "budget", "execution", "tracking"])
def test_empty_list_is_not_absent(tmp_path: Path, section: str) -> None:
    text = GOOD.replace("budget: {trials: 5, time: 1h}\n", "").replace(
        "execution: {backend: inprocess, workers: 2, timeout: 90s}\n", "")
    refused(tmp_path, text + f"{section}: []\n", section)


@pytest.mark.parametrize("section", ["search", "budget", "execution", "tracking", "scheduler", "storage"])
def test_null_section_is_absent(tmp_path: Path, section: str) -> None:
    text = GOOD.replace("budget: {trials: 5, time: 1h}\n", "").replace(
        "execution: {backend: inprocess, workers: 2, timeout: 90s}\n", "")
    load_config(write(tmp_path, text + f"{section}: null\n"))


@pytest.mark.parametrize(("key", "value"), [("workers", True), ("cpus_per_trial", True), ("keep_checkpoints", False),
                                            ("gpus_per_trial", True), ("gpus", [True]), ("gpus", [-1]),
                                            ("gpus", [0, 0]), ("trial_dir", ""), ("trial_dir", []),
                                            ("trial_dir", "a\x00b"), ("cpus_per_trial", 10**6),
                                            ("keep_checkpoints", 10**9), ("gpus_per_trial", 10**6)])
def test_execution_values(key: str, value: object) -> None:
    with pytest.raises(ConfigError) as err:
        parse_execution({key: value})
    assert err.value.field == f"execution.{key}"


@pytest.mark.parametrize("trials", [True, 10**30, 1e30, "1e30", 2**63])
def test_trials_are_bounded(trials: object) -> None:
    with pytest.raises(ConfigError) as err:
        parse_budget({"trials": trials}, LOSS)
    assert err.value.field == "budget.trials"


@pytest.mark.parametrize("time", ["999999999999999999d", 1e30, 10**30, "nan", True])
def test_durations_are_bounded(time: object) -> None:
    with pytest.raises(ConfigError) as err:
        parse_budget({"time": time}, LOSS)
    assert err.value.field == "budget.time"


@pytest.mark.parametrize("seed", [-1, 2**32, 2**70, 1.0, True])
def test_seed_range(seed: object) -> None:
    with pytest.raises(ConfigError) as err:
        parse_search({"seed": seed}, LOSS)
    assert err.value.field == "search.seed"


@pytest.mark.parametrize(("spec", "field"), [
    ({"float": [True, 1.0]}, "space.p.low"),
    ({"int": [0, False]}, "space.p.high"),
    ({"float": [0.0, 1.0], "step": True}, "space.p.step"),
    ({"float": [float("nan"), 1.0]}, "space.p.low"),
    ({"float": [0.0, float("-inf")]}, "space.p.high"),
    ({"int": [0, 2**60]}, "space.p.high"),
    ({"choice": [float("nan"), 1.0]}, "space.p.choice"),
    ({"choice": [float("inf")]}, "space.p.choice"),
    ({"float": [0.0, 1.0], "when": {"c": "a"}, "log": "yes"}, "space.p.log"),
])
def test_space_nonsense_is_refused(spec: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        Space.from_dict({"c": ["a", "b"], "p": spec})
    assert err.value.field == field, str(err.value)


def test_scheduler_checked_when_loading(tmp_path: Path) -> None:
    refused(tmp_path, GOOD + "scheduler: {type: asha, reduction_factor: true}\n", "scheduler.reduction_factor")


def test_good_config_still_parses(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.budget.time_s == 3600 and cfg.execution.workers == 2 and math.isfinite(cfg.budget.time_s)


# ---- the command objective's template (validated before any trial) ------------------------------


@pytest.mark.parametrize(("arg", "problem"), [
    ("{y}", "set only when"), ("{x", "not a valid template"), ("{x!z}", "not a valid template"),
    ("{x:zz}", "not a valid template"), ("x}", "not a valid template"), ("{nope}", "not a parameter"),
])
def test_command_template_refused_before_trials(arg: str, problem: str) -> None:
    from tunelab.objectives.command import CommandObjective

    objective = CommandObjective(["python", "train.py", arg], [{"name": "loss", "regex": "loss=([0-9.]+)"}])
    space = Space.from_dict({"x": {"float": [0.0, 1.0]}, "c": ["a", "b"], "y": {"float": [0.0, 1.0], "when": {"c": "a"}}})
    with pytest.raises(ConfigError) as err:
        objective.validate(space, LOSS)
    assert err.value.field == "objective.command" and problem in err.value.problem, str(err.value)


def test_command_template_with_unconditional_parameters_passes() -> None:
    from tunelab.objectives.command import CommandObjective

    objective = CommandObjective(["python", "train.py", "--x={x:>8}", "{c}", "{{literal}}", "{trial_dir}"],
                                 [{"name": "loss", "regex": "loss=([0-9.]+)"}])
    objective.validate(Space.from_dict({"x": {"float": [0.0, 1.0]}, "c": ["a", "b"]}), LOSS)


# ---- the text_classification objective's options -------------------------------------------------


@pytest.mark.parametrize(("key", "value", "field"), [
    ("max_length", float("nan"), "objective.max_length"), ("max_length", "r", "objective.max_length"),
    ("max_length", [1], "objective.max_length"), ("defaults", "x", "objective.defaults"),
    ("defaults", 1e-9, "objective.defaults"), ("per_device_eval_batch_size", True, "objective.per_device_eval_batch_size"),
    ("num_train_epochs", 10**400, "objective.num_train_epochs"), ("num_train_epochs", 1e9, "objective.num_train_epochs"),
    ("batch_size", 10**9, "objective.batch_size"), ("device", "cudaX", "objective.device"),
    ("cache_dir", 3, "objective.cache_dir"), ("lr_scheduler_type", ["linear"], "objective.lr_scheduler_type"),
])
def test_text_classification_options(tmp_path: Path, key: str, value: object, field: str) -> None:
    from tunelab.objectives.text_classification import TextClassification

    (tmp_path / "train.csv").write_text("text,label\na,0\n")
    raw = {"type": "text_classification", "model": "org/model", "data": {"train": "train.csv", "validation_split": 0.5},
           key: value}
    with pytest.raises(ConfigError) as err:
        TextClassification.from_config(raw, base_dir=tmp_path)
    assert err.value.field == field, str(err.value)


@pytest.mark.parametrize(("extra", "field"), [
    ('tracking: {mlflow: "\\0"}\n', "tracking.mlflow"), ('storage: "a\\0b"\n', "storage"),
    ('search: {sampler: "tpe\\0"}\n', "search.sampler"),
])
def test_nul_characters_are_refused(tmp_path: Path, extra: str, field: str) -> None:
    from tunelab.tracking import parse_tracking

    def load_and_check(path: Path) -> None:
        cfg = load_config(path)
        parse_tracking(cfg.tracking, base_dir=cfg.base_dir, study_name=cfg.name)

    path = write(tmp_path, GOOD + extra)
    with pytest.raises(ConfigError) as err:
        load_and_check(path)
    assert err.value.field == field and "\x00" not in str(err.value), str(err.value)


@pytest.mark.parametrize(("data", "field"), [
    ({1: 2, "train": "train.csv"}, "objective.data.1"), ({"train": ["x"], "validation_split": 0.5}, "objective.data.train"),
    ({"train": "a\x00b", "validation_split": 0.5}, "objective.data.train"),
])
def test_text_classification_data_types(tmp_path: Path, data: dict, field: str) -> None:
    from tunelab.objectives.text_classification import TextClassification

    with pytest.raises(ConfigError) as err:
        TextClassification.from_config({"type": "text_classification", "model": "org/model", "data": data},
                                       base_dir=tmp_path)
    assert err.value.field == field, str(err.value)


def test_a_long_chain_of_conditions_parses() -> None:
    """Written last-first, 5,000 conditions in a chain once exhausted the recursion limit."""
    raw: dict = {f"p{i}": {"choice": ["a", "b"], "when": {f"p{i - 1}": "a"}} for i in range(4999, 0, -1)}
    raw["p0"] = ["a", "b"]
    space = Space.from_dict(raw)
    assert space.order[:3] == ["p0", "p1", "p2"] and len(space.order) == 5000
