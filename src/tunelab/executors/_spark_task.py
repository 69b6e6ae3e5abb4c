"""The trial side on Spark: the body of the one-partition Spark task that runs one trial.

The task runs in a PySpark worker process, which only relays: the trial itself runs in a
fresh interpreter under the local executor's supervisor (``LocalExecutor`` with one slot),
so a crash, an OOM kill or a stuck native library takes down the trial's process, never the
Python worker, and everything the trial started is killed when it ends. If the worker is
killed (Spark cancels the task: ``cancelJobGroup``, a lost executor), the supervisor goes
with it (the kernel's parent-death signal) and kills the trial's tree.

The relay connects back to the driver's mailbox (``_spark_mailbox``), says where it runs,
forwards each report and passes the driver's answer (the scheduler's decision) and stop to
the trial. The task returns the trial's ``Ended``; a retried task attempt returns
``("retry", ...)`` without running anything: the tuner, not Spark, decides whether a trial
that lost its executor runs again.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Iterator

from tunelab.executors.base import TrialSpec

RETRY = "retry"


#: Opt-outs of sending anything out (telemetry, hub calls) that the driver's trials would
#: inherit locally: a trial on a Spark executor gets the driver's values too.
PASSED_ENV = ("DO_NOT_TRACK", "HF_HUB_DISABLE_TELEMETRY", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
              "HF_DATASETS_OFFLINE", "MLFLOW_DISABLE_TELEMETRY", "WANDB_MODE", "WANDB_DISABLED")


def driver_env() -> dict[str, str]:
    return {k: os.environ[k] for k in PASSED_ENV if k in os.environ}


def trial_task(objective: Any, spec: TrialSpec, mailbox: tuple[str, int], token: bytes, cpus: int,
               gpus_per_trial: float, driver_path: list[str], driver_cwd: str, files: dict[int, str],
               env: dict[str, str]) -> Any:
    """The ``mapPartitions`` function of a trial's job (``objective`` is the broadcast; ``files``
    the token cache's tars given to ``sc.addFile``, by max_length)."""

    def run(_: Iterator[Any]) -> Iterator[Any]:
        yield _run(objective, spec, mailbox, token, cpus, gpus_per_trial, driver_path, driver_cwd, files, env)

    return run


class _WithCaches:
    """The objective, told in the trial's process where this node's token cache copies are."""

    def __init__(self, data: bytes, caches: dict[int, str]) -> None:
        self.data = data
        self.caches = caches

    def __call__(self, config: Any, reporter: Any) -> Any:
        import pickle

        objective = pickle.loads(self.data)  # in the trial's process, as the local executor does
        objective.use_token_caches(self.caches)
        return objective(config, reporter)


def _unpack(files: dict[int, str]) -> dict[int, str]:
    """This executor's copies of the shipped token cache, unpacked once next to the fetched tars."""
    import fcntl
    import shutil
    import tarfile
    import uuid
    from pathlib import Path

    from pyspark import SparkFiles

    out = {}
    for length, name in files.items():
        tar_path = Path(SparkFiles.get(name))  # fetched once per executor, kept for its later tasks
        target = tar_path.parent / name[:-len(".tar")]
        with open(tar_path.parent / f"{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # tasks of one executor unpack it once
            if not any(target.glob("*/meta.json")):
                tmp = tar_path.parent / f".tmp-{uuid.uuid4().hex[:8]}"
                with tarfile.open(tar_path) as tar:
                    if hasattr(tarfile, "data_filter"):
                        tar.extractall(tmp, filter="data")
                    else:  # pragma: no cover - Python without extraction filters
                        tar.extractall(tmp)  # noqa: S202 - a tar this study's driver made
                shutil.rmtree(target, ignore_errors=True)
                os.replace(tmp, target)
        entry = next(target.iterdir())  # the cache entry, under its own name
        out[length] = str(entry)
    return out


def _where() -> dict[str, Any]:
    from pyspark import TaskContext

    ctx = TaskContext.get()
    info: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname()}
    if ctx is not None:
        info.update(attempt=ctx.attemptNumber(), stage=ctx.stageId(), partition=ctx.partitionId(),
                    task=ctx.taskAttemptId())
        try:
            info["executor"] = ctx.getLocalProperty("spark.executor.id") or os.environ.get("SPARK_EXECUTOR_ID")
        except Exception:  # noqa: BLE001 - older Spark
            pass
    return info


def _gpus(ctx: Any) -> list[int] | None:
    try:
        resources = ctx.resources() if ctx is not None else {}
    except Exception:  # noqa: BLE001 - no resource API
        return None
    gpu = resources.get("gpu")
    return [int(a) for a in gpu.addresses if str(a).isdigit()] if gpu is not None else None


def _run(objective: Any, spec: TrialSpec, mailbox: tuple[str, int], token: bytes, cpus: int,
         gpus_per_trial: float, driver_path: list[str], driver_cwd: str, files: dict[int, str],
         env: dict[str, str]) -> Any:
    from multiprocessing.connection import wait

    from pyspark import TaskContext

    from tunelab.executors._spark_mailbox import connect, hang_up
    from tunelab.executors.local import LocalExecutor, _Preloaded
    from tunelab.trial import Ended, Result

    info = _where()
    if info.get("attempt", 0) > 0:  # Spark retries a task whose executor was lost: the tuner decides
        return (RETRY, info)
    conn = connect(mailbox, token)
    trial_id = spec.trial_id
    gpus = _gpus(TaskContext.get()) if gpus_per_trial else None
    data = objective.value  # the broadcast: on this executor once, kept by a reused Python worker
    local = LocalExecutor(_WithCaches(data, _unpack(files)) if files else _Preloaded(data), 1, cpus_per_trial=cpus,
                          gpus_per_trial=gpus_per_trial if gpus else 0.0, gpus=gpus,
                          cwd=driver_cwd, sys_path=driver_path, env=env,
                          preload=False)  # one trial per executor here: a fork server would not pay off
    ended: Ended | None = None
    try:
        conn.send(("started", trial_id, info))
        local.launch(spec)
        while ended is None:
            ready = wait([conn, *local.connections()], timeout=0.5)
            if conn in ready:
                message = conn.recv()  # EOFError when the driver is gone: ends the trial below
                if message[0] == "decide":
                    local.reply(trial_id, bool(message[1]))
                elif message[0] == "stop":
                    local.stop(trial_id)
            for event in local.poll(0):
                if isinstance(event, Result):
                    conn.send(("result", trial_id, event.step, dict(event.metrics)))
                else:
                    ended = event
    finally:
        local.shutdown()  # the trial's whole tree, whatever happened here
        hang_up(conn)
    return ended
