"""Token alignment on the real offline tokenizers (SmolLM2 pivot; Gemma-3 and Qwen2.5 sources)."""

from __future__ import annotations

import numpy as np
import pytest
from datasets import Dataset

from workbench.common.models import load_tokenizer
from workbench.fusion.align import (
    DTWOptions,
    align_representations,
    align_text,
    alignment_stats,
    build_vocab_map,
    compare_vocab_maps,
    to_bytes,
    token_texts,
)
from workbench.fusion.formats import (
    ALIGNED_COLUMNS,
    FALLBACK,
    ONE_TO_MANY,
    ONE_TO_ONE,
    PAD_ID,
    SAME_VOCAB,
)
from workbench.viz.fusion import alignment_matrix_figure

pytestmark = pytest.mark.slow  # loading the three GGUF tokenizers takes ~25 s here

MIXED = ("Here is the fix 🙂:\n```python\ndef área(r):\n    return 3.14159 * r ** 2  # café\n```\n"
         "Ça marche? 你好，世界! 👍🏽 Thanks.")
K = 4
NORM = {"options": DTWOptions(text="normalized"), "vocab_text": "normalized"}


@pytest.fixture(scope="module")
def toks():
    return {n: load_tokenizer(n) for n in
            ("smollm2-135m-instruct", "gemma3-270m", "qwen2.5-coder-0.5b-instruct")}


def _repr(tok, texts: list[str], ids: list[str] | None = None) -> Dataset:
    """A representation dataset whose row t puts the gold next token first (then fillers)."""
    cols = {c: [] for c in ("id", "input_ids", "labels", "topk_ids", "topk_logits", "gold_ce",
                            "metric_ce")}
    for n, text in enumerate(texts):
        x = tok(text)["input_ids"]
        nxt = x[1:] + x[-1:]
        cols["id"].append(ids[n] if ids else f"s{n}")
        cols["input_ids"].append(x)
        cols["labels"].append(x)
        cols["topk_ids"].append([[g, 10, 11, 12] for g in nxt])
        cols["topk_logits"].append([[4.0, 3.0, 2.0, 1.0]] * len(x))
        cols["gold_ce"].append([0.1] * len(x))
        cols["metric_ce"].append(0.5)
    return Dataset.from_dict(cols)


def _ends(tt, ids: list[int]) -> list[int]:
    """Byte offset where each token ends in the text (control tokens such as BOS are empty)."""
    out, pos = [], 0
    for i, t in zip(ids, tt.of(ids), strict=True):
        pos += 0 if i in tt.special else len(to_bytes(t))
        out.append(pos)
    return out


def test_text_aligned_with_itself_is_the_identity(toks):
    for tok in toks.values():
        al = align_text(MIXED, tok, tok, add_special_tokens=True)
        assert al.groups == [[i] for i in range(len(al.pivot_ids))]
        assert set(al.relations) == {"1→1"}
    tok = toks["smollm2-135m-instruct"]
    ds, stats = align_representations(_repr(tok, [MIXED]), _repr(tok, [MIXED]), tok, tok, "ms")
    assert stats["same_vocab"] == 1.0 and set(ds[0]["align_kind"]) == {SAME_VOCAB}
    assert ds[0]["topk_ids"] == _repr(tok, [MIXED])[0]["topk_ids"]  # copied as-is


