"""One place decides device, dtype and placement; loaders honour it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from workbench.common import RunConfig, runtime
from workbench.common.models import load_causal_lm
from workbench.common.runtime import placement_from, resolve_dtype, resolve_placement


def _fake_cuda(monkeypatch, capability=(8, 0), count=2):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)


def test_cpu_defaults_stay_float32():
    p = resolve_placement()
    if not torch.cuda.is_available():
        assert p.device == torch.device("cpu") and p.dtype == torch.float32
    assert resolve_placement(None, None).kwargs() == {"device": torch.device("cpu"),
                                                      "dtype": torch.float32}


def test_bf16_on_ampere_or_newer_only(monkeypatch):
    _fake_cuda(monkeypatch, (8, 0))
    assert runtime.resolve_device("auto") == torch.device("cuda")
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_placement("auto", "auto").dtype == torch.bfloat16
    assert resolve_placement("cpu", "auto").dtype == torch.float32  # CPU named: float32
    _fake_cuda(monkeypatch, (7, 5))
    assert resolve_dtype("auto", torch.device("cuda:0")) == torch.float32
    assert resolve_placement("cuda:1", "float16").dtype == torch.float16


def test_placement_from_a_config(monkeypatch):
    cfg = RunConfig(device="cpu", dtype="bfloat16")
    assert placement_from(cfg) == {"device": torch.device("cpu"), "dtype": torch.bfloat16}
    assert placement_from(cfg, dtype="float32")["dtype"] == torch.float32
    big = SimpleNamespace(device="auto", dtype="auto", device_map=None,
                          max_memory={"0": "70GiB", "cpu": "200GiB"})
    kw = placement_from(big)
    assert kw["device_map"] == "auto"  # a memory cap implies accelerate's placement
    assert kw["max_memory"] == {0: "70GiB", "cpu": "200GiB"}
    _fake_cuda(monkeypatch, count=2)
    kw = placement_from(SimpleNamespace(device="cuda", dtype="auto", device_map="balanced",
                                        max_memory="40GiB"))
    assert kw["device_map"] == "balanced" and kw["max_memory"] == {0: "40GiB", 1: "40GiB"}
    assert kw["dtype"] == torch.bfloat16


def test_max_memory_for_every_gpu_needs_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    with pytest.raises(ValueError, match="no GPU is visible"):
        resolve_placement("cpu", "auto", max_memory="10GiB")


def test_loader_on_meta_reads_no_weights(tiny_llama_dir, monkeypatch):
    from transformers import AutoModelForCausalLM

    def refuse(*a, **k):
        raise AssertionError("weights were read")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", refuse)
    model, tok = load_causal_lm("tiny:llama", device="meta", dtype="bfloat16")
    assert {p.device.type for p in model.parameters()} == {"meta"}
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.config.vocab_size == len(tok)


def test_loader_passes_the_placement_on(tiny_llama_dir, monkeypatch):
    """The recorded from_pretrained call: dtype, device_map and max_memory as resolved."""
    from transformers import AutoModelForCausalLM

    calls = []
    real = AutoModelForCausalLM.from_pretrained.__func__

    def record(cls, path, **kw):
        calls.append(kw)
        kw = {k: v for k, v in kw.items() if k not in ("device_map", "max_memory")}
        return real(cls, path, **kw)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", classmethod(record))
    load_causal_lm("tiny:llama", device_map="auto", max_memory={"cpu": "1GiB"},
                   dtype="bfloat16", with_tokenizer=False)
    assert calls[-1]["dtype"] == torch.bfloat16 and calls[-1]["device_map"] == "auto"
    assert calls[-1]["max_memory"] == {"cpu": "1GiB"}
    assert calls[-1]["use_safetensors"] is True and calls[-1]["trust_remote_code"] is False
    m = load_causal_lm("tiny:llama", with_tokenizer=False)
    assert "device_map" not in calls[-1] and calls[-1]["dtype"] == torch.float32
    assert m.dtype == torch.float32 and runtime.model_device(m) == torch.device("cpu")


def test_local_judge_honours_the_placement(tiny_llama_dir):
    from workbench.eval.judges import make_judge

    j = make_judge("hf", "tiny:llama", device="meta", dtype="bfloat16")
    model, _ = j._load()
    assert model.dtype == torch.bfloat16 and runtime.model_device(model).type == "meta"
    j = make_judge("hf", "tiny:llama", dtype="bfloat16")
    model, _ = j._load()
    assert model.dtype == torch.bfloat16 and runtime.model_device(model).type == "cpu"


def test_environment_shards_cuda_loads_only(monkeypatch):
    monkeypatch.setenv("WORKBENCH_DEVICE_MAP", "auto")
    monkeypatch.setenv("WORKBENCH_MAX_MEMORY", '{"0": "30GiB", "cpu": "64GiB"}')
    cpu = resolve_placement("cpu", "auto")
    assert cpu.device_map is None and cpu.max_memory is None  # CPU runs never change
    _fake_cuda(monkeypatch)
    p = resolve_placement("cuda", "auto")
    assert p.device_map == "auto" and p.max_memory == {0: "30GiB", "cpu": "64GiB"}
    explicit = resolve_placement("cuda", "auto", device_map={"": 0})
    assert explicit.device_map == {"": 0} and explicit.max_memory is None
