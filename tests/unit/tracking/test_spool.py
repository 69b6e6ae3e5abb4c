"""The on-disk queue: in order, nothing sent twice, nothing lost when a send fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from tunelab.tracking.spool import RunMap, Spool


class Down(Exception):
    pass


def test_replay_sends_in_order_and_keeps_the_rest(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for i in range(5):
        spool.append({"op": "log", "i": i})
    sent: list[int] = []

    def send(record: dict) -> None:
        if record["i"] == 3:
            raise Down()
        sent.append(record["i"])

    assert spool.replay(send, stop_on=(Down,)) == (3, 2)
    assert sent == [0, 1, 2]
    assert [r["i"] for r in spool.records()] == [3, 4]
    assert spool.replay(lambda r: sent.append(r["i"]), stop_on=(Down,)) == (2, 0)
    assert sent == [0, 1, 2, 3, 4]
    assert not spool.path.exists()


def test_other_errors_propagate_but_keep_unsent_records(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append({"i": 0})
    spool.append({"i": 1})

    def send(record: dict) -> None:
        if record["i"] == 1:
            raise KeyError("bug")

    with pytest.raises(KeyError):
        spool.replay(send, stop_on=(Down,))
    assert [r["i"] for r in spool.records()] == [1]


def test_a_line_cut_by_a_crash_is_skipped(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append({"i": 0})
    with open(spool.path, "a") as f:
        f.write('{"i": 1, "trunc')
    assert spool.records() == [{"i": 0}]


def test_a_busy_spool_is_not_replayed_twice(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.append({"i": 0})
    sent: list[dict] = []
    with Spool(tmp_path).locked():  # e.g. `tunelab sync` holds it
        assert spool.replay(sent.append, wait=False) is None
    assert spool.replay(sent.append, wait=False) == (1, 0)
    assert sent == [{"i": 0}]


def test_run_map_round_trip(tmp_path: Path) -> None:
    runs = RunMap(tmp_path)
    runs.reset("sqlite:///x.db", "exp")
    runs.set("study", "abc")
    runs.mark_ended("trial:1")
    again = RunMap(tmp_path)
    assert (again.uri, again.experiment, again.get("study"), again.ended) == ("sqlite:///x.db", "exp", "abc",
                                                                            {"trial:1"})
