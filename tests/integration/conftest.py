from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    """A working directory with the test objectives next to where study files go."""
    shutil.copy(HERE / "tl_test_objectives.py", tmp_path / "tl_test_objectives.py")
    return tmp_path


def tunelab_cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tunelab.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
