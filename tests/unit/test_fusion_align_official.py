"""Parity of each official-code switch on the real offline tokenizers (SmolLM2-135M-Instruct pivot;
Gemma-3-270M and Qwen2.5-Coder-0.5B-Instruct sources), against alignments checked by hand.

Hand checks (edit distances; DTW paths tie-broken diagonal, left, up from the end):

- "named SmolLM" -- pivot ` named| Sm|ol|LM`, Gemma ` named| Smol|LM`. Decoded texts (spaces kept):
  ` Sm`/` Smol` 2, `ol`/` Smol` 3, `ol`/`LM` 2, so ` Smol`->` Sm`, `LM`->`ol`, `LM`->`LM` costs 4
  and beats ` Smol`->`ol` (5): `ol` takes `LM` (official). Normalized (spaces stripped): `ol`/`Smol`
  is 2 as well, both paths cost 4, the diagonal wins: `ol` takes ` Smol`.
- "MOV AX, 5" -- pivot `MO|V| A|X|,| |5`, both sources `MOV| AX|,| |5`. Decoded: `X`/` AX` 2,
  `X`/`,` 1: `X` takes `,` (official). Normalized: `X`/`AX` 1 = `X`/`,` 1: `X` takes ` AX`.
- "import java.util.List;" -- pivot `import| java|.|util|.|List|;`, Qwen `import| java|.util|.List|;`.
  Decoded: `.`/` java` 5, `.`/`.util` 4: the first `.` takes `.util` (official). Normalized:
  `.`/`java` 4 = `.`/`.util` 4: it takes ` java`.
"""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from scipy import sparse

from workbench.common.models import load_tokenizer
from workbench.fusion.align import (
    DTWOptions,
    align_representations,
    align_text,
    build_vocab_map,
    cooccurrence_counts,
    official_marker,
    token_texts,
)
from workbench.fusion.train.kernels import mince_select

PIVOT, GEMMA, QWEN = "smollm2-135m-instruct", "gemma3-270m", "qwen2.5-coder-0.5b-instruct"
DECODE, NORMALIZED = DTWOptions(), DTWOptions(text="normalized")


@pytest.fixture(scope="module")
def toks():
    return {n: load_tokenizer(n) for n in (PIVOT, GEMMA, QWEN)}


def _pairs(al, pivot_token: str, nth: int = 0) -> list[str]:
    """Source texts aligned to the nth occurrence of ``pivot_token`` (decoded pivot text)."""
    hits = [j for j, t in enumerate(al.pivot_texts) if t == pivot_token]
    return [al.source_texts[i] for i in al.groups[hits[nth]]]


@pytest.mark.slow
@pytest.mark.parametrize("text, source, pivot_token, official, ours", [
    ("You are a helpful AI assistant named SmolLM, trained by Hugging Face", GEMMA, "ol",
     ["LM"], [" Smol"]),
    ("MOV AX, 5", GEMMA, "X", [","], [" AX"]),
    ("MOV AX, 5", QWEN, "X", [","], [" AX"]),
    ("import java.util.List;", QWEN, ".", [".util"], [" java"]),
])
def test_dtw_text_switch_on_the_issue_examples(toks, text, source, pivot_token, official, ours):
    dec = align_text(text, toks[PIVOT], toks[source], options=DECODE)
    norm = align_text(text, toks[PIVOT], toks[source], options=NORMALIZED)
    assert _pairs(dec, pivot_token) == official  # default = newest official script
    assert [t.replace(" ", "") for t in _pairs(norm, pivot_token)] == \
        [t.replace(" ", "") for t in ours]


@pytest.mark.slow
def test_decode_texts_are_the_tokenizers_own_decoding(toks):
    for name in (PIVOT, GEMMA, QWEN):
        tok = toks[name]
        ids = tok("  naïve 你好 😀\n", add_special_tokens=False)["input_ids"]
        tt = token_texts(tok, "decode")
        assert tt.of(ids) == [tok.decode([i]) for i in ids]
        assert tt.byte_texts is not None and tt.of(ids, "byte") == tt.of(ids)  # characters
    # identical tokenisations stay 1->1 under both modes
    al = align_text("Hello world!", toks[PIVOT], toks[QWEN], options=DECODE)
    assert al.groups == [[i] for i in range(len(al.pivot_ids))]


