"""Tiny models and data for text-classification tests (no network, a few seconds on a CPU).

``build_tiny_model(dir)`` saves a 2-layer BERT (hidden 32) and a word-level tokenizer as a
standard Hugging Face directory; ``make_dataset(dir)`` writes sentences whose label is set by
one keyword, so a tiny model learns them in a few epochs; ``make_reporter`` gives a Reporter
whose channel records results (and can ask the trial to stop, as a scheduler would).
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

POSITIVE = ["good", "great", "excellent", "wonderful"]
NEGATIVE = ["bad", "awful", "terrible", "boring"]
FILLER = ("the a movie film plot actor story scene music was is very quite really it this that and of "
          "to in with for on at by an as so too long short old new").split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB = SPECIALS + sorted(set(FILLER + POSITIVE + NEGATIVE + ["yes", "no"]))


def build_tiny_model(directory: Path, hidden: int = 32, layers: int = 2, heads: int = 2,
                     intermediate: int = 37, max_positions: int = 128, seed: int = 0) -> Path:
    """A BERT base model (no classification head, like a pretrained checkpoint) plus tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab = {word: i for i, word in enumerate(VOCAB)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                        model_max_length=max_positions)
    tokenizer.save_pretrained(str(directory))
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=intermediate,
                        max_position_embeddings=max_positions, type_vocab_size=2, pad_token_id=0)
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(str(directory))
    return directory


def sentence(rng: random.Random, keyword: str, low: int = 3, high: int = 24) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(low, high))]
    words.insert(rng.randint(0, len(words)), keyword)
    return " ".join(words)


def rows(n: int, seed: int, pairs: bool = False, int_labels: bool = False) -> list[dict[str, Any]]:
    """Examples labelled by a keyword (pairs: by a yes/no in the second sentence)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        positive = i % 2 == 0
        if pairs:
            row = {"premise": sentence(rng, rng.choice(POSITIVE + NEGATIVE)),
                   "hypothesis": sentence(rng, "yes" if positive else "no", 2, 8),
                   "label": "entailment" if positive else "contradiction"}
        else:
            row = {"text": sentence(rng, rng.choice(POSITIVE if positive else NEGATIVE)),
                   "label": (1 if positive else 0) if int_labels else ("pos" if positive else "neg")}
        out.append(row)
    rng.shuffle(out)
    return out


def write_rows(path: Path, data: list[Mapping[str, Any]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(data[0]))
            writer.writeheader()
            writer.writerows(data)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
    elif path.suffix == ".parquet":
        import pandas as pd

        pd.DataFrame(list(data)).to_parquet(path)
    else:
        raise ValueError(f"unknown suffix {path.suffix}")
    return path


def make_dataset(directory: Path, n_train: int = 320, n_val: int = 64, pairs: bool = False,
                 suffix: str = ".csv", int_labels: bool = False, seed: int = 0) -> dict[str, Path]:
    directory = Path(directory)
    return {
        "train": write_rows(directory / f"train{suffix}", rows(n_train, seed, pairs, int_labels)),
        "validation": write_rows(directory / f"validation{suffix}", rows(n_val, seed + 1, pairs, int_labels)),
    }


def tiny_objective(model_dir: Path, files: Mapping[str, Path], cache_dir: Path, pairs: bool = False,
                   **options: Any) -> Any:
    """A TextClassification objective over the tiny model and data files, with fast defaults.

    ``data={...}`` adds data settings, ``defaults={...}`` overrides training defaults, other
    keyword arguments go to ``TextClassification``.
    """
    from tunelab.objectives.text_classification import TextClassification

    spec = {"train": str(files["train"]), "validation": str(files["validation"]), "label": "label",
            **({"text": "premise", "text_pair": "hypothesis"} if pairs else {"text": "text"}),
            **options.pop("data", {})}
    defaults = {"num_train_epochs": 3, "per_device_train_batch_size": 16, "learning_rate": 3e-3,
                **options.pop("defaults", {})}
    return TextClassification(model=str(model_dir), data=spec, cache_dir=str(cache_dir), max_length=32,
                              device="cpu", defaults=defaults, **options)


@dataclass
class RecordingChannel:
    """A Channel that records results; ``stop_when(step, metrics)`` plays the scheduler."""

    stop_when: Callable[[float, Mapping[str, float]], bool] | None = None
    results: list[tuple[float, dict[str, float]]] = field(default_factory=list)

    def send_result(self, step: float, metrics: Mapping[str, float]) -> bool:
        self.results.append((step, dict(metrics)))
        return bool(self.stop_when and self.stop_when(step, metrics))


def make_reporter(trial_dir: Path, config: Mapping[str, Any] | None = None, trial_id: int = 0,
                  cpus: int = 1, stop_when: Callable[[float, Mapping[str, float]], bool] | None = None) -> Any:
    from tunelab.worker import Reporter, Resources

    channel = RecordingChannel(stop_when)
    return Reporter(trial_id=trial_id, config=dict(config or {}), trial_dir=Path(trial_dir), channel=channel,
                    resources=Resources(cpus=cpus))


def run_pickled_trial(payload: bytes, trial_dir: str, config: Mapping[str, Any], trial_id: int = 0) -> dict[str, Any]:
    """Run a pickled objective as a fresh trial process would; for ``ProcessPoolExecutor``s.

    Returns the result or the failure kind, and the reported (step, metrics) pairs.
    """
    import pickle

    from tunelab.errors import TrialFailed, TrialPruned

    objective = pickle.loads(payload)
    reporter = make_reporter(Path(trial_dir), config, trial_id=trial_id)
    out: dict[str, Any] = {"reports": reporter.channel.results}
    try:
        out["result"] = objective(reporter.config, reporter)
    except TrialPruned:
        out["state"] = "pruned"
    except TrialFailed as exc:
        out["state"], out["kind"] = "failed", exc.kind
    return out
