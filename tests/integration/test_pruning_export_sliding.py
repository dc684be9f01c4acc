"""Real export of a Llama-family model with mixed sliding / full attention layers (Qwen2 with
`use_sliding_window`): after whole layers and lone MHA blocks are removed, each kept attention
keeps its own kind of KV cache, so KV-cached generation past the window equals the masked
model's (a tiny random Qwen2, window 4)."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM

from workbench.pruning import BlockModel, export_pruned

S, F = "sliding_attention", "full_attention"
TYPES = [F, F, S, F, S, S]
# lone MHA on full layers 0 and 1 (so every later attention moves down two cache slots if the
# cache were numbered by attention), a whole sliding layer (4), a lone MLP (5)
REMOVED = [("mha", 0), ("mha", 1), ("mha", 4), ("mlp", 4), ("mlp", 5)]


def tiny_qwen2() -> Qwen2ForCausalLM:
    cfg = Qwen2Config(vocab_size=300, hidden_size=64, intermediate_size=128,
                      num_hidden_layers=len(TYPES), num_attention_heads=4,
                      num_key_value_heads=2, use_sliding_window=True, sliding_window=4,
                      max_window_layers=2, layer_types=TYPES, max_position_embeddings=128)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Qwen2ForCausalLM(cfg).eval()


@pytest.mark.parametrize("impl", ["sdpa", "eager"])
def test_qwen2_sliding_real_export_generates_like_masked_model(tmp_path, impl):
    model = tiny_qwen2()
    model.config._attn_implementation = impl
    assert model.config.layer_types == TYPES
    x = torch.randint(0, 300, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), BlockModel(model) as bm, bm.removed(REMOVED):
        ref = model(input_ids=x).logits
        seq = x  # greedy decoding with the masked model, no KV cache
        for _ in range(8):
            seq = torch.cat([seq, model(input_ids=seq).logits[:, -1].argmax(-1, keepdim=True)], 1)
    out = export_pruned(model, None, REMOVED, tmp_path / "m")
    loaded = AutoModelForCausalLM.from_pretrained(out, attn_implementation=impl)
    assert type(loaded).__name__ == "BlockPrunedQwen2ForCausalLM"
    assert loaded.config.layer_types == [F, F, S, F, S]
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=x).logits, ref, rtol=1e-5, atol=1e-5)
    gen = loaded.generate(x, max_new_tokens=8, do_sample=False, attention_mask=torch.ones_like(x))
    assert torch.equal(gen, seq)
