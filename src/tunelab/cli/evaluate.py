"""``tunelab evaluate DIR --data test.csv``: an exported model's metrics on new labelled data."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from tunelab.cli.common import fmt, to_json


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("evaluate", help="score an exported model on a labelled data file")
    p.add_argument("model_dir", help="a directory written by `tunelab export`")
    p.add_argument("--data", required=True, help="CSV, JSON Lines or Parquet file with text and labels")
    p.add_argument("--text", default="text", help="text column (default: text)")
    p.add_argument("--text-pair", help="second text column, for sentence pairs")
    p.add_argument("--label", default="label", help="label column (default: label)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--format", choices=("table", "json"), default="table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tunelab.errors import ConfigError
    from tunelab.nlp.export import evaluate_model

    data = Path(args.data)
    if not data.exists():
        raise ConfigError("--data", f"{data} does not exist.", "check the path.")
    metrics = evaluate_model(Path(args.model_dir), data, text=args.text, text_pair=args.text_pair,
                             label=args.label, batch_size=args.batch_size)
    if args.format == "json":
        print(to_json(metrics))
    else:
        for name, value in metrics.items():
            print(f"{name:<10}{fmt(value)}")
    return 0
