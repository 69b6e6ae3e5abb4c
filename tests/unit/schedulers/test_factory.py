"""make_scheduler: the YAML form, and errors that name the field and the fix before any trial."""

from __future__ import annotations

import pytest

from tunelab.errors import ConfigError
from tunelab.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperbandScheduler,
    MedianStoppingScheduler,
    make_scheduler,
    scheduler_to_dict,
)


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        (None, FIFOScheduler),
        ({}, FIFOScheduler),
        ("fifo", FIFOScheduler),
        ({"type": "fifo"}, FIFOScheduler),
        ("asha", ASHAScheduler),
        (" ASHA ", ASHAScheduler),
        ({"type": "hyperband", "max_resource": 9}, HyperbandScheduler),
        ("median", MedianStoppingScheduler),
    ],
)
def test_builds_each_type(spec, kind):
    scheduler = make_scheduler(spec, "accuracy", "maximize")
    assert type(scheduler) is kind
    assert (scheduler.metric, scheduler.mode) == ("accuracy", "maximize")


def test_the_design_example_round_trips_through_to_dict():
    spec = {"type": "asha", "min_resource": 1, "max_resource": 3, "reduction_factor": 3}
    scheduler = make_scheduler(spec, "accuracy", "maximize")
    assert scheduler.rung_levels() == [1]
    assert scheduler_to_dict(scheduler) == spec
    for other in (
        {"type": "hyperband", "min_resource": 0.5, "max_resource": 4, "reduction_factor": 2},
        {"type": "median", "warmup_steps": 1, "min_trials": 3, "interval": 0},
    ):
        assert scheduler_to_dict(make_scheduler(other, "loss", "minimize")) == other
    assert scheduler_to_dict(make_scheduler(None, "loss", "minimize")) == {"type": "fifo"}


def test_a_built_scheduler_is_returned_as_is():
    built = MedianStoppingScheduler("loss", "minimize")
    assert make_scheduler(built, "accuracy", "maximize") is built


@pytest.mark.parametrize(
    ("spec", "field", "words"),
    [
        ({"type": "asha", "reduction_factor": 1}, "scheduler.reduction_factor", "is 1, but must be an integer >= 2."),
        ({"type": "asha", "reduction_factor": 2.5}, "scheduler.reduction_factor", "must be an integer"),
        ({"type": "asha", "min_resource": 0}, "scheduler.min_resource", "is 0, but must be a number > 0."),
        ({"type": "asha", "min_resource": True}, "scheduler.min_resource", "is True"),
        ({"type": "asha", "min_resource": 3, "max_resource": 1}, "scheduler.max_resource", "> min_resource (3)"),
        ({"type": "asha", "max_resource": "9"}, "scheduler.max_resource", "is '9'"),
        ({"type": "asha", "grace_period": 1}, "scheduler.grace_period", "min_resource, max_resource"),
        ({"type": "hyperband"}, "scheduler.max_resource", "is missing"),
        ({"type": "hyperband", "max_resource": 9, "reduction_factor": 0}, "scheduler.reduction_factor", "is 0"),
        ({"type": "median", "min_trials": 0}, "scheduler.min_trials", "integer >= 1"),
        ({"type": "median", "warmup_steps": -1}, "scheduler.warmup_steps", "number >= 0"),
        ({"type": "median", "min_resource": 1}, "scheduler.min_resource", "warmup_steps, min_trials, interval"),
        ({"type": "fifo", "max_resource": 9}, "scheduler.max_resource", "not a setting of the fifo scheduler"),
        ({"type": "ashaa"}, "scheduler.type", "did you mean asha?"),
        ({"type": "pbs"}, "scheduler.type", "one of: fifo, asha, hyperband, median, pbt."),
        ({"type": ["asha"]}, "scheduler.type", "one of: fifo, asha"),
        ({"min_resource": 1}, "scheduler.type", "is missing"),
        ("hyperbnd", "scheduler", "did you mean hyperband?"),
        (["asha"], "scheduler", "must be a mapping"),
    ],
)
def test_bad_specs_name_the_field_and_the_fix(spec, field, words):
    with pytest.raises(ConfigError) as caught:
        make_scheduler(spec, "accuracy", "maximize")
    error = caught.value
    assert error.field == field
    assert words in str(error)
    assert str(error).startswith(f"{field}: ") and error.fix and "Fix: " in str(error)


def test_the_template_reads_like_optunas():
    with pytest.raises(ConfigError) as caught:
        make_scheduler({"type": "asha", "reduction_factor": 1}, "accuracy", "maximize")
    assert str(caught.value) == "scheduler.reduction_factor: is 1, but must be an integer >= 2. Fix: use 2, 3 or 4."


def test_the_field_prefix_is_the_callers():
    with pytest.raises(ConfigError) as caught:
        make_scheduler({"type": "asha", "min_resource": -1}, "accuracy", "maximize", field="study.scheduler")
    assert caught.value.field == "study.scheduler.min_resource"


@pytest.mark.parametrize(("metric", "mode", "field"), [("accuracy", "max", "mode"), ("", "maximize", "metric")])
def test_metric_and_mode_are_checked(metric, mode, field):
    with pytest.raises(ConfigError) as caught:
        make_scheduler("asha", metric, mode)
    assert caught.value.field == field
