"""A training command as the objective: an argv template, metrics read from its output.

``["python", "train.py", "--lr", "{learning_rate}"]`` is filled with the trial's values and
run without a shell. Each line of its output is matched against the metric regexes
(SageMaker style, the first group is the value); values are reported as they appear and the
last one is final. A non-zero exit fails the trial as ``crash`` with the last lines kept.
"""

from __future__ import annotations

import collections
import os
import re
import shlex
import signal
import string
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from tunelab.errors import ConfigError, TrialFailed

if TYPE_CHECKING:
    from tunelab.worker import Reporter

PLACEHOLDERS = ("trial_id", "trial_dir", "checkpoint_dir")
_KEYS = {"type", "command", "metrics", "step_regex", "cwd", "env"}


class CommandObjective:
    def __init__(
        self,
        command: Sequence[str] | str,
        metrics: Sequence[Mapping[str, str]],
        *,
        step_regex: str | None = None,
        cwd: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        field: str = "objective",
    ) -> None:
        if isinstance(command, str):
            command = shlex.split(command)  # split like a shell would, but never run one
        if not command or not all(isinstance(a, (str, int, float)) for a in command):
            raise ConfigError(f"{field}.command", "must be a non-empty list of arguments.",
                              'write e.g. `["python", "train.py", "--lr", "{learning_rate}"]`.')
        self.command = [str(a) for a in command]
        self.field = field
        self.patterns: dict[str, re.Pattern[str]] = {}
        if not metrics:
            raise ConfigError(f"{field}.metrics", "is empty: the command's output has no metric to read.",
                              "add e.g. `metrics: [{name: f1, regex: 'f1 = ([0-9.]+)'}]`.")
        for i, m in enumerate(metrics):
            where = f"{field}.metrics[{i}]"
            if not isinstance(m, Mapping) or set(m) != {"name", "regex"}:
                raise ConfigError(where, "must have exactly `name` and `regex`.",
                                  "write e.g. `{name: f1, regex: 'f1 = ([0-9.]+)'}`.")
            self.patterns[m["name"]] = _compile(f"{where}.regex", m["regex"])
        self.step_pattern = _compile(f"{field}.step_regex", step_regex) if step_regex else None
        self.cwd = str(cwd) if cwd is not None else None
        self.env = {str(k): str(v) for k, v in (env or {}).items()}

    @classmethod
    def from_config(cls, raw: Mapping[str, Any], base_dir: Path, field: str = "objective") -> "CommandObjective":
        unknown = set(raw) - _KEYS
        if unknown:
            raise ConfigError(f"{field}", f"unknown keys {sorted(unknown)} for a command objective.",
                              f"valid keys are {sorted(_KEYS)}.")
        if "command" not in raw:
            raise ConfigError(f"{field}.command", "is missing.", 'write e.g. `command: ["python", "train.py"]`.')
        cwd = Path(raw["cwd"]) if raw.get("cwd") else base_dir
        return cls(raw["command"], raw.get("metrics") or [], step_regex=raw.get("step_regex"),
                   cwd=(base_dir / cwd) if not cwd.is_absolute() else cwd, env=raw.get("env"), field=field)

    def validate(self, space: Any, metrics: Any) -> None:
        known = set(space) | set(PLACEHOLDERS)
        for arg in self.command:
            try:
                names = [name for _, name, _, _ in string.Formatter().parse(arg) if name is not None]
                unknown = [name for name in names if name not in known]
                if not unknown:
                    arg.format_map(dict.fromkeys(known, "0"))  # values are strings at run time too
            except (ValueError, KeyError, IndexError, AttributeError) as exc:
                raise ConfigError(f"{self.field}.command", f"`{arg}` is not a valid template ({exc}).",
                                  "write `{name}` for a parameter, `{{` and `}}` for literal braces.") from None
            if unknown:
                raise ConfigError(f"{self.field}.command", f"uses `{{{unknown[0]}}}`, which is not a parameter.",
                                  f"use one of {sorted(known)}, or write `{{{{` for a literal brace.")
            for name in names:  # a conditional parameter is missing from the trials where it is inactive
                when = getattr(getattr(space, "params", {}).get(name), "when", None)
                if when:
                    raise ConfigError(f"{self.field}.command", f"uses `{{{name}}}`, which is set only when "
                                      f"{dict(when)}, so other trials could not fill the command.",
                                      f"drop `{name}` from the command, or its `when` to make it unconditional.")
        missing = [m.name for m in metrics.objectives if m.name not in self.patterns]
        if missing:
            raise ConfigError(f"{self.field}.metrics", f"has no regex for the optimized metric `{missing[0]}`.",
                              f"add `{{name: {missing[0]}, regex: '...'}}`.")

    def argv(self, config: Mapping[str, Any], reporter: "Reporter") -> list[str]:
        values = {**{k: _format(v) for k, v in config.items()}, "trial_id": str(reporter.trial_id),
                  "trial_dir": str(reporter.trial_dir), "checkpoint_dir": str(reporter.checkpoint_dir)}
        return [arg.format_map(values) for arg in self.command]

    def __call__(self, config: Mapping[str, Any], reporter: "Reporter") -> dict[str, float]:
        env = {**os.environ, **self.env, "TUNELAB_TRIAL_ID": str(reporter.trial_id),
               "TUNELAB_TRIAL_DIR": str(reporter.trial_dir)}
        proc = subprocess.Popen(self.argv(config, reporter), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=self.cwd, env=env, text=True, bufsize=1,
                                errors="replace", preexec_fn=_die_with_parent)
        last_lines: collections.deque[str] = collections.deque(maxlen=20)
        final: dict[str, float] = {}
        counts: collections.Counter[str] = collections.Counter()
        step: float | None = None
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                sys.stdout.write(line)
                last_lines.append(line.rstrip("\n"))
                if self.step_pattern and (m := self.step_pattern.search(line)):
                    step = float(m.group(1))
                found = {}
                for name, pattern in self.patterns.items():
                    if (m := pattern.search(line)) is not None:
                        try:
                            found[name] = float(m.group(1))
                        except ValueError:
                            continue
                        counts[name] += 1
                if found:
                    final.update(found)
                    reporter.report(step if step is not None else max(counts[n] for n in found), **found)
            code = proc.wait()
        finally:
            _stop(proc)
        if code != 0:
            raise TrialFailed("crash", f"command exited with code {code}. Last lines:\n" + "\n".join(last_lines))
        return final


def _format(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _compile(field: str, regex: Any) -> re.Pattern[str]:
    try:
        pattern = re.compile(str(regex))
    except re.error as exc:
        raise ConfigError(field, f"is not a valid regular expression ({exc}).") from None
    if pattern.groups < 1:
        raise ConfigError(field, "has no group to capture the value.", "wrap the number in parentheses: `f1 = ([0-9.]+)`.")
    return pattern


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
