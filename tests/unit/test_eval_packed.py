"""Packed multiple-choice scoring: the same log-likelihoods and greedy flags as lm-eval's HFLM."""

from __future__ import annotations

import pytest
import torch
from lm_eval.models.huggingface import HFLM

from workbench.common.models import load_causal_lm
from workbench.eval.packed import PackedHFLM, pack_rows, packed_batch
from workbench.eval.zeroshot import evaluate
from workbench.pruning.blocks import BlockModel


@pytest.fixture(scope="module")
def tiny():
    return load_causal_lm("tiny:llama")


def _req(ctx, cont):
    return (("c", "x"), list(ctx), list(cont))


def test_pack_rows_groups_by_context_and_splits_long_rows():
    reqs = [_req([1, 2, 3], [4, 5]), _req([9], [7]), _req([1, 2, 3], [6, 7, 8]),
            _req([1, 2, 3], [5]), _req([2] * 9, [3, 3])]
    rows, rest = pack_rows(reqs, max_len=6)
    # context [1,2,3] (3) + [4] (1) + [6,7] (2) = 6; the third choice adds 0 tokens and fits
    assert rows == [([1, 2, 3], [0, 2, 3]), ([9], [1])] and rest == [4]
    rows, _ = pack_rows(reqs[:4], max_len=5)
    assert rows == [([1, 2, 3], [0]), ([1, 2, 3], [2, 3]), ([9], [1])]


def test_packed_batch_mask_positions_and_targets():
    reqs = [_req([1, 2], [3, 4, 5]), _req([1, 2], [6])]
    pb = packed_batch([([1, 2], [0, 1]), ], reqs, torch.float32)
    assert pb["input_ids"].tolist() == [[1, 2, 3, 4]]
    assert pb["position_ids"].tolist() == [[0, 1, 2, 3]]
    allow = (pb["attention_mask"][0, 0] == 0).int().tolist()
    assert allow == [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]
    # logits at position 1 (last context token) predict both first tokens
    assert pb["where"] == {0: (0, [1, 2, 3]), 1: (0, [1])} and pb["first"] == 1
    reqs = [_req([1], [3, 4]), _req([1], [5, 6]), _req([7, 8, 9], [2])]
    pb = packed_batch([([1], [0, 1]), ([7, 8, 9], [2])], reqs, torch.float32)
    assert pb["position_ids"].tolist() == [[0, 1, 1], [0, 1, 2]]
    allow = (pb["attention_mask"][0, 0] == 0).int().tolist()
    assert allow == [[1, 0, 0], [1, 1, 0], [1, 0, 1]]  # the second choice does not see the first
    pad = (pb["attention_mask"][1, 0] == 0).int().tolist()
    assert pad == [[1, 0, 0], [1, 1, 0], [1, 1, 1]] and pb["first"] == 0


@pytest.mark.parametrize("batch_size", [1, 3])
def test_same_loglikelihoods_as_hflm(tiny, batch_size):
    model, tok = tiny
    model.eval()
    ref = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size, device="cpu")
    ours = PackedHFLM(pretrained=model, tokenizer=tok, batch_size=batch_size, device="cpu")
    texts = [("The cat sat on", [" the mat", " a very long and winding road home", " it"]),
             ("Question: 2+2?\nAnswer:", [" 4", " four, of course"]),
             ("A", [" b c d e f"])]
    reqs = []
    for ctx, conts in texts:
        for c in conts:
            reqs.append(((ctx, c), *ref._encode_pair(ctx, c)))
    reqs.append(reqs[0])  # a repeated request
    with torch.no_grad():
        want = ref._loglikelihood_tokens(reqs, disable_tqdm=True)
        got = ours._loglikelihood_tokens(reqs, disable_tqdm=True)
    assert [g for _, g in got] == [g for _, g in want]
    assert [ll for ll, _ in got] == pytest.approx([ll for ll, _ in want], abs=1e-4)
    # a short window: rows split, and requests over it go to HFLM's (left-truncating) path
    ours._max_length = ref._max_length = 12
    with torch.no_grad():
        want = ref._loglikelihood_tokens(reqs, disable_tqdm=True)
        got = ours._loglikelihood_tokens(reqs, disable_tqdm=True)
    assert len(pack_rows(reqs, 12)[1]) > 0
    assert [ll for ll, _ in got] == pytest.approx([ll for ll, _ in want], abs=1e-4)


def test_packed_evaluate_equals_hflm_with_removed_blocks(tiny):
    model, tok = tiny
    with BlockModel(model) as bm, bm.removed([("mha", 0), ("mlp", 1)]):
        a = evaluate(model, tok, ("hellaswag", "arc_easy", "winogrande"), limit=4,
                     batch_size=2, log_samples=True)
        b = evaluate(model, tok, ("hellaswag", "arc_easy", "winogrande"), limit=4,
                     batch_size=2, log_samples=True, packed=True)
    for t in ("hellaswag", "arc_easy", "winogrande"):
        assert b[t]["values"] == a[t]["values"]
        lla = [r[0][0] for s in a["samples"][t] for r in s["resps"]]
        llb = [r[0][0] for s in b["samples"][t] for r in s["resps"]]
        assert llb == pytest.approx(lla, abs=1e-4)


def test_other_attention_kernels_use_hflms_path(tiny, monkeypatch):
    model, tok = tiny
    ours = PackedHFLM(pretrained=model, tokenizer=tok, batch_size=2, device="cpu")
    monkeypatch.setattr(model.config, "_attn_implementation", "flash_attention_2")
    called = []
    monkeypatch.setattr(HFLM, "_loglikelihood_tokens",
                        lambda self, reqs, *a, **k: called.append(len(reqs)) or [(0.0, True)])
    assert ours._loglikelihood_tokens([_req([1, 2], [3])], disable_tqdm=True) == [(0.0, True)]
    assert called == [1]
