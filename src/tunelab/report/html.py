"""One self-contained HTML report: a summary, then every plot; plotly.js inlined once, no CDN.

The file opens offline from anywhere (e-mail it, attach it to an MLflow run). While a study runs,
``live=True`` adds a banner and reloads the page every ``refresh_s`` seconds.
"""

from __future__ import annotations

import collections
import html
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from tunelab.failures import failure_groups, headline, no_best_reason
from tunelab.report.data import ReportData, duration_text, fmt
from tunelab.trial import State
from tunelab.report.figures import Panel, all_panels

if TYPE_CHECKING:
    from tunelab.study import StudyView

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#24323f;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#c9d3dc;font-size:13px}
nav{padding:8px 32px;background:#eef1f4;font-size:14px}nav a{margin-right:14px;color:#24527a}
main{padding:8px 32px 40px;max-width:1400px}
section{background:#fff;border:1px solid #e2e5e9;border-radius:6px;margin:18px 0;padding:14px 18px}
h2{font-size:18px;margin:0 0 6px}.note{color:#666;font-size:13px;margin:2px 0 8px}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:8px 0 14px}
.card{border:1px solid #e2e5e9;border-radius:6px;padding:8px 14px;min-width:120px}
.card b{display:block;font-size:20px}.card span{color:#666;font-size:12px}
table{border-collapse:collapse;font-size:13px;margin:6px 0 10px}
td,th{border-bottom:1px solid #eee;padding:3px 10px;text-align:left}th{background:#f4f6f8}
.live{background:#fff4d6;border:1px solid #f0d38a;padding:8px 14px;border-radius:6px;margin-top:14px}
.empty{color:#888;font-style:italic;padding:24px 0}
table.failures td{vertical-align:top}pre{white-space:pre-wrap;margin:4px 0;font-size:12px}
"""

MAX_TABLE_ROWS = 500


def render_html(study: "StudyView", *, live: bool = False, refresh_s: int = 30) -> str:
    """The report as one HTML string."""
    data = ReportData.from_study(study)
    return render_data(data, all_panels(data, study.optuna_study), live=live, refresh_s=refresh_s)


def write_report(study: "StudyView", path: str | Path, *, live: bool = False) -> Path:
    """Write the report to ``path``, atomically (a reader never sees half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = render_html(study, live=live)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def render_data(data: ReportData, panels: Sequence[Panel], *, live: bool = False, refresh_s: int = 30) -> str:
    from plotly.offline import get_plotlyjs

    from tunelab import __version__

    e = html.escape
    head = [f"<meta charset='utf-8'><title>{e(data.name)}: tunelab report</title>",
            "<meta name='viewport' content='width=device-width, initial-scale=1'>", f"<style>{_CSS}</style>"]
    if live:
        head.append(f"<meta http-equiv='refresh' content='{int(refresh_s)}'>")
    generated = data.now.isoformat(sep=" ", timespec="seconds")
    nav = "".join(f"<a href='#{p.key}'>{e(p.title)}</a>" for p in panels)
    failures = _failures(data)
    if failures:
        nav = "<a href='#failures'>Failures</a>" + nav
    body = [f"<header><h1>{e(data.name)}</h1><p>tunelab {e(__version__)} report, generated {generated}</p></header>",
            f"<nav><a href='#summary'>Summary</a>{nav}<a href='#trials'>Trials</a></nav><main>"]
    if live:
        body.append(f"<div class='live'>The study is running: this page reloads every {int(refresh_s)} s.</div>")
    body.append(_summary(data))
    body.append(_seeds(data))
    body.append(failures)
    for panel in panels:
        body.append(f"<section id='{panel.key}'><h2>{e(panel.title)}</h2>")
        if panel.note:
            body.append(f"<p class='note'>{e(panel.note)}</p>")
        if panel.figure is None:
            body.append("<div class='empty'>Nothing to plot yet.</div>")
        else:
            body.append(panel.figure.to_html(full_html=False, include_plotlyjs=False, div_id=f"plot-{panel.key}",
                                             config={"displaylogo": False, "responsive": True}))
        body.append("</section>")
    body.append(_trials_table(data))
    body.append("</main>")
    # plotly.js once, inline, before the plots: the file must work with no network at all.
    return ("<!DOCTYPE html>\n<html lang='en'><head>" + "".join(head)
            + f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            + "\n".join(body) + "</body></html>\n")


def _summary(data: ReportData) -> str:
    e = html.escape
    trials = data.trials
    states = collections.Counter(t.state.value for t in trials)
    kinds = collections.Counter(t.failure_kind for t in trials if t.failure_kind)
    compute = sum(t.duration or 0.0 for t in trials)
    ends = [t.end for t in trials if t.end is not None]
    wall = (max(ends) - data.started).total_seconds() if ends and data.started else 0.0
    cards = [("trials", str(len(trials)))] + [(s, str(states[s])) for s in ("complete", "pruned", "failed", "running")
                                              if states.get(s)]
    cards += [("compute time", duration_text(compute)), ("wall time", duration_text(wall))]
    best = data.best
    if best and data.seed_groups and any(g.best.number == best[0].number for g in data.seed_groups):
        group = next(g for g in data.seed_groups if g.best.number == best[0].number)
        cards.insert(0, (f"best {data.primary.name}, mean over {len(group.trials)} seeds",
                         f"{group.mean:.4g} ± {group.std:.2g}"))
    elif best and not data.metrics.is_multi_objective:
        cards.insert(0, (f"best {data.primary.name}", fmt(best[0].metrics.get(data.primary.name))))
    out = ["<section id='summary'><h2>Summary</h2><div class='cards'>"]
    out += [f"<div class='card'><b>{e(v)}</b><span>{e(k)}</span></div>" for k, v in cards]
    out.append("</div>")
    if best:
        title = "Pareto front" if data.metrics.is_multi_objective else f"Best trial: {best[0].number}"
        params = list(best[0].config)
        metric_names = [m.name for m in data.metrics.metrics]
        rows = [[t.number, *[t.config.get(p) for p in params], *[t.metrics.get(m) for m in metric_names]]
                for t in best[:50]]
        out.append(f"<h3>{e(title)}</h3>" + _table(["trial", *params, *metric_names], rows))
    else:
        reason = no_best_reason(trials, data.metrics, see="the failures below")
        out.append(f"<p class='note'>{e(reason[:1].upper() + reason[1:])}.</p>")
    by_state = [[s, states[s], ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) if s == "failed" else ""]
                for s in ("complete", "pruned", "failed", "running", "waiting") if states.get(s)]
    out.append("<h3>Trials by state</h3>" + _table(["state", "trials", "failure kinds"], by_state))
    settings = [["metrics", "; ".join(_metric_text(m) for m in data.metrics.metrics)]]
    settings += [[k, data.meta[k]] for k in ("sampler", "seed", "scheduler") if k in data.meta]
    settings += [["space", "; ".join(f"{k}: {json.dumps(v, default=str)}" for k, v in data.space.items())]]
    out.append("<h3>Set-up</h3>" + _table(["", ""], settings, header=False) + "</section>")
    return "".join(out)


def _seeds(data: ReportData) -> str:
    """Each repeated config's seeds (``search.repeats``): value per seed, mean and spread."""
    if not data.seed_groups:
        return ""
    e = html.escape
    rows = []
    for i, g in enumerate(data.seed_groups):
        seeds = ", ".join(f"seed {s}: {v:.4g} (trial {t.number})" for t, s, v in zip(g.trials, g.seeds, g.values))
        rows.append([("best: " if i == 0 and len(g.trials) > 1 else "") + json.dumps(dict(g.config), default=str),
                     len(g.trials), f"{g.mean:.4g}", f"{g.std:.2g}", f"{min(g.values):.4g}..{max(g.values):.4g}",
                     seeds])
    return (f"<section id='seeds'><h2>Seeds of each repeated config</h2><p class='note'>The best configs of the "
            f"search trained again with other seeds; the best config is the best mean of "
            f"{e(data.primary.name)}, and its best seed's trial is the one <code>tunelab export</code> takes.</p>"
            + _table(["config", "seeds", "mean", "sd", "range", f"{data.primary.name} by seed"], rows) + "</section>")


def _failures(data: ReportData) -> str:
    """Failures by kind (count, the latest message), then each failed trial with its message:
    the first line, the whole message a click away."""
    e = html.escape
    groups = failure_groups(data.trials)
    if not groups:
        return ""
    by_kind = _table(["kind", "trials", "latest trial", "latest message"],
                     [[g.kind, g.count, g.latest_trial, g.latest_headline] for g in groups])
    failed = sorted((t for t in data.trials if t.state == State.FAILED), key=lambda t: t.number)
    shown = failed[-MAX_TABLE_ROWS:]
    rows = []
    for t in shown:
        first, whole = headline(t.message), (t.message or "").strip()
        cell = e(first) if whole == first or not whole else (
            f"<details><summary>{e(first)}</summary><pre>{e(whole)}</pre></details>")
        rows.append(f"<tr><td>{t.number}</td><td>{e(t.failure_kind or 'crash')}</td><td>{cell}</td></tr>")
    more = f" (the last {MAX_TABLE_ROWS} of {len(failed)})" if len(failed) > len(shown) else ""
    return (f"<section id='failures'><h2>Failures</h2><p class='note'>{len(failed)} failed trial(s). "
            f"<code>tunelab logs N</code> prints a trial's whole log.</p><h3>By kind</h3>{by_kind}"
            f"<h3>Failed trials{more}</h3><table class='failures'><tr><th>trial</th><th>kind</th><th>message</th>"
            f"</tr>{''.join(rows)}</table></section>")


def _metric_text(m: Any) -> str:
    if m.strategy == "optimize":
        return f"{m.name} ({m.goal})"
    if m.strategy == "constraint":
        bounds = " and ".join(b for b in (f">= {m.min:g}" if m.min is not None else "",
                                          f"<= {m.max:g}" if m.max is not None else "") if b)
        return f"{m.name} (constraint {bounds})"
    return f"{m.name} (stored)"


def _trials_table(data: ReportData) -> str:
    from tunelab.frame import trial_rows

    rows = trial_rows(sorted(data.trials, key=lambda t: t.number), data.metrics)
    for row in rows:  # one line per trial here; the Failures section has the whole message
        if row.get("failure_message"):
            row["failure_message"] = headline(row["failure_message"])
    shown = rows[-MAX_TABLE_ROWS:]
    columns = [c for c in (rows[0] if rows else {}) if c not in ("start", "end", "feasible", "retry_of")]
    more = f" (the last {MAX_TABLE_ROWS} of {len(rows)})" if len(rows) > len(shown) else ""
    return (f"<section id='trials'><h2>Trials{more}</h2><details><summary>Show the table</summary>"
            + _table(columns, [[r.get(c) for c in columns] for r in shown]) + "</details></section>")


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]], header: bool = True) -> str:
    e = html.escape
    head = "<tr>" + "".join(f"<th>{e(str(c))}</th>" for c in columns) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{e(fmt(v))}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"
