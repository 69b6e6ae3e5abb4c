"""The preloaded worker's decisions: when forking is unsafe, what it preloads, its config key."""

from __future__ import annotations

import json
import sys
import threading
import types
from pathlib import Path

import pytest

from tunelab.config import parse_execution
from tunelab.errors import ConfigError
from tunelab.executors import _preload, _preload_server


def test_a_thread_in_the_server_blocks_forking(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_preload_server, "thread_count", lambda: 1)  # as the kernel counts them
    real, before = threading.active_count, threading.active_count()  # other tests may have left threads
    monkeypatch.setattr(threading, "active_count", lambda: real() - before + 1)
    assert _preload_server.fork_blocker() is None
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)  # a Python thread
    thread.start()
    try:
        assert "threads" in (_preload_server.fork_blocker() or "")
    finally:
        stop.set()
        thread.join()
    monkeypatch.setattr(_preload_server, "thread_count", lambda: 2)  # a C library's thread
    assert "2 threads" in (_preload_server.fork_blocker() or "")


def test_cuda_initialized_in_the_server_blocks_forking(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(is_initialized=lambda: True))
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    monkeypatch.setattr(_preload_server, "thread_count", lambda: 1)
    monkeypatch.setattr(threading, "active_count", lambda: 1)
    assert "CUDA" in (_preload_server.fork_blocker() or "")
    fake_torch.cuda.is_initialized = lambda: False
    assert _preload_server.fork_blocker() is None
    monkeypatch.setattr(_preload_server, "cuda_driver_loaded", lambda: True)  # cuInit without torch knowing
    assert "CUDA" in (_preload_server.fork_blocker() or "")


def test_importing_torch_does_not_count_as_cuda_initialized() -> None:
    """The server imports torch: that alone must not look like a CUDA driver in use."""
    if _preload.supported() is not None:
        pytest.skip("reads /proc/self/maps")
    pytest.importorskip("torch")
    import subprocess

    code = ("import torch, tunelab.executors._preload_server as s; "
            "print(s.cuda_driver_loaded(), torch.cuda.is_initialized())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**_preload.server_env()}, check=True).stdout.split()
    assert out == ["False", "False"]


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_no_fork_server_off_linux(monkeypatch: pytest.MonkeyPatch, platform: str) -> None:
    monkeypatch.setattr(sys, "platform", platform)
    assert platform in (_preload.supported() or "")
    preloader = _preload.Preloader(list(_preload.BASE_MODULES))
    assert preloader.spawn(0, 1, {}) is None and preloader.proc is None  # nothing started: a fresh interpreter


def test_a_function_objective_preloads_only_what_its_trials_import() -> None:
    def objective(config, reporter):  # noqa: ANN001, ANN202
        return 0.0

    modules = _preload.modules_for(objective)
    assert set(_preload.BASE_MODULES) <= set(modules)
    assert "tunelab.nlp.train" not in modules and "transformers.modeling_utils" not in modules
    assert all(m in _preload.BASE_MODULES or m in sys.modules for m in modules)


def test_a_text_classification_objective_preloads_torch_transformers_and_its_model(tmp_path: Path) -> None:
    from tunelab.objectives.text_classification import TextClassification

    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text(json.dumps({"model_type": "xlm-roberta"}))
    objective = TextClassification(model=str(tmp_path / "model"),
                                   data={"train": "t.csv", "validation": "v.csv", "text": "text", "label": "label"})
    modules = _preload.modules_for(objective)
    assert {"torch", "transformers", "tunelab.nlp.train"} <= set(modules)
    assert "transformers.models.xlm_roberta.modeling_xlm_roberta" in modules
    # A name that is not a model type is never turned into an import.
    (tmp_path / "model" / "config.json").write_text(json.dumps({"model_type": "bert; import os"}))
    assert not [m for m in _preload.modules_for(objective) if "import" in m]
    objective.model = "some-org/not-downloaded"  # a hub name: no config here, nothing model-specific
    assert not [m for m in _preload.modules_for(objective) if m.startswith("transformers.models.")
                and "auto" not in m]


def test_the_server_environment_holds_import_time_thread_pools_at_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    monkeypatch.delenv("JE_ARROW_MALLOC_CONF", raising=False)
    env = _preload.server_env()
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "1"
    assert env["TOKENIZERS_PARALLELISM"] == "false"
    assert env["JE_ARROW_MALLOC_CONF"] == "background_thread:false"
    assert env["PYTORCH_NVML_BASED_CUDA_CHECK"] == "1"
    monkeypatch.setenv("JE_ARROW_MALLOC_CONF", "narenas:2")  # the user's own setting is kept
    assert _preload.server_env()["JE_ARROW_MALLOC_CONF"] == "narenas:2"


def test_execution_preload_key() -> None:
    assert parse_execution({}).preload is True
    assert parse_execution({"preload": False}).preload is False
    with pytest.raises(ConfigError) as info:
        parse_execution({"preload": "no"})
    assert info.value.field == "execution.preload"


def test_make_executor_passes_preload_on() -> None:
    from tunelab.api import make_executor

    def objective(config, reporter):  # noqa: ANN001, ANN202
        return 0.0

    assert make_executor(objective, parse_execution({"preload": False}))._preloader is None
    executor = make_executor(objective, parse_execution({}))
    assert executor._preloader is not None and executor._preloader.proc is None  # started at the first launch

