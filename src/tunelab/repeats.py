"""Seed repeats: after the search, the best configs train again with other seeds.

``search: {repeats: {top: 3, seeds: 3}}`` re-runs each of the ``top`` best configs of the search
``seeds`` more times, each a real trial with the same config and another training seed. The
study's best config is then the best **mean** over its seeds (a config picked for one lucky
seed is the winner's curse this guards against), and its best trial, the one ``export`` takes,
is that config's best seed.

- The seed reaches the objective as the config key ``seed`` (the text-classification objective's
  training seed; a function objective reads ``config["seed"]``, a command one ``{seed}`` with
  ``seed: {fixed: N}`` in its space). A
  repeat's seeds are the original's seed + 1, + 2, ...: the original's is its config's ``seed``,
  else the objective's default seed (42 for ``text_classification``, as the Trainer's), else 0.
- Repeats come on top of ``budget.trials`` (the search); they run when the search's trial (or
  epoch) budget is used up, never pruned by the scheduler.
- A repeat is recorded with the trial user attrs ``repeat_of`` (the original trial's number) and
  ``seed``; its config is kept in ``run`` and not as Optuna params, so samplers never learn it
  as a new independent point of the space (as PBT clones). An interrupted repeat runs again on
  the next start (the phase continues from storage, never restarts); a failed one is final.
- Once any config has two complete seeds, "best" is chosen among the repeated configs only: a
  config with one seed is not compared with means over several.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from tunelab.errors import ConfigError, shown

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from tunelab.metrics import MetricSet
    from tunelab.space import Space
    from tunelab.study import TrialInfo

#: Trial user attrs of a repeat: the trial it repeats, and its training seed.
REPEAT_OF = "repeat_of"
SEED = "seed"
#: The config key that carries a repeat's seed to the objective.
SEED_KEY = "seed"
MAX_REPEATS = 1000
_SEED_RANGE = 2**32


@dataclass(frozen=True)
class Repeats:
    """Re-run the ``top`` best configs with ``seeds`` other seeds each."""

    top: int
    seeds: int
    #: The seed of a config that names none (``objective_seed``): repeats count on from it.
    base_seed: int = 0

    @property
    def extra_trials(self) -> int:
        return self.top * self.seeds

    def describe(self) -> str:
        return (f"then the best {self.top} config(s) again with {self.seeds} more seed(s) each "
                f"(up to {self.extra_trials} trials on top of the search budget; best = best mean over seeds)")


def parse_repeats(raw: Any, metrics: "MetricSet") -> Repeats | None:
    """``search.repeats``: ``{top: 3, seeds: 3}``; None or absent means no repeats."""
    if raw is None:
        return None
    fix = "write e.g. `repeats: {top: 3, seeds: 3}`."
    if not isinstance(raw, Mapping):
        raise ConfigError("search.repeats", f"is {shown(raw)}, but must be a mapping.", fix)
    unknown = sorted(str(k) for k in raw if k not in ("top", "seeds"))
    if unknown:
        raise ConfigError(f"search.repeats.{unknown[0]}", "is not a repeats field.", "use `top` and `seeds`.")
    values = {}
    for key, default in (("top", 3), ("seeds", 3)):
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_REPEATS:
            raise ConfigError(f"search.repeats.{key}", f"is {shown(value)}, but must be an integer from 1 to "
                              f"{MAX_REPEATS}.", fix)
        values[key] = value
    if metrics.is_multi_objective:
        raise ConfigError("search.repeats", "needs a single optimized metric (a mean per config).",
                          "drop `repeats` for a multi-objective study.")
    return Repeats(values["top"], values["seeds"])


def check_space(repeats: Repeats | None, space: "Space") -> None:
    """The seed is what a repeat changes: a space that searches it has nothing to repeat."""
    from tunelab.space import Fixed

    param = space.params.get(SEED_KEY)
    if repeats is not None and param is not None and not isinstance(param, Fixed):
        raise ConfigError("search.repeats", f"repeats change the config's `{SEED_KEY}`, which the space searches.",
                          f"make `{SEED_KEY}` fixed (or leave it out of the space), or drop `repeats`.")


def objective_seed(objective: Any) -> int:
    """The seed an objective trains with when the config names none."""
    from tunelab.objectives.text_classification import TextClassification

    if isinstance(objective, TextClassification):
        from tunelab.nlp.settings import TrainSettings

        return int(objective.defaults.get("seed", TrainSettings.seed))
    return 0


def seeds_for(config: Mapping[str, Any], default_seed: int, count: int) -> list[int]:
    """The repeat seeds of a config: its own seed + 1 .. + count (modulo 2**32)."""
    base = config.get(SEED_KEY, default_seed)
    base = int(base) if isinstance(base, (int, float)) and not isinstance(base, bool) else default_seed
    return [(base + k) % _SEED_RANGE for k in range(1, count + 1)]


def is_repeat(frozen: "FrozenTrial") -> bool:
    return REPEAT_OF in frozen.user_attrs


def searched_config(info: "TrialInfo", space: "Space | None") -> dict[str, Any]:
    """A repeat's config as the space proposed it: without the seed it added (or with the
    space's fixed seed back), so that it is checked against the space like its original."""
    config = dict(info.config)
    if info.repeat_of is None:
        return config
    config.pop(SEED_KEY, None)
    if space is not None and SEED_KEY in space.params:
        from tunelab.space import Fixed

        param = space.params[SEED_KEY]
        if isinstance(param, Fixed):
            config[SEED_KEY] = param.value
    return config


