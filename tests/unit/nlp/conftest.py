"""Fixtures for the text-classification tests: one tiny model and dataset per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# nlp_fixtures lives in tests/ (shared with the integration tests); tests/ has no __init__.py.
_TESTS = str(Path(__file__).resolve().parents[2])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

pytest.importorskip("torch")
pytest.importorskip("transformers")

import nlp_fixtures  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return nlp_fixtures.build_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return nlp_fixtures.make_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="session")
def pair_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return nlp_fixtures.make_dataset(tmp_path_factory.mktemp("pairs"), pairs=True)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A token cache shared by tests that do not count tokenizer calls (saves rebuilding)."""
    return tmp_path_factory.mktemp("token-cache")
