"""Commands that read a study: ``status``, ``best``, ``trials``, ``studies``."""

from __future__ import annotations

import argparse
import collections
import csv
import shutil
import sys
from typing import Any

from tunelab.cli.common import add_format_arg, add_study_args, fmt, open_study, print_table, to_json
from tunelab.errors import ConfigError

STATES = ("running", "waiting", "complete", "pruned", "failed")


def add_parsers(subparsers: Any) -> None:
    p = subparsers.add_parser("status", help="counts by state, failures by kind with the latest message, the best")
    add_study_args(p)
    add_format_arg(p, "table", "json")
    p.set_defaults(func=status)

    p = subparsers.add_parser("best", help="the best config (values) and its metrics")
    add_study_args(p)
    add_format_arg(p, "table", "json", "yaml")
    p.set_defaults(func=best)

    p = subparsers.add_parser("trials", help="a row per trial, with each failure's kind and message")
    add_study_args(p)
    add_format_arg(p, "table", "csv", "json", "parquet")
    p.add_argument("--out", help="write to this file instead of stdout (needed for parquet)")
    p.add_argument("--columns", metavar="A,B,C", help="only these columns, in this order (a parameter by its "
                   "name or as params.NAME); every format")
    p.add_argument("--wide", action="store_true", help="table: every column, however wide (default: fit the "
                   "terminal, hiding the least telling columns)")
    p.add_argument("--warm-start", action="store_true", help="the trials copied from earlier studies "
                   "(search.warm_start) instead of the study's own")
    p.set_defaults(func=trials)

    p = subparsers.add_parser("studies", help="the studies in a storage")
    p.add_argument("--storage", help="storage URL or journal file (default: ./tunelab.journal)")
    add_format_arg(p, "table", "json")
    p.set_defaults(func=studies)


def status_payload(study: Any) -> dict[str, Any]:
    """What ``tunelab status`` says, as plain values."""
    from tunelab.failures import failure_groups
    from tunelab.proposals import duplicates_avoided

    trials = study.trials()
    states = collections.Counter(t.state.value for t in trials)
    best_trials = study.best_among(trials)
    return {
        "study": study.name,
        "trials": len(trials),
        "states": {s: states[s] for s in STATES if states.get(s)},
        "failures": [g.as_dict() for g in failure_groups(trials)],
        "best": [{"trial": b.number, "metrics": {m.name: b.metrics.get(m.name) for m in study.metrics.objectives}}
                 for b in best_trials],
        "seeds": (group.as_dict() if (group := study.best_seed_group(trials)) is not None else None),
        "compute_s": round(sum(t.duration or 0.0 for t in trials), 3),
        "duplicates_avoided": duplicates_avoided(study.optuna_study.get_trials(deepcopy=False)),
        "sampler": _sampler_shown(study),
    }


def _sampler_shown(study: Any) -> str | None:
    """The sampler of the study's last run; for ``auto``, what it chose and why."""
    from tunelab.samplers import stored_auto_choice
    from tunelab.study import STUDY_ATTR

    attrs = study.optuna_study.user_attrs
    sampler = (attrs.get(STUDY_ATTR) or {}).get("sampler")
    choice = stored_auto_choice(attrs)
    if choice is not None and (sampler is None or str(sampler).startswith("auto")):
        return choice.describe()
    return str(sampler) if sampler is not None else None


def status(args: argparse.Namespace) -> int:
    from tunelab.failures import cli_logs_hint, headline

    study = open_study(args)
    payload = status_payload(study)
    if args.format == "json":
        print(to_json(payload))
        return 0
    print(f"study {payload['study']}: {payload['trials']} trials"
          + (f", sampler {payload['sampler']}" if payload["sampler"] else ""))
    failures = payload["failures"]
    for state, count in payload["states"].items():
        line = f"  {state:<9}{count}"
        if state == "failed" and failures:
            line += "  (" + ", ".join(f"{g['kind']} {g['count']}" for g in failures) + ")"
        print(line)
    if payload["best"]:
        b = payload["best"][0]
        shown = ", ".join(f"{name} {fmt(value)}" for name, value in b["metrics"].items())
        print(f"  best     trial {b['trial']}: {shown}")
        if payload["seeds"]:
            print(f"  seeds    {_spread_text(payload['seeds'])} (best mean over seeds; trial {b['trial']} is its "
                  f"best seed)")
    print(f"  compute  {payload['compute_s']:.1f} s of trial time")
    if payload["duplicates_avoided"]:
        print(f"  repeats  {payload['duplicates_avoided']} proposed config(s) already tried were not run again")
    if failures:
        print("failures by kind (the latest of each):")
        width = max(len(g["kind"]) for g in failures)
        digits = max(len(str(g["count"])) for g in failures)
        for g in failures:
            print(f"  {g['kind']:<{width}}  {g['count']:>{digits}}  trial {g['latest_trial']}: "
                  f"{headline(g['latest_message'])} ({cli_logs_hint(g['latest_trial'])})")
    return 0