# ---- what to run ----------------------------------------------------------------------------------


def missing_repeats(trials: Sequence["FrozenTrial"], ranked: Sequence["TrialInfo"], repeats: Repeats,
                    default_seed: int) -> list[tuple["TrialInfo", int]]:
    """(original, seed) pairs still to run, best config first: the ``top`` best originals among
    ``ranked`` (the study's feasible complete trials, best first), less the repeats in storage
    (any state but interrupted or cancelled: those run again)."""
    done: set[tuple[int, int]] = set()
    for t in trials:
        if REPEAT_OF not in t.user_attrs:
            continue
        kind = (t.user_attrs.get("failure") or {}).get("kind")
        if kind in ("interrupted", "cancelled"):
            continue
        of, seed = t.user_attrs[REPEAT_OF], t.user_attrs.get(SEED)
        if isinstance(of, int) and isinstance(seed, int):  # read from storage: only well-formed marks count
            done.add((of, seed))
    todo = []
    for original in top_originals(trials, ranked, repeats.top):
        for seed in seeds_for(original.config, default_seed, repeats.seeds):
            if (original.number, seed) not in done:
                todo.append((original, seed))
    return todo


def top_originals(trials: Sequence["FrozenTrial"], ranked: Sequence["TrialInfo"], top: int) -> list["TrialInfo"]:
    """The ``top`` best trials of the search (no repeat, no reused result, no PBT clone)."""
    from tunelab.proposals import DUPLICATE_OF

    reused = {t.number for t in trials if DUPLICATE_OF in t.user_attrs}
    return [t for t in ranked if t.repeat_of is None and t.number not in reused and t.parent is None][:top]


def kept_checkpoints(trials: Sequence["FrozenTrial"], ranked: Sequence["TrialInfo"], repeats: Repeats,
                     goal: str) -> set[int]:
    """Trials whose checkpoint must outlive retention: the originals of the configs to repeat
    (one may turn out its config's best seed) and each repeated config's best seed (what export
    takes); at most twice ``top`` checkpoints beyond ``keep_checkpoints``."""
    keep = {t.number for t in top_originals(trials, ranked, repeats.top)}
    keep.update(g.best.number for g in seed_groups(ranked, goal))
    return keep


def earlier_twin(trials: Sequence["FrozenTrial"], number: int, original: int, seed: int) -> int | None:
    """A repeat of the same (original, seed) created before trial ``number`` by another driver
    (both saw it missing at once), still standing; None when ``number`` is the first."""
    for t in trials:
        if (t.number < number and t.user_attrs.get(REPEAT_OF) == original and t.user_attrs.get(SEED) == seed
                and (t.user_attrs.get("failure") or {}).get("kind") not in ("interrupted", "cancelled")):
            return t.number
    return None


