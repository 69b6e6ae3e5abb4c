"""The study-reading commands on a real study with failures: status, trials, best, studies,
export, dashboard, and `--debug` anywhere on the line."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from pathlib import Path

import pytest

import tunelab
import tunelab.errors
from tunelab.cli.main import main
from tunelab.errors import TrialFailed

LONG = "command exited with code 2. Last lines:\nepoch 1\nValueError: bad learning rate"


def objective(config: dict, reporter) -> dict:
    if config["x"] == 0:
        return {"loss": config["learning_rat"]}  # the typo of the issue: a KeyError
    if config["x"] == 1:
        raise TrialFailed("crash", LONG)
    if config["x"] == 2:
        raise TrialFailed("oom", "CUDA out of memory")
    return {"loss": float(config["x"])}


def only_typo(config: dict, reporter) -> dict:
    return {"loss": config["learning_rat"]}


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("cli")
    path = str(tmp / "s.journal")
    tunelab.tune(objective, {"x": {"choice": [0, 1, 2, 3, 4]}, "a_rather_long_parameter_name": {"fixed": 7}},
                 metrics=[{"name": "loss", "goal": "minimize"}], sampler="grid", trials=5, backend="inprocess",
                 storage=path, study_name="mixed", trial_dir=str(tmp / "runs"))
    with contextlib.suppress(tunelab.errors.TunelabError):  # tune() may say that nothing completed
        tunelab.tune(only_typo, {"x": {"float": [0, 1]}}, metrics=[{"name": "loss", "goal": "minimize"}], trials=3,
                     backend="inprocess", seed=0, storage=path, study_name="typo", trial_dir=str(tmp / "runs"))
    return path


def number_of(storage: str) -> dict[int, int]:
    """Trial number by x (the grid sampler shuffles its grid)."""
    from tunelab.study import load_study

    return {t.config["x"]: t.number for t in load_study(storage, "mixed").trials()}


def cli(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_debug_is_accepted_after_the_command_too(storage: str, capsys) -> None:
    for args in (["--debug", "status"], ["status", "--debug"]):
        code, out, _ = cli(capsys, *args, "--storage", storage, "--study", "typo")
        assert code == 0 and "study typo: 3 trials" in out
    with pytest.raises(tunelab.errors.TunelabError):  # --debug after the command: the traceback, not one line
        main(["status", "--storage", storage + ".none", "--debug"])
    code, _, err = cli(capsys, "status", "--storage", storage + ".none")
    assert code == 1 and err.startswith("error: No study storage")


def test_status_groups_failures_by_kind_with_the_latest_message(storage: str, capsys) -> None:
    code, out, _ = cli(capsys, "status", "--storage", storage, "--study", "mixed")
    assert code == 0
    n = number_of(storage)
    assert "failed   3  (crash 2, oom 1)" in out
    latest_crash = max(n[0], n[1])
    headline = ("KeyError: 'learning_rat'" if latest_crash == n[0]
                else "command exited with code 2. Last lines: ... ValueError: bad learning rate")
    assert f"crash  2  trial {latest_crash}: {headline} (tunelab logs {latest_crash})" in out
    assert f"oom    1  trial {n[2]}: CUDA out of memory (tunelab logs {n[2]})" in out


def test_status_as_json(storage: str, capsys) -> None:
    code, out, _ = cli(capsys, "status", "--storage", storage, "--study", "mixed", "--format", "json")
    payload = json.loads(out)
    assert code == 0 and payload["study"] == "mixed" and payload["trials"] == 5
    assert payload["states"] == {"complete": 2, "failed": 3}
    n = number_of(storage)
    latest = max(n[0], n[1])
    message = LONG if latest == n[1] else "KeyError: 'learning_rat'"
    assert payload["failures"][0] == {"kind": "crash", "count": 2, "latest_trial": latest, "latest_message": message}
    assert payload["best"] == [{"trial": n[3], "metrics": {"loss": 3.0}}]


def test_trials_carry_the_failure_message_in_every_format(storage: str, capsys, tmp_path: Path) -> None:
    _, out, _ = cli(capsys, "trials", "--storage", storage, "--study", "mixed", "--format", "json")
    rows = {r["params.x"]: r for r in json.loads(out)}
    assert rows[0]["failure_kind"] == "crash" and rows[0]["failure_message"] == "KeyError: 'learning_rat'"
    assert rows[1]["failure_message"] == LONG  # whole in json
    assert rows[3]["failure_message"] is None
    _, out, _ = cli(capsys, "trials", "--storage", storage, "--study", "mixed", "--format", "csv")
    by_x = {r["params.x"]: r for r in csv.DictReader(io.StringIO(out))}
    assert by_x["1"]["failure_message"] == LONG and by_x["2"]["failure_message"] == "CUDA out of memory"
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    cli(capsys, "trials", "--storage", storage, "--study", "mixed", "--format", "parquet", "--out",
        str(tmp_path / "t.parquet"))
    frame = pd.read_parquet(tmp_path / "t.parquet")
    assert frame.loc[frame["params.x"] == 0, "failure_message"].item() == "KeyError: 'learning_rat'"


def test_trials_table_fits_the_terminal(storage: str, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    _, out, err = cli(capsys, "trials", "--storage", storage, "--study", "mixed")
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[0].split()[:3] == ["number", "state", "loss"]
    assert "failure_message" in lines[0] and "slot" not in lines[0]
    row1 = next(line for line in lines if line.startswith(f"{number_of(storage)[1]} "))
    assert "command exited with code 2." in row1 and "\n" not in row1  # the first line, cut to fit
    assert "hidden to fit 80 characters" in err and "--wide" in err and "a_rather_long_parameter_name" in err
    monkeypatch.setenv("COLUMNS", "200")
    _, out, err = cli(capsys, "trials", "--storage", storage, "--study", "mixed")
    header = out.splitlines()[0].split()
    assert header == ["number", "state", "loss", "x", "a_rather_long_parameter_name", "best_loss", "duration_s",
                      "slot", "best_step", "failure_kind", "failure_message"]  # the worker slot too
    assert "ValueError: bad learning rate" in out and err == ""
    _, out, err = cli(capsys, "trials", "--storage", storage, "--study", "mixed", "--wide")
    assert all(c in out.splitlines()[0].split() for c in ("best_step", "start", "end", "slot", "retry_of"))
    assert err == ""


def test_trials_columns_pick_in_every_format(storage: str, capsys) -> None:
    _, out, _ = cli(capsys, "trials", "--storage", storage, "--study", "mixed", "--columns", "number,x,failure_kind")
    assert out.splitlines()[0].split() == ["number", "x", "failure_kind"]
    _, out, _ = cli(capsys, "trials", "--storage", storage, "--study", "mixed", "--columns", "number,params.x",
                    "--format", "json")
    assert sorted(r["params.x"] for r in json.loads(out)) == [0, 1, 2, 3, 4]
    assert set(json.loads(out)[0]) == {"number", "params.x"}
    code, _, err = cli(capsys, "trials", "--storage", storage, "--study", "mixed", "--columns", "number,nope")
    assert code == 2 and "'nope' is not a column" in err and "params.x" in err


def test_best_without_a_complete_trial_speaks_of_failures_not_constraints(storage: str, capsys) -> None:
    code, out, _ = cli(capsys, "best", "--storage", storage, "--study", "typo")
    assert code == 1
    assert out.strip() == "no trial completed yet (3 failed: crash; see tunelab status)"
    code, out, err = cli(capsys, "best", "--storage", storage, "--study", "typo", "--format", "json")
    assert code == 1 and json.loads(out) is None and "3 failed: crash" in err


def test_studies_as_json(storage: str, capsys) -> None:
    code, out, _ = cli(capsys, "studies", "--storage", storage, "--format", "json")
    rows = {r["study"]: r for r in json.loads(out)}
    assert code == 0 and set(rows) == {"mixed", "typo"}
    assert rows["typo"]["trials"] == 3 and rows["typo"]["directions"] == ["minimize"]


def test_export_says_which_trial(storage: str, capsys, monkeypatch, tmp_path: Path) -> None:
    import tunelab.nlp.export as nlp_export

    written = {}

    def fake_export(checkpoint: Path, out: Path, info: dict, overwrite: bool = False) -> Path:
        written.update(info)
        return out

    monkeypatch.setattr(nlp_export, "export_checkpoint", fake_export)
    monkeypatch.setattr(Path, "is_dir", lambda self: True)
    code, out, _ = cli(capsys, "export", "--storage", storage, "--study", "mixed", "--out", str(tmp_path / "best"))
    best = number_of(storage)[3]
    assert code == 0 and written["trial"] == best
    assert out.splitlines()[0] == f"exported trial {best} to {tmp_path / 'best'}"
    code, _, err = cli(capsys, "export", "--storage", storage, "--study", "typo", "--out", str(tmp_path / "x"))
    assert code == 1 and "no trial completed yet (3 failed: crash" in err and "constraint" not in err


def test_dashboard_gets_the_storage_url(storage: str, tmp_path: Path) -> None:
    from tunelab.cli.dashboard import dashboard_storage

    assert dashboard_storage(storage) == storage  # a journal file: optuna-dashboard opens the path itself
    assert dashboard_storage(f"sqlite:///{tmp_path}/s.db") == f"sqlite:///{tmp_path}/s.db"
    assert dashboard_storage("postgresql://u@h/db?pool_size=4").startswith("postgresql+psycopg")


def test_status_counts_the_repeated_configs_it_did_not_run(tmp_path: Path, capsys) -> None:
    path = str(tmp_path / "d.journal")
    tunelab.tune(lambda c, r: {"loss": float(c["x"])}, {"x": {"choice": [0, 1, 2]}},
                 metrics=[{"name": "loss", "goal": "minimize"}], trials=6, seed=0, backend="inprocess",
                 storage=path, study_name="small", progress=False)
    code, out, _ = cli(capsys, "status", "--storage", path, "--study", "small", "--format", "json")
    assert code == 0 and json.loads(out)["duplicates_avoided"] >= 3  # 6 trials over 3 configs
    _, out, _ = cli(capsys, "status", "--storage", path, "--study", "small")
    assert "were not run again" in out
