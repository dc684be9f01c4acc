"""The generation helper: batched left-padded HF generation, seeds, backends."""

from __future__ import annotations

import pytest
import torch

from workbench.common.models import load_causal_lm
from workbench.eval import generation
from workbench.eval.generation import chat_prompts, generate, generate_chat, pick_backend

PROMPTS = ["hi", "a much longer prompt with many more words in it than the first", "ok then"]


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    torch.manual_seed(0)
    return load_causal_lm("tiny:llama")


def test_batched_greedy_equals_one_by_one(tiny):
    model, tok = tiny
    texts = chat_prompts(tok, PROMPTS)
    tok.padding_side = "right"
    batched = generate(model, tok, texts, max_new_tokens=6, batch_size=3)
    single = [generate(model, tok, [t], max_new_tokens=6, batch_size=1)[0] for t in texts]
    assert batched == single
    assert len(batched) == 3 and all(isinstance(x, str) and x for x in batched)
    assert tok.padding_side == "right"  # restored


def test_sampling_repeats_with_a_seed_and_greedy_ignores_it(tiny):
    model, tok = tiny
    a = generate_chat(model, tok, PROMPTS, max_new_tokens=8, temperature=1.0, seed=3)
    b = generate_chat(model, tok, PROMPTS, max_new_tokens=8, temperature=1.0, seed=3)
    c = generate_chat(model, tok, PROMPTS, max_new_tokens=8, temperature=1.0, seed=4)
    assert a == b and a != c
    g1 = generate_chat(model, tok, PROMPTS, max_new_tokens=8, seed=1)
    g2 = generate_chat(model, tok, PROMPTS, max_new_tokens=8, seed=2)
    assert g1 == g2


def test_assistant_prefix_and_conversations(tiny):
    _, tok = tiny
    conv = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "q2"}]
    one, two = chat_prompts(tok, ["q1", conv], assistant_prefix="Rating: [[")
    assert one.endswith("Rating: [[") and "q1" in one
    assert two.index("a1") < two.index("q2") and two.endswith("Rating: [[")


def test_strip_and_empty_inputs(tiny):
    model, tok = tiny
    assert generate(model, tok, [], max_new_tokens=3) == []
    out = generate_chat(model, tok, PROMPTS[:1], max_new_tokens=4, strip=True)
    assert out[0] == out[0].strip()


def test_backend_choice(monkeypatch):
    monkeypatch.setattr(generation, "vllm_available", lambda: False)
    assert pick_backend("auto", "some/model") == "hf"
    assert pick_backend("hf") == "hf"
    with pytest.raises(ImportError, match="needs the vllm package and CUDA"):
        pick_backend("vllm", "some/model")
    with pytest.raises(ValueError, match="needs model_path"):
        pick_backend("vllm")
    with pytest.raises(ValueError, match="must be one of hf, vllm, auto, got 'tgi'"):
        pick_backend("tgi")
    monkeypatch.setattr(generation, "vllm_available", lambda: True)
    assert pick_backend("auto", "some/model") == "vllm"
    assert pick_backend("auto", None) == "hf"  # vLLM loads its own copy: it needs a path


def test_bad_arguments_fail_naming_them(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        generate(model, tok, ["x"], max_new_tokens=0)
    with pytest.raises(ValueError, match="top_p in"):
        generate(model, tok, ["x"], max_new_tokens=2, temperature=1.0, top_p=0.0)
