"""`tunelab run` on malformed study files: exit 2, one `config error:` line, nothing created, no hang."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

OBJECTIVE = 'objective: {type: function, function: "tl_bad_input_obj:fn"}\n'
REST = """\
metrics: [{name: loss, goal: minimize}]
space: {x: {float: [0.0, 1.0]}, c: {choice: [a, b]}, y: {float: [0.0, 1.0], when: {c: a}}}
execution: {backend: inprocess}
tracking: {mlflow: false}
"""
# Billion laughs inside a valid field: 10 aliases per level, 9 levels, 10**9 values once expanded.
BOMB = "[&b0 [lol], " + ", ".join(f"&b{i} [{', '.join([f'*b{i - 1}'] * 10)}]" for i in range(1, 10)) + "]"

CASES: dict[str, bytes] = {
    "nan_time_budget": (OBJECTIVE + REST + "budget: {trials: 2, time: .nan}\n").encode(),
    "non_utf8": (OBJECTIVE + REST).encode().replace(b"loss, goal", b"l\xffss, goal"),
    "inf_float_bound": (OBJECTIVE + REST.replace("[0.0, 1.0]}, c", "[0, .inf]}, c")).encode(),
    "relative_function": (OBJECTIVE.replace("tl_bad_input_obj", "../obj") + REST).encode(),
    "billion_workers": (OBJECTIVE + REST.replace("backend: inprocess", "backend: local, workers: 1000000000")).encode(),
    "nan_step": (OBJECTIVE + REST.replace("[0.0, 1.0]}, c", "[0.0, 1.0], step: .nan}, c")).encode(),
    "huge_trials": (OBJECTIVE + REST + f"budget: {{trials: {10**30}}}\n").encode(),
    "empty_list_search": (OBJECTIVE + REST + "search: []\n").encode(),
    "alias_bomb": (OBJECTIVE + REST.replace("c: {choice: [a, b]}", f"c: {{choice: [a, b]}}, z: {{fixed: {BOMB}}}")
                   ).encode(),
    "conditional_in_command": (
        "objective: {type: command, command: [python, -c, 'print(1)', '{y}'], "
        "metrics: [{name: loss, regex: 'loss=([0-9.]+)'}]}\n" + REST).encode(),
    "bool_as_number": (OBJECTIVE + REST + "budget: {target: true}\n").encode(),
}


def _run(cwd: Path, target: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tunelab.cli.main", "run", target], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def _assert_refused(proc: subprocess.CompletedProcess, cwd: Path, before: set[str]) -> None:
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("config error: "), proc.stderr
    assert "Fix: " in lines[0], lines[0]
    created = {p.name for p in cwd.iterdir()} - before - {"__pycache__"}
    assert not created, f"created {created}"  # no storage, no trial directory, no MLflow store


@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_study_file_exits_2_with_one_line(tmp_path: Path, case: str) -> None:
    (tmp_path / "tl_bad_input_obj.py").write_text("def fn(config, reporter):\n    return 1.0\n")
    (tmp_path / "study.yaml").write_bytes(CASES[case])
    before = {p.name for p in tmp_path.iterdir()}
    _assert_refused(_run(tmp_path, "study.yaml"), tmp_path, before)


def test_a_directory_as_the_study_file(tmp_path: Path) -> None:
    (tmp_path / "somedir").mkdir()
    before = {p.name for p in tmp_path.iterdir()}
    proc = _run(tmp_path, "somedir")
    _assert_refused(proc, tmp_path, before)
    assert "directory" in proc.stderr
