"""Block model: identity when nothing is removed, hand-built forward, parameter counts, errors."""

from __future__ import annotations

import pytest
import torch

from workbench.common.models import load_causal_lm
from workbench.pruning.blocks import BlockModel, parse_block


@pytest.fixture(scope="module")
def tiny():
    return load_causal_lm("tiny:llama")


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_remove_nothing_is_bit_identical_and_restores(arch):
    model, _ = load_causal_lm(f"tiny:{arch}")
    x = torch.randint(0, 500, (2, 12))
    with torch.no_grad():
        ref = model(input_ids=x).logits
        with BlockModel(model) as bm:
            assert torch.equal(model(input_ids=x).logits, ref)
            with bm.removed([("mha", 1), ("mlp", 2)]):
                assert not torch.equal(model(input_ids=x).logits, ref)
            assert torch.equal(model(input_ids=x).logits, ref)
        assert "forward" not in model.model.layers[0].__dict__
        assert torch.equal(model(input_ids=x).logits, ref)


def test_remove_one_mlp_equals_hand_built_forward(tiny):
    model, _ = tiny
    x = torch.randint(0, 500, (1, 10))
    drop = 2
    with torch.no_grad():
        inner = model.model
        h = inner.embed_tokens(x)
        pos = torch.arange(x.shape[1])[None]
        pe = inner.rotary_emb(h, pos)
        for i, layer in enumerate(inner.layers):
            a, _ = layer.self_attn(hidden_states=layer.input_layernorm(h), attention_mask=None,
                                   position_embeddings=pe, position_ids=pos)
            h = h + a
            if i != drop:
                h = h + layer.mlp(layer.post_attention_layernorm(h))
        hand = model.lm_head(inner.norm(h))
        with BlockModel(model) as bm, bm.removed([("mlp", drop)]):
            got = model(input_ids=x).logits
    torch.testing.assert_close(got, hand, atol=1e-5, rtol=1e-5)


def test_param_counts_match_hand_count(tiny):
    model, _ = tiny
    c = model.config
    d, ff = c.hidden_size, c.intermediate_size
    hd = getattr(c, "head_dim", None) or d // c.num_attention_heads
    q, kv = c.num_attention_heads * hd, c.num_key_value_heads * hd
    mha = d * q + 2 * d * kv + q * d + d  # q, k, v, o (no bias) + input LN
    mlp = 3 * d * ff + d  # gate, up, down + post-attention LN
    emb = c.vocab_size * d
    total = emb + (0 if c.tie_word_embeddings else emb) + c.num_hidden_layers * (mha + mlp) + d
    with BlockModel(model) as bm:
        assert bm.block_params(("mha", 0)) == mha
        assert bm.block_params(("mlp", 3)) == mlp
        assert bm.total_params == total
        assert bm.ratio([("mha", 0), ("mlp", 1)]) == pytest.approx((mha + mlp) / total)


def test_errors(tiny):
    model, _ = tiny
    with BlockModel(model) as bm:
        with pytest.raises(ValueError, match="does not exist.*4 layers"):
            bm.set_removed([("mha", 7)])
        with pytest.raises(ValueError, match="bad block"):
            parse_block(("attn", 1))
        with pytest.raises(ValueError, match="block_type"):
            bm.blocks("both")
    bert = type("M", (torch.nn.Module,), {})()
    bert.config = type("C", (), {"model_type": "bert"})()
    with pytest.raises(ValueError, match="unsupported architecture 'bert'.*Llama, Mistral, "
                                         "Qwen2, Gemma3"):
        BlockModel(bert)
