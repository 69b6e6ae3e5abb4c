"""The report's plots: one function per plot, each taking ``ReportData``, returning a ``Panel``.

A panel holds a Plotly figure, or ``None`` with a note saying why there is nothing to plot yet
(too few trials, a single-objective study, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tunelab.report.data import (BEST_COLOR, STATE_COLORS, ReportData, best_so_far, duration_text, finite,
                                 trial_value)
from tunelab.trial import State

if TYPE_CHECKING:
    import optuna
    import plotly.graph_objects as go

    from tunelab.study import TrialInfo

HEIGHT = 420


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    figure: "go.Figure | None"
    note: str = ""


def _layout(fig: "go.Figure", **extra: Any) -> "go.Figure":
    settings: dict[str, Any] = {"template": "plotly_white", "height": HEIGHT,
                                "margin": {"l": 60, "r": 30, "t": 40, "b": 50},
                                "legend": {"orientation": "h", "y": -0.18}}
    settings.update(extra)
    fig.update_layout(**settings)
    return fig


def _hover(t: "TrialInfo") -> str:
    state = t.state.value + (f": {t.failure_kind}" if t.failure_kind else "")
    params = "<br>".join(f"{k} = {v}" for k, v in t.config.items())
    return f"trial {t.number} ({state})<br>{params}"


# ---- optimization history ---------------------------------------------------------------------


def history(data: ReportData) -> Panel:
    """Each trial's objective and the best so far, against trial number and wall time."""
    from plotly.subplots import make_subplots
    import plotly.graph_objects as go

    objectives = data.metrics.objectives
    done = sorted((t for t in data.trials if t.state in (State.COMPLETE, State.PRUNED)), key=lambda t: t.number)
    if not any(trial_value(t, m.name) is not None for t in done for m in objectives):
        return Panel("history", "Optimization history", None, "No trial has reported a value yet.")
    scale, unit = time_unit(max((data.elapsed(t.end) or 0.0) for t in done))
    fig = make_subplots(rows=len(objectives), cols=2, shared_yaxes=True, horizontal_spacing=0.04,
                        vertical_spacing=0.12, column_titles=["by trial number", f"by wall time ({unit})"])
    shown: set[str] = set()
    for row, metric in enumerate(objectives, start=1):
        for col, x_of in ((1, lambda t: t.number), (2, lambda t: (data.elapsed(t.end) or 0.0) / scale)):
            ordered = done if col == 1 else sorted(done, key=lambda t: t.end or data.now)
            first = row == 1 and col == 1
            groups = (("complete trials", State.COMPLETE, True, "circle"),
                      ("complete, violates a constraint", State.COMPLETE, False, "circle-open"),
                      ("pruned trials", State.PRUNED, None, "x"))
            for label, state, feasible, symbol in groups:
                picked = [t for t in ordered if t.state == state and trial_value(t, metric.name) is not None
                          and (feasible is None or t.feasible == feasible)]
                if not picked:
                    continue
                fig.add_trace(go.Scatter(
                    x=[x_of(t) for t in picked], y=[trial_value(t, metric.name) for t in picked], mode="markers",
                    name=label, legendgroup=label, showlegend=label not in shown,
                    marker={"color": STATE_COLORS[state.value], "symbol": symbol, "size": 7,
                            "line": {"width": 1, "color": STATE_COLORS[state.value]}},
                    text=[_hover(t) for t in picked], hoverinfo="text+y"), row=row, col=col)
                shown.add(label)
            counted = [t for t in ordered if t.state == State.COMPLETE and t.feasible]
            best = best_so_far([trial_value(t, metric.name) for t in counted], metric.goal)
            if counted:
                fig.add_trace(go.Scatter(
                    x=[x_of(t) for t in counted], y=best, mode="lines", line={"shape": "hv", "color": BEST_COLOR},
                    name="best so far", legendgroup="best", showlegend=first), row=row, col=col)
        fig.update_yaxes(title_text=metric.name, row=row, col=1)
    return Panel("history", "Optimization history", _layout(fig, height=HEIGHT * len(objectives) ** 0.8))


# ---- sensitivity --------------------------------------------------------------------------------


