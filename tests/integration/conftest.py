from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Iterator

import pytest

HERE = Path(__file__).parent


@pytest.fixture(autouse=True)
def sigint_kept(request: pytest.FixtureRequest) -> Iterator[None]:
    """Name the test after which this process ignores Ctrl-C (every process it starts would then
    ignore it too), and put the handler back: in the full suite something leaves SIGINT and
    SIGQUIT ignored, and the signal tests start their drivers with SIGINT restored because of it."""
    before = sigint_ignored()
    yield
    if sigint_ignored() and not before:
        warnings.warn(f"{request.node.nodeid} left SIGINT ignored in the test process; restored", stacklevel=1)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def sigint_ignored() -> bool:
    """Whether the kernel ignores SIGINT for this process: C code may set it without Python
    knowing (``signal.getsignal`` answers from Python's own table)."""
    try:
        with open("/proc/self/status") as f:
            mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigIgn"))
    except (OSError, StopIteration, ValueError):
        return signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    return bool(mask & (1 << (signal.SIGINT - 1)))


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    """A working directory with the test objectives next to where study files go."""
    shutil.copy(HERE / "tl_test_objectives.py", tmp_path / "tl_test_objectives.py")
    return tmp_path


def tunelab_cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tunelab.cli.main", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)
