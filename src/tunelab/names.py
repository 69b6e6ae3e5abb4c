"""Study names: one rule on every surface (the YAML ``name``, ``tune(study_name=...)``, ``--study``).

A study name becomes a directory under the trial root, so it must be one plain path component:
no separators, no ``..``, nothing absolute.
"""

from __future__ import annotations

import re
from typing import Any

from tunelab.errors import ConfigError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")
#: Leaves room under a file system's 255-byte limit for ``.replaced-<timestamp>`` suffixes.
MAX_LENGTH = 200


def check_study_name(name: Any, field: str = "name") -> str:
    """Return ``name`` when it is a valid study name; raise ``ConfigError`` naming ``field`` otherwise."""
    if not isinstance(name, str):
        raise ConfigError(field, f"is {name!r}, but a study name must be a string.",
                          "use letters, digits, '-', '_' and '.', e.g. `my-study`.")
    if len(name) > MAX_LENGTH or not _NAME.fullmatch(name):
        shown = name if len(name) <= 60 else name[:57] + "..."
        raise ConfigError(field, f"is {shown!r}; a study name is one directory name: it starts with a letter "
                          f"or digit and holds only letters, digits, '-', '_' and '.' (at most {MAX_LENGTH}).",
                          "pick a plain name such as `my-study` (no '/', no '..', not an absolute path).")
    return name


def safe_name_part(text: str) -> str:
    """``text`` turned into something a study name may hold (``<lambda>`` -> ``lambda``)."""
    cleaned = re.sub(r"[^A-Za-z0-9_.\-]+", "_", text).strip("_.-")
    return cleaned[:80] or "study"