def sensitivity(data: ReportData) -> Panel:
    """The objective against each parameter; pruned trials at their last value, failed ones below."""
    from plotly.subplots import make_subplots
    import plotly.graph_objects as go

    metric = data.primary
    params = data.searched_params()
    valued = [trial_value(t, metric.name) for t in data.trials if t.state != State.FAILED]
    values = [v for v in valued if v is not None]
    if not params or not values:
        return Panel("sensitivity", f"Sensitivity of {metric.name} to each parameter", None,
                     "No trial has reported a value yet.")
    low, high = min(values), max(values)
    floor = low - 0.08 * ((high - low) or abs(low) or 1.0)  # failed trials sit on a line below the data
    cols = min(3, len(params))
    rows = math.ceil(len(params) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=params, shared_yaxes=True,
                        horizontal_spacing=0.05, vertical_spacing=0.22 / max(1, rows - 1) if rows > 1 else 0.1)
    shown: set[str] = set()
    for i, param in enumerate(params):
        row, col = i // cols + 1, i % cols + 1
        groups = (
            ("complete", [t for t in data.trials if t.state == State.COMPLETE and t.feasible], "circle"),
            ("complete, violates a constraint",
             [t for t in data.trials if t.state == State.COMPLETE and not t.feasible], "circle-open"),
            ("pruned (last value)", [t for t in data.trials if t.state == State.PRUNED], "x"),
            ("failed", [t for t in data.trials if t.state == State.FAILED], "triangle-down"),
        )
        for label, group, symbol in groups:
            group = [t for t in group if t.config.get(param) is not None]
            ys = [floor if label == "failed" else trial_value(t, metric.name) for t in group]
            kept = [(t, y) for t, y in zip(group, ys) if y is not None]
            if not kept:
                continue
            color = STATE_COLORS[label.split(" ")[0].rstrip(",")]
            fig.add_trace(go.Scatter(
                x=[_x_value(data, param, t.config[param]) for t, _ in kept], y=[y for _, y in kept],
                mode="markers", name=label, legendgroup=label, showlegend=label not in shown,
                marker={"color": color, "symbol": symbol, "size": 8, "opacity": 0.85},
                text=[_hover(t) for t, _ in kept], hoverinfo="text" if label == "failed" else "text+y"),
                row=row, col=col)
            shown.add(label)
        if data.is_log(param):
            fig.update_xaxes(type="log", row=row, col=col)
        elif data.is_choice(param):
            fig.update_xaxes(type="category", categoryorder="array", categoryarray=_choices(data, param),
                             row=row, col=col)
    fig.update_yaxes(title_text=metric.name, col=1)
    note = "Log axis for log-scaled parameters. Failed trials are drawn on a line below the data." \
        if any(t.state == State.FAILED for t in data.trials) else "Log axis for log-scaled parameters."
    return Panel("sensitivity", f"Sensitivity of {metric.name} to each parameter",
                 _layout(fig, height=max(HEIGHT, 300 * rows + 120)), note)


def _x_value(data: ReportData, param: str, value: Any) -> Any:
    return str(value) if data.is_choice(param) else value


def _choices(data: ReportData, param: str) -> list[str]:
    """A choice parameter's values as labels, in the space's order (then any others, sorted)."""
    spec = data.space.get(param)
    labels = [str(v) for v in spec["choice"]] if isinstance(spec, dict) and "choice" in spec else []
    seen = {str(t.config[param]) for t in data.trials if t.config.get(param) is not None}
    return labels + sorted(seen - set(labels))


def time_unit(seconds: float) -> tuple[float, str]:
    """(divisor, name) to show a span of ``seconds`` in readable numbers."""
    if seconds < 120:
        return 1.0, "seconds"
    return (60.0, "minutes") if seconds < 7200 else (3600.0, "hours")


def log_ticks(low: float, high: float) -> list[float]:
    """Tick positions (log10) at 1, 2 and 5 times powers of ten within [low, high] (log10 values)."""
    steps = (1, 2, 5) if high - low <= 3 else (1,)  # over many decades, 2 and 5 only crowd the axis
    ticks = [math.log10(m * 10.0 ** k) for k in range(math.floor(low), math.ceil(high) + 1) for m in steps]
    inside = [t for t in ticks if low - 1e-9 <= t <= high + 1e-9]
    return inside if len(inside) >= 2 else [low, high]


# ---- parallel coordinates -------------------------------------------------------------------


