"""The fast path computes what the stock model computes: same logits, same gradients."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

import nlp_fixtures
from tunelab.errors import ConfigError
from tunelab.nlp import allocator, fastpath

CPU = torch.device("cpu")


def _tiny(kind: str) -> Any:
    import transformers as t

    torch.manual_seed(0)
    bert = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=100)
    if kind == "bert":
        return t.BertForSequenceClassification(t.BertConfig(**bert))
    if kind == "roberta":
        return t.RobertaForSequenceClassification(t.RobertaConfig(**bert, pad_token_id=1))
    if kind == "electra":
        return t.ElectraForSequenceClassification(t.ElectraConfig(**bert, embedding_size=32))
    if kind == "distilbert":
        return t.DistilBertForSequenceClassification(
            t.DistilBertConfig(dim=32, n_layers=2, n_heads=4, hidden_dim=64, vocab_size=100))
    if kind == "gpt2":
        return t.GPT2ForSequenceClassification(t.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=100,
                                                             pad_token_id=0))
    raise ValueError(kind)


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(5, 100, (3, 9), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    return ids, mask


@pytest.mark.parametrize("kind", ["bert", "roberta", "electra", "distilbert"])
@pytest.mark.parametrize("padded", [True, False])
def test_same_logits_and_gradients_as_the_stock_model(kind: str, padded: bool) -> None:
    stock = _tiny(kind)
    fast = copy.deepcopy(stock)
    applied = fastpath.apply(fast, seed=0, device=CPU)
    assert "first-token last layer" in applied and "fast CPU attention dropout" in applied
    ids, mask = _batch()
    mask = mask if padded else None
    for model in (stock, fast):
        model.eval()  # dropout off: the two must then agree exactly
        model(input_ids=ids, attention_mask=mask).logits.square().sum().backward()
    with torch.no_grad():
        torch.testing.assert_close(fast(input_ids=ids, attention_mask=mask).logits,
                                   stock(input_ids=ids, attention_mask=mask).logits, rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(stock.named_parameters(), fast.parameters()):
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)
    assert fast.state_dict().keys() == stock.state_dict().keys()  # checkpoints are unchanged


def test_the_last_layer_runs_for_the_first_token_only() -> None:
    model = _tiny("bert")
    fastpath.apply(model, seed=0, device=CPU)
    seen = []
    model.bert.encoder.layer[-1].intermediate.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    ids, mask = _batch()
    model(input_ids=ids, attention_mask=mask)
    assert seen == [(3, 1, 64)]


def test_unknown_architectures_keep_their_layers_and_attention() -> None:
    stock = _tiny("gpt2")
    fast = copy.deepcopy(stock)
    assert fastpath.apply(fast, seed=0, device=CPU) == ["fast CPU dropout"]
    assert fast.config._attn_implementation == stock.config._attn_implementation
    ids, mask = _batch()
    stock.eval(), fast.eval()
    with torch.no_grad():
        torch.testing.assert_close(fast(input_ids=ids, attention_mask=mask).logits,
                                   stock(input_ids=ids, attention_mask=mask).logits)


def test_classes_outside_transformers_keep_their_last_layer() -> None:
    from transformers import BertForSequenceClassification

    class MeanPooledBert(BertForSequenceClassification):  # as remote code might: same model_type, other head
        pass

    model = MeanPooledBert(_tiny("bert").config)
    assert "first-token last layer" not in fastpath.apply(model, seed=0, device=CPU)


def test_fast_dropout_drops_p_and_keeps_the_expectation() -> None:
    drop = fastpath.FastDropout(0.1, fastpath.KeepMasks(0)).train()
    out = drop(torch.ones(1_000_000))
    assert abs((out == 0).float().mean().item() - 0.1) < 0.002
    assert abs(out.mean().item() - 1.0) < 0.005
    assert torch.equal(drop.eval()(torch.ones(10)), torch.ones(10))


def test_dropout_masks_follow_the_seed() -> None:
    ids, mask = _batch()

    def logits(seed: int) -> torch.Tensor:
        model = _tiny("bert")
        fastpath.apply(model, seed=seed, device=CPU)
        model.train()
        return model(input_ids=ids, attention_mask=mask).logits

    assert torch.equal(logits(3), logits(3))
    assert not torch.equal(logits(3), logits(4))


def test_attention_with_dropout_matches_sdpa_when_nothing_is_dropped() -> None:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    module = torch.nn.Module().train()
    module.tunelab_masks = fastpath.KeepMasks(0)
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 7, 8, generator=gen) for _ in range(3))
    keep = torch.ones(2, 1, 7, 7, dtype=torch.bool)
    keep[1, :, :, 5:] = False
    tiny_p = 1e-9  # rounds to a threshold of 0: no element is dropped, the path is the dropout one
    ours, _ = fastpath.fast_attention(module, q, k, v, keep, dropout=tiny_p, scaling=0.3)
    ref, _ = sdpa_attention_forward(module.eval(), q, k, v, keep, dropout=0.0, scaling=0.3)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_fast_path_is_a_boolean_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="objective.fast_path"):
        nlp_fixtures.tiny_objective(tmp_path, {"train": tmp_path / "t.csv", "validation": tmp_path / "v.csv"},
                                    tmp_path, fast_path="yes")


def test_keep_freed_memory_is_accepted_by_glibc() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's mallopt is Linux only")
    assert allocator.keep_freed_memory() and allocator.keep_freed_memory()  # idempotent


class _FakeLibc:
    """Stands in for glibc: records ``mallopt(param, value)`` calls, accepting or refusing them."""

    def __init__(self, accept: bool) -> None:
        self.calls: list[tuple[int, int]] = []
        self.accept = accept
        lib = self

        class Mallopt:
            argtypes: Any = None
            restype: Any = None

            def __call__(self, param: int, value: int) -> int:
                lib.calls.append((param, value))
                return 1 if lib.accept else 0

        self.mallopt = Mallopt()


def _fake_platform(monkeypatch: pytest.MonkeyPatch, libc: _FakeLibc, platform: str) -> None:
    """Give the allocator module its own sys.platform and ctypes.CDLL (the real modules stay as they are)."""
    import ctypes
    import types

    monkeypatch.setattr(allocator, "_done", False)
    monkeypatch.setattr(allocator, "sys", types.SimpleNamespace(platform=platform))
    monkeypatch.setattr(allocator, "ctypes", types.SimpleNamespace(CDLL=lambda name: libc, c_int=ctypes.c_int,
                                                                   util=ctypes.util))


@pytest.mark.parametrize("accept", [True, False])
def test_keep_freed_memory_asks_glibc_for_the_intended_settings(monkeypatch: pytest.MonkeyPatch, accept: bool) -> None:
    # What the settings buy (page faults per step) is measured by benchmarks/allocator.py, not here.
    libc = _FakeLibc(accept)
    _fake_platform(monkeypatch, libc, "linux")
    assert allocator.keep_freed_memory() is accept
    assert libc.calls[0] == (allocator.M_MMAP_THRESHOLD, 32 << 20)  # the largest glibc accepts on 64-bit
    if accept:
        assert libc.calls == [(-3, 32 << 20), (-1, 1 << 30), (-2, 64 << 20)]  # mmap threshold, trim, top pad
        assert allocator.keep_freed_memory() and len(libc.calls) == 3  # once per process
    else:
        assert len(libc.calls) == 1  # gives up at the first refusal, keeping glibc's defaults


def test_keep_freed_memory_is_off_outside_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    libc = _FakeLibc(True)
    _fake_platform(monkeypatch, libc, "darwin")
    assert allocator.keep_freed_memory() is False and libc.calls == []


@pytest.mark.parametrize("fast_path", [True, False])
def test_a_cpu_trial_keeps_freed_memory_with_the_fast_path_only(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model: Path, tiny_data: dict, shared_cache: Path,
        fast_path: bool) -> None:
    from tunelab.nlp import train

    calls: list[str] = []
    monkeypatch.setattr(train.allocator, "keep_freed_memory", lambda: calls.append("mallopt") or True)
    obj = nlp_fixtures.tiny_objective(tiny_model, tiny_data, shared_cache, defaults={"num_train_epochs": 1},
                                      fast_path=fast_path)
    rep = nlp_fixtures.make_reporter(tmp_path / "t")
    obj(rep.config, rep)
    assert calls == (["mallopt"] if fast_path else [])


def test_a_transformers_without_the_attention_interface_turns_the_fast_path_off(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    model = _tiny("bert")
    stock = copy.deepcopy(model)
    monkeypatch.setitem(sys.modules, "transformers.integrations.sdpa_attention", None)  # as in transformers 4.47
    assert "sdpa_attention" in (fastpath.unavailable() or "")
    with caplog.at_level("WARNING", logger="tunelab.nlp"):
        assert fastpath.apply(model, seed=0, device=CPU) == []
    assert "fast path off: transformers" in caplog.text and "transformers >= 5.0" in caplog.text
    assert model.config._attn_implementation == stock.config._attn_implementation
    assert [type(m) for m in model.modules()] == [type(m) for m in stock.modules()]


_NO_SDPA_TRIALS = """
import sys
import transformers.modeling_utils, transformers.models.bert.modeling_bert  # load what transformers needs itself
sys.modules["transformers.integrations.sdpa_attention"] = None  # then hide it from tunelab, as in transformers 4.47
from pathlib import Path
import nlp_fixtures
model, train, validation, cache, out = map(Path, sys.argv[1:])
for fast_path in (False, True):
    obj = nlp_fixtures.tiny_objective(model, {"train": train, "validation": validation}, cache,
                                      defaults={"num_train_epochs": 1}, fast_path=fast_path)
    rep = nlp_fixtures.make_reporter(out / str(fast_path))
    print(fast_path, obj(rep.config, rep)["accuracy"] > 0)
"""


def test_trials_run_on_a_transformers_without_the_sdpa_module(tmp_path: Path, tiny_model: Path, tiny_data: dict,
                                                               shared_cache: Path) -> None:
    import os

    tests_dir = str(Path(nlp_fixtures.__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests_dir, *sys.path])}
    out = subprocess.run([sys.executable, "-c", _NO_SDPA_TRIALS, str(tiny_model), str(tiny_data["train"]),
                          str(tiny_data["validation"]), str(shared_cache), str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split() == ["False", "True", "True", "True"]
    assert "fast path off" in out.stderr