@pytest.mark.parametrize("source", ["gemma3-270m", "qwen2.5-coder-0.5b-instruct"])
def test_mixed_sample_every_pivot_position_aligned_or_documented_fallback(toks, source):
    piv_tok, src_tok = toks["smollm2-135m-instruct"], toks[source]
    P, S = _repr(piv_tok, [MIXED]), _repr(src_tok, [MIXED])
    ptt, stt = token_texts(piv_tok), token_texts(src_tok)
    # the canonical texts reproduce the text byte for byte (markers, emoji, CJK, byte fallback)
    for tt, x in ((ptt, P[0]["input_ids"]), (stt, S[0]["input_ids"])):
        body = [t for i, t in zip(x, tt.of(x), strict=True) if i not in tt.special]
        assert b"".join(to_bytes(t) for t in body) == MIXED.encode()
    for vmap in ("em", "mined", "ms"):  # our canonical texts (the official switches: see
        # test_fusion_align_official.py; raw Gemma strings match far less, by the official bug)
        ds, stats = align_representations(P, S, piv_tok, src_tok, vmap, **NORM)
        row = ds[0]
        assert tuple(ds.column_names) == ALIGNED_COLUMNS
        kinds = np.array(row["align_kind"])
        ids = np.array(row["topk_ids"])
        logits = np.array(row["topk_logits"], dtype=np.float32)
        assert kinds.shape == (len(P[0]["input_ids"]),) and ids.shape == (len(kinds), K)
        assert set(kinds.tolist()) <= {ONE_TO_ONE, ONE_TO_MANY, FALLBACK}
        assert stats["one_to_one"] + stats["one_to_many"] + stats["fallback"] == pytest.approx(1)
        matched = kinds != FALLBACK
        assert matched.mean() > (0.5 if vmap == "ms" else 0.3), (vmap, stats)
        assert (ids[matched, 0] != PAD_ID).all()  # every matched row holds a distribution
        fb = ~matched
        one_hot = fb & (ids[:, 0] != PAD_ID)
        # documented fallbacks: one-hot (logit 1.0) on the gold next pivot token, or empty
        nxt = np.array(P[0]["input_ids"][1:] + P[0]["input_ids"][-1:])
        assert (ids[one_hot, 0] == nxt[one_hot]).all() and (logits[one_hot, 0] == 1.0).all()
        assert (ids[one_hot, 1:] == PAD_ID).all()
        assert (ids[fb & ~one_hot] == PAD_ID).all()
        shares = [stats[f"candidates_{k}"] for k in ("exact", "via_map", "dropped")]
        assert sum(shares) == pytest.approx(1) and 0 < stats["top1_is_gold"] <= 1
    # off-by-one: where the source's next token is the pivot's next token (same text), the
    # aligned top-1 is exactly that pivot token
    ds, _ = align_representations(P, S, piv_tok, src_tok, "ms", **NORM)
    kinds = np.array(ds[0]["align_kind"])
    top1 = np.array(ds[0]["topk_ids"])[:, 0]
    al = align_text(MIXED, piv_tok, src_tok, add_special_tokens=True, options=NORM["options"])
    p_ends = _ends(ptt, al.pivot_ids)
    s_ends = _ends(stt, al.source_ids)
    checked = 0
    for i in np.flatnonzero(kinds == ONE_TO_ONE)[:-1]:
        j = len(s_ends) - 1 - s_ends[::-1].index(p_ends[i]) if p_ends[i] in s_ends else None
        if j is not None and j + 1 < len(al.source_ids) and \
                stt.texts[al.source_ids[j + 1]] == ptt.texts[al.pivot_ids[i + 1]]:
            assert top1[i] == al.pivot_ids[i + 1], i
            checked += 1
    assert checked > 10


def test_explorer_helpers_and_figure(toks):
    piv_tok, src_tok = toks["smollm2-135m-instruct"], toks["gemma3-270m"]
    al = align_text("naïve code 😀", piv_tok, src_tok)
    assert al.cost.shape == (len(al.pivot_ids), len(al.source_ids))
    assert al.path[0] == (0, 0) and al.path[-1] == (len(al.pivot_ids) - 1, len(al.source_ids) - 1)
    assert len(al.table()) == len(al.pivot_ids)
    fig = alignment_matrix_figure(al)
    assert len(fig.data[1].x) == len(al.path)
    legend = [t.name for t in fig.data[2:]]  # one legend entry per path colour used
    assert legend and set(legend) == {f"path: {r}" for r in set(al.relations)}
    src, piv = token_texts(src_tok), token_texts(piv_tok)
    ids = src_tok("naïve 你好 😀", add_special_tokens=False)["input_ids"]
    maps = [build_vocab_map(n, src, piv, needed=ids) for n in ("em", "mined")]
    df = compare_vocab_maps(ids, maps)
    assert len(df) == len(ids) and (~df["agree"]).any()  # em has no match for a whole emoji


def test_bad_inputs_give_one_line_errors(toks):
    piv_tok, src_tok = toks["smollm2-135m-instruct"], toks["gemma3-270m"]
    P = _repr(piv_tok, ["a b", "c d"], ids=["x1", "x2"])
    S = _repr(src_tok, ["a b", "c d"], ids=["x1", "x3"])
    with pytest.raises(ValueError, match="'x2'"):
        align_representations(P, S, piv_tok, src_tok, "em")
    with pytest.raises(ValueError, match="larger than the pivot vocabulary"):
        align_representations(P, P, piv_tok, src_tok, "em", k=10**6)
    with pytest.raises(ValueError, match="missing column"):
        align_representations(P.remove_columns("topk_ids"), S, piv_tok, src_tok, "em")
    with pytest.raises(ValueError, match="unknown vocabulary mapping 'mind'"):
        align_representations(P, _repr(src_tok, ["a b", "c d"], ids=["x1", "x2"]), piv_tok,
                              src_tok, "mind")
    stats = alignment_stats([[1, 1, 3], [2]])
    assert stats["positions"] == 4 and stats["one_to_one"] == 0.5


def test_shared_dtw_groups_give_the_same_alignment_for_every_map(toks):
    from workbench.fusion.align import dtw_groups

    piv_tok, src_tok = toks["smollm2-135m-instruct"], toks["qwen2.5-coder-0.5b-instruct"]
    P, S = _repr(piv_tok, [MIXED, "def f(x):\n    return x"]), _repr(src_tok, [MIXED, "def f(x):\n    return x"])
    groups = dtw_groups(P, S, piv_tok, src_tok)
    for vmap in ("em", "ms"):
        own, own_stats = align_representations(P, S, piv_tok, src_tok, vmap)
        shared, shared_stats = align_representations(P, S, piv_tok, src_tok, vmap, groups=groups)
        assert own.to_dict() == shared.to_dict() and own_stats == shared_stats
    with pytest.raises(ValueError, match="no DTW alignment for sample"):
        align_representations(P, S, piv_tok, src_tok, "em", groups={})
