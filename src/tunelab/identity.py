"""A study's identity: what question its trials answer.

The identity is a flat, JSON-able mapping of readable keys to readable values::

    {"space.x": "float [-5, 5]", "metrics.loss.goal": "minimize", "objective.function": "train:fit", ...}

It covers the space (each parameter's kind, bounds, log, step, choices, condition, fixed value),
the metrics (names, goals, strategies, bounds, which are optimized and in which order) and the
objective (a function's ``module:qualname`` and source file; a command's argv template and
regexes; a text-classification objective's model, data and settings). It is stored with the
study (study user attr ``tunelab.identity``); a run whose identity differs stops before any
work and names each change, unless ``on_change`` says to ``restart`` or ``continue``.

A function's source code is deliberately not part of it: fixing a bug in an objective must not
turn a study into a different one. Where an objective runs (``cwd``, ``env``, ``device``, the
token cache) is not part of it either.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from tunelab.errors import ConfigError

if TYPE_CHECKING:
    from tunelab.metrics import MetricSet
    from tunelab.space import Space

IDENTITY_ATTR = "tunelab.identity"
ON_CHANGE = ("error", "restart", "continue")
#: Bumped when the keys' meaning changes; an identity of another version is replaced, not compared.
VERSION = 1
_SHOWN_CHANGES = 8


def parse_on_change(value: Any, field: str = "on_change") -> str:
    if not isinstance(value, str) or value not in ON_CHANGE:
        raise ConfigError(field, f"is {value!r}, but must be one of {list(ON_CHANGE)}.",
                          "use `error` (the default: stop when the study's definition changed), `restart` "
                          "(start the study over) or `continue` (keep its trials).")
    return value


# ---- building ---------------------------------------------------------------------------------


def study_identity(space: "Space", metrics: "MetricSet", objective: Any, base_dir: Path | None = None) -> dict[str, str]:
    """The identity of a study definition (see the module docstring)."""
    out: dict[str, str] = {"version": str(VERSION)}
    out.update(space_identity(space))
    out.update(metrics_identity(metrics))
    out.update({f"objective.{k}": v for k, v in objective_identity(objective, base_dir).items()})
    return out


def space_identity(space: "Space") -> dict[str, str]:
    from tunelab.space import Choice, Fixed, Float

    out: dict[str, str] = {}
    for name, p in space.params.items():
        if isinstance(p, Fixed):
            out[f"space.{name}"] = f"fixed {_json(p.value)}"
            continue
        if isinstance(p, Choice):
            text = f"choice {_json(list(p.choices))}"
        else:
            text = f"{'float' if isinstance(p, Float) else 'int'} [{_num(p.low)}, {_num(p.high)}]"
            if p.log:
                text += " log"
            if p.step is not None and not (not isinstance(p, Float) and p.step == 1):
                text += f" step {_num(p.step)}"
        if p.when:
            text += f" when {_json(dict(p.when))}"
        out[f"space.{name}"] = text
    return out


def metrics_identity(metrics: "MetricSet") -> dict[str, str]:
    out: dict[str, str] = {"metrics.optimized": ", ".join(m.name for m in metrics.objectives)}
    for m in metrics.metrics:
        out[f"metrics.{m.name}.strategy"] = m.strategy
        if m.strategy == "optimize":
            out[f"metrics.{m.name}.goal"] = str(m.goal)
        for key in ("min", "max"):
            if getattr(m, key) is not None:
                out[f"metrics.{m.name}.{key}"] = _num(getattr(m, key))
    return out


def objective_identity(objective: Any, base_dir: Path | None = None) -> dict[str, str]:
    """What names an objective; a function's code is left out on purpose (see the module docstring)."""
    from tunelab.objectives.command import CommandObjective
    from tunelab.objectives.function import FunctionObjective
    from tunelab.objectives.text_classification import TextClassification

    if isinstance(objective, FunctionObjective):
        out = {"type": "function", "function": objective.reference}
        try:
            source = source_file(objective.load(), base_dir)
        except ConfigError:
            source = None
        if source:
            out["file"] = source
        return out
    if isinstance(objective, CommandObjective):
        out = {"type": "command", "command": _json(list(objective.command))}
        for name, pattern in getattr(objective, "patterns", {}).items():
            out[f"metrics.{name}"] = getattr(pattern, "pattern", str(pattern))
        step = getattr(objective, "step_pattern", None)
        if step is not None:
            out["step_regex"] = getattr(step, "pattern", str(step))
        return out
    if isinstance(objective, TextClassification):
        return _text_classification_identity(objective, base_dir)
    out = {"type": "function", "function": callable_name(objective)}
    source = source_file(objective, base_dir)
    if source:
        out["file"] = source
    return out


def _text_classification_identity(objective: Any, base_dir: Path | None) -> dict[str, str]:
    from dataclasses import fields

    out = {"type": "text_classification"}
    model = objective.model
    out["model"] = _json(dict(model)) if isinstance(model, Mapping) else _path(str(model), base_dir)
    if objective.model_kwargs:
        out["model_kwargs"] = _json(dict(objective.model_kwargs))
    data = objective.data
    for f in fields(data):
        value = getattr(data, f.name)
        if value is None:
            continue
        if f.name in ("train", "validation", "test"):
            value = _path(str(value), base_dir)
        out[f"data.{f.name}"] = value if isinstance(value, str) else _json(value)
    # Settings that change what a trial computes; where it runs (device, cache) does not.
    for name in ("max_length", "eval_steps", "evals_per_epoch", "per_device_eval_batch_size",
                 "freeze_embeddings", "fast_path"):
        value = getattr(objective, name, None)
        if value is not None:
            out[name] = _json(value)
    for name, value in sorted(dict(objective.defaults or {}).items()):
        out[f"defaults.{name}"] = _json(value)
    return out


