"""A command objective in PBT: it saves under ``{checkpoint_dir}``, and a clone restores from
``{restore_dir}`` (its copy of the parent's checkpoint) and continues at ``{start_step}``.

The driver's part is played as the tuner plays it: the parent's checkpoint directory is copied
into the clone's trial directory (``copy_parent_checkpoint``) before the clone runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Mapping

from tunelab.executors.base import copy_parent_checkpoint
from tunelab.metrics import MetricSet
from tunelab.objectives.command import CommandObjective
from tunelab.space import Space
from tunelab.worker import Reporter

# Keeps one state file per step (written whole, then renamed), so a clone restores exactly the
# step it is told, although the parent may have saved later steps by the time it was copied.
TRAIN = """
import json, os, sys
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
x, ckpt, restore, start = float(args["--x"]), args["--ckpt"], args["--restore"], int(args["--start"])
step, total = 0, 0.0
if restore:
    with open(os.path.join(restore, f"state_{start}.json")) as f:
        state = json.load(f)
    step, total = state["step"], state["total"]
    print(f"restored step {step} total {total}", flush=True)
while step < 4:
    step += 1
    total += x
    tmp = os.path.join(ckpt, ".state.tmp")
    with open(tmp, "w") as f:
        json.dump({"step": step, "total": total}, f)
    os.replace(tmp, os.path.join(ckpt, f"state_{step}.json"))
    print(f"score={total}", flush=True)
"""

COMMAND = ["{python}", "train.py", "--x", "{x}", "--ckpt", "{checkpoint_dir}", "--restore", "{restore_dir}",
           "--start", "{start_step}"]


class _Sink:
    def __init__(self) -> None:
        self.results: list[tuple[float, dict[str, float]]] = []

    def send_result(self, step: float, metrics: Mapping[str, float]) -> bool:
        self.results.append((step, dict(metrics)))
        return False


def test_a_command_clone_restores_its_parents_state_and_continues_at_its_step(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(TRAIN)
    objective = CommandObjective(COMMAND, [{"name": "score", "regex": "score=([0-9.]+)"}], cwd=tmp_path)
    objective.validate(Space.from_dict({"x": {"float": [0.0, 1.0]}}), MetricSet.parse([{"name": "score",
                                                                                         "goal": "maximize"}]))
    parent_sink, clone_sink = _Sink(), _Sink()
    parent = Reporter(0, {"x": 0.25}, tmp_path / "trial_0000", parent_sink)
    assert objective({"x": 0.25}, parent) == {"score": 1.0}
    assert [s for s, _ in parent_sink.results] == [1.0, 2.0, 3.0, 4.0]

    restore, _ = copy_parent_checkpoint(tmp_path / "trial_0000" / "checkpoint", tmp_path / "trial_0001")
    assert restore == tmp_path / "trial_0001" / "restore"
    clone = Reporter(1, {"x": 0.5}, tmp_path / "trial_0001", clone_sink, from_checkpoint=restore, start_step=2.0)
    argv = objective.argv({"x": 0.5}, clone)
    assert argv[argv.index("--restore") + 1] == str(restore) and argv[argv.index("--start") + 1] == "2"
    # The parent's total at step 2 (0.5) plus two steps of the clone's own x.
    assert objective({"x": 0.5}, clone) == {"score": 1.5}
    assert clone_sink.results == [(3.0, {"score": 1.0}), (4.0, {"score": 1.5})]
    saved = json.loads((tmp_path / "trial_0001" / "checkpoint" / "state_4.json").read_text())
    assert saved == {"step": 4, "total": 1.5}


def test_a_fresh_trial_gets_an_empty_restore_dir_and_step_0(tmp_path: Path) -> None:
    objective = CommandObjective(COMMAND, [{"name": "score", "regex": "score=([0-9.]+)"}])
    argv = objective.argv({"x": 0.5}, Reporter(0, {"x": 0.5}, tmp_path / "t", _Sink()))
    assert argv[0] == sys.executable
    assert argv[argv.index("--restore") + 1] == "" and argv[argv.index("--start") + 1] == "0"
