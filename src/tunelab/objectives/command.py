"""A training command as the objective: an argv template, metrics read from its output.

``["{python}", "train.py", "--lr", "{learning_rate}"]`` is filled with the trial's values and
run without a shell; ``{python}`` is the interpreter tunelab runs under (``python`` would be
whichever one PATH finds first). Each line of its output is matched against the metric regexes
(SageMaker style, the first group is the value); values are reported as they appear and the
last one is final. A non-zero exit fails the trial as ``crash`` with the last lines kept; so
does an exit 0 after which an optimized metric's regex has matched no line.

To take part in population based training a command saves its state under ``{checkpoint_dir}``
and, when ``{restore_dir}`` is not empty (the trial is a clone), restores from there (a copy of
its parent's checkpoint directory) and continues at ``{start_step}`` (the parent's step; ``0``
for a fresh trial). Without a ``step_regex`` a clone's values are reported at ``start_step + 1``,
``start_step + 2``, ...

The trial ends when the command exits, even if a process it started still holds its output
open: the command runs in a process group of its own, killed once the command has exited.
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
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from tunelab.errors import ConfigError, TrialFailed

if TYPE_CHECKING:
    from tunelab.worker import Reporter

PLACEHOLDERS = ("python", "trial_id", "trial_dir", "checkpoint_dir", "restore_dir", "start_step")
_DRAIN_S = 2.0  # after the command exits: how long to read what is still buffered in its pipe
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
        # The metrics whose regex must match once (the optimized ones, set by validate()).
        self.required: list[str] | None = None

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
        for name in PLACEHOLDERS:
            if name in space:
                raise ConfigError(f"space.{name}", f"is named like the command placeholder `{{{name}}}` "
                                  f"({_MEANING[name]}).", "rename the parameter.")
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
        self.required = [m.name for m in metrics.objectives]

    def argv(self, config: Mapping[str, Any], reporter: "Reporter") -> list[str]:
        values = {**{k: _format(v) for k, v in config.items()}, "python": sys.executable,
                  "trial_id": str(reporter.trial_id),
                  "trial_dir": str(reporter.trial_dir), "checkpoint_dir": str(reporter.checkpoint_dir),
                  # A fresh trial restores nothing: an empty argument, and step 0.
                  "restore_dir": str(reporter.restore_dir) if reporter.restore_dir is not None else "",
                  "start_step": _step_text(_start_step(reporter))}
        return [arg.format_map(values) for arg in self.command]

    def __call__(self, config: Mapping[str, Any], reporter: "Reporter") -> dict[str, float]:
        env = {**os.environ, **self.env, "TUNELAB_TRIAL_ID": str(reporter.trial_id),
               "TUNELAB_TRIAL_DIR": str(reporter.trial_dir)}
        proc = subprocess.Popen(self.argv(config, reporter), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=self.cwd, env=env, preexec_fn=_own_group)
        last_lines: collections.deque[str] = collections.deque(maxlen=20)
        final: dict[str, float] = {}
        counts: collections.Counter[str] = collections.Counter()
        step: float | None = None
        start = _start_step(reporter)  # a clone's counted steps continue after its parent's
        try:
            for line in _lines(proc):
                sys.stdout.write(line + "\n")
                last_lines.append(line)
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
                    reporter.report(step if step is not None else start + max(counts[n] for n in found), **found)
            code = proc.wait()
        finally:
            _stop(proc)
        if code != 0:
            raise TrialFailed("crash", f"command exited with code {code}. Last lines:\n" + "\n".join(last_lines))
        required = self.required if self.required is not None else list(self.patterns)
        unmatched = [name for name in required if name in self.patterns and name not in final]
        if unmatched:
            name = unmatched[0]
            shown = "\n".join(last_lines) if last_lines else "(the command printed nothing)"
            raise TrialFailed("crash", f"the regex {self.patterns[name].pattern!r} of metric `{name}` matched no "
                              f"line of the command's output (it exited with code 0); check "
                              f"{self.field}.metrics against what the command prints. Last lines:\n{shown}")
        return final


def _format(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _start_step(reporter: "Reporter") -> float:
    step = getattr(reporter, "start_step", None)
    return float(step) if isinstance(step, (int, float)) and not isinstance(step, bool) else 0.0


def _step_text(step: float) -> str:
    """``2`` for step 2.0 (a script may parse it as an int), ``2.5`` otherwise."""
    return str(int(step)) if step.is_integer() else repr(step)


def _compile(field: str, regex: Any) -> re.Pattern[str]:
    try:
        pattern = re.compile(str(regex))
    except re.error as exc:
        raise ConfigError(field, f"is not a valid regular expression ({exc}).") from None
    if pattern.groups < 1:
        raise ConfigError(field, "has no group to capture the value.", "wrap the number in parentheses: `f1 = ([0-9.]+)`.")
    return pattern


_MEANING = {"python": "the interpreter tunelab runs under", "trial_id": "the trial's number",
            "trial_dir": "the trial's directory", "checkpoint_dir": "the trial's checkpoint directory",
            "restore_dir": "where a PBT clone restores from", "start_step": "the step a PBT clone continues at"}


def _own_group() -> None:
    # Its own process group, so that what it leaves running can be killed once it exits;
    # and it dies with the trial process, even if that is killed.
    os.setpgid(0, 0)
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _lines(proc: subprocess.Popen) -> Iterator[str]:
    """The command's output, line by line, until it exits (not until every process that holds
    the pipe has closed it): then what is already buffered, within ``_DRAIN_S``."""
    import codecs
    import io
    import select
    import time

    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    decoder = io.IncrementalNewlineDecoder(codecs.getincrementaldecoder("utf-8")(errors="replace"), translate=True)
    pending = ""
    drain_until: float | None = None
    while True:
        if drain_until is None:
            ready = select.select([fd], [], [], 0.2)[0]
        else:
            ready = select.select([fd], [], [], 0)[0] if time.monotonic() < drain_until else []
        if ready:
            data = os.read(fd, 65536)
            if not data:
                break
            pending += decoder.decode(data)
            *lines, pending = pending.split("\n")
            yield from lines
        elif drain_until is not None:
            break  # exited, and nothing more is buffered
        if drain_until is None and proc.poll() is not None:
            _kill_group(proc)  # what it left behind: it may hold the pipe open
            drain_until = time.monotonic() + _DRAIN_S
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    _kill_group(proc)
    if proc.stdout is not None:
        proc.stdout.close()
