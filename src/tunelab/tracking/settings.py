"""The ``tracking:`` section of a study, validated. Several trackers may be on at once.

```yaml
tracking:
  mlflow:
    uri: sqlite:///mlflow.db      # or http://host:5000; relative paths are next to the study file
    experiment: my-experiment     # default: the study name
    log_checkpoints: false        # log the kept trials' checkpoint dirs as artifacts
  wandb:                          # pip install 'tunelab[wandb]'
    project: my-project           # default: the study name
    entity: my-team               # default: your W&B default entity
    group: sst2-lr                # default: the study name (a run per trial, grouped)
    mode: online                  # or offline (files under <dir>/wandb, `wandb sync` them later)
    dir: .                        # where W&B keeps its files; default: next to the study file
  tensorboard:                    # pip install 'tunelab[tensorboard]'
    dir: tensorboard              # event files in <dir>/<study>/trial_0003/
tracking: {mlflow: false}         # no MLflow, even where it is installed
```

With no ``tracking:`` section, ``tunelab run`` tracks to ``sqlite:///mlflow.db`` next to the
study file when MLflow is installed (MLflow's own default store; its ``./mlruns`` file store is
deprecated and refuses to open in MLflow 3).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from tunelab.errors import ConfigError, MissingDependencyError

DEFAULT_URI = "sqlite:///mlflow.db"
_MLFLOW_KEYS = ("uri", "experiment", "log_checkpoints")
_WANDB_KEYS = ("project", "entity", "group", "mode", "dir")
TRACKERS = ("mlflow", "wandb", "tensorboard")


@dataclass(frozen=True)
class MlflowSettings:
    """Where and how a study is tracked in MLflow (``uri`` already resolved)."""

    uri: str
    experiment: str
    log_checkpoints: bool = False


@dataclass(frozen=True)
class WandbSettings:
    """A run per trial in Weights & Biases, grouped by study (``dir`` resolved)."""

    project: str
    group: str
    dir: str
    entity: str | None = None
    mode: str = "online"


@dataclass(frozen=True)
class TensorboardSettings:
    """Event files per trial under ``dir`` (resolved), with the HParams summary."""

    dir: str


TrackerSettings = MlflowSettings | WandbSettings | TensorboardSettings


def mlflow_installed() -> bool:
    """Whether ``mlflow`` can be imported, without importing it (that takes seconds)."""
    return importlib.util.find_spec("mlflow") is not None


def resolve_uri(uri: str, base_dir: Path) -> str:
    """Relative SQLite and file paths are taken from the study's directory, like ``storage:``."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return "sqlite:///" + str((base_dir / uri[len("sqlite:///"):]).resolve())
    if "://" not in uri and not uri.startswith("file:"):
        return str((base_dir / uri).resolve())
    return uri


def parse_tracking(raw: Any, *, base_dir: Path, study_name: str, default_mlflow: bool = False) -> MlflowSettings | None:
    """The MLflow settings of a ``tracking:`` mapping (all of it checked), or None when MLflow is off."""
    found = [s for s in parse_trackers(raw, base_dir=base_dir, study_name=study_name, default_mlflow=default_mlflow)
             if isinstance(s, MlflowSettings)]
    return found[0] if found else None


