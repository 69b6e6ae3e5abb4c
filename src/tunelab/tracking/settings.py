"""The ``tracking:`` section of a study, validated.

```yaml
tracking:
  mlflow:
    uri: sqlite:///mlflow.db      # or http://host:5000; relative paths are next to the study file
    experiment: my-experiment     # default: the study name
    log_checkpoints: false        # log the kept trials' checkpoint dirs as artifacts
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


@dataclass(frozen=True)
class MlflowSettings:
    """Where and how a study is tracked in MLflow (``uri`` already resolved)."""

    uri: str
    experiment: str
    log_checkpoints: bool = False


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


def parse_tracking(
    raw: Any,
    *,
    base_dir: Path,
    study_name: str,
    default_mlflow: bool = False,
) -> MlflowSettings | None:
    """The MLflow settings of a ``tracking:`` mapping, or None when MLflow is off.

    ``default_mlflow``: track to the local default store when the mapping says nothing about
    MLflow and MLflow is installed (what ``tunelab run`` does).
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError("tracking", f"is {raw!r}, but must be a mapping.",
                          "write e.g. `tracking: {mlflow: {uri: sqlite:///mlflow.db}}`.")
    unknown = set(raw) - {"mlflow"}
    if unknown:
        raise ConfigError(f"tracking.{sorted(unknown)[0]}", "is not a tracker tunelab knows.",
                          "use `tracking: {mlflow: {...}}` or `tracking: {mlflow: false}`.")
    if "mlflow" not in raw:
        if default_mlflow and mlflow_installed():
            return MlflowSettings(resolve_uri(DEFAULT_URI, base_dir), study_name)
        return None
    section = raw["mlflow"]
    if section is False or section is None:
        return None
    if section is True:
        section = {}
    if isinstance(section, str):  # `mlflow: http://host:5000` as a shorthand for the uri
        section = {"uri": section}
    if not isinstance(section, Mapping):
        raise ConfigError("tracking.mlflow", f"is {section!r}, but must be a mapping, true or false.",
                          "write e.g. `mlflow: {uri: http://127.0.0.1:5000, experiment: sst2}`.")
    unknown = set(section) - set(_MLFLOW_KEYS)
    if unknown:
        raise ConfigError(f"tracking.mlflow.{sorted(unknown)[0]}", "is not an MLflow setting.",
                          f"valid settings are {list(_MLFLOW_KEYS)}.")
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