def search_after_repeats(trials: Sequence["FrozenTrial"]) -> str | None:
    """What to say when a study that already ran seed repeats searches again (its trial budget
    was raised): a repeat holds no Optuna params, so Optuna's multivariate TPE and GP, which
    sample jointly only the parameters every complete trial has, sample each one alone."""
    repeats = [t.number for t in trials if REPEAT_OF in t.user_attrs]
    if not repeats:
        return None
    return (f"this study ran seed repeats (trials {repeats[0]}..{repeats[-1]}), which hold no Optuna params: "
            "searching it again, Optuna's multivariate TPE and GP sample each parameter on its own. "
            "To search further, start a new study with `search: {warm_start: [this study]}` (repeats are "
            "not copied).")


def repeat_config(original: "TrialInfo", seed: int) -> dict[str, Any]:
    return {**dict(original.config), SEED_KEY: seed}


# ---- what it found ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedGroup:
    """A repeated config: its original trial and its repeats that completed (feasible)."""

    original: int
    config: Mapping[str, Any]
    trials: tuple["TrialInfo", ...]
    goal: str

    @property
    def values(self) -> tuple[float, ...]:
        return tuple((t.values or (math.nan,))[0] for t in self.trials)

    @property
    def seeds(self) -> tuple[int | None, ...]:
        """Each trial's training seed; the original's is the one its repeats counted from."""
        repeat_seeds = [t.seed for t in self.trials if t.seed is not None]
        own = self.config.get(SEED_KEY)
        if not isinstance(own, int) or isinstance(own, bool):
            own = (min(repeat_seeds) - 1) % _SEED_RANGE if repeat_seeds else None
        return tuple(t.seed if t.repeat_of is not None else own for t in self.trials)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        """The sample standard deviation over seeds (0 for one seed)."""
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    @property
    def best(self) -> "TrialInfo":
        """The best seed's trial (what ``export`` takes); the earliest on a tie."""
        sign = -1.0 if self.goal == "maximize" else 1.0
        return min(self.trials, key=lambda t: (sign * (t.values or (0.0,))[0], t.number))

    def spread(self, digits: str = ".4g") -> str:
        """``mean 0.871 ± 0.006 (sd) over 4 seeds, 0.862..0.878``."""
        values = self.values
        return (f"mean {self.mean:{digits}} ± {self.std:{digits}} (sd) over {len(values)} seed"
                f"{'s' if len(values) != 1 else ''}, {min(values):{digits}}..{max(values):{digits}}")

    def as_dict(self) -> dict[str, Any]:
        return {"config": dict(self.config), "mean": self.mean, "std": self.std, "n": len(self.trials),
                "best_trial": self.best.number,
                "seeds": [{"trial": t.number, "seed": s, "value": v}
                          for t, s, v in zip(self.trials, self.seeds, self.values)]}


def seed_groups(ranked: Sequence["TrialInfo"], goal: str) -> list[SeedGroup]:
    """Every config with at least one complete repeat, from ``ranked`` (feasible complete
    trials), best mean first."""
    by_original: dict[int, list["TrialInfo"]] = {}
    for t in ranked:
        if t.repeat_of is not None:
            by_original.setdefault(t.repeat_of, [])
    if not by_original:
        return []
    originals = {t.number: t for t in ranked if t.number in by_original}
    for t in ranked:
        if t.repeat_of in by_original:
            by_original[t.repeat_of].append(t)
        elif t.number in by_original:
            by_original[t.number].append(t)
    groups = []
    for number, members in by_original.items():
        config = dict(originals[number].config) if number in originals else {
            k: v for k, v in members[0].config.items() if k != SEED_KEY}
        groups.append(SeedGroup(number, config, tuple(sorted(members, key=lambda t: t.number)), goal))
    sign = -1.0 if goal == "maximize" else 1.0
    return sorted(groups, key=lambda g: (sign * g.mean, g.original))


def best_group(ranked: Sequence["TrialInfo"], goal: str) -> SeedGroup | None:
    """The repeated config with the best mean over at least two complete seeds, or None."""
    groups = [g for g in seed_groups(ranked, goal) if len(g.trials) >= 2]
    return groups[0] if groups else None