def _spread_text(seeds: dict[str, Any]) -> str:
    values = [s["value"] for s in seeds["seeds"]]
    return (f"mean {seeds['mean']:.4g} ± {seeds['std']:.2g} (sd) over {seeds['n']} seeds, "
            f"{min(values):.4g}..{max(values):.4g}")


def best_payload(study: Any) -> list[dict[str, Any]]:
    payload = [{"trial": t.number, "config": dict(t.config),
                "metrics": {k: t.metrics[k] for k in t.metrics}} for t in study.best_trials]
    group = study.best_seed_group()
    if group is not None and payload:  # seed repeats: the config without a seed, and every seed's value
        payload[0]["config"] = dict(group.config)
        payload[0]["seeds"] = group.as_dict()
    if any(t.parent is not None for t in study.best_trials):  # a PBT clone: how it got its config
        from tunelab.report.lineage import links_of, schedule

        links = links_of(study.optuna_study.get_trials(deepcopy=False))
        for entry in payload:
            segments = schedule(links, entry["trial"])
            if len(segments) > 1:
                entry["schedule"] = [{"trial": s.trial, "from_step": s.start, "to_step": s.end,
                                      "config": dict(s.config), "mutations": dict(s.mutations)} for s in segments]
    return payload


def print_schedule(entries: list[dict[str, Any]]) -> None:
    """The winner's hyperparameters by step along its lineage, then each exploit's change log."""
    from tunelab.report.lineage import Segment, changed_params

    segments = [Segment(e["trial"], e["from_step"], e["to_step"], e["config"], e["mutations"], None) for e in entries]
    names = changed_params(segments) or list(segments[-1].config)
    print("  schedule (hyperparameters by step, along its lineage):")
    rows = [["steps", "trial", *names]]
    for s in segments:
        end = "" if s.end is None else fmt(s.end)
        rows.append([f"{fmt(s.start)}-{end}", str(s.trial), *(fmt(s.config.get(n, "-")) for n in names)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("    " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
    for previous, s in zip(segments, segments[1:]):
        # No mutation: it continued a member its driver left (stopped or killed), with its config.
        verb = "cloned" if s.mutations else "continued"
        print(f"  step {fmt(s.start)}: trial {s.trial} {verb} trial {previous.trial}")
        for name, change in s.mutations.items():
            print(f"    {name}: {change}")


def print_best(study: Any, fmt_name: str) -> None:
    from tunelab.failures import no_best_reason

    payload = best_payload(study)
    if not payload:
        reason = no_best_reason(study.trials(), study.metrics)
        if fmt_name == "table":
            print(reason)
        else:
            print(reason, file=sys.stderr)  # stdout stays valid JSON/YAML: null
    if fmt_name == "json":
        print(to_json(payload if study.metrics.is_multi_objective else (payload[0] if payload else None)))
        return
    if fmt_name == "yaml":
        import yaml

        data = payload if study.metrics.is_multi_objective else (payload[0] if payload else None)
        print(yaml.safe_dump(data, sort_keys=False), end="")
        return
    title = "Pareto front" if study.metrics.is_multi_objective else "best trial"
    for entry in payload:
        print(f"{title}: trial {entry['trial']}")
        for name, value in entry["config"].items():
            print(f"  {name}: {fmt(value)}")
        print("  metrics: " + ", ".join(f"{k} {fmt(v)}" for k, v in entry["metrics"].items()))
        if entry.get("seeds"):
            print(f"  seeds: {_spread_text(entry['seeds'])}; trial {entry['trial']} is the best seed (export takes it)")
            for s in entry["seeds"]["seeds"]:
                print(f"    seed {s['seed']}: {fmt(s['value'])} (trial {s['trial']})")
        if entry.get("schedule"):
            print_schedule(entry["schedule"])


def best(args: argparse.Namespace) -> int:
    study = open_study(args)
    print_best(study, args.format)
    return 0 if study.best_trials else 1


#: Columns a table leaves out unless asked (--wide or --columns): they are in csv and json.
TABLE_HIDDEN = ("start", "end", "feasible", "parent", "retry_of")


def pick_columns(available: list[str], wanted: str | None) -> list[str]:
    """``--columns a,b``: row keys, a parameter by its bare name too; unknown names are an error."""
    if not wanted:
        return available
    picked = []
    for name in (n.strip() for n in wanted.split(",") if n.strip()):
        key = name if name in available else f"params.{name}"
        if key not in available:
            raise ConfigError("--columns", f"{name!r} is not a column of this study's trials.",
                              f"choose among {', '.join(available)}.")
        picked.append(key)
    return picked


def table_order(columns: list[str], primary: str) -> list[str]:
    """The table's columns: what a trial was and scored first, the failure (long) last."""
    rank = {"number": 0, "state": 1, primary: 2, f"best_{primary}": 4, "duration_s": 6, "slot": 7, "best_step": 8,
            "failure_kind": 9, "failure_message": 10}

    def key(c: str) -> tuple[int, int]:
        if c.startswith("params."):
            return 3, columns.index(c)
        return rank.get(c, 5), columns.index(c)

    return sorted(columns, key=key)


def drop_order(columns: list[str], rows: list[dict[str, Any]], primary: str) -> list[str]:
    """The order in which a narrow terminal hides columns: empty ones, then timings and links,
    metrics, parameters (the last first), and the failure last; never the number and state."""
    keep = {"number", "state"}
    empty = [c for c in columns if c not in keep and all(r.get(c) is None for r in rows)]
    tail = [c for c in (primary, "failure_kind", "failure_message") if c in columns and c not in empty]
    rest = [c for c in reversed(columns) if c not in keep and c not in empty and c not in tail]
    return empty + rest + tail


def print_trials_table(rows: list[dict[str, Any]], columns: list[str], primary: str, *, picked: bool,
                       wide: bool) -> None:
    from tunelab.failures import headline

    if not picked:
        columns = table_order([c for c in columns if wide or c not in TABLE_HIDDEN], primary)
    shown_rows = [{**r, "failure_message": headline(r.get("failure_message")) if r.get("failure_message") else None}
                  for r in rows]
    # A parameter's header is its name, as in the space (params.NAME where that is taken).
    titles = {c: c[len("params."):] for c in columns if c.startswith("params.") and c[len("params."):] not in columns}
    width = None if wide or picked else shutil.get_terminal_size().columns
    hidden = print_table(shown_rows, columns, width=width, headers=titles,
                         drop_order=drop_order(columns, rows, primary), shrinkable=["failure_message"])
    if hidden:
        names = ", ".join(titles.get(c, c) for c in hidden)
        print(f"({len(hidden)} column(s) hidden to fit {width} characters: {names}; --wide shows all, "
              "--columns picks)", file=sys.stderr)


def trials(args: argparse.Namespace) -> int:
    from tunelab.frame import trial_rows

    study = open_study(args)
    rows = trial_rows(study.warm_started() if args.warm_start else study.trials(), study.metrics)
    available = list(rows[0]) if rows else []
    columns = pick_columns(available, args.columns) if rows else []
    rows = [{c: r.get(c) for c in columns} for r in rows]
    out = open(args.out, "w", newline="") if args.out and args.format != "parquet" else sys.stdout
    try:
        if args.format == "json":
            print(to_json(rows), file=out)
        elif args.format == "csv":
            if rows:
                writer = csv.DictWriter(out, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows)
        elif args.format == "parquet":
            if not args.out:
                raise ConfigError("--out", "is needed for parquet (a binary format).", "add `--out trials.parquet`.")
            from tunelab.frame import parquet_ready

            frame = study.trials_frame()
            parquet_ready(frame[columns] if args.columns else frame).to_parquet(args.out)
        elif out is sys.stdout:
            print_trials_table(rows, columns, study.metrics.primary.name, picked=bool(args.columns), wide=args.wide)
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
        print(f"no storage at {url}", file=sys.stderr)
        return 1
    rows = []
    for s in optuna.get_all_study_summaries(open_storage(url), include_best_trial=False):
        rows.append({"study": s.study_name, "trials": s.n_trials,
                     "directions": [d.name.lower() for d in s.directions],
                     "started": s.datetime_start.isoformat(timespec="seconds") if s.datetime_start else None})
    if args.format == "json":
        print(to_json(rows))
    elif rows:
        print_table([{**r, "directions": ",".join(r["directions"])} for r in rows])
    else:
        print(f"no studies in {url}")
    return 0
