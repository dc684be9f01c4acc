"""End to end: merge perturbed tiny llamas, reload with `from_pretrained`, generate; bad inputs."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from workbench.common.io import sha256_file
from workbench.common.models import resolve_model
from workbench.fusion.merge import Checkpoint, MergeConfig, load_merge_yaml, run_merge
from workbench.fusion.merge.synthetic import perturbed_copies


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Three seeded perturbations of tiny:llama, saved sharded (index + 3 shards each)."""
    root = tmp_path_factory.mktemp("inputs")
    return [str(p) for p in perturbed_copies("tiny:llama", root, 3, seed=0,
                                             max_shard_bytes=8_000_000)]


def _state(folder):
    ck = Checkpoint(folder)
    return {n: ck.load(n) for n in ck.names}


def _single_file_copy(src, dst):
    """A copy of model folder `src` with all tensors in one model.safetensors (for editing)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.safetensors", "*.index.json"))
    state = _state(src)
    save_file(state, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def test_sce_merge_reloads_and_generates(models, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "sce"
    res = run_merge(MergeConfig(models=("tiny:llama", *models), base_model="tiny:llama",
                                out_dir=str(out), max_shard_bytes=10_000_000))
    assert res.out_dir == out and not list(tmp_path.glob(".sce.tmp-*"))
    assert (out / "model.safetensors.index.json").exists()  # sharded output
    for f in ("chat_template.jinja", "tokenizer.json", "config.json", "merge_config.yaml"):
        assert (out / f).exists()
    for line in (out / "checksums.sha256").read_text().splitlines():
        digest, name = line.split("  ")
        assert sha256_file(out / name) == digest
    merged, base = _state(out), _state(resolve_model("tiny:llama"))
    assert merged.keys() == base.keys()
    assert all(torch.isfinite(t).all() for t in merged.values())
    assert not torch.equal(merged["model.layers.0.mlp.up_proj.weight"],
                           base["model.layers.0.mlp.up_proj.weight"])
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template
    ids = tok("Hello", return_tensors="pt")
    gen = model.generate(**ids, max_new_tokens=4, do_sample=False)
    assert gen.shape[1] == ids["input_ids"].shape[1] + 4
    # the config as written loads back to the same config
    assert load_merge_yaml(out / "merge_config.yaml") == MergeConfig(
        models=("tiny:llama", *models), base_model="tiny:llama", out_dir=str(out),
        max_shard_bytes=10_000_000)


@pytest.mark.parametrize("method", ["sce", "linear", "ties"])
def test_merging_a_model_with_itself_returns_it(models, tmp_path, method):
    twin = shutil.copytree(models[0], tmp_path / "twin")
    res = run_merge(MergeConfig(models=(str(twin), str(twin)), base_model=models[0],
                                merge_method=method, out_dir=str(tmp_path / "out")))
    a, b = _state(res.out_dir), _state(models[0])
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_mergekit_yaml_round_trip_matches_direct_config(models, tmp_path):
    cfg_path = tmp_path / "merge.yml"
    cfg_path.write_text(
        "models:\n" + "".join(f"  - model: {m}\n    parameters: {{weight: {w}}}\n"
                              for m, w in zip(models, (0.2, 0.3, 0.5), strict=True))
        + "merge_method: task_arithmetic\nbase_model: tiny:llama\n"
        + "parameters: {normalize: true}\ndtype: float32\n")
    a = run_merge(load_merge_yaml(cfg_path, out_dir=str(tmp_path / "a")))
    b = run_merge(MergeConfig(models=tuple(models), base_model="tiny:llama",
                              merge_method="task_arithmetic", parameters={"normalize": True},
                              model_parameters=({"weight": 0.2}, {"weight": 0.3}, {"weight": 0.5}),
                              out_dir=str(tmp_path / "b")))
    sa, sb = _state(a.out_dir), _state(b.out_dir)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # weights 0.2/0.3/0.5, normalised: a weighted average of the three models
    inputs = [_state(m) for m in models]
    k = "model.norm.weight"
    expect = 0.2 * inputs[0][k] + 0.3 * inputs[1][k] + 0.5 * inputs[2][k]
    torch.testing.assert_close(sa[k], expect)


def test_vocab_difference_and_tied_input(models, tmp_path):
    """A target with a smaller, tied vocabulary: merged on the common rows, base rows kept."""
    small = _single_file_copy(models[1], tmp_path / "small")
    state = load_file(small / "model.safetensors")
    state["model.embed_tokens.weight"] = state["model.embed_tokens.weight"][:40000].clone()
    del state["lm_head.weight"]
    save_file(state, str(small / "model.safetensors"), metadata={"format": "pt"})
    cfg = json.loads((small / "config.json").read_text())
    cfg.update(vocab_size=40000, tie_word_embeddings=True)
    (small / "config.json").write_text(json.dumps(cfg))
    res = run_merge(MergeConfig(models=(models[0], str(small)), base_model="tiny:llama",
                                merge_method="linear", out_dir=str(tmp_path / "out")))
    merged, base = _state(res.out_dir), _state(resolve_model("tiny:llama"))
    a, s = _state(models[0]), load_file(small / "model.safetensors")
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        assert merged[name].shape == base[name].shape
        assert torch.equal(merged[name][40000:], base[name][40000:])
        torch.testing.assert_close(merged[name][:40000],
                                   (a[name][:40000] + s["model.embed_tokens.weight"]) / 2)
    assert sorted(res.vocab_cropped) == ["lm_head.weight", "model.embed_tokens.weight"]


# ---- bad input: one-line errors ----------------------------------------------------------
def _fails(cfg_kwargs, match, tmp_path):
    with pytest.raises(ValueError, match=match) as e:
        run_merge(MergeConfig(out_dir=str(tmp_path / "out"), **cfg_kwargs))
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.tmp-*"))


def test_different_architecture(models, tmp_path):
    _fails(dict(models=(models[0], "tiny:mistral"), base_model="tiny:llama"),
           r"different architectures.*tiny:mistral.*mistral", tmp_path)


def test_shape_mismatch_names_the_tensor(models, tmp_path):
    bad = _single_file_copy(models[0], tmp_path / "bad")
    state = load_file(bad / "model.safetensors")
    state["model.layers.2.mlp.up_proj.weight"] = torch.zeros(96, 64)
    save_file(state, str(bad / "model.safetensors"), metadata={"format": "pt"})
    _fails(dict(models=(models[1], str(bad)), base_model="tiny:llama"),
           r"shape mismatch in tensor 'model.layers.2.mlp.up_proj.weight'.*\(96, 64\)", tmp_path)
    # the FuseChat-mergekit behaviour on request: keep the base tensor
    res = run_merge(MergeConfig(models=(models[1], str(bad)), base_model="tiny:llama",
                                shape_mismatch="keep_base", out_dir=str(tmp_path / "kept")))
    assert res.kept_base == ["model.layers.2.mlp.up_proj.weight"]


def test_missing_shard(models, tmp_path):
    broken = shutil.copytree(models[2], tmp_path / "broken")
    (broken / "model-00002-of-00003.safetensors").unlink()
    _fails(dict(models=(models[0], str(broken)), base_model="tiny:llama"),
           r"missing shard model-00002-of-00003.safetensors", tmp_path)


def test_nan_in_a_delta_names_tensor_and_model(models, tmp_path):
    bad = _single_file_copy(models[0], tmp_path / "nan")
    state = load_file(bad / "model.safetensors")
    state["model.layers.1.self_attn.k_proj.weight"][3, 5] = float("nan")
    save_file(state, str(bad / "model.safetensors"), metadata={"format": "pt"})
    _fails(dict(models=(models[1], str(bad)), base_model="tiny:llama"),
           rf"NaN/Inf in the delta of tensor 'model.layers.1.self_attn.k_proj.weight'.*{bad}",
           tmp_path)


def test_unknown_parameter_and_method(models, tmp_path):
    _fails(dict(models=tuple(models), base_model="tiny:llama", parameters={"select_top": 0.1}),
           r"Did you mean: select_topk", tmp_path)
    with pytest.raises(ValueError, match="Did you mean: ties"):
        MergeConfig(models=tuple(models), base_model="tiny:llama", merge_method="tie")