def parse_trackers(raw: Any, *, base_dir: Path, study_name: str, default_mlflow: bool = False) -> list[TrackerSettings]:
    """The trackers a ``tracking:`` mapping turns on, each checked (and its package found).

    ``default_mlflow``: track to the local default store when the mapping says nothing about
    MLflow and MLflow is installed (what ``tunelab run`` does).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError("tracking", f"is {raw!r}, but must be a mapping.",
                          "write e.g. `tracking: {mlflow: {uri: sqlite:///mlflow.db}}`.")
    unknown = set(raw) - set(TRACKERS)
    if unknown:
        raise ConfigError(f"tracking.{sorted(unknown)[0]}", "is not a tracker tunelab knows.",
                          "use `mlflow`, `wandb` or `tensorboard`, e.g. `tracking: {tensorboard: {dir: tb}}`.")
    out: list[TrackerSettings] = []
    mlflow = _parse_mlflow(raw, base_dir, study_name, default_mlflow)
    if mlflow is not None:
        out.append(mlflow)
    for name, parse in (("wandb", _parse_wandb), ("tensorboard", _parse_tensorboard)):
        section = _section(raw, name)
        if section is not None:
            out.append(parse(section, base_dir, study_name))
    return out


def _section(raw: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    section = raw.get(name)
    if section is False or section is None:
        return None
    if section is True:
        return {}
    if not isinstance(section, Mapping):
        raise ConfigError(f"tracking.{name}", f"is {section!r}, but must be a mapping, true or false.",
                          f"write e.g. `{name}: {{{_EXAMPLES[name]}}}`.")
    return section


_EXAMPLES = {"mlflow": "uri: http://127.0.0.1:5000, experiment: sst2", "wandb": "project: sst2, mode: offline",
             "tensorboard": "dir: tensorboard"}


def _check_keys(section: Mapping[str, Any], name: str, keys: tuple[str, ...]) -> None:
    unknown = set(section) - set(keys)
    if unknown:
        raise ConfigError(f"tracking.{name}.{sorted(unknown)[0]}", f"is not a {name} setting.",
                          f"valid settings are {list(keys)}.")


def _text(section: Mapping[str, Any], field: str, default: str | None, fix: str) -> str | None:
    value = section.get(field.rsplit(".", 1)[1], default)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"tracking.{field}", f"is {value!r}, but must be a name.", fix)
    return value.strip()


def _installed(module: str, extra: str, name: str) -> None:
    """Said before the study starts, not after its first trial."""
    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(f"`tracking.{name}` is set but `{module}` is not installed. Install it with: "
                                     f"pip install 'tunelab[{extra}]', or remove `tracking.{name}`.")


def _parse_wandb(section: Mapping[str, Any], base_dir: Path, study_name: str) -> WandbSettings:
    _check_keys(section, "wandb", _WANDB_KEYS)
    project = _text(section, "wandb.project", study_name, "name the W&B project, or leave it out for the study name.")
    entity = _text(section, "wandb.entity", None, "name your W&B user or team, or leave it out for your default.")
    group = _text(section, "wandb.group", study_name, "name the group, or leave it out for the study name.")
    mode = section.get("mode", "online")
    if mode not in ("online", "offline"):
        raise ConfigError("tracking.wandb.mode", f"is {mode!r}, but must be online or offline.",
                          "write `mode: offline` to keep the runs on this machine (`wandb sync` them later).")
    where = _text(section, "wandb.dir", ".", "give a directory for W&B's files, or leave it out.")
    _installed("wandb", "wandb", "wandb")
    return WandbSettings(project or study_name, group or study_name, str((base_dir / str(where)).resolve()),
                         entity, mode)


def _parse_tensorboard(section: Mapping[str, Any], base_dir: Path, study_name: str) -> TensorboardSettings:
    _check_keys(section, "tensorboard", ("dir",))
    where = _text(section, "tensorboard.dir", "tensorboard", "give a directory for the event files, e.g. `dir: tb`.")
    _installed("tensorboard", "tensorboard", "tensorboard")
    return TensorboardSettings(str((base_dir / str(where)).resolve() / study_name))


def _parse_mlflow(raw: Mapping[str, Any], base_dir: Path, study_name: str, default_mlflow: bool) -> MlflowSettings | None:
    if "mlflow" not in raw:
        if default_mlflow and mlflow_installed():
            return MlflowSettings(resolve_uri(DEFAULT_URI, base_dir), study_name)
        return None
    section = raw["mlflow"]
    if isinstance(section, str):  # `mlflow: http://host:5000` as a shorthand for the uri
        section = {"uri": section}
    section = _section({"mlflow": section}, "mlflow")
    if section is None:
        return None
    _check_keys(section, "mlflow", _MLFLOW_KEYS)
    uri = section.get("uri", DEFAULT_URI)
    if not isinstance(uri, str) or not uri.strip():
        raise ConfigError("tracking.mlflow.uri", f"is {uri!r}, but must be a tracking URI.",
                          "use e.g. `sqlite:///mlflow.db` or `http://127.0.0.1:5000`.")
    if uri.startswith("databricks"):
        raise ConfigError("tracking.mlflow.uri", f"is {uri!r}; Databricks workspaces are not supported.",
                          "use an MLflow tracking server (`http://...`) or a local `sqlite:///` store.")
    experiment = section.get("experiment", study_name)
    if not isinstance(experiment, str) or not experiment.strip():
        raise ConfigError("tracking.mlflow.experiment", f"is {experiment!r}, but must be a name.",
                          "give the MLflow experiment a name, or leave it out to use the study name.")
    log_checkpoints = section.get("log_checkpoints", False)
    if not isinstance(log_checkpoints, bool):
        raise ConfigError("tracking.mlflow.log_checkpoints", f"is {log_checkpoints!r}, but must be true or false.",
                          "write `log_checkpoints: true` to log the kept trials' checkpoints as artifacts.")
    if not mlflow_installed():  # said before the study starts, not after its first trial
        raise MissingDependencyError("`tracking.mlflow` is set but `mlflow` is not installed. Install it with: "
                                     "pip install 'tunelab[mlflow]', or set `tracking: {mlflow: false}`.")
    return MlflowSettings(resolve_uri(uri.strip(), base_dir), experiment.strip(), log_checkpoints)