@pytest.mark.slow
def test_vocab_text_raw_keeps_the_official_marker_table(toks):
    # the official table: every one of these classes gets the byte-level marker, Gemma included
    assert [official_marker(toks[n]) for n in (PIVOT, GEMMA, QWEN)] == ["Ġ", "Ġ", "Ġ"]
    p, g, q = toks[PIVOT], toks[GEMMA], toks[QWEN]
    pw, gw, qw = (t.convert_tokens_to_ids(s) for t, s in ((p, "Ġworld"), (g, "▁world"),
                                                         (q, "Ġworld")))
    raw = {n: token_texts(toks[n], "raw") for n in (PIVOT, GEMMA, QWEN)}
    norm = {n: token_texts(toks[n], "normalized") for n in (PIVOT, GEMMA, QWEN)}
    assert raw[PIVOT].texts[pw] == " world" and raw[QWEN].texts[qw] == " world"
    assert raw[GEMMA].texts[gw] == "▁world"  # Gemma's ▁ is not its official marker
    assert norm[GEMMA].texts[gw] == " world"
    # em (exact match): raw finds Qwen's but not Gemma's word-initial token; normalized finds both
    em_raw = build_vocab_map("em", raw[GEMMA], raw[PIVOT], needed=[gw])
    em_norm = build_vocab_map("em", norm[GEMMA], norm[PIVOT], needed=[gw])
    assert em_raw[gw] == -1 and em_norm[gw] == pw
    assert build_vocab_map("em", raw[QWEN], raw[PIVOT], needed=[qw])[qw] == pw
    # a marker-less Gemma piece ("world" inside a word) matches under both
    g_in = g.convert_tokens_to_ids("world")
    assert build_vocab_map("em", raw[GEMMA], raw[PIVOT], needed=[g_in])[g_in] == \
        p.convert_tokens_to_ids("world")
    # raw strings are compared as written: a byte-level newline is "Ċ", Gemma's is "\n"
    nl = p.convert_tokens_to_ids("Ċ")
    assert raw[PIVOT].texts[nl] == "Ċ" and norm[PIVOT].texts[nl] == "\n"
    # ms on raw strings: ED("▁world", "world") = 1, x0.1 (one contains the other) -> 0.1 beats
    # ED("▁world", "word") = 2; the counts (1 each) do not change the order
    pword = p.convert_tokens_to_ids("Ġword")
    counts = sparse.csr_matrix(([1, 1], ([pw, pword], [gw, gw])),
                               shape=(len(raw[PIVOT]), len(raw[GEMMA])))
    ms = build_vocab_map("ms", raw[GEMMA], raw[PIVOT], needed=[gw], counts=counts)
    assert ms[gw] == pw


@pytest.mark.slow
def test_alignment_stats_report_the_switches_and_the_ms_fallback(toks):
    p, g = toks[PIVOT], toks[GEMMA]
    text = "You are SmolLM. import java.util.List; MOV AX, 5"

    def rep(tok):
        x = tok(text)["input_ids"]
        nxt = x[1:] + x[-1:]
        return Dataset.from_dict({"id": ["a"], "input_ids": [x], "labels": [x],
                                  "topk_ids": [[[n, 5, 6, 7] for n in nxt]],
                                  "topk_logits": [[[4.0, 3.0, 2.0, 1.0]] * len(x)],
                                  "gold_ce": [[0.1] * len(x)], "metric_ce": [0.5]})

    stats = {}
    for vt in ("raw", "normalized"):
        for opts in (DECODE, NORMALIZED):
            _, st = align_representations(rep(p), rep(g), p, g, "ms", options=opts,
                                          vocab_text=vt)
            stats[(vt, opts.text)] = st
            assert st["dtw_text"] == opts.text and st["vocab_text"] == vt
            assert 0.0 <= st["fallback_mass"] <= 1.0
            assert 0.0 < st["map_info"]["with_candidates_share"] <= 1.0
    # with counts from this one text, Gemma's filler ids 5-7 never co-occur: they go to the
    # fallback token, so some mass lands there
    assert stats[("raw", "decode")]["fallback_mass"] > 0
    # raw strings give Gemma's word-initial tokens no exact pivot match: fewer exact candidates
    assert stats[("raw", "decode")]["candidates_exact"] < \
        stats[("normalized", "decode")]["candidates_exact"]


def test_ms_group_repeats_counts_a_repeated_source_token_once_per_group():
    # pivot position 0 <- source positions 0, 1 (the same id 7 twice); position 1 <- 1 (id 7)
    al = [([5, 6], [7, 7], [[0, 1], [1]])]
    once = cooccurrence_counts(al, 10, 10).toarray()
    each = cooccurrence_counts(al, 10, 10, group_repeats="each").toarray()
    assert once[5, 7] == 1 and once[6, 7] == 1  # official: numpy fancy-index add
    assert each[5, 7] == 2 and each[6, 7] == 1
    with pytest.raises(ValueError, match="group_repeats"):
        cooccurrence_counts(al, 10, 10, group_repeats="twice")


def test_mince_reward_dtype_switch():
    # 1.999 rounds to 2.0 in bfloat16: rewards 1/exp(2) tie and the pivot (index 0) wins, as in
    # the official trainer; float32 keeps the source's lower CE
    m = torch.tensor([[2.0, 1.999], [2.0, 1.9], [float("nan"), 3.0]])
    assert mince_select(m).tolist() == [0, 1, 1]
    assert mince_select(m, "float32").tolist() == [1, 1, 1]
    with pytest.raises(ValueError, match="reward_dtype"):
        mince_select(m, "float16")
