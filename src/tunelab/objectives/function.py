"""A Python callable as the objective, ``fn(config, reporter)``, named ``module:function`` in YAML."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping

from tunelab.errors import ConfigError, shown

if TYPE_CHECKING:
    from tunelab.worker import Reporter


# `package.module:function` (or `module:Class.method`): dotted identifiers, never a path.
_REFERENCE = re.compile(r"[^\W\d]\w*(\.[^\W\d]\w*)*:[^\W\d]\w*(\.[^\W\d]\w*)*")


class FunctionObjective:
    """A reference ``module:function``, imported in whichever process runs the trial."""

    def __init__(self, reference: str, base_dir: Path | None = None, field: str = "objective.function") -> None:
        if not isinstance(reference, str) or not _REFERENCE.fullmatch(reference):
            raise ConfigError(field, f"is {shown(reference)}, but must look like `package.module:function`.",
                              "name the module (dotted, importable from the study's directory; not a file path) "
                              "and the function, separated by a colon.")
        if reference.split(":")[0].endswith(".py"):
            raise ConfigError(field, f"is {reference!r}, which names a file, not a module.",
                              f"write `{reference.split(':')[0][:-3]}:{reference.split(':')[1]}` (the module name).")
        self.reference = reference
        self.base_dir = str(base_dir) if base_dir is not None else None
        self.field = field
        self._fn: Callable[..., Any] | None = None

    def load(self) -> Callable[..., Any]:
        if self._fn is None:
            module_name, attr = self.reference.split(":")
            if self.base_dir and self.base_dir not in sys.path:
                sys.path.insert(0, self.base_dir)  # modules next to the study file are importable
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise ConfigError(self.field, f"cannot import module `{module_name}` ({exc}).",
                                  "check the name and that it is importable from the study's directory.") from None
            except (Exception, SystemExit) as exc:  # noqa: BLE001 - the module's own code failed on import
                raise ConfigError(self.field, f"importing module `{module_name}` failed "
                                  f"({type(exc).__name__}: {exc}).", "fix the module so that it imports.") from None
            fn = module
            for part in attr.split("."):
                fn = getattr(fn, part, None)  # type: ignore[assignment]
                if fn is None:
                    raise ConfigError(self.field, f"module `{module_name}` has no attribute `{attr}`.",
                                      "check the function name.")
            if not callable(fn):
                raise ConfigError(self.field, f"`{self.reference}` is not callable.")
            self._fn = fn
        return self._fn

    def validate(self, space: Any, metrics: Any) -> None:
        fn = self.load()
        for hook in ("validate",):
            if callable(getattr(fn, hook, None)):
                getattr(fn, hook)(space, metrics)

    def __call__(self, config: Mapping[str, Any], reporter: "Reporter") -> Any:
        return self.load()(config, reporter)

    def __getstate__(self) -> dict[str, Any]:
        return {"reference": self.reference, "base_dir": self.base_dir, "field": self.field, "_fn": None}

    def __repr__(self) -> str:
        return f"FunctionObjective({self.reference!r})"
