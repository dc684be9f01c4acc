"""Zero-shot through lm-eval on the offline data: prompts, hand-checked loglikelihoods, errors."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from workbench.common.models import load_causal_lm
from workbench.eval.zeroshot import build_task, evaluate
from workbench.pruning.blocks import BlockModel


@pytest.fixture(scope="module")
def tiny():
    return load_causal_lm("tiny:llama")


def _hand_ll(model, tok, ctx: str, cont: str) -> float:
    """log p(cont | ctx): lm-eval's split (whole string encoded, context tokens cut off)."""
    whole = tok(ctx + cont, add_special_tokens=False).input_ids
    n_ctx = len(tok(ctx, add_special_tokens=False).input_ids)
    ids = torch.tensor([whole])
    with torch.no_grad():
        lp = F.log_softmax(model(input_ids=ids).logits[0, :-1].float(), -1)
    tgt = ids[0, 1:]
    return float(lp[n_ctx - 1:].gather(-1, tgt[n_ctx - 1:, None]).sum())


def test_lm_eval_matches_hand_loglikelihood_and_sees_removed_blocks(tiny):
    model, tok = tiny
    res = evaluate(model, tok, ("piqa", "winogrande"), limit=2, log_samples=True)
    assert res["piqa"]["metric"] == "acc_norm" and res["winogrande"]["metric"] == "acc"
    assert res["piqa"]["n"] == 2 and "validation" in res["note"]
    assert res["avg"] == pytest.approx((res["piqa"]["score"] + res["winogrande"]["score"]) / 2)
    s = res["samples"]["piqa"][0]
    (ctx, cont), _ = s["arguments"]
    assert ctx == f"Question: {s['doc']['goal']}\nAnswer:" and cont == " " + s["doc"]["sol1"]
    assert s["resps"][0][0][0] == pytest.approx(_hand_ll(model, tok, ctx, cont), abs=1e-3)
    lls = [r[0][0] for r in s["resps"]]
    assert s["acc"] == float(max(range(2), key=lls.__getitem__) == s["target"])
    with BlockModel(model) as bm, bm.removed([("mlp", 1)]):
        pruned = evaluate(model, tok, ("piqa",), limit=2, log_samples=True)
        ll = pruned["samples"]["piqa"][0]["resps"][0][0][0]
        assert ll == pytest.approx(_hand_ll(model, tok, ctx, cont), abs=1e-3)
    assert abs(ll - s["resps"][0][0][0]) > 1e-3


def test_arc_uses_local_validation_split():
    task = build_task("arc_challenge", limit=3)
    docs = list(task.eval_docs)
    assert len(docs) == 3 and "answerKey" in docs[0]
    assert task.doc_to_target(docs[0]) == docs[0]["choices"]["label"].index(docs[0]["answerKey"])


def test_errors(tiny):
    with pytest.raises(ValueError, match="unknown zero-shot task 'boolq'"):
        evaluate(*tiny, ("boolq",))
    with pytest.raises(ValueError, match="eval limit"):
        build_task("piqa", limit=0)


def test_stderr_and_per_item_scores(tiny):
    import math

    from workbench.eval.zeroshot import per_item, row_columns

    res = evaluate(*tiny, ("piqa", "winogrande"), limit=4)
    for t in ("piqa", "winogrande"):
        vals = res[t]["values"]
        assert len(vals) == len(res[t]["ids"]) == res[t]["n"] == 4
        assert sum(vals) / 4 == pytest.approx(res[t]["score"])
        if 0 < sum(vals) < 4:  # lm-eval's mean_stderr: sample std / sqrt(n)
            mu = sum(vals) / 4
            sd = math.sqrt(sum((v - mu) ** 2 for v in vals) / 3)
            assert res[t]["stderr"] == pytest.approx(sd / 2)
    assert res["n"] == 8
    row = row_columns(res, ("piqa", "winogrande"))
    assert row["n_zeroshot"] == 4 and row["avg"] == round(100 * res["avg"], 2)
    assert "piqa_stderr" in row and "avg_stderr" in row
    body = per_item({"a": res, "b": res}, ("piqa", "winogrande"))
    assert body["ids"][0] == res["piqa"]["ids"][0] and len(body["values"]["b"]) == 8
