"""How a failure reads wherever it is shown: its first line, groups by kind, why no best."""

from __future__ import annotations

from tunelab.failures import failure_groups, failure_line, headline, no_best_reason, no_completion_summary
from tunelab.metrics import MetricSet
from tunelab.study import TrialInfo
from tunelab.trial import State

LOSS = MetricSet.parse([{"name": "loss", "goal": "minimize"}])
WITH_CONSTRAINT = MetricSet.parse([{"name": "loss", "goal": "minimize"},
                                   {"name": "memory_mb", "strategy": "constraint", "max": 100}])


def failed(number: int, kind: str, message: str) -> TrialInfo:
    return TrialInfo(number=number, state=State.FAILED, config={}, failure_kind=kind, message=message)


def done(number: int, feasible: bool = True) -> TrialInfo:
    return TrialInfo(number=number, state=State.COMPLETE, config={}, metrics={"loss": 1.0}, values=(1.0,),
                     feasible=feasible)


def test_headline_is_the_first_line_or_what_a_colon_introduces() -> None:
    assert headline("KeyError: 'learning_rat'") == "KeyError: 'learning_rat'"
    assert headline("trial process exited with code 3.\nTraceback ...\nValueError: boom") == \
        "trial process exited with code 3."
    assert headline("command exited with code 2. Last lines:\nepoch 1\nValueError: bad lr") == \
        "command exited with code 2. Last lines: ... ValueError: bad lr"
    assert headline("") == "(no message)" and headline(None) == "(no message)"
    assert len(headline("x" * 1000)) == 200


def test_failure_line() -> None:
    assert failure_line(0, "crash", "KeyError: 'learning_rat'\nmore") == \
        "trial 0 failed: crash: KeyError: 'learning_rat' (tunelab logs 0)"
    assert failure_line(4, "oom", "CUDA", hint=None) == "trial 4 failed: oom: CUDA"


def test_groups_most_common_first_with_the_latest_message() -> None:
    trials = [failed(0, "crash", "a"), failed(1, "oom", "b"), failed(2, "crash", "c"), done(3)]
    groups = failure_groups(trials)
    assert [(g.kind, g.count, g.latest_trial, g.latest_message) for g in groups] == [
        ("crash", 2, 2, "c"), ("oom", 1, 1, "b")]


def test_a_run_with_no_completed_trial_names_its_most_common_failure() -> None:
    trials = [failed(0, "crash", "KeyError: 'learning_rat'"), failed(1, "crash", "KeyError: 'learning_rat'")]
    assert no_completion_summary(trials) == (
        "no trial completed: 2 of 2 failed; all with crash, the latest (trial 1): KeyError: 'learning_rat' "
        "(tunelab logs 1)")
    mixed = trials + [failed(2, "oom", "CUDA out of memory")]
    assert no_completion_summary(mixed, hint=None) == (
        "no trial completed: 3 of 3 failed (crash 2, oom 1); most often with crash, the latest (trial 1): "
        "KeyError: 'learning_rat'")
    assert no_completion_summary(trials + [done(3)]) is None
    assert no_completion_summary([]) is None  # nothing ran: nothing failed


def test_no_best_speaks_of_constraints_only_when_there_are_some() -> None:
    trials = [failed(0, "crash", "x"), failed(1, "crash", "y"), failed(2, "crash", "z")]
    assert no_best_reason(trials, LOSS) == "no trial completed yet (3 failed: crash; see tunelab status)"
    assert no_best_reason(trials, WITH_CONSTRAINT) == "no trial completed yet (3 failed: crash; see tunelab status)"
    running = [TrialInfo(number=3, state=State.RUNNING, config={})]
    assert no_best_reason(running, LOSS) == "no trial completed yet (1 running)"
    assert no_best_reason([], LOSS) == "no trial has run yet"
    infeasible = [done(0, feasible=False), done(1, feasible=False)]
    assert no_best_reason(infeasible, WITH_CONSTRAINT) == \
        "no complete trial meets every constraint yet (2 complete, all infeasible)"
