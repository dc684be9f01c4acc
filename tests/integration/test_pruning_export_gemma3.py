"""Gemma3 real export: removed blocks gone from the file and the forward; logits, KV-cached
generation and `layer_types` follow the masked model (a tiny random Gemma3 with sliding and
full attention layers, a sliding window shorter than the generated sequence)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, Gemma3ForCausalLM, Gemma3TextConfig

from workbench.pruning import BlockModel, export_pruned, prune_model

S, F = "sliding_attention", "full_attention"
TYPES = [S, F, S, S, F, S]
# lone MHA on a sliding (0) and a full (4) layer, lone MLP on a full (1) and a sliding (5)
# layer, a whole sliding layer (2)
REMOVED = [("mha", 0), ("mlp", 1), ("mha", 2), ("mlp", 2), ("mha", 4), ("mlp", 5)]
GEMMA3_ATTRS = {"mha": ("self_attn.", "input_layernorm.", "post_attention_layernorm."),
                "mlp": ("mlp.", "pre_feedforward_layernorm.", "post_feedforward_layernorm.")}


def tiny_gemma3() -> Gemma3ForCausalLM:
    cfg = Gemma3TextConfig(vocab_size=300, hidden_size=64, intermediate_size=128,
                           num_hidden_layers=len(TYPES), num_attention_heads=4,
                           num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16,
                           sliding_window=4, max_position_embeddings=128, layer_types=TYPES,
                           rope_theta=10_000.0, rope_local_base_freq=100.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Gemma3ForCausalLM(cfg).eval()
        with torch.no_grad():  # non-trivial norms (Gemma3 inits their weights at 0)
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return model


def masked_reference(model, removed, x, steps):
    with torch.no_grad(), BlockModel(model) as bm, bm.removed(removed):
        logits = model(input_ids=x).logits
        gone = sum(bm.block_params(b) for b in removed)
        seq = x  # greedy decoding with the masked model, no KV cache
        for _ in range(steps):
            seq = torch.cat([seq, model(input_ids=seq).logits[:, -1].argmax(-1, keepdim=True)], 1)
    return logits, gone, seq


def test_gemma3_real_export_matches_masked_model(tmp_path):
    model = tiny_gemma3()
    x = torch.randint(0, 300, (2, 10), generator=torch.Generator().manual_seed(1))
    ref, gone, seq = masked_reference(model, REMOVED, x, steps=6)
    dense = sum(p.numel() for p in model.parameters())

    out = export_pruned(model, None, REMOVED, tmp_path / "m")
    info = json.loads((out / "block_order.json").read_text())
    loaded = AutoModelForCausalLM.from_pretrained(out)  # no trust_remote_code
    assert type(loaded).__name__ == "BlockPrunedGemma3TextForCausalLM"
    assert loaded.config.model_type == "blockpruned_gemma3_text"
    assert info["export"] == "removed"
    n = sum(p.numel() for p in loaded.parameters())
    assert n == info["parameters"] == dense - gone
    # kept layers 0, 1, 3, 4, 5 with their own attention types
    assert loaded.config.layer_types == [S, F, S, F, S]
    assert loaded.config.kept_blocks == [[False, True], [True, False], [True, True],
                                         [False, True], [True, False]]

    with torch.no_grad():
        got = loaded(input_ids=x).logits
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    # KV-cached greedy generation past the sliding window (4) == the masked model's
    gen = loaded.generate(x, max_new_tokens=6, do_sample=False, attention_mask=torch.ones_like(x))
    assert torch.equal(gen, seq)

    # the file holds no tensor of a removed block and nothing else beyond the parameters
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
        stored = sum(f.get_tensor(k).numel() for k in keys)
    keep = [0, 1, 3, 4, 5]
    for j, i in enumerate(keep):
        for kind in ("mha", "mlp"):
            present = any(k.startswith(f"model.layers.{j}.{a}") for k in keys
                          for a in GEMMA3_ATTRS[kind])
            assert present == ((kind, i) not in REMOVED), (j, i, kind)
    assert not any(k.startswith(f"model.layers.{len(keep)}.") for k in keys)
    assert stored == n


def test_gemma3_prune_model_real_and_zeroed():
    model = tiny_gemma3()
    x = torch.randint(0, 300, (1, 9), generator=torch.Generator().manual_seed(2))
    ref, gone, _ = masked_reference(model, REMOVED, x, steps=0)
    dense = sum(p.numel() for p in model.parameters())
    real = prune_model(model, REMOVED)  # in memory, before any save
    zeroed = prune_model(model, REMOVED, real=False)  # the old behaviour
    with torch.no_grad():
        torch.testing.assert_close(real(input_ids=x).logits, ref, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(zeroed(input_ids=x).logits, ref, rtol=1e-5, atol=1e-5)
    assert sum(p.numel() for p in real.parameters()) == dense - gone
    assert type(zeroed) is Gemma3ForCausalLM and len(zeroed.model.layers) == 5
    assert sum(p.numel() for p in zeroed.parameters()) > dense - gone
    assert sum(p.numel() for p in model.parameters()) == dense  # the input is untouched


@pytest.mark.parametrize("removed", [[("mha", i) for i in range(6)],  # no attention left
                                     [("mha", 1), ("mha", 4)]])  # no full attention left
def test_gemma3_export_generates_without_some_attention(removed, tmp_path):
    model = tiny_gemma3()
    x = torch.randint(0, 300, (1, 6), generator=torch.Generator().manual_seed(3))
    ref, _, seq = masked_reference(model, removed, x, steps=4)
    loaded = AutoModelForCausalLM.from_pretrained(export_pruned(model, None, removed,
                                                                tmp_path / "m"))
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=x).logits, ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(loaded.generate(x, max_new_tokens=4, do_sample=False), seq)
