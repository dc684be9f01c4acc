"""Hub ids resolve through a local Hugging Face cache (built here) in loaders and merges."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from workbench.common import hub, models
from workbench.common.models import MANIFEST, load_causal_lm, resolve_model
from workbench.fusion.merge import Checkpoint, MergeConfig, run_merge
from workbench.fusion.merge.synthetic import perturbed_copies

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _cache_entry(cache: Path, repo: str, src: Path, skip=(MANIFEST,)) -> Path:
    """models--org--name/{refs/main, snapshots/<hash>/...}: the layout huggingface_hub writes."""
    entry = cache / ("models--" + repo.replace("/", "--"))
    snap = entry / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.name not in skip:
            shutil.copy2(f, snap / f.name)
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text(COMMIT)
    return snap


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, tiny_llama_dir):
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    variants = perturbed_copies(str(tiny_llama_dir), tmp_path / "variants", n=2, scale=0.05)
    snaps = {"org/base": _cache_entry(cache, "org/base", tiny_llama_dir)}
    for i, folder in enumerate(variants):
        snaps[f"org/target-{i}"] = _cache_entry(cache, f"org/target-{i}", folder)
    return cache, snaps


def test_hub_id_resolves_to_its_snapshot(hub_cache):
    _, snaps = hub_cache
    assert hub.is_hub_id("org/base") and not hub.is_hub_id("tiny:llama")
    assert hub.local_model_dir("org/base") == snaps["org/base"]
    assert hub.model_config_path("org/base") == snaps["org/base"] / "config.json"
    # the failing call: a hub id passed through resolve_model into Checkpoint
    ck = Checkpoint(resolve_model("org/base"), "org/base")
    assert ck.folder == snaps["org/base"] and "model.embed_tokens.weight" in ck.names


def test_loader_takes_a_hub_id(hub_cache):
    model, tok = load_causal_lm("org/base", dtype="bfloat16")
    assert model.dtype == torch.bfloat16 and len(tok) == model.config.vocab_size


def test_merge_of_hub_ids(hub_cache, tmp_path):
    _, snaps = hub_cache
    cfg = MergeConfig(models=("org/target-0", "org/target-1"), base_model="org/base",
                      merge_method="sce", parameters={"select_topk": 0.5},
                      out_dir=str(tmp_path / "merged"), device="cpu")
    res = run_merge(cfg)
    merged = Checkpoint(res.out_dir)
    base = Checkpoint("org/base")
    t0, t1 = Checkpoint("org/target-0"), Checkpoint("org/target-1")
    name = "model.layers.0.mlp.up_proj.weight"
    m, b = merged.load(name), base.load(name)
    assert m.shape == b.shape and not torch.equal(m, b)
    # every merged entry lies between the base and the targets' extremes (a convex mix of deltas)
    lo = torch.minimum(b, torch.minimum(t0.load(name), t1.load(name)))
    hi = torch.maximum(b, torch.maximum(t0.load(name), t1.load(name)))
    assert bool(((m >= lo - 1e-6) & (m <= hi + 1e-6)).all())
    assert (res.out_dir / "tokenizer.json").exists()  # tokenizer from the base's snapshot


def test_missing_id_offline_is_one_line(hub_cache):
    with pytest.raises(ValueError) as e:
        hub.local_model_dir("org/not-there")
    msg = str(e.value)
    assert "\n" not in msg
    assert "'org/not-there'" in msg and "not in the Hugging Face cache" in msg
    assert "HF_HUB_OFFLINE=1" in msg and "hf download org/not-there" in msg
    with pytest.raises(ValueError, match="not in the Hugging Face cache"):
        Checkpoint("org/not-there")
    with pytest.raises(ValueError, match="not in the Hugging Face cache"):
        load_causal_lm("org/not-there")


def test_snapshot_without_safetensors_is_refused(hub_cache, tmp_path):
    cache, snaps = hub_cache
    src = tmp_path / "pickled"
    src.mkdir()
    shutil.copy2(snaps["org/base"] / "config.json", src / "config.json")
    (src / "pytorch_model.bin").write_bytes(b"not loaded")
    _cache_entry(cache, "org/pickled", src)
    with pytest.raises(ValueError, match="no safetensors weights"):
        hub.local_model_dir("org/pickled")
    # config-only lookups (workbench plan) still work
    assert hub.model_config_path("org/pickled").exists()


def test_registry_names_and_folders_are_untouched(tiny_llama_dir):
    assert hub.local_model_dir(str(tiny_llama_dir)) == Path(tiny_llama_dir)
    assert hub.local_model_dir("tiny:llama") == models.prepare("tiny:llama")


def test_sce_weights_take_hub_ids(hub_cache):
    from workbench.fusion.train.merges import sce_matrix_weights

    rows = sce_matrix_weights("org/base", {"a": "org/target-0", "b": "org/target-1"}, tau=0.5)
    assert rows and {r["target"] for r in rows} == {"a", "b"}
    one = [r["eta"] for r in rows if r["tensor"] == rows[0]["tensor"]]
    assert abs(sum(one) - 1) < 1e-5  # the two coefficients of a matrix sum to 1
