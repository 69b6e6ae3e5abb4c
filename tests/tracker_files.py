"""Read back what the W&B and TensorBoard trackers wrote: offline run files and event files.

W&B's run files are read with tunelab's own reader (``tunelab.tracking.wandb_files``), which the
tracker uses to see what a run already holds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunelab.tracking.wandb_files import records as wandb_records


def wandb_runs(root: Path) -> dict[str, dict[str, Any]]:
    """Every W&B run under ``root`` by id, its offline files merged (a resumed run adds a file)."""
    runs: dict[str, dict[str, Any]] = {}
    for path in sorted(Path(root).rglob("run-*.wandb")):
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run = runs.setdefault(record.run.run_id, {"files": set(), "config": {}, "history": [],
                                                           "summary": {}, "exit_codes": []})
                run["files"].add(str(path))
                run.update(name=record.run.display_name, group=record.run.run_group, project=record.run.project)
                run["config"].update({i.key: json.loads(i.value_json) for i in record.run.config.update})
                current = run
            elif kind == "history":
                row = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
                current["history"].append(row)
            elif kind == "summary":
                current["summary"].update({i.key or "/".join(i.nested_key): json.loads(i.value_json)
                                           for i in record.summary.update})
            elif kind == "config":
                current["config"].update({i.key: json.loads(i.value_json) for i in record.config.update})
            elif kind == "exit":
                current["exit_codes"].append(record.exit.exit_code)
    return runs


def tensorboard_runs(root: Path) -> dict[str, dict[str, Any]]:
    """Every TensorBoard run (trial directory) under ``root``: scalars by tag and its HParams sessions."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    out: dict[str, dict[str, Any]] = {}
    for run_dir in sorted({p.parent for p in Path(root).rglob("events.out.tfevents.*")}):
        acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        scalars = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
        sessions, ends = [], []
        for tag, content in acc.PluginTagToContent("hparams").items():
            data = plugin_data_pb2.HParamsPluginData.FromString(content)
            if data.HasField("session_start_info"):
                info = data.session_start_info
                sessions.append({k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
                                 for k, v in info.hparams.items()})
            if data.HasField("session_end_info"):
                ends.append(data.session_end_info.status)
        out[run_dir.name] = {"scalars": scalars, "hparams": sessions, "status": ends}
    return out
