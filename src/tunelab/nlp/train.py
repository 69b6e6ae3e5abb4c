"""The training loop: plain PyTorch, one trial, reporting each evaluation to the scheduler.

Per optimizer update the loop takes ``gradient_accumulation_steps`` length-grouped batches of
``per_device_train_batch_size`` examples, splits them into micro-batches (the batch itself until
memory runs out), and sums the per-example losses divided by the update's example count, so
the accumulated gradient is the full batch's mean whatever the micro-batch. On CUDA
out-of-memory it frees memory, halves the micro-batch (twice the accumulation, same effective
batch) and redoes the update; below one example the trial fails as ``oom``.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from tunelab.errors import TrialFailed, TrialPruned
from tunelab.nlp import allocator, fastpath
from tunelab.nlp.batching import grouped_batches, pad_batch, sorted_batches, to_tensors
from tunelab.nlp.cache import TokenCache, TokenizedSplit
from tunelab.nlp.checkpoint import (BEST, LATEST, OPTIMIZER, RNG, flatten, load_tree, model_dir, read_state,
                                    save_checkpoint, save_latest, unflatten, versions)
from tunelab.nlp.faults import Faults
from tunelab.nlp.metrics import EVAL_METRICS, classification_metrics
from tunelab.nlp.model import Precision, choose_device, choose_precision, load_model, make_optimizer, quiet_transformers
from tunelab.nlp.settings import TrainSettings

log = logging.getLogger("tunelab.nlp")


@dataclass(frozen=True)
class TrainJob:
    """Everything one trial needs besides its hyperparameters (``settings``)."""

    model: str
    cache: TokenCache
    settings: TrainSettings
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    eval_steps: int | None = None  # evaluate every N updates ...
    evals_per_epoch: int = 1  # ... or N times an epoch, at steps >= 1/N, 2/N, ... (for ASHA rungs)
    eval_batch_size: int = 64
    device: str = "auto"
    select: tuple[str, str] = ("accuracy", "maximize")  # which evaluation is the best one
    freeze_embeddings: bool = False
    fast_path: bool = True  # nlp.fastpath and nlp.allocator: exact speed-ups, false for the stock model
    faults: Faults = Faults()


def free_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def evaluate(model: Any, split: TokenizedSplit, batch_size: int, pad_id: int, precision: Precision,
             num_labels: int, faults: Faults = Faults()) -> dict[str, float]:
    """Metrics on ``split`` (length-sorted batches); halves the batch on out-of-memory."""
    size = batch_size
    while True:
        oom = False
        try:
            return _evaluate_once(model, split, size, pad_id, precision, num_labels, faults)
        except torch.OutOfMemoryError:
            oom = True  # handled below, once the traceback (and its tensors) is gone
        if oom:
            free_memory(precision.device)
            if size <= 1:
                raise TrialFailed("oom", "out of memory evaluating a single example")
            size //= 2
            log.warning("out of memory in evaluation; retrying with batch %d", size)


def _evaluate_once(model: Any, split: TokenizedSplit, batch_size: int, pad_id: int, precision: Precision,
                   num_labels: int, faults: Faults) -> dict[str, float]:
    was_training = model.training
    model.eval()
    preds, order = [], []
    loss_sum = torch.zeros((), device=precision.device)
    with torch.inference_mode():
        for indices in sorted_batches(split.lengths, batch_size):
            faults.check_batch(len(indices))
            inputs = to_tensors(pad_batch(split, indices, pad_id), precision.device)
            labels = inputs.pop("labels")
            with precision.autocast():
                logits = model(**inputs).logits.float()
            loss_sum += F.cross_entropy(logits, labels, reduction="sum")
            preds.append(logits.argmax(-1))
            order.append(indices)
    model.train(was_training)
    predicted = torch.cat(preds).cpu().numpy()
    labels_np = np.asarray(split.labels)[np.concatenate(order)]
    return classification_metrics(labels_np, predicted, num_labels, loss_sum.item() / max(1, len(split)))


class TrainLoop:
    """One trial's training; ``run()`` returns the best evaluation's metrics."""

    def __init__(self, job: TrainJob, reporter: Any) -> None:
        self.job, self.reporter, self.s = job, reporter, job.settings
        self.device = choose_device(job.device)
        torch.set_num_threads(max(1, int(reporter.resources.cpus)))
        torch.manual_seed(self.s.seed)  # the new classifier head and dropout
        self.rng = np.random.default_rng(self.s.seed)  # the batch order
        self.train_split = job.cache.split("train")
        self.val_split = job.cache.split("validation")
        self.train_lengths = np.asarray(self.train_split.lengths)
        self.resume_dir, source = _restore_source(getattr(reporter, "restore_dir", None), job.model)
        self.model = load_model(source, job.cache.label_names, self.s, job.model_kwargs, job.cache.pad_id,
                                job.freeze_embeddings)
        self.model.to(self.device).train()
        if job.fast_path:
            fastpath.apply(self.model, self.s.seed, self.device)
            if self.device.type == "cpu":
                allocator.keep_freed_memory()
        self.precision = choose_precision(self.device)
        self.optimizer = make_optimizer(self.model, self.s, self.device)
        batches = math.ceil(len(self.train_split) / self.s.per_device_train_batch_size)
        self.updates_per_epoch = math.ceil(batches / self.s.gradient_accumulation_steps)
        self.total_updates = max(1, math.ceil(self.s.num_train_epochs * self.updates_per_epoch))
        from transformers import get_scheduler

        self.scheduler = get_scheduler(self.s.lr_scheduler_type, self.optimizer,
                                       num_warmup_steps=math.ceil(self.s.warmup_ratio * self.total_updates),
                                       num_training_steps=self.total_updates)
        self.micro = self.s.per_device_train_batch_size
        self.train_seconds = 0.0
        self.samples = 0
        self.loss_sum = torch.zeros((), device=self.device)
        self.loss_count = 0
        self.best: tuple[float, dict[str, float]] | None = None
        self.update = 0  # optimizer updates done
        self.epoch_rng: dict[str, Any] = self.rng.bit_generator.state  # before this epoch's order was drawn
        self.skip = 0  # updates of the first epoch to skip (a resumed run did them already)
        self.in_epoch = 0  # updates of the current epoch done
        if self.resume_dir is not None:
            self._restore(self.resume_dir)

    # ---- the loop ---------------------------------------------------------------------------

    def run(self) -> dict[str, float]:
        update = self.update
        gas = self.s.gradient_accumulation_steps
        while update < self.total_updates:
            self.epoch_rng = self.rng.bit_generator.state
            batches = grouped_batches(self.train_lengths, self.s.per_device_train_batch_size, self.rng)
            done, self.skip = self.skip, 0  # updates of this epoch a resumed run has done already
            for start in range(done * gas, len(batches), gas):
                started = time.perf_counter()
                group = batches[start:start + gas]
                self._update(group, update + 1)
                update += 1
                self.update = update
                self.in_epoch = start // gas + 1
                self.samples += sum(len(b) for b in group)
                self.train_seconds += time.perf_counter() - started
                if self._eval_due(update):
                    self._evaluate_and_report(update)
                if update >= self.total_updates:
                    break
                if self.reporter.should_stop():
                    raise TrialPruned()
        return self._result()

    def _eval_due(self, update: int) -> bool:
        if update == self.total_updates:
            return True
        if self.job.eval_steps:
            return update % self.job.eval_steps == 0
        # The first update at or past each j/N of an epoch, so a rung at j/N is reached.
        n, per_epoch = self.job.evals_per_epoch, self.updates_per_epoch
        in_epoch = (update - 1) % per_epoch + 1
        return any(math.ceil(j * per_epoch / n) == in_epoch for j in range(1, n + 1))

    def _update(self, group: list[np.ndarray], number: int) -> None:
        n_examples = sum(len(b) for b in group)
        while True:
            oom = False
            try:
                loss = self._accumulate(group, n_examples, number)
            except torch.OutOfMemoryError:
                oom = True  # handled below, once the traceback (and its activations) is gone
            if not oom:
                break
            self.optimizer.zero_grad(set_to_none=True)
            free_memory(self.device)
            if self.micro <= 1:
                raise TrialFailed("oom", "out of memory with a micro-batch of 1 example")
            self.micro //= 2
            log.warning("out of memory at update %d; micro-batch %d, accumulation x%d",
                        number, self.micro, math.ceil(self.s.per_device_train_batch_size / self.micro) *
                        self.s.gradient_accumulation_steps)
        self._step(loss, number)

    def _accumulate(self, group: list[np.ndarray], n_examples: int, number: int) -> torch.Tensor:
        """Forward and backward every micro-batch of one update; return the update's mean loss."""
        total = torch.zeros((), device=self.device)
        scaler = self.precision.scaler
        for batch in group:
            for i in range(0, len(batch), self.micro):
                chunk = batch[i:i + self.micro]
                self.job.faults.check_batch(len(chunk))
                inputs = to_tensors(pad_batch(self.train_split, chunk, self.job.cache.pad_id), self.device)
                labels = inputs.pop("labels")
                with self.precision.autocast():
                    logits = self.model(**inputs).logits
                # Summed, then divided by the whole update's size: any split gives the same gradient.
                loss = F.cross_entropy(logits.float(), labels, reduction="sum",
                                       label_smoothing=self.s.label_smoothing_factor) / n_examples
                if self.job.faults.nan_at_update == number:
                    loss = loss * float("nan")
                (scaler.scale(loss) if scaler is not None else loss).backward()
                total += loss.detach()
        return total

    def _step(self, loss: torch.Tensor, number: int) -> None:
        scaler = self.precision.scaler
        if scaler is not None:
            scaler.unscale_(self.optimizer)
        bad = ~torch.isfinite(loss)
        if self.s.max_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.s.max_grad_norm)
            if scaler is None:  # with fp16 an overflow is normal: the scaler skips the step
                bad |= ~torch.isfinite(norm)
        if bad.item():  # one sync per update, before the bad values reach the weights
            raise TrialFailed("nan", f"training loss {loss.item()} (or its gradient) is not finite at update "
                              f"{number} (epoch {number / self.updates_per_epoch:.2f})")
        if scaler is not None:
            scaler.step(self.optimizer)
            scaler.update()
        else:
            self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.loss_sum += loss
        self.loss_count += 1

    # ---- evaluation, checkpoints, result ----------------------------------------------------

    def _evaluate_and_report(self, update: int) -> None:
        step = round(update / self.updates_per_epoch, 6)
        metrics = evaluate(self.model, self.val_split, self.job.eval_batch_size, self.job.cache.pad_id,
                           self.precision, len(self.job.cache.label_names), self.job.faults)
        metrics["train_loss"] = self.loss_sum.item() / max(1, self.loss_count)
        self.loss_sum.zero_()
        self.loss_count = 0
        metrics["train_seconds"] = self.train_seconds
        metrics["samples_per_second"] = self.samples / max(self.train_seconds, 1e-9)
        log.info("trial %s epoch %.3g: %s", self.reporter.trial_id, step,
                 " ".join(f"{k}={v:.4g}" for k, v in metrics.items()))
        if self._improves(metrics):
            self.best = (step, metrics)
            self._save(step, metrics)  # before reporting: a pruned trial keeps its best weights
        self._save_latest(step)  # before reporting too: a clone made at this report starts here
        self.reporter.report(step, **metrics)

    def _improves(self, metrics: Mapping[str, float]) -> bool:
        name, goal = self.job.select
        if name not in metrics:
            name, goal = "accuracy", "maximize"
        if self.best is None:
            return True
        value, best = metrics[name], self.best[1][name]
        return value > best if goal == "maximize" else value < best

    def _save(self, step: float, metrics: Mapping[str, float]) -> None:
        cache = self.job.cache
        record = {
            "trial_id": self.reporter.trial_id,
            "step": step,
            "metrics": dict(metrics),
            "settings": self.s.to_dict(),
            "config": dict(self.reporter.config),
            "model": self.job.model,
            "model_kwargs": dict(self.job.model_kwargs),
            "freeze_embeddings": self.job.freeze_embeddings,
            "max_length": cache.meta["max_length"],
            "labels": cache.label_names,
            "data": cache.meta["data"],
            "token_cache": cache.path.name,
            "precision": self.precision.name,
            "micro_batch": self.micro,  # below the batch size when out-of-memory retries split it
            "device": str(self.device),
            "versions": versions(),
        }
        save_checkpoint(self.model, self.reporter.checkpoint_dir / BEST, cache.tokenizer_dir, record)

    # ---- latest/: the full state, to resume or clone from -----------------------------------

    def _masks(self) -> Any:
        """The fast path's dropout generator (None without the fast path or on a GPU)."""
        for module in self.model.modules():
            if isinstance(module, fastpath.FastDropout):
                return module.masks
        return None

    def _save_latest(self, step: float) -> None:
        rng = {"torch_cpu": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            for i, state in enumerate(torch.cuda.get_rng_state_all()):
                rng[f"torch_cuda_{i}"] = state
        masks = self._masks()
        scaler = self.precision.scaler
        state = {
            "trial_id": self.reporter.trial_id,
            "step": step,  # the reported step (epochs)
            "update": self.update,
            "epoch": self.update / self.updates_per_epoch,
            "updates_per_epoch": self.updates_per_epoch,
            # The data order: the generator as it was before this epoch's order was drawn, and
            # how many of the epoch's updates are done.
            "data": {"rng": _jsonable(self.epoch_rng), "skip": self.in_epoch,
                     "now": _jsonable(self.rng.bit_generator.state),
                     "batch_size": self.s.per_device_train_batch_size,
                     "accumulation": self.s.gradient_accumulation_steps, "examples": len(self.train_split)},
            "scheduler": _jsonable(self.scheduler.state_dict()),
            "learning_rate": self.s.learning_rate,
            "python_rng": _jsonable(random.getstate()),
            "numpy_rng": _jsonable(np.random.get_state()),
            "dropout_rng": _jsonable(masks.generator.bit_generator.state) if masks is not None else None,
            "grad_scaler": _jsonable(scaler.state_dict()) if scaler is not None else None,
            "micro_batch": self.micro,
            "train_seconds": self.train_seconds,
            "samples": self.samples,
            "config": dict(self.reporter.config),
            "settings": self.s.to_dict(),
            "versions": versions(),
        }
        save_latest(self.reporter.checkpoint_dir, self.model, self.optimizer.state_dict(), rng, state)

    def _restore(self, directory: Path) -> None:
        """Continue from ``directory`` (a ``latest/``): optimizer, schedule, step, data order, RNGs.

        The trial's own hyperparameters win where they differ (a clone's mutated values): a new
        learning rate becomes the schedule's peak, applied at the step the schedule has reached
        (no second warmup); weight decay, betas and epsilon are set on the parameter groups.
        """
        from safetensors.torch import load_file

        state = read_state(directory)
        assert state is not None
        self.optimizer.load_state_dict(load_tree(directory, OPTIMIZER))
        decays = [self.s.weight_decay, 0.0]  # make_optimizer's groups: decayed, then 1-d parameters
        for group, decay in zip(self.optimizer.param_groups, decays):
            group.update(weight_decay=decay, betas=(self.s.adam_beta1, self.s.adam_beta2), eps=self.s.adam_epsilon,
                         initial_lr=self.s.learning_rate)
        self.scheduler.load_state_dict(unflatten(state["scheduler"], {}))
        self.scheduler.base_lrs = [self.s.learning_rate for _ in self.optimizer.param_groups]
        data = state["data"]
        same_order = (data["batch_size"], data["accumulation"], data["examples"]) == (
            self.s.per_device_train_batch_size, self.s.gradient_accumulation_steps, len(self.train_split))
        if same_order:
            self.update, self.skip = int(state["update"]), int(data["skip"])
            self.rng.bit_generator.state = unflatten(data["rng"], {})
        else:  # other batches: continue at the same epoch, with the next epoch's fresh order
            self.update = round(float(state["epoch"]) * self.updates_per_epoch)
            self.rng.bit_generator.state = unflatten(data["now"], {})
            self.skip = 0
            self.scheduler.last_epoch = self.update  # the schedule counts updates: in the new batches
            log.info("batch size or data changed since the checkpoint: continuing at epoch %.3g with a new order",
                     state["epoch"])
        step = self.scheduler.last_epoch
        lrs = [base * fn(step) for base, fn in zip(self.scheduler.base_lrs, self.scheduler.lr_lambdas)]
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self.scheduler._last_lr = lrs  # what get_last_lr() returns, as step() would have set it
        rng = load_file(str(directory / RNG))
        torch.set_rng_state(rng["torch_cpu"])
        cuda = [rng[k] for k in sorted(rng) if k.startswith("torch_cuda_")]
        if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        random.setstate(unflatten(state["python_rng"], {}))
        np.random.set_state(unflatten(state["numpy_rng"], {}))
        masks = self._masks()
        if masks is not None and state.get("dropout_rng"):
            masks.generator.bit_generator.state = unflatten(state["dropout_rng"], {})
        if self.precision.scaler is not None and state.get("grad_scaler"):
            self.precision.scaler.load_state_dict(unflatten(state["grad_scaler"], {}))
        self.micro = min(self.micro, int(state.get("micro_batch") or self.micro))
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.samples = int(state.get("samples", 0))
        start = getattr(self.reporter, "start_step", None)
        log.info("trial %s resumes from %s at update %d (epoch %.4g)%s", self.reporter.trial_id, directory,
                 self.update, self.update / self.updates_per_epoch,
                 f"; the driver expected step {start:g}" if start is not None and start != state["step"] else "")

    def _result(self) -> dict[str, float]:
        assert self.best is not None  # the last update always evaluates
        step, best = self.best
        result = {k: v for k, v in best.items() if k in EVAL_METRICS or k == "train_loss"}
        result.update(best_step=step, train_seconds=self.train_seconds,
                      samples_per_second=self.samples / max(self.train_seconds, 1e-9))
        if "test" in self.job.cache.splits:
            result.update({f"test_{k}": v for k, v in self._test_metrics().items()})
        return result

    def _test_metrics(self) -> dict[str, float]:
        """The best checkpoint scored on the test split (stored, never used to pick)."""
        from transformers import AutoModelForSequenceClassification

        with quiet_transformers():
            best = AutoModelForSequenceClassification.from_pretrained(
                str(self.reporter.checkpoint_dir / BEST), dtype=torch.float32).to(self.device)
        if self.job.fast_path:
            fastpath.apply(best, self.s.seed, self.device)
        return evaluate(best, self.job.cache.split("test"), self.job.eval_batch_size, self.job.cache.pad_id,
                        self.precision, len(self.job.cache.label_names), self.job.faults)


def _jsonable(obj: Any) -> Any:
    tensors: dict[str, Any] = {}
    out = flatten(obj, tensors)
    if tensors:
        raise TypeError("state with tensors belongs in a safetensors file")
    return out


def _restore_source(restore: Path | None, model: str) -> tuple[Path | None, str]:
    """What a trial starts from: (a full state to resume, or None; the weights to load).

    ``restore`` (the reporter's restore point, a copy in the trial's own directory) holds a
    ``latest/`` with the full state, or only weights (``best/``, or the old layout): then
    the trial starts from those weights with a fresh optimizer and schedule.
    """
    if not restore:
        return None, model
    restore = Path(restore)
    for candidate in (restore / LATEST, restore):
        if read_state(candidate) is not None:
            return candidate, str(candidate)
    weights = model_dir(restore)
    log.warning("%s holds weights but no training state: starting from those weights with a fresh "
                "optimizer and learning-rate schedule", restore)
    return None, str(weights)


def train(job: TrainJob, reporter: Any) -> dict[str, float]:
    """Fine-tune, evaluating and reporting as configured; return the best evaluation's metrics."""
    return TrainLoop(job, reporter).run()

