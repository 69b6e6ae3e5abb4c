"""tunelab's training defaults are the Hugging Face Trainer's (a parity check of issue 13)."""

from __future__ import annotations

import dataclasses

from tunelab.nlp.settings import TrainSettings


def test_defaults_equal_training_arguments_defaults() -> None:
    from transformers import TrainingArguments

    theirs = {f.name: f.default for f in dataclasses.fields(TrainingArguments)}
    ours = TrainSettings().to_dict()
    # transformers 5 dropped `warmup_ratio` for a `warmup_steps` that takes ratios too: 0 either way.
    assert ours["warmup_ratio"] == float(theirs.get("warmup_ratio") or 0) == float(theirs["warmup_steps"]) == 0.0
    compared = ["warmup_ratio"]
    for name, value in ours.items():
        if name not in theirs or name == "warmup_ratio":
            continue  # model settings (dropouts, max_length): the model's own values
        their = theirs[name]
        assert value == (str(their.value) if hasattr(their, "value") else their), name
        compared.append(name)
    # the schedule, warm-up, epsilon, betas, weight decay, clipping, seed and batch were all compared
    assert {"lr_scheduler_type", "warmup_ratio", "adam_epsilon", "adam_beta1", "adam_beta2", "weight_decay",
            "max_grad_norm", "seed", "learning_rate", "per_device_train_batch_size"} <= set(compared)
    # and the Trainer's default optimizer is the fused AdamW that make_optimizer builds
    assert "adamw_torch" in str(getattr(theirs["optim"], "value", theirs["optim"]))