def parallel_coordinates(data: ReportData) -> Panel:
    """Complete trials as lines across every parameter and the objective."""
    import plotly.graph_objects as go

    metric = data.primary
    trials = [t for t in data.trials if t.state == State.COMPLETE and finite(t.metrics.get(metric.name))]
    params = data.searched_params()
    if len(trials) < 2 or not params:
        return Panel("parallel", "Parallel coordinates", None, "Needs at least two complete trials.")
    dimensions = []
    for param in params:
        raw = [t.config.get(param) for t in trials]
        if data.is_choice(param):
            labels = _choices(data, param)
            codes = {label: i for i, label in enumerate(labels)}
            dimensions.append({"label": param, "values": [codes[str(v)] for v in raw],
                               "tickvals": list(range(len(labels))), "ticktext": labels})
        elif data.is_log(param):
            logs = [math.log10(v) if finite(v) and v > 0 else None for v in raw]
            present = [v for v in logs if v is not None]
            ticks = log_ticks(min(present), max(present)) if present else []
            dimensions.append({"label": f"{param} (log)", "values": logs, "tickvals": ticks,
                               "ticktext": [f"{10 ** k:.3g}" for k in ticks]})
        else:
            dimensions.append({"label": param, "values": raw})
    objective = [float(t.metrics[metric.name]) for t in trials]
    dimensions.append({"label": metric.name, "values": objective})
    fig = go.Figure(go.Parcoords(
        dimensions=dimensions,
        line={"color": objective, "colorscale": "Viridis", "showscale": True,
              "reversescale": metric.goal == "minimize", "colorbar": {"title": {"text": metric.name}, "x": 1.06}}))
    return Panel("parallel", "Parallel coordinates", _layout(fig, margin={"l": 80, "r": 110, "t": 60, "b": 40}),
                 "Complete trials; the color is the objective.")


# ---- parameter importance -----------------------------------------------------------------


def importance(data: ReportData, study: "optuna.Study | None") -> Panel:
    """Optuna's fANOVA importance of each parameter for the first objective."""
    import plotly.graph_objects as go

    title = f"Parameter importance for {data.primary.name}"
    complete = [t for t in data.trials if t.state == State.COMPLETE]
    if study is None or len(complete) < 3:
        return Panel("importance", title, None, "Needs at least three complete trials.")
    scores, evaluator = param_importances(study)
    if not scores:
        return Panel("importance", title, None, f"Not computable yet ({evaluator}).")
    names = list(scores)[::-1]  # the most important at the top
    fig = go.Figure(go.Bar(x=[scores[n] for n in names], y=names, orientation="h", marker={"color": "#1f77b4"},
                           text=[f"{scores[n]:.2f}" for n in names], textposition="auto", name="importance"))
    fig.update_xaxes(title_text="importance (sums to 1)", range=[0, 1])
    return Panel("importance", title, _layout(fig, height=max(260, 60 + 40 * len(names)), showlegend=False),
                 f"Evaluator: {evaluator}, on the complete trials.")


def param_importances(study: "optuna.Study") -> tuple[dict[str, float], str]:
    """(importances, evaluator name); fANOVA needs scikit-learn, PED-ANOVA does not."""
    import optuna

    try:
        import sklearn  # noqa: F401

        evaluator: Any = optuna.importance.FanovaImportanceEvaluator(seed=0)
        name = "fANOVA"
    except ImportError:
        evaluator = optuna.importance.PedAnovaImportanceEvaluator()
        name = "PED-ANOVA"
    target = (lambda t: t.values[0]) if len(study.directions) > 1 else None
    try:
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator, target=target)), name
    except Exception as exc:  # noqa: BLE001 - too few trials, a single value, one param: nothing to rank
        return {}, f"{name}: {exc}"


# ---- learning curves ----------------------------------------------------------------------


def learning_curves(data: ReportData) -> Panel:
    """Every trial's reported objective against its step; pruned trials dashed, failed dotted."""
    import plotly.graph_objects as go

    metric = data.primary
    styles = {"complete": "solid", "pruned": "dash", "failed": "dot", "running": "solid", "waiting": "solid"}
    fig = go.Figure()
    for state in ("complete", "pruned", "failed", "running"):
        xs: list[Any] = []
        ys: list[Any] = []
        texts: list[str] = []
        for t in data.trials:
            if t.state.value != state:
                continue
            points = [(r.step, r.metrics[metric.name]) for r in t.history if finite(r.metrics.get(metric.name))]
            if not points:
                continue
            xs += [p[0] for p in points] + [None]  # one trace per state: None breaks the line between trials
            ys += [p[1] for p in points] + [None]
            label = f"trial {t.number} ({state}{': ' + t.failure_kind if t.failure_kind else ''})"
            texts += [label] * len(points) + [""]
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, text=texts, mode="lines+markers", name=f"{state} trials",
                                     hoverinfo="text+x+y", line={"color": STATE_COLORS[state], "dash": styles[state],
                                                                 "width": 1.5},
                                     marker={"size": 4}, opacity=0.8 if state != "complete" else 0.9,
                                     connectgaps=False))
    if not fig.data:
        return Panel("curves", "Learning curves", None, f"No trial reported `{metric.name}` during training.")
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text=metric.name)
    return Panel("curves", "Learning curves", _layout(fig), f"`{metric.name}` as each trial reported it.")


# ---- Pareto front --------------------------------------------------------------------------


