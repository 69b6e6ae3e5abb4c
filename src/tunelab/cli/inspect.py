"""Commands that read a study: ``status``, ``best``, ``trials``, ``studies``."""

from __future__ import annotations

import argparse
import collections
import csv
import sys
from typing import Any

from tunelab.cli.common import add_study_args, fmt, open_study, print_table, to_json


def add_parsers(subparsers: Any) -> None:
    p = subparsers.add_parser("status", help="counts by state and failure kind, and the best so far")
    add_study_args(p)
    p.set_defaults(func=status)

    p = subparsers.add_parser("best", help="the best config (values) and its metrics")
    add_study_args(p)
    p.add_argument("--format", choices=("table", "json", "yaml"), default="table")
    p.set_defaults(func=best)

    p = subparsers.add_parser("trials", help="a row per trial")
    add_study_args(p)
    p.add_argument("--format", choices=("table", "csv", "json", "parquet"), default="table")
    p.add_argument("--out", help="write to this file instead of stdout (needed for parquet)")
    p.set_defaults(func=trials)

    p = subparsers.add_parser("studies", help="the studies in a storage")
    p.add_argument("--storage", help="storage URL or journal file (default: ./tunelab.journal)")
    p.set_defaults(func=studies)


def status(args: argparse.Namespace) -> int:
    study = open_study(args)
    trials = study.trials()
    states = collections.Counter(t.state.value for t in trials)
    kinds = collections.Counter(t.failure_kind for t in trials if t.failure_kind)
    print(f"study {study.name}: {len(trials)} trials")
    for state in ("running", "waiting", "complete", "pruned", "failed"):
        if states.get(state):
            line = f"  {state:<9}{states[state]}"
            if state == "failed" and kinds:
                line += "  (" + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) + ")"
            print(line)
    best_trials = study.best_among(trials)
    if best_trials:
        b = best_trials[0]
        shown = ", ".join(f"{m.name} {fmt(b.metrics.get(m.name))}" for m in study.metrics.objectives)
        print(f"  best     trial {b.number}: {shown}")
    compute = sum(t.duration or 0.0 for t in trials)
    print(f"  compute  {compute:.1f} s of trial time")
    return 0


def best_payload(study: Any) -> list[dict[str, Any]]:
    return [{"trial": t.number, "config": dict(t.config),
             "metrics": {k: t.metrics[k] for k in t.metrics}} for t in study.best_trials]


def print_best(study: Any, fmt_name: str) -> None:
    payload = best_payload(study)
    if fmt_name == "json":
        print(to_json(payload if study.metrics.is_multi_objective else (payload[0] if payload else None)))
        return
    if fmt_name == "yaml":
        import yaml

        data = payload if study.metrics.is_multi_objective else (payload[0] if payload else None)
        print(yaml.safe_dump(data, sort_keys=False), end="")
        return
    if not payload:
        print("no complete trial meets every constraint yet")
        return
    title = "Pareto front" if study.metrics.is_multi_objective else "best trial"
    for entry in payload:
        print(f"{title}: trial {entry['trial']}")
        for name, value in entry["config"].items():
            print(f"  {name}: {fmt(value)}")
        print("  metrics: " + ", ".join(f"{k} {fmt(v)}" for k, v in entry["metrics"].items()))


def best(args: argparse.Namespace) -> int:
    study = open_study(args)
    print_best(study, args.format)
    return 0 if study.best_trials else 1


def trials(args: argparse.Namespace) -> int:
    from tunelab.frame import trial_rows

    study = open_study(args)
    rows = trial_rows(study.trials(), study.metrics)
    out = open(args.out, "w", newline="") if args.out and args.format != "parquet" else sys.stdout
    try:
        if args.format == "json":
            print(to_json(rows), file=out)
        elif args.format == "csv":
            if rows:
                writer = csv.DictWriter(out, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
        elif args.format == "parquet":
            if not args.out:
                from tunelab.errors import ConfigError

                raise ConfigError("--out", "is needed for parquet (a binary format).", "add `--out trials.parquet`.")
            from tunelab.frame import parquet_ready

            parquet_ready(study.trials_frame()).to_parquet(args.out)
        else:
            columns = [c for c in (rows[0] if rows else {}) if c not in ("start", "end", "feasible", "parent",
                                                                          "retry_of", "slot")]
            if out is sys.stdout:
                print_table(rows, columns)
            else:
                print(to_json(rows), file=out)
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


def studies(args: argparse.Namespace) -> int:
    import optuna

    from tunelab.storage import open_storage, resolve_storage_url, storage_exists

    url = resolve_storage_url(args.storage)
    if not storage_exists(url):
        print(f"no storage at {url}")
        return 1
    rows = []
    for s in optuna.get_all_study_summaries(open_storage(url), include_best_trial=False):
        rows.append({"study": s.study_name, "trials": s.n_trials,
                     "directions": ",".join(d.name.lower() for d in s.directions),
                     "started": s.datetime_start.isoformat(timespec="seconds") if s.datetime_start else None})
    print_table(rows)
    return 0
