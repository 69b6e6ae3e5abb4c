"""The journal file after a kill: the lock a killed process left is taken over at once."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path
from typing import Any

import optuna
import pytest

from tunelab.storage import open_storage, resolve_storage_url

#: Opens the journal as a driver does and stops inside an append (the lock held), waiting for a kill.
_HOLDER = textwrap.dedent("""
    import os, sys, time
    import optuna
    from tunelab.storage import open_storage

    storage = open_storage(sys.argv[1])

    def stuck(fd):  # the record is written, the lock still held: where a kill leaves the lock behind
        print("holding", flush=True)
        time.sleep(600)

    os.fsync = stuck
    optuna.create_study(storage=storage, study_name="killed")
""")


def _killed_while_appending(journal: Path) -> int:
    """Start a process that appends to ``journal``, kill -9 it while it holds the lock; its pid."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(journal)], stdout=subprocess.PIPE, text=True,
                            env=env)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "holding"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    return proc.pid


def test_a_lock_left_by_a_killed_process_is_taken_over_at_once(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    journal = tmp_path / "tunelab.journal"
    pid = _killed_while_appending(journal)
    assert os.path.lexists(f"{journal}.lock")  # what every restart used to wait 30 s on

    with caplog.at_level(logging.WARNING, logger="tunelab.storage"):
        storage = open_storage(resolve_storage_url(str(journal)))
        study = optuna.create_study(storage=storage, study_name="next", load_if_exists=True)
        study.enqueue_trial({"x": 1.0})
    assert any(f"process {pid}" in r.getMessage() and "gone" in r.getMessage() for r in caplog.records), \
        [r.getMessage() for r in caplog.records]
    again = open_storage(resolve_storage_url(str(journal)))
    names = {s.study_name for s in optuna.get_all_study_summaries(again, include_best_trial=False)}
    assert names == {"killed", "next"}  # the killed append had written its record before the kill
    assert len(optuna.load_study(study_name="next", storage=again).trials) == 1
    assert not os.path.lexists(f"{journal}.lock")


def test_a_record_cut_short_by_the_kill_does_not_spoil_the_next_ones(tmp_path: Path) -> None:
    journal = tmp_path / "tunelab.journal"
    _killed_while_appending(journal)
    with open(journal, "ab") as f:  # as if the kill had come in the middle of a write
        f.write(b'{"op_code":0,"worker_id":"w","study_name":"half')

    storage = open_storage(resolve_storage_url(str(journal)))
    optuna.create_study(storage=storage, study_name="after", load_if_exists=True).enqueue_trial({"x": 2.0})
    again = open_storage(resolve_storage_url(str(journal)))
    names = {s.study_name for s in optuna.get_all_study_summaries(again, include_best_trial=False)}
    assert names == {"killed", "after"}
    assert len(optuna.load_study(study_name="after", storage=again).trials) == 1


def _append_many(url: str, barrier: Any, results: Any, n: int, optunas_lock: bool = False) -> None:
    try:
        if optunas_lock:  # a plain Optuna process: its own backend and symlink lock
            from optuna.storages.journal import JournalFileBackend

            storage = optuna.storages.JournalStorage(JournalFileBackend(url))
        else:
            storage = open_storage(url)
        study = optuna.create_study(storage=storage, study_name="shared", load_if_exists=True)
        barrier.wait(timeout=120)
        for i in range(n):
            study.enqueue_trial({"x": float(i)}, skip_if_exists=False)
        results.put("ok")
    except BaseException:  # noqa: BLE001
        results.put(traceback.format_exc())


def test_several_live_processes_append_without_losing_or_spoiling_a_record(tmp_path: Path) -> None:
    url = resolve_storage_url(str(tmp_path / "tunelab.journal"))
    optuna.create_study(storage=open_storage(url), study_name="shared")
    ctx = multiprocessing.get_context("fork")
    writers, per_writer = 4, 60
    barrier, results = ctx.Barrier(writers), ctx.Queue()
    procs = [ctx.Process(target=_append_many, args=(url, barrier, results, per_writer)) for _ in range(writers)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(60)
    assert outcomes == ["ok"] * writers, outcomes
    study = optuna.load_study(study_name="shared", storage=open_storage(url))
    assert len(study.trials) == writers * per_writer
    assert sorted(t.number for t in study.trials) == list(range(writers * per_writer))


def test_plain_optuna_processes_and_tunelab_processes_append_to_one_journal_together(tmp_path: Path) -> None:
    # Both locks are <journal>.lock: whichever made it, the others wait (neither breaks a live one).
    path = str(tmp_path / "tunelab.journal")
    url = resolve_storage_url(path)
    optuna.create_study(storage=open_storage(url), study_name="shared")
    ctx = multiprocessing.get_context("fork")
    per_writer = 60
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_append_many, args=(url, barrier, results, per_writer)) for _ in range(2)]
    procs += [ctx.Process(target=_append_many, args=(path, barrier, results, per_writer, True)) for _ in range(2)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(60)
    assert outcomes == ["ok"] * 4, outcomes
    study = optuna.load_study(study_name="shared", storage=open_storage(url))
    assert sorted(t.number for t in study.trials) == list(range(4 * per_writer))
    assert not os.path.lexists(f"{path}.lock")


def test_a_lock_held_by_a_live_process_is_never_broken(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import threading

    from tunelab.journal_lock import JournalLock

    journal = tmp_path / "tunelab.journal"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(journal)], stdout=subprocess.PIPE, text=True,
                              env=env)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        lock = JournalLock(str(journal), grace_period_s=0.1)  # a grace period long past while we wait
        got = threading.Event()
        waiter = threading.Thread(target=lambda: (lock.acquire(), got.set()), daemon=True)
        with caplog.at_level(logging.WARNING, logger="tunelab.storage"):
            waiter.start()
            assert not got.wait(2.0)  # the owner lives: no takeover, however long it holds the lock
            holder.send_signal(signal.SIGKILL)
            holder.wait(60)
            assert got.wait(120)  # ... and once it is gone, at once
        lock.release()
    finally:
        holder.kill()
        holder.wait(60)
    assert lock.taken_over == 1
    assert any(f"process {holder.pid}" in r.getMessage() for r in caplog.records)


