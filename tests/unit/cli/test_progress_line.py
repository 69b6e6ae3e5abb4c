"""The live output of `tunelab run`: each failure on a line of its own, an honest ETA."""

from __future__ import annotations

import io

import pytest

import tunelab
from tunelab.cli.run import ProgressLine, eta_text
from tunelab.tuner import Progress, estimate_eta


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def typo(config: dict, reporter) -> dict:
    if config["x"] > 0.5:
        return {"loss": config["x"]}
    return {"loss": config["learning_rat"]}


def test_the_tuner_reports_each_failure_with_its_message_and_the_log_command(tmp_path) -> None:
    seen: list[Progress] = []
    study = tunelab.tune(typo, {"x": {"float": [0, 1]}}, metrics=[{"name": "loss", "goal": "minimize"}], trials=6,
                         backend="inprocess", seed=3, storage=str(tmp_path / "s.journal"), study_name="p",
                         trial_dir=str(tmp_path / "runs"), on_progress=seen.append)
    failed = sorted(t.number for t in study.trials() if t.state.value == "failed")
    assert failed, "the seed must give at least one failure"
    lines = [line for p in seen for line in p.failures]
    assert lines == [f"trial {n} failed: crash: KeyError: 'learning_rat' (tunelab logs {n})" for n in failed]
    assert any(p.last == lines[0] for p in seen)


def progress(**kw) -> Progress:
    base = dict(running=1, complete=0, pruned=0, failed=0, best=None, elapsed_s=5.0, eta_s=None)
    return Progress(**{**base, **kw})


def test_failures_stay_on_their_own_lines_on_a_terminal() -> None:
    out = Terminal()
    line = ProgressLine("loss", out)
    line(progress())
    failure = "trial 0 failed: crash: KeyError: 'learning_rat' (tunelab logs 0)"
    line(progress(failed=1, last=failure, failures=(failure,)))
    line(progress(failed=1, last=failure, elapsed_s=6.0))
    line.close()
    text = out.getvalue()
    assert f"\r\x1b[2K{failure}\n" in text  # the progress line is cleared, the failure line stays
    assert text.count(failure) == 1  # not repeated inside the progress line after it
    assert text.endswith("failed 1 | best loss -\n")


def test_failures_in_a_log_file() -> None:
    out = io.StringIO()
    line = ProgressLine("loss", out)
    first, second = ("trial 0 failed: oom: CUDA out of memory (tunelab logs 0)",
                     "trial 1 failed: crash: KeyError: 'x' (tunelab logs 1)")
    line(progress(failed=2, last=second, failures=(first, second)))
    assert out.getvalue().splitlines()[:2] == [first, second]
    assert "(trial 1 failed" not in out.getvalue().splitlines()[2]


@pytest.mark.parametrize("eta, running, text", [
    (None, 1, ""), (0.0, 2, ", finishing"), (0.4, 1, ", finishing"), (0.0, 0, ""), (30.0, 1, ", <1 min left"),
    (59.9, 1, ", <1 min left"), (61.0, 1, ", ~01:01 left"), (3725.0, 4, ", ~1:02:05 left"),
])
def test_eta_text_never_says_no_time_left_while_trials_run(eta, running, text) -> None:
    assert eta_text(eta, running) == text


def test_eta_counts_what_running_trials_still_need() -> None:
    # The last two trials run (nothing left to start): not zero, what they still need.
    assert estimate_eta(100.0, 0, [40.0, 70.0], workers=2) == pytest.approx(60.0)
    # A trial past the mean is not "done in 0 s" while others queue.
    assert estimate_eta(10.0, 4, [30.0], workers=2) == pytest.approx(20.0)
    assert estimate_eta(10.0, 0, [30.0], workers=1) == 0.0  # overdue: the display says "finishing"
    assert estimate_eta(10.0, 3, [], workers=1) == pytest.approx(30.0)
