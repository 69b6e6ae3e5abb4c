"""The trial side on a Ray cluster: the body of the Ray task that runs one trial.

It runs in a Ray worker process used for this trial only (the task has ``max_calls=1``, so
the process exits afterwards and its memory, GPU memory included, goes back). Like the local
executor's child it sends stdout and stderr to ``<trial_dir>/trial.log``, takes the driver's
``sys.path`` and working directory, sets thread counts, then runs the objective through the
shared ``run_objective`` (so failures are classified as they are locally) and returns the
``Ended`` event. Results go through the driver's mailbox actor, which answers with the
scheduler's decision.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from typing import Any, Mapping

from tunelab.executors._running import LOG_NAME


class MailboxChannel:
    """A ``Channel`` whose results travel through the mailbox actor; blocks for the decision."""

    def __init__(self, mailbox: Any, trial_id: int) -> None:
        self.mailbox = mailbox
        self.trial_id = trial_id

    def send_result(self, step: float, metrics: Mapping[str, float]) -> bool:
        import ray

        return bool(ray.get(self.mailbox.report.remote(self.trial_id, float(step), dict(metrics))))


def _to_log(trial_dir: str) -> None:
    """Point this process's stdout and stderr (the file descriptors, so child processes and C
    libraries too) at the trial's log on this node."""
    os.makedirs(trial_dir, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(os.path.join(trial_dir, LOG_NAME), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


def _threads(cpus: int) -> None:
    threads = str(max(1, int(cpus)))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = threads
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["PYTHONUNBUFFERED"] = "1"


def run_trial(objective: list[Any], spec: Any, cpus: int, gpu_fraction: float, driver_path: list[str],
              driver_cwd: str, mailbox: Any) -> Any:
    """Run one trial; return its ``Ended``.

    ``objective`` is ``[ref]``: a reference to the pickled objective in the object store, in a
    list so that Ray does not fetch it before the task starts (the fetch is timed here, and a
    large objective does not pin trials to the node that holds it).
    """
    import pickle

    import ray

    trial_dir = str(spec.trial_dir)
    _to_log(trial_dir)
    _threads(cpus)
    for entry in reversed(driver_path):  # the driver's imports resolve here too (shared code paths)
        if entry and entry not in sys.path:
            sys.path.insert(1, entry)
    os.chdir(driver_cwd if os.path.isdir(driver_cwd) else trial_dir)
    started = time.perf_counter()
    objective = pickle.loads(ray.get(objective[0]))  # from this node's object store, copied there once
    load_s = time.perf_counter() - started

    from tunelab.executors._run_trial import make_reporter, run_objective
    from tunelab.worker import Resources

    context = ray.get_runtime_context()
    gpus = tuple(int(g) for g in ray.get_gpu_ids() if str(g).isdigit()) if gpu_fraction else ()
    info = {"pid": os.getpid(), "node_id": context.get_node_id(), "host": socket.gethostname(),
            "ip": ray.util.get_node_ip_address(), "load_s": load_s, "gpus": list(gpus)}
    ray.get(mailbox.started.remote(spec.trial_id, info))  # waited for: a call still in flight dies with the process
    print(f"[tunelab] trial {spec.trial_id} on {info['host']} ({info['ip']}, Ray node {info['node_id'][:12]}), "
          f"pid {info['pid']}; objective loaded in {load_s:.3f} s", flush=True)
    resources = Resources(cpus=int(cpus), gpus=gpus, gpu_fraction=float(gpu_fraction))
    reporter = make_reporter(spec, MailboxChannel(mailbox, spec.trial_id), resources)
    ended = run_objective(objective, reporter)
    sys.stdout.flush()
    sys.stderr.flush()
    return ended