def test_a_lock_whose_owner_cannot_be_checked_is_taken_over_after_the_grace_period(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import json

    from tunelab.journal_lock import JournalLock

    journal = tmp_path / "tunelab.journal"
    journal.write_bytes(b"")
    for text in (json.dumps({"host": "another-machine", "pid": 1, "start": "5", "pidns": "x"}), ""):
        Path(f"{journal}.lock").write_text(text)  # a driver on another host; an Optuna lock
        lock = JournalLock(str(journal), grace_period_s=0.2)
        with caplog.at_level(logging.WARNING, logger="tunelab.storage"):
            assert lock.acquire()
        lock.release()
        assert not os.path.lexists(f"{journal}.lock")
    messages = [r.getMessage() for r in caplog.records]
    assert any("another-machine" in m and "did not change" in m for m in messages), messages
    assert any("an unknown process" in m for m in messages), messages


def test_release_leaves_a_lock_that_another_process_took_over_meanwhile(tmp_path: Path) -> None:
    # Our lock was judged stale and broken, and another process holds a new one: releasing ours
    # must not remove theirs (judged by the owner it names).
    from tunelab.journal_lock import JournalLock

    journal = tmp_path / "tunelab.journal"
    lock_file = Path(f"{journal}.lock")
    lock = JournalLock(str(journal))
    assert lock.acquire()
    ours = os.readlink(lock_file)
    assert ours.startswith("tl1 ") and len(ours) < 60  # fits a fast symlink: no data block
    lock_file.unlink()  # broken by the other process ...
    other = ours.replace(ours.split(" ")[3], "1", 1)  # ... which took the lock: another pid
    os.symlink(other, lock_file)
    lock.release()
    assert os.readlink(lock_file) == other
    lock_file.unlink()
    assert lock.acquire() and os.readlink(lock_file) == ours
    lock.release()
    assert not os.path.lexists(lock_file)


def test_an_owner_file_of_an_earlier_tunelab_on_this_host_is_still_judged_by_its_owner(tmp_path: Path) -> None:
    # Before the symlink, the lock was a file holding its owner as JSON: a live owner's is never
    # broken, a dead one's at once (an upgrade in the middle of a study keeps both rules).
    import json
    import socket

    from tunelab.driver import this_driver
    from tunelab.journal_lock import JournalLock, _parse

    journal = tmp_path / "tunelab.journal"
    journal.write_bytes(b"")
    host, pid, start = this_driver().rsplit(":", 2)
    pidns = os.readlink("/proc/self/ns/pid")
    lock = JournalLock(str(journal), grace_period_s=3600)
    live = json.dumps({"host": socket.gethostname(), "pid": int(pid), "start": start, "pidns": pidns, "thread": 1})
    assert lock._alive(_parse(live)) is True
    dead = json.dumps({"host": host, "pid": int(pid), "start": str(int(start) + 1), "pidns": pidns})
    Path(f"{journal}.lock").write_text(dead)  # this pid, but another start time: a reused pid
    assert lock.acquire() and lock.taken_over == 1
    lock.release()
    assert not os.path.lexists(f"{journal}.lock")


def test_without_symbolic_links_the_lock_is_a_file_naming_its_owner(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from tunelab.journal_lock import JournalLock

    def no_symlinks(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    journal = tmp_path / "tunelab.journal"
    lock, other = JournalLock(str(journal)), JournalLock(str(journal))
    assert lock.acquire()
    lock_file = Path(f"{journal}.lock")
    assert not lock_file.is_symlink() and lock_file.read_text() == lock._owner_text()
    assert not other._create(other._owner_text())  # held: nobody else gets it
    lock.release()
    assert not os.path.lexists(lock_file)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temporary file left


def test_threads_sharing_one_lock_object_exclude_each_other(tmp_path: Path) -> None:
    import threading

    from tunelab.journal_lock import JournalLock

    lock = JournalLock(str(tmp_path / "tunelab.journal"))
    counter = {"n": 0, "inside": 0, "overlaps": 0}

    def work() -> None:
        for _ in range(200):
            lock.acquire()
            try:
                counter["inside"] += 1
                counter["overlaps"] += counter["inside"] > 1
                value = counter["n"]
                os.sched_yield()  # invite the other thread in, if the lock let it
                counter["n"] = value + 1
                counter["inside"] -= 1
            finally:
                lock.release()

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert counter == {"n": 400, "inside": 0, "overlaps": 0}
    assert not os.path.lexists(f"{tmp_path / 'tunelab.journal'}.lock")
