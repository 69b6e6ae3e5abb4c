"""Read back what the W&B and TensorBoard trackers wrote: offline run files and event files.

W&B's offline ``run-<id>.wandb`` files are a LevelDB-style log of protobuf ``Record``s (the
format ``wandb sync`` reads): a 7-byte file header, then 32 KiB blocks of chunks, each with a
7-byte header (checksum, length, type: full, first, middle, last).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

_BLOCK = 32768
_HEADER = 7


def wandb_records(path: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:_HEADER])
    assert (ident, magic, version) == (b":W&B", 0xBEE1, 0), path
    records, pos, parts = [], _HEADER, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # the rest of a block too small for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk = data[pos + _HEADER:pos + _HEADER + length]
        pos += _HEADER + length
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):  # full, last
            record = pb.Record()
            record.ParseFromString(parts)
            records.append(record)
            parts = b""
    return records


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
