"""Read back W&B's own run files (``run-<id>.wandb``), to see what a run already holds.

A resumed study replays the trials whose end never reached the tracker. W&B keeps what it was
sent in these files, which a kill -9 of the driver does not always lose (W&B's service process
writes them), so the steps they hold are not logged again. The format is the one ``wandb sync``
reads: a LevelDB-style log of protobuf ``Record`` messages, a 7-byte file header, then 32 KiB
blocks of chunks, each with a 7-byte header (checksum, length, type: full, first, middle, last).
Nothing in them is executed: protobuf messages are data.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

_BLOCK = 32768
_HEADER = 7
_MAGIC = (b":W&B", 0xBEE1, 0)


def records(path: Path) -> list[Any]:
    """The protobuf records of one run file, up to the first one cut short (a killed writer)."""
    from google.protobuf.message import DecodeError
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    if len(data) < _HEADER or struct.unpack("<4sHB", data[:_HEADER]) != _MAGIC:
        return []
    out, pos, parts = [], _HEADER, b""
    while pos + _HEADER <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # the rest of a block too small for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
        if length == 0 and kind == 0:
            pos += left
            continue
        if pos + _HEADER + length > len(data):
            break  # a chunk cut short
        chunk = data[pos + _HEADER:pos + _HEADER + length]
        pos += _HEADER + length
        parts = chunk if kind in (1, 2) else parts + chunk
        if kind in (1, 4):  # full, last
            record = pb.Record()
            try:
                record.ParseFromString(parts)
            except DecodeError:
                break
            out.append(record)
            parts = b""
    return out


def steps_held(directory: str | Path, run_id: str) -> int:
    """How many steps (0, 1, ...) of run ``run_id`` W&B's files under ``directory`` hold: one more
    than the highest ``_step`` logged in any of its files (a resumed run adds a file)."""
    highest = -1
    for path in sorted(Path(directory).glob(f"wandb/*run-*-{run_id}/run-{run_id}.wandb")):
        for record in records(path):
            if record.WhichOneof("record_type") != "history":
                continue
            for item in record.history.item:
                if (item.key or "/".join(item.nested_key)) == "_step":
                    highest = max(highest, int(json.loads(item.value_json)))
            if record.history.HasField("step"):
                highest = max(highest, int(record.history.step.num))
    return highest + 1
