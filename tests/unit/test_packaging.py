"""The extras that error messages name exist, and install what the message says is missing."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the check is the same on every Python

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "tunelab"


def _extras() -> dict[str, set[str]]:
    """Extra name -> the distribution names it installs (normalised, extras and versions dropped)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return {extra: {_dist(req) for req in reqs} for extra, reqs in project["optional-dependencies"].items()}


def _dist(requirement: str) -> str:
    name = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    assert name, requirement
    return re.sub(r"[-_.]+", "-", name.group(0)).lower()


#: Import names that differ from their distribution's name.
_IMPORT_TO_DIST = {"sklearn": "scikit-learn"}


def _require_calls() -> list[tuple[str, str, str]]:
    """(where, module, extra) for every ``require("module", "extra")`` call in the package."""
    calls = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name != "require":
                continue
            args = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            assert len(args) == 2, f"{path}:{node.lineno}: require() takes the module and the extra as literals"
            calls.append((f"{path.relative_to(ROOT)}:{node.lineno}", args[0], args[1]))
    return calls


def test_the_source_names_extras_through_require() -> None:
    assert len(_require_calls()) >= 10  # the scan finds the calls (a broken scan would pass vacuously)


@pytest.mark.parametrize("where,module,extra", _require_calls())
def test_every_extra_named_by_require_exists_and_installs_the_module(where: str, module: str, extra: str) -> None:
    extras = _extras()
    assert extra in extras, f"{where}: require() names the extra {extra!r}, which pyproject.toml lacks"
    # Import names are distribution names here, up to '-' for '_' (optuna_dashboard, playwright.sync_api).
    dist = _IMPORT_TO_DIST.get(module.split(".")[0], _dist(module.split(".")[0]))
    assert dist in extras[extra], f"{where}: `pip install 'tunelab[{extra}]'` does not install {dist}"


def test_the_postgres_extra_installs_psycopg_3_with_a_sqlalchemy_that_has_its_dialect() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["postgres"]
    assert any(re.fullmatch(r"psycopg\[binary\]>=3[.\d]*", d) for d in deps), deps
    assert any(re.fullmatch(r"sqlalchemy>=2[.\d]*", d, re.I) for d in deps), deps  # postgresql+psycopg: SA 2.0


def test_the_test_extra_has_hypothesis_and_the_core_has_tqdm() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "hypothesis" in {_dist(r) for r in project["optional-dependencies"]["test"]}
    assert "tqdm" in {_dist(r) for r in project["dependencies"]}


def _floors() -> dict[str, str]:
    """Distribution -> the lowest version pyproject.toml allows (its `>=`), over the core and every extra."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [*project["dependencies"], *(r for rs in project["optional-dependencies"].values() for r in rs)]
    floors: dict[str, str] = {}
    for req in reqs:
        found = re.search(r">=\s*([0-9][0-9a-z.]*)", req)
        if found:
            floors[_dist(req)] = found.group(1)
    return floors


def test_the_lowest_version_pins_are_the_pyproject_floors() -> None:
    from packaging.version import Version

    lines = (line.split("#")[0].strip() for line in (ROOT / "scripts" / "min-versions.txt").read_text().splitlines())
    pins = dict(line.split("==") for line in lines if line)
    floors = _floors()
    # The lowest-version CI step (make test-min) pins these; a floor raised or lowered without its pin fails here.
    for name in ("optuna", "transformers", "tokenizers", "safetensors", "scipy", "cmaes", "psycopg", "sqlalchemy",
                 "tqdm"):
        assert name in pins and name in floors, name
    for name, pinned in pins.items():
        if _dist(name) in floors:
            assert Version(pinned) == Version(floors[_dist(name)]), (name, pinned, floors[_dist(name)])