def callable_name(fn: Any) -> str:
    """``module:qualname`` of a function (of the class, for a callable object; unwraps partials)."""
    import functools

    while isinstance(fn, functools.partial):
        fn = fn.func
    target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) or inspect.isclass(fn) else type(fn)
    module = getattr(target, "__module__", None) or "?"
    qualname = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or type(fn).__name__
    return f"{module}:{qualname}"


def source_file(fn: Any, base_dir: Path | None = None) -> str | None:
    """The file that defines ``fn``, relative to ``base_dir`` when inside it (so a moved project
    keeps its studies); ``None`` for code with no stable file (a notebook cell, ``python -c``)."""
    import functools

    while isinstance(fn, functools.partial):
        fn = fn.func
    target = fn if inspect.isfunction(fn) or inspect.ismethod(fn) or inspect.isclass(fn) else type(fn)
    try:
        path = inspect.getsourcefile(target) or inspect.getfile(target)
    except (TypeError, OSError):
        return None
    # Jupyter/IPython name each cell's code by a temporary file that changes with every edit.
    if not path or path.startswith("<") or "ipykernel_" in path or "/ipython-input-" in path:
        return None
    return _path(path, base_dir)


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _path(path: str, base_dir: Path | None) -> str:
    resolved = Path(path).expanduser().resolve()
    if base_dir is not None:
        try:
            return resolved.relative_to(Path(base_dir).resolve()).as_posix()
        except ValueError:
            pass
    return resolved.as_posix()


def _num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr, allow_nan=True)


# ---- comparing --------------------------------------------------------------------------------


def stored_identity(raw: Any) -> dict[str, str] | None:
    """An identity read back from storage; ``None`` when absent or not one this version compares."""
    if not isinstance(raw, Mapping) or raw.get("version") != str(VERSION):
        return None
    return {str(k): str(v) for k, v in raw.items()}


def identity_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """Each difference as a line: ``space.x: float [-5, 5] -> float [10, 20]``, ``space.y: added``."""
    changes = []
    for key in sorted(set(old) | set(new), key=lambda k: (_section(k), k)):
        if key == "version":
            continue
        if key not in old:
            changes.append(f"{key}: added ({new[key]})")
        elif key not in new:
            changes.append(f"{key}: removed (was {old[key]})")
        elif old[key] != new[key]:
            changes.append(f"{key}: {old[key]} -> {new[key]}")
    return changes


def _section(key: str) -> int:
    order = ("space.", "metrics.", "objective.")
    return next((i for i, prefix in enumerate(order) if key.startswith(prefix)), len(order))


def summarize_changes(changes: list[str]) -> str:
    shown = "; ".join(changes[:_SHOWN_CHANGES])
    if len(changes) > _SHOWN_CHANGES:
        shown += f"; and {len(changes) - _SHOWN_CHANGES} more"
    return shown


def changed_definition_error(name: str, n_trials: int, changes: list[str], surface: str) -> ConfigError:
    """The error for a study whose definition changed, with the fixes in the caller's terms."""
    trials = f"{n_trials} trial{'s' if n_trials != 1 else ''}"
    if surface == "api":
        fix = ('pass another `study_name=` for the new question; or call again with on_change="restart" (deletes '
               'the old trials from the storage and moves their directory aside) or on_change="continue" (keeps them).')
    else:
        fix = ("give the study another `name:` for the new question; or run again with --on-change restart (deletes "
               "the old trials from the storage and moves their directory aside) or --on-change continue (keeps "
               "them); `on_change:` in the study file does the same.")
    return ConfigError("on_change", f"study {name!r} exists with {trials} of a different definition: "
                       f"{summarize_changes(changes)}.", fix)


# ---- old trials under a changed definition ----------------------------------------------------


def config_in_space(space: "Space", config: Mapping[str, Any]) -> bool:
    """Whether ``space`` could have proposed ``config``: each active parameter present and inside
    its bounds, steps and choices, fixed values equal, and nothing else. After ``on_change:
    continue`` a trial outside the study's current space is never its best."""
    from tunelab.space import Choice, Fixed, Float

    active: dict[str, Any] = {}
    for name in space.order:
        if not space.is_active(name, active):
            continue
        if name not in config:
            return False
        value, p = config[name], space.params[name]
        if isinstance(p, Fixed) or isinstance(p, Choice):
            options = [p.value] if isinstance(p, Fixed) else list(p.choices)
            if not any(_same(value, o) for o in options):
                return False
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        else:
            tolerance = 1e-9 * max(1.0, abs(p.high - p.low))
            if not p.low - tolerance <= value <= p.high + tolerance:
                return False
            if not isinstance(p, Float) and float(value) != int(value):
                return False
            if p.step is not None and not p.log:
                steps = (value - p.low) / p.step
                if abs(steps - round(steps)) > 1e-6:
                    return False
        active[name] = value
    return set(config) == set(active)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    return type(a) is type(b) and a == b
