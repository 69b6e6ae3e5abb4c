"""The report's PBT view: each member's hyperparameters over steps, and the lineage of exploits.

Shown only for a study where some trial is a clone (``ReportData.links`` has a parent). A member
trains steps ``(start, end]``: from 0, or from the step of the checkpoint it was cloned from, to
its last report. The best trial's lineage is drawn in the best color in both plots.
"""

from __future__ import annotations

from tunelab.report.data import BEST_COLOR, STATE_COLORS, ReportData, fmt
from tunelab.report.figures import Panel, _layout
from tunelab.report.lineage import Link, exploits, lineage

MAX_PARAMS = 6  # rows of the schedule plot; more would be unreadable


def pbt_panels(data: ReportData) -> list[Panel]:
    """The two PBT panels, or none when no trial was cloned."""
    if not exploits(data.links):
        return []
    return [schedule_panel(data), lineage_panel(data)]


def _span(link: Link) -> tuple[float, float] | None:
    if link.last_step is None:
        return None
    start = link.parent_step if link.parent_step is not None else 0.0
    return start, link.last_step


def _best_line(data: ReportData) -> set[int]:
    if not data.best:
        return set()
    return {link.number for link in lineage(data.links, data.best[0].number)}


def _states(data: ReportData) -> dict[int, str]:
    return {t.number: t.state.value for t in data.trials}


def schedule_panel(data: ReportData) -> Panel:
    """One row per mutated parameter: each member's value over the steps it trained."""
    from plotly.subplots import make_subplots
    import plotly.graph_objects as go

    params = [p for p in data.searched_params()
              if len({repr(link.config.get(p)) for link in data.links.values() if p in link.config}) > 1]
    if not params:
        return Panel("pbt-schedule", "PBT: hyperparameters over steps", None, "No hyperparameter changed.")
    dropped = params[MAX_PARAMS:]
    params = params[:MAX_PARAMS]
    best = _best_line(data)
    states = _states(data)
    fig = make_subplots(rows=len(params), cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=params)
    legend: set[str] = set()
    for row, param in enumerate(params, start=1):
        for number, link in sorted(data.links.items()):
            span = _span(link)
            if span is None or param not in link.config:
                continue
            value = link.config[param]
            y = value if isinstance(value, (int, float)) and not data.is_choice(param) else str(value)
            on_best = number in best
            label = "best trial's lineage" if on_best else "members"
            hover = f"trial {number} ({states.get(number, '?')}): {param} = {fmt(value)}"
            if link.mutations.get(param):
                hover += f"<br>{param}: {link.mutations[param]}"
            fig.add_trace(go.Scatter(
                x=list(span), y=[y, y], mode="lines+markers", name=label, legendgroup=label,
                showlegend=label not in legend, text=[hover, hover], hoverinfo="text",
                line={"color": BEST_COLOR if on_best else STATE_COLORS["complete"], "width": 3 if on_best else 1.5},
                marker={"size": 5}, opacity=1.0 if on_best else 0.6), row=row, col=1)
            legend.add(label)
            parent = data.links.get(link.parent) if link.parent is not None else None
            if parent is not None and param in parent.config:  # the jump at the exploit
                old = parent.config[param]
                y_old = old if isinstance(old, (int, float)) and not data.is_choice(param) else str(old)
                fig.add_trace(go.Scatter(
                    x=[span[0], span[0]], y=[y_old, y], mode="lines", showlegend=False, hoverinfo="skip",
                    line={"color": BEST_COLOR if on_best else STATE_COLORS["pruned"], "dash": "dot", "width": 1}),
                    row=row, col=1)
        if data.is_log(param):
            fig.update_yaxes(type="log", row=row, col=1)
    fig.update_xaxes(title_text="step", row=len(params), col=1)
    note = "Each member's value while it trained; dotted: the change at an exploit."
    if dropped:
        note += f" Not shown: {', '.join(dropped)}."
    return Panel("pbt-schedule", "PBT: hyperparameters over steps",
                 _layout(fig, height=max(300, 60 + 190 * len(params))), note)


def lineage_panel(data: ReportData) -> Panel:
    """Each member as a bar over the steps it trained; an arrow from the member it cloned."""
    import plotly.graph_objects as go

    best = _best_line(data)
    states = _states(data)
    fig = go.Figure()
    legend: set[str] = set()
    for number, link in sorted(data.links.items()):
        span = _span(link)
        if span is None:
            continue
        on_best = number in best
        label = "best trial's lineage" if on_best else f"{states.get(number, '?')} members"
        color = BEST_COLOR if on_best else STATE_COLORS.get(states.get(number, ""), "#888")
        hover = f"trial {number} ({states.get(number, '?')}), steps {fmt(span[0])}-{fmt(span[1])}"
        fig.add_trace(go.Scatter(x=list(span), y=[number, number], mode="lines+markers", name=label,
                                 legendgroup=label, showlegend=label not in legend, text=[hover, hover],
                                 hoverinfo="text", line={"color": color, "width": 4 if on_best else 2}))
        legend.add(label)
    for clone in exploits(data.links):
        span = _span(clone)
        parent = data.links.get(clone.parent) if clone.parent is not None else None
        if span is None or parent is None:
            continue
        changes = "<br>".join(f"{k}: {v}" for k, v in clone.mutations.items()) or "no mutation (continued)"
        verb = "cloned" if clone.mutations else "continued"
        hover = f"step {fmt(span[0])}: trial {clone.number} {verb} trial {parent.number}<br>{changes}"
        on_best = clone.number in best
        fig.add_trace(go.Scatter(
            x=[span[0], span[0]], y=[parent.number, clone.number], mode="lines+markers", name="exploits",
            legendgroup="exploits", showlegend="exploits" not in legend, text=[hover, hover], hoverinfo="text",
            line={"color": BEST_COLOR if on_best else "#555", "dash": "dot", "width": 1.5},
            marker={"symbol": ["circle", "triangle-up" if clone.number > parent.number else "triangle-down"],
                    "size": [4, 9]}))
        legend.add("exploits")
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="trial", autorange="reversed")
    count = len(exploits(data.links))
    return Panel("pbt-lineage", "PBT: lineage of exploits", _layout(fig, height=max(300, 80 + 22 * len(data.links))),
                 f"{count} exploit(s): a clone starts from its parent's checkpoint at the step of the arrow.")