def pareto(data: ReportData) -> Panel | None:
    """The first two objectives of complete trials; the front joined, constraint violations crossed."""
    import plotly.graph_objects as go

    objectives = data.metrics.objectives
    if len(objectives) < 2:
        return None
    a, b = objectives[0].name, objectives[1].name
    title = f"Pareto front: {a} and {b}"
    complete = [t for t in data.trials if t.state == State.COMPLETE and finite(t.metrics.get(a))
                and finite(t.metrics.get(b))]
    if not complete:
        return Panel("pareto", title, None, "No complete trial yet.")
    front = {t.number for t in data.best}
    fig = go.Figure()
    groups = (("dominated", [t for t in complete if t.feasible and t.number not in front], "circle", "#1f77b4"),
              ("violates a constraint", [t for t in complete if not t.feasible], "x", STATE_COLORS["failed"]),
              ("Pareto front", sorted((t for t in complete if t.number in front), key=lambda t: t.metrics[a]),
               "diamond", BEST_COLOR))
    for label, group, symbol, color in groups:
        if group:
            fig.add_trace(go.Scatter(
                x=[t.metrics[a] for t in group], y=[t.metrics[b] for t in group], name=label,
                mode="lines+markers" if label == "Pareto front" else "markers",
                line={"shape": "hv", "color": color}, marker={"symbol": symbol, "size": 9, "color": color},
                text=[_hover(t) for t in group], hoverinfo="text+x+y"))
    fig.update_xaxes(title_text=f"{a} ({objectives[0].goal})")
    fig.update_yaxes(title_text=f"{b} ({objectives[1].goal})")
    note = "Feasible complete trials; trials that break a constraint are crossed and never on the front."
    if len(objectives) > 2:
        note += f" The study has {len(objectives)} objectives; the first two are shown."
    return Panel("pareto", title, _layout(fig), note)


# ---- timeline ------------------------------------------------------------------------------


def timeline(data: ReportData) -> Panel:
    """A bar per trial, per worker slot, from its start to its end."""
    import plotly.graph_objects as go

    placed = [t for t in data.trials if t.slot is not None and t.start is not None]
    if not placed:
        return Panel("timeline", "Timeline of trials per worker", None, "No trial has started yet.")
    scale, unit = time_unit(max((data.elapsed(t.end or data.now) or 0.0) for t in placed))
    fig = go.Figure()
    for state in ("complete", "pruned", "failed", "running"):
        group = [t for t in placed if t.state.value == state]
        if not group:
            continue
        starts = [(data.elapsed(t.start) or 0.0) / scale for t in group]
        ends = [(data.elapsed(t.end or data.now) or 0.0) / scale for t in group]
        fig.add_trace(go.Bar(
            base=starts, x=[max(e - s, 1e-6) for s, e in zip(starts, ends)], y=[f"slot {t.slot}" for t in group],
            orientation="h", name=f"{state} trials", marker={"color": STATE_COLORS[state],
                                                          "line": {"color": "white", "width": 1}},
            text=[str(t.number) for t in group], textposition="inside", insidetextanchor="middle",
            hovertext=[f"trial {t.number} ({t.state.value}{': ' + t.failure_kind if t.failure_kind else ''}), "
                       f"{(e - s) * scale:.1f} s" for t, s, e in zip(group, starts, ends)], hoverinfo="text"))
    slots = sorted({t.slot for t in placed})
    wall = max((data.elapsed(t.end or data.now) or 0.0) for t in placed)
    busy = sum(max(0.0, (data.elapsed(t.end or data.now) or 0.0) - (data.elapsed(t.start) or 0.0)) for t in placed)
    use = busy / (wall * len(slots)) if wall > 0 else 0.0
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title_text=f"{unit} since the first trial started")
    fig.update_yaxes(categoryorder="array", categoryarray=[f"slot {s}" for s in reversed(slots)])
    return Panel("timeline", "Timeline of trials per worker", _layout(fig, height=max(260, 120 + 45 * len(slots))),
                 f"{len(slots)} worker slot(s) busy {use:.0%} of {duration_text(wall)} of wall time.")


def all_panels(data: ReportData, study: "optuna.Study | None") -> list[Panel]:
    from tunelab.report.pbt_view import pbt_panels

    panels: list[Panel | None] = [history(data), sensitivity(data), parallel_coordinates(data),
                                  importance(data, study), learning_curves(data), *pbt_panels(data), pareto(data),
                                  timeline(data)]
    return [p for p in panels if p is not None]


__all__ = ["Panel", "all_panels", "history", "sensitivity", "parallel_coordinates", "importance",
           "param_importances", "learning_curves", "pareto", "timeline"]
