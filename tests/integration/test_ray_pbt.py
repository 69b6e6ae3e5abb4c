"""PBT on the Ray backend (issue 11.7): a clone restores its parent's checkpoint through the shared
trial directory (the driver copies it into the clone's own ``restore/``; the clone may run on
another node) and continues at the parent's step with the parent's state.

A local cluster as in test_ray.py: a head with 2 CPUs and a second node with 1, on 127.0.0.1.
The three first members meet after their first report (marker files in the shared directory),
so each has reported step 1 before any reports step 2: the worst member (its score is its ``x``)
is then below the others at a perturbation step, and is replaced by a clone, whatever the timing.
``max_resource: 6`` (the objective trains 6 steps) tells PBT where training ends: a member at step 6
is not exploited, and no clone copies one with nothing left to train (a found bug: a clone of a
member that had completed restored it at step 6 and reported nothing), so every clone trains.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

if importlib.util.find_spec("ray") is None:  # not imported here: Ray reads its auth settings at import
    pytest.skip("Ray is not installed: pip install 'tunelab[ray]' (ray[default])", allow_module_level=True)

from cluster_fixtures import RayCluster, ray_cluster  # noqa: E402
from tunelab.study import load_study  # noqa: E402

OBJECTIVE = '''
import json, os, time
from pathlib import Path

STEPS, MEMBERS = 6, 3

def train(config, reporter):
    shared = reporter.trial_dir.parent
    step, total = 0, 0.0
    if reporter.restore_dir is not None:
        print(f"restoring from {reporter.restore_dir} at step {reporter.start_step}", flush=True)
        step = int(reporter.start_step)
        total = json.loads((reporter.restore_dir / f"state_{step}.json").read_text())["total"]
    while step < STEPS:
        step += 1
        total += config["x"]
        tmp = reporter.checkpoint_dir / ".state.tmp"
        tmp.write_text(json.dumps({"step": step, "total": total}))
        os.replace(tmp, reporter.checkpoint_dir / f"state_{step}.json")
        if step == 1 and reporter.trial_id < MEMBERS:
            (shared / f"at1_{reporter.trial_id}").write_text("")
        reporter.report(step, score=config["x"], total=total)
        deadline = time.monotonic() + 120
        while step == 1 and reporter.trial_id < MEMBERS and time.monotonic() < deadline \\
                and len(list(shared.glob("at1_*"))) < MEMBERS:
            time.sleep(0.05)
    return {"score": config["x"], "total": total}
'''

STUDY = """
name: raypbt
objective: {{type: function, function: "ray_pbt_objective:train"}}
metrics: [{{name: score, goal: maximize}}, {{name: total, strategy: store}}]
space:
  x: {{float: [0.0, 1.0]}}
search: {{sampler: random, seed: 0}}
scheduler: {{type: pbt, population: 3, perturbation_interval: 1, quantile: 0.25, seed: 0, max_resource: 6}}
budget: {{trials: 5}}
execution: {{backend: ray, workers: 3, trial_dir: {trial_dir}}}
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[RayCluster]:
    with ray_cluster(head_cpus=2, worker_cpus=(1,)) as c:
        yield c


def test_a_pbt_clone_on_ray_restores_its_parents_state_from_the_shared_directory(cluster: RayCluster,
                                                                                 tmp_path: Path) -> None:
    (tmp_path / "ray_pbt_objective.py").write_text(OBJECTIVE)
    runs = tmp_path / "shared" / "runs"  # an absolute path every node sees (same machine here)
    (tmp_path / "study.yaml").write_text(STUDY.format(trial_dir=runs))
    proc = subprocess.run([sys.executable, "-m", "tunelab.cli.main", "run", "study.yaml", "--address",
                           cluster.address, "--no-mlflow"], cwd=tmp_path, env={**os.environ, **cluster.env},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    trials = {t.number: t for t in load_study(str(tmp_path / "tunelab.journal"), "raypbt").trials()}
    assert {t.state.value for t in trials.values()} <= {"complete", "pruned"}, \
        [(t.number, t.state, t.message) for t in trials.values()]
    clones = [t for t in trials.values() if t.parent is not None]
    assert clones, "no member was exploited"
    for clone in clones:
        parent = trials[clone.parent]
        log = (Path(clone.trial_dir) / "trial.log").read_text()
        start = re.search(r"restoring from (\S+) at step (\S+)", log)
        assert start, log
        # Its own copy, in its own directory on the shared path, made by the driver.
        assert Path(start.group(1)) == Path(clone.trial_dir) / "restore"
        assert Path(clone.trial_dir).parent == runs / "raypbt"
        step = float(start.group(2))
        assert step < 6 and clone.history, (clone.number, step, clone.state)  # it had training left, and trained
        first = clone.history[0]
        parent_total = next(r.metrics["total"] for r in parent.history if r.step == step)
        assert first.step == step + 1  # its reports continue at the parent's step
        assert first.metrics["total"] == pytest.approx(parent_total + clone.config["x"])  # the parent's state
        assert clone.config["x"] != parent.config["x"]  # a mutated config
        assert re.search(r"Ray node (\w+)", log.splitlines()[0])  # it ran on the cluster
