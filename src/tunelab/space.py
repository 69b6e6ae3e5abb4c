"""The declarative search space: float, int, choice and fixed parameters, with conditions.

A space is written in YAML (or as the same dicts in Python)::

    learning_rate: {float: [1.0e-5, 1.0e-3], log: true}
    batch_size: {choice: [16, 32]}
    layers: {int: [1, 6]}
    epochs: {fixed: 3}                                   # or simply: epochs: 3
    momentum: {float: [0.8, 0.99], when: {optimizer: sgd}}

Values, never indices: a sampled config holds the exact values (``batch_size: 32``), and ints
stay ints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence, Union

from tunelab.errors import ConfigError, shown

if TYPE_CHECKING:
    import optuna

Scalar = Union[None, bool, int, float, str]


@dataclass(frozen=True)
class Float:
    low: float
    high: float
    log: bool = False
    step: float | None = None
    when: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Int:
    low: int
    high: int
    log: bool = False
    step: int = 1
    when: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Choice:
    choices: tuple[Scalar, ...]
    when: Mapping[str, Any] = field(default_factory=dict)

    def __init__(self, choices: Sequence[Scalar], when: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "choices", tuple(choices))
        object.__setattr__(self, "when", dict(when or {}))


@dataclass(frozen=True)
class Fixed:
    value: Any


Param = Union[Float, Int, Choice, Fixed]

_KIND_KEYS = ("float", "int", "choice", "fixed")
MAX_INT = 2**53  # ints beyond this lose exactness in the samplers' float arithmetic
MAX_GRID = 1_000_000  # points of a grid: the grid sampler holds them all in memory
_OPTION_KEYS = {"float": {"log", "step", "when"}, "int": {"log", "step", "when"}, "choice": {"when"}, "fixed": set()}


class Space:
    """An ordered, validated mapping of parameter names to parameters."""

    def __init__(self, params: Mapping[str, Param | Any]) -> None:
        parsed: dict[str, Param] = {}
        for name, spec in params.items():
            if not isinstance(name, str) or not name:
                raise ConfigError("space", f"parameter names must be non-empty strings, got {name!r}.")
            parsed[name] = spec if isinstance(spec, (Float, Int, Choice, Fixed)) else _parse(name, spec)
        for name, param in parsed.items():
            _validate(name, param)
        self.params: dict[str, Param] = parsed
        self.order: list[str] = _sampling_order(parsed)

    @classmethod
    def from_dict(cls, raw: Any, field_name: str = "space") -> "Space":
        if isinstance(raw, Space):
            return raw
        if not isinstance(raw, Mapping) or not raw:
            raise ConfigError(field_name, "must be a mapping of parameter names to definitions.",
                              "write e.g. `learning_rate: {float: [1.0e-5, 1.0e-3], log: true}`.")
        return cls(raw)

    # ---- views ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[str]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    def __contains__(self, name: object) -> bool:
        return name in self.params

    @property
    def fixed(self) -> dict[str, Any]:
        return {n: p.value for n, p in self.params.items() if isinstance(p, Fixed)}

    @property
    def searched(self) -> dict[str, Param]:
        return {n: p for n, p in self.params.items() if not isinstance(p, Fixed)}

    @property
    def has_conditions(self) -> bool:
        return any(getattr(p, "when", None) for p in self.params.values())

    def is_log(self, name: str) -> bool:
        return bool(getattr(self.params.get(name), "log", False))

    def to_dict(self) -> dict[str, Any]:
        """The YAML form of this space (round-trips through ``Space.from_dict``)."""
        out: dict[str, Any] = {}
        for name, p in self.params.items():
            if isinstance(p, Fixed):
                out[name] = {"fixed": p.value}
                continue
            if isinstance(p, Choice):
                spec: dict[str, Any] = {"choice": list(p.choices)}
            else:
                spec = {"float" if isinstance(p, Float) else "int": [p.low, p.high]}
                if p.log:
                    spec["log"] = True
                if isinstance(p, Float) and p.step is not None or isinstance(p, Int) and p.step != 1:
                    spec["step"] = p.step
            if p.when:
                spec["when"] = dict(p.when)
            out[name] = spec
        return out

    # ---- sampling ------------------------------------------------------------------------

    def is_active(self, name: str, config: Mapping[str, Any]) -> bool:
        when = getattr(self.params[name], "when", None) or {}
        for other, wanted in when.items():
            if other not in config:
                return False
            options = wanted if isinstance(wanted, (list, tuple)) else [wanted]
            if not any(_same_value(config[other], w) for w in options):
                return False
        return True

    def sample(self, trial: "optuna.Trial") -> dict[str, Any]:
        """Suggest every active parameter on an Optuna trial; return the full config (values)."""
        config: dict[str, Any] = {}
        for name in self.order:
            if not self.is_active(name, config):
                continue
            p = self.params[name]
            if isinstance(p, Fixed):
                config[name] = p.value
            elif isinstance(p, Float):
                config[name] = trial.suggest_float(name, p.low, p.high, log=p.log, step=p.step)
            elif isinstance(p, Int):
                config[name] = trial.suggest_int(name, p.low, p.high, log=p.log, step=p.step)
            else:
                config[name] = trial.suggest_categorical(name, list(p.choices))
        return {name: config[name] for name in self.params if name in config}

    def distributions(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Optuna distributions of the searched parameters active in ``config``."""
        import optuna.distributions as d

        out: dict[str, Any] = {}
        for name, p in self.searched.items():
            if name not in config:
                continue
            if isinstance(p, Float):
                out[name] = d.FloatDistribution(p.low, p.high, log=p.log, step=p.step)
            elif isinstance(p, Int):
                out[name] = d.IntDistribution(p.low, p.high, log=p.log, step=p.step)
            else:
                out[name] = d.CategoricalDistribution(list(p.choices))
        return out

    def grid(self) -> dict[str, list[Any]]:
        """Every value of every searched parameter, for grid search (at most ``MAX_GRID`` points)."""
        grid: dict[str, list[Any]] = {}
        total = 1
        for name, p in self.searched.items():
            if isinstance(p, Choice):
                count = len(p.choices)
            elif isinstance(p, Int) and not p.log:
                count = (p.high - p.low) // p.step + 1
            elif isinstance(p, Float) and p.step is not None:
                count = int(round((p.high - p.low) / p.step)) + 1
            else:
                raise ConfigError(
                    f"space.{name}", "grid search needs a finite set of values, but this parameter is continuous.",
                    "give it a `step`, turn it into `{choice: [...]}`, or use another sampler.",
                )
            total *= count
            if count > MAX_GRID:
                raise ConfigError(f"space.{name}", f"has {count:,} values, too many for a grid (at most "
                                  f"{MAX_GRID:,}).", "give it a larger `step`, or use another sampler.")
            if total > MAX_GRID:
                raise ConfigError("space", f"the grid has more than {MAX_GRID:,} points.",
                                  "use fewer values per parameter, or another sampler (e.g. `qmc` or `tpe`).")
            if isinstance(p, Choice):
                grid[name] = list(p.choices)
            elif isinstance(p, Int):
                grid[name] = list(range(p.low, p.high + 1, p.step))
            else:
                assert p.step is not None
                grid[name] = [round(p.low + i * p.step, 12) for i in range(count)]
        return grid

    def grid_size(self) -> int:
        return math.prod(len(v) for v in self.grid().values())

    def coerce(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """Check a user-given config (e.g. enqueued) against the space, keeping exact values."""
        out: dict[str, Any] = {}
        for name in self.order:
            if not self.is_active(name, {**config, **out}):
                continue
            p = self.params[name]
            if isinstance(p, Fixed):
                out[name] = p.value
                continue
            if name not in config:
                raise ConfigError(f"config.{name}", "is missing.", f"give a value for `{name}`.")
            out[name] = config[name]
        unknown = set(config) - set(self.params)
        if unknown:
            raise ConfigError("config", f"unknown parameters {sorted(unknown)}.", f"use only {sorted(self.params)}.")
        return {name: out[name] for name in self.params if name in out}


# ---- parsing and validation -----------------------------------------------------------------


def _same_value(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b or (
        isinstance(a, (int, float)) and isinstance(b, (int, float))
        and not isinstance(a, bool) and not isinstance(b, bool) and a == b
    )


def _number(field_name: str, value: Any, want_int: bool) -> float | int:
    """A finite number (ints within ``MAX_INT``); never a bool, NaN or infinity."""
    if isinstance(value, str):  # YAML 1.1 reads `1e-5` as a string
        try:
            value = float(value)
        except ValueError:
            raise ConfigError(field_name, f"is {shown(value)}, which is not a number.", "write e.g. `0.5`.") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(field_name, f"is {shown(value)}, which is not a number.", "write e.g. `0.5`.")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(field_name, f"is {value!r}, but must be a finite number.", "give a finite bound or step.")
    if want_int:
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(field_name, f"is {value!r}, but an int parameter needs whole numbers.",
                              "use `float:` for a real-valued parameter.")
        value = int(value)
        if abs(value) > MAX_INT:
            raise ConfigError(field_name, f"is {shown(value)}, beyond +-2**53.", "use a smaller range.")
        return value
    try:
        return float(value)
    except OverflowError:
        raise ConfigError(field_name, f"is {shown(value)}, too large for a number.", "use a smaller range.") from None


def _parse(name: str, spec: Any) -> Param:
    where = f"space.{name}"
    if not isinstance(spec, Mapping):
        if isinstance(spec, list):
            return Choice(spec)
        return Fixed(spec)
    kinds = [k for k in _KIND_KEYS if k in spec]
    if len(kinds) != 1:
        raise ConfigError(
            where, f"must have exactly one of {list(_KIND_KEYS)}, got keys {shown(sorted(map(str, spec)))}.",
            "write e.g. `{float: [0.0, 1.0]}`, `{int: [1, 6]}`, `{choice: [16, 32]}` or `{fixed: 3}`.",
        )
    kind = kinds[0]
    unknown = {str(k) for k in spec} - {kind} - _OPTION_KEYS[kind]
    if unknown:
        raise ConfigError(where, f"unknown keys {shown(sorted(unknown))} for a `{kind}` parameter.",
                          f"valid keys are {sorted({kind} | _OPTION_KEYS[kind])}.")
    when = spec.get("when")
    when = {} if when is None else when
    if not isinstance(when, Mapping):
        raise ConfigError(f"{where}.when", "must map a parameter name to the value(s) that activate this one.",
                          "write e.g. `when: {optimizer: sgd}`.")
    if kind == "fixed":
        return Fixed(spec["fixed"])
    if kind == "choice":
        choices = spec["choice"]
        if not isinstance(choices, (list, tuple)):
            raise ConfigError(f"{where}.choice", "must be a list of values.", "write e.g. `{choice: [16, 32]}`.")
        return Choice(choices, when)
    bounds = spec[kind]
    if not isinstance(bounds, (list, tuple)) or len(bounds) != 2:
        raise ConfigError(f"{where}.{kind}", f"must be a list [low, high], got {shown(bounds)}.",
                          f"write e.g. `{{{kind}: [1, 10]}}`.")
    want_int = kind == "int"
    low = _number(f"{where}.low", bounds[0], want_int)
    high = _number(f"{where}.high", bounds[1], want_int)
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log", f"must be true or false, got {shown(log)}.", "write `log: true`.")
    step = spec.get("step")
    if step is not None:
        step = _number(f"{where}.step", step, want_int)
    if want_int:
        return Int(int(low), int(high), log, int(step) if step is not None else 1, when)
    return Float(float(low), float(high), log, float(step) if step is not None else None, when)


def _validate(name: str, p: Param) -> None:
    where = f"space.{name}"
    if isinstance(p, Fixed):
        return
    if isinstance(p, Choice):
        if not p.choices:
            raise ConfigError(f"{where}.choice", "is empty.", "list at least one value.")
        seen: list[Any] = []
        for c in p.choices:
            if c is not None and not isinstance(c, (bool, int, float, str)):
                raise ConfigError(f"{where}.choice", f"holds {shown(c)}; choices must be numbers, strings, booleans "
                                  "or null.", "write e.g. `{choice: [16, 32]}`.")
            if isinstance(c, float) and not math.isfinite(c):
                raise ConfigError(f"{where}.choice", f"holds {c!r}, but choices must be finite.", "remove it.")
            if any(_same_value(c, s) for s in seen):
                raise ConfigError(f"{where}.choice", f"lists {c!r} twice.", "remove the duplicate.")
            seen.append(c)
        return
    for end in ("low", "high"):  # also for values built in Python, which skip _parse
        value = getattr(p, end)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where}.{end}", f"is {shown(value)}, but must be a finite number.",
                              "give a finite bound.")
    if not math.isfinite(p.high - p.low):
        raise ConfigError(where, f"the range [{p.low}, {p.high}] is too wide to sample from.", "narrow it.")
    if not p.low < p.high:
        raise ConfigError(where, f"`low` is {p.low} but must be lower than `high` ({p.high}).",
                          "swap them, or use `{fixed: value}` for a constant.")
    if p.log and p.low <= 0:
        raise ConfigError(f"{where}.low", f"is {p.low}, but a log-scaled parameter needs `low > 0`.",
                          "raise `low` above zero or drop `log: true`.")
    if p.step is not None:
        if isinstance(p.step, bool) or not isinstance(p.step, (int, float)) or not math.isfinite(p.step):
            raise ConfigError(f"{where}.step", f"is {shown(p.step)}, but must be a finite number.", "write e.g. 0.1.")
        if p.step <= 0:
            raise ConfigError(f"{where}.step", f"is {p.step}, but must be > 0.", "write e.g. 0.1.")
        if p.log and (isinstance(p, Float) or p.step != 1):
            raise ConfigError(f"{where}.step", "cannot be combined with `log: true`.", "drop one of them.")
        n = (p.high - p.low) / p.step
        if not math.isfinite(n) or n > MAX_INT:
            raise ConfigError(f"{where}.step", f"{p.step} is too small for the range [{p.low}, {p.high}].",
                              "use a larger step, or none.")
        if abs(n - round(n)) > 1e-9 * max(1.0, abs(n)):
            raise ConfigError(f"{where}.step", f"{p.step} does not divide high - low ({p.high} - {p.low}).",
                              "pick a `high` that is `low` plus a whole number of steps.")


def _sampling_order(params: Mapping[str, Param]) -> list[str]:
    """Names ordered so that every condition's parameter comes before the ones it gates."""
    for name, p in params.items():
        for other in getattr(p, "when", None) or {}:
            if other not in params:
                raise ConfigError(f"space.{name}.when", f"refers to `{other}`, which is not a parameter.",
                                  f"name one of {sorted(n for n in params if n != name)}.")
            if other == name:
                raise ConfigError(f"space.{name}.when", "refers to the parameter itself.")
    order: list[str] = []
    done: set[str] = set()
    visiting: set[str] = set()
    for root in params:  # a depth-first post-order, without recursion: chains of conditions can be long
        stack: list[tuple[str, bool]] = [(root, False)]
        while stack:
            name, finished = stack.pop()
            if finished:
                visiting.discard(name)
                if name not in done:
                    done.add(name)
                    order.append(name)
                continue
            if name in done:
                continue
            if name in visiting:
                raise ConfigError(f"space.{name}.when", "conditions form a cycle.",
                                  "make the conditions one-directional.")
            visiting.add(name)
            stack.append((name, True))
            stack.extend((other, False) for other in reversed(list(getattr(params[name], "when", None) or {})))
    return order
