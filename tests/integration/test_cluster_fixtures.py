"""The test clusters' own start-up: ports that nothing else takes first, and one retry of a node
that does not come up, with no process of the failed try left behind."""

from __future__ import annotations

import socket
import tempfile
from pathlib import Path

import pytest

from cluster_fixtures import RayCluster, _ephemeral_low, port_block, session_pids

pytest.importorskip("ray")


def test_a_port_block_lies_below_the_ephemeral_range_and_is_free() -> None:
    block = port_block(210)
    assert block == list(range(block[0], block[0] + 210))
    assert 10000 <= block[0] and block[-1] < _ephemeral_low()
    for port in (block[0], block[-1]):
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_head_that_cannot_start_is_stopped_and_started_again_on_other_ports() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cluster = RayCluster(Path(tempfile.mkdtemp(prefix="tlray-", dir="/tmp")), port, "0" * 64)
        try:
            head = cluster._start_node(head=True, cpus=1, name="head", timeout=60)
            assert cluster.port != port  # the second try took another GCS port
            assert (cluster.temp_dir / "head.failed.log").exists()
            assert len(cluster.nodes) == 1 and cluster.nodes[0] is head and head.proc.poll() is None
        finally:
            failed_sids = [n.sid for n in cluster.nodes]
            cluster.stop()  # raises if a process of either try is left
    assert all(not session_pids(sid) for sid in failed_sids)
