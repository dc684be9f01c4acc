"""FuseChat token alignment kernels against hand-computed values (papers.md §1.a step 2)."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from workbench.fusion.align import (
    VOCAB_MAPS,
    AlignRules,
    DTWOptions,
    TokenTexts,
    align_distributions,
    build_vocab_map,
    bytes_to_unicode,
    compare_vocab_maps,
    cooccurrence_counts,
    cost_matrix,
    decompose,
    display_text,
    dtw,
    dtw_align,
    load_counts,
    normalize_token,
    official_rules,
    reference_dtw,
    save_counts,
    strip_marker,
    to_bytes,
)
from workbench.fusion.formats import FALLBACK, ONE_TO_MANY, ONE_TO_ONE, PAD_ID

# --- normalisation ---------------------------------------------------------------------------


def test_byte_level_tokens_decode_to_text_and_split_utf8_concatenates():
    assert normalize_token("Ġworld", "byte_level") == " world"
    assert normalize_token("ĊĠĠĠ", "byte_level") == "\n   "
    assert normalize_token("ĉend", "byte_level") == "\tend"
    assert normalize_token("ĠcafÃ©", "byte_level") == " café"
    head, tail = normalize_token("ĠðŁĺ", "byte_level"), normalize_token("Ģ", "byte_level")
    assert head == " \udcf0\udc9f\udc98" and tail == "\udc80"  # an emoji split in two tokens
    assert (to_bytes(head) + to_bytes(tail)).decode("utf-8") == " 😀"
    assert normalize_token("<|im_start|>", "byte_level") == "<|im_start|>"
    table = bytes_to_unicode()
    assert len(table) == 256 and len(set(table.values())) == 256


def test_sentencepiece_markers_and_byte_fallback():
    assert normalize_token("▁world", "sentencepiece") == " world"
    assert normalize_token("▁▁", "sentencepiece") == "  "
    assert normalize_token("<0x0A>", "sentencepiece") == "\n"
    assert normalize_token("<0xF0>", "sentencepiece") == "\udcf0"
    assert normalize_token("\n\n", "sentencepiece") == "\n\n"
    with pytest.raises(ValueError, match="kind"):
        normalize_token("a", "wordpiece")


def test_strip_marker_and_display():
    assert strip_marker(" a b ") == "ab"
    assert strip_marker("   ") == ""
    assert display_text(" \udcf0x\n", visible_whitespace=True) == "␣<0xF0>x\\n"


def test_token_texts_prefers_regular_over_byte_fallback():
    tt = TokenTexts.from_tokens(["<0x0A>", "\n", "▁a", "<s>"], "sentencepiece", special={3})
    assert tt.texts == ["\n", "\n", " a", "<s>"]
    assert tt.lookup("\n") == 1 and tt.lookup(" a") == 2 and tt.lookup("<s>") == 3
    assert tt.of([2, 99], unit="byte") == [" a", ""]


# --- DTW ------------------------------------------------------------------------------------


NORM = DTWOptions(text="normalized")  # our canonical texts: the space is the marker, stripped


def test_cost_matrix_strips_markers_and_falls_back_to_raw_when_empty():
    c = cost_matrix([" go", " ", "ing"], ["go", "  ", " going"], NORM)
    # " go"/"go": 0 after stripping; " "/"  ": both strip to "" -> raw ED(" ", "  ") = 1;
    # " "/" going": raw ED(" ", " going") = 5; "ing"/" going": ED("ing", "going") = 2.
    assert c.tolist() == [[0, 2, 3], [2, 1, 5], [3, 3, 2]]
    c_off = cost_matrix([" "], ["  "], DTWOptions(empty_fallback=False, text="normalized"))
    assert c_off.tolist() == [[0]]
    c_sub = cost_matrix(["go"], ["going", "xy"], DTWOptions(substring_weight=True,
                                                            text="normalized"))
    assert c_sub.tolist() == [[3, 20]]  # "go" in "going": 3 * 0.1 (x10 units); else 2 * 1


def test_dtw_one_to_many_hand_computed():
    # costs: go/going 3, go/to 1, ing/going 2, ing/to 3, to/going 4, to/to 0
    # D = [[3, 4], [5, 6], [9, 5]]; backtrack (2,1) -> diag (1,0) -> up (0,0)
    res = dtw(["go", "ing", " to"], [" going", " to"], NORM)
    assert res.cumulative.tolist() == [[3, 4], [5, 6], [9, 5]]
    assert res.path == [(0, 0), (1, 0), (2, 1)]
    assert res.groups == [[0, 1], [2]]


def test_dtw_many_to_one_and_identity():
    assert dtw_align([" going"], ["go", "ing"]) == [[0], [0]]
    assert dtw_align(list("abc"), list("abc")) == [[0], [1], [2]]


def test_dtw_tie_order_switch_hand_computed():
    # source a b a, pivot b a b: D = [[1,1,2],[1,2,1],[2,1,2]]; at (2,2) left and up tie at 1.
    src, piv = ["a", "b", "a"], ["b", "a", "b"]
    assert dtw(src, piv).cumulative.tolist() == [[1, 1, 2], [1, 2, 1], [2, 1, 2]]
    assert dtw_align(src, piv) == [[0, 1], [2], [2]]  # newest FuseChat: diag, left, up
    assert dtw_align(src, piv, DTWOptions(tie_order="diag_up_left")) == [[0], [0], [1, 2]]
    with pytest.raises(ValueError, match="tie_order"):
        DTWOptions(tie_order="up")


def test_dtw_empty_and_whitespace_only():
    assert dtw_align([], ["a", "b"]) == [[], []]
    assert dtw_align(["a"], []) == []
    # " " vs "  " -> raw 1, " " vs "a" -> raw 1, "a" vs "  " -> raw 2, "a"/"a" 0
    res = dtw([" ", "a"], ["  ", "a"])
    assert res.cost.tolist() == [[1, 1], [2, 0]]
    assert res.groups == [[0], [1]]


def test_multibyte_costs_in_byte_and_char_units():
    # a byte-level tokenizer splits 你 (e4 bd a0) into e4 bd + a0; a SentencePiece one has it whole
    piv = TokenTexts.from_tokens(["ä½", "ł"], "byte_level")
    src = TokenTexts.from_tokens(["▁你", "你"], "sentencepiece")
    assert piv.texts == ["\udce4\udcbd", "\udca0"]
    by = cost_matrix(src.of([1], "byte"), piv.of([0, 1], "byte"))
    ch = cost_matrix(src.of([1], "char"), piv.of([0, 1], "char"))
    assert by.tolist() == [[1, 2]]  # shares 2 of its 3 bytes with the first piece
    assert ch.tolist() == [[2, 1]]  # as characters nothing is shared
    assert dtw_align(src.of([0], "byte"), piv.of([0, 1], "byte")) == [[0], [0]]


def test_dtw_matches_reference_on_random_sequences():
    rng = random.Random(0)
    alphabet = ["a", "b", " a", "ab", "  ", " ", "abc", "😀", "\udcf0", ""]
    for _ in range(300):
        s = [rng.choice(alphabet) for _ in range(rng.randint(0, 9))]
        p = [rng.choice(alphabet) for _ in range(rng.randint(0, 9))]
        for opts in (DTWOptions(), DTWOptions("diag_up_left", False, True), NORM,
                     DTWOptions("diag_up_left", False, True, text="normalized")):
            assert dtw_align(s, p, opts) == reference_dtw(
                s, p, opts.tie_order, opts.empty_fallback, opts.substring_weight,
                strip=opts.text == "normalized"), (s, p, opts)


# --- vocabulary maps ------------------------------------------------------------------------

SRC = TokenTexts.from_tokens(["a", " b", "c", "<s>", "abc", "ab"], special={3}, bos_id=3, eos_id=None)
PIV = TokenTexts.from_tokens([" b", "a", "d", "abd", "abe", "abx", "xb", "<unk>", "<bos>"],
                             special={7, 8}, unk_id=7, bos_id=8)


def test_em_exact_only():
    m = build_vocab_map("em", SRC, PIV)
    assert m.source_to_pivot.tolist() == [1, 0, -1, -1, -1, -1]
    assert m.pivot_text(1) == " b" and m.pivot_text(2) is None
    assert set(VOCAB_MAPS.names()) >= {"em", "mined", "ms"}


def test_mined_nearest_with_lowest_id_on_ties_and_needed_subset():
    m = build_vocab_map("mined", SRC, PIV)
    # c: ED 1 to "a" (id 1) and "d" (id 2) -> lowest id; abc: ED 1 to abd/abe/abx -> abd (3)
    # ab: ED 1 to " b" (unstripped: a -> space), "a", "abd", ... -> " b" (0)
    assert m.source_to_pivot.tolist()[:3] == [1, 0, 1]
    assert m[4] == 3 and m[5] == 0
    sub = build_vocab_map("mined", SRC, PIV, needed=[2])
    assert sub.source_to_pivot.tolist() == [-1, -1, 1, -1, -1, -1]
    with pytest.raises(ValueError, match="source id 9"):
        build_vocab_map("mined", SRC, PIV, needed=[9])


def test_cooccurrence_counts_on_tiny_corpus(tmp_path):
    corpus = [([0, 1], [4, 5, 2], [[0, 1], [2]]),  # pivot 0 <- source 4, 5; pivot 1 <- source 2
              ([0, 0], [4, 4], [[0], [1]])]
    c = cooccurrence_counts(corpus, len(PIV), len(SRC), flush_every=1)
    dense = c.toarray()
    assert dense[0, 4] == 3 and dense[0, 5] == 1 and dense[1, 2] == 1 and dense.sum() == 5
    path = save_counts(c, tmp_path / "counts.npz")
    assert (load_counts(path).toarray() == dense).all()


def test_ms_scoring_quirk_switch_forced_specials_and_no_candidate():
    counts = sparse.lil_matrix((len(PIV), len(SRC)), dtype=np.int64)
    counts[3, 4] = 5  # abc ~ abd, frequent
    counts[4, 4] = 1  # abc ~ abe, rare (same edit distance 1)
    counts[5, 5] = 1  # ab ~ abx: "ab" in "abx" -> w = 0.1 -> 0.1 * sig(1)
    counts[6, 5] = 9  # ab ~ xb: ED 1, w = 1 -> sig(9)
    counts[1, 0] = 2  # a ~ a
    official = build_vocab_map("ms", SRC, PIV, counts=counts.tocsr())
    assert official[4] == 4  # sigmoid multiplies: the *less* frequent pair wins (quirk)
    assert official[5] == 5 and official[0] == 1
    assert official[3] == 8  # BOS -> BOS forced
    assert official[2] == 7  # no candidate -> pivot unk
    fixed = build_vocab_map("ms", SRC, PIV, counts=counts.tocsr(), count_rule="divide",
                            no_candidate="drop")
    assert fixed[4] == 3 and fixed[2] == -1
    with pytest.raises(ValueError, match="counts"):
        build_vocab_map("ms", SRC, PIV)
    with pytest.raises(ValueError, match="shape"):
        build_vocab_map("ms", SRC, PIV, counts=sparse.csr_matrix((2, 2)))


def test_compare_vocab_maps_flags_disagreements():
    maps = {n: build_vocab_map(n, SRC, PIV) for n in ("em", "mined")}
    df = compare_vocab_maps([0, 2], maps)
    assert df["agree"].tolist() == [True, False]
    assert pd.isna(df.loc[1, "em"]) and df.loc[1, "mined"] == "a"
    assert len(compare_vocab_maps([0, 2], maps, only_disagreements=True)) == 1
    with pytest.raises(ValueError, match="source_ids"):
        compare_vocab_maps([99], maps)


# --- distribution alignment -----------------------------------------------------------------

P2 = TokenTexts.from_tokens(["a", " go", "ing", " going", " to", "x", "<unk>"], special={6},
                            unk_id=6)
S2 = TokenTexts.from_tokens([" go", "ing", " going", " to", "a", "zz", " "])


def _align(p_ids, s_ids, groups, top_ids, rules_of="em", rules=None, vmap=None):
    """Align with the official rules of ``rules_of``; the vocab map is ``em`` unless given."""
    vmap = vmap or build_vocab_map("em", S2, P2)
    logits = [[3.0, 2.0, 1.0][: len(r)] for r in top_ids]
    return align_distributions(p_ids, s_ids, top_ids, logits, groups, vmap,
                               rules or official_rules(rules_of))


def test_one_to_one_suffix_maps_candidates_drops_unmapped_and_dedupes():
    # pivot " going", " to" / source " going", " to": row 0 top-K = " to", "zz" (no em), " to" (dup)
    out = _align([3, 4], [2, 3], [[0], [1]], [[3, 5, 3], [4, 0, 1]], "ms")
    assert out.align_kind.tolist() == [ONE_TO_ONE, ONE_TO_ONE]
    assert out.topk_ids[0].tolist() == [4, PAD_ID, PAD_ID]
    assert out.topk_logits[0].tolist() == [3.0, float("-inf"), float("-inf")]
    assert out.topk_ids[1].tolist() == [0, 1, 2]
    assert out.source_rows == [0, 1]
    assert out.candidate_counts.tolist() == [5, 0, 1]  # exact texts, via the map, dropped


def test_source_ids_past_the_tokenizer_are_dropped():
    # model vocabularies are often padded past the tokenizer: such ids have no text to map
    out = _align([3], [2], [[0]], [[999, 3, PAD_ID]], "ms")
    assert out.topk_ids[0].tolist() == [4, PAD_ID, PAD_ID] and out.topk_logits[0, 0] == 2.0


def test_one_to_one_suffix_failure_falls_back_to_gold_next_token():
    # pivot "x", " to" vs source "a", " to": "x"/"a" no suffix -> one-hot on the next pivot token
    out = _align([5, 4], [4, 3], [[0], [1]], [[0, 1, 2], [0, 1, 2]], "ms")
    assert out.align_kind.tolist() == [FALLBACK, ONE_TO_ONE]
    assert out.topk_ids[0].tolist() == [4, PAD_ID, PAD_ID] and out.topk_logits[0][0] == 1.0
    assert out.source_rows[0] is None


def test_many_to_one_only_the_suffix_position_takes_the_row():
    # pivot " go", "ing" both aligned to source " going": only "ing" ends where " going" ends
    out = _align([1, 2], [2], [[0], [0]], [[4, 3, 0]], "ms")
    assert out.align_kind.tolist() == [FALLBACK, ONE_TO_ONE]
    assert out.topk_ids[0].tolist()[0] == 2  # gold next token "ing"
    assert out.topk_ids[1].tolist() == [0, 4, 1]  # "a", " to", " go"


def test_one_to_many_uses_the_suffix_token_and_em_rules_fall_back():
    # pivot " going" <- source " go", "ing": "ing" is the suffix -> its row (the last one)
    out = _align([3], [0, 1], [[0, 1]], [[4, 4, 4], [3, 0, 1]], "ms")
    assert out.align_kind.tolist() == [ONE_TO_MANY] and out.source_rows == [1]
    assert out.topk_ids[0].tolist() == [4, 1, 2]  # source " to", " go", "ing" in pivot ids
    em = _align([3], [0, 1], [[0, 1]], [[4, 4, 4], [3, 0, 1]], "em")
    assert em.align_kind.tolist() == [FALLBACK]  # official em/mined do not handle 1 -> n


def test_empty_suffix_quirk_switch():
    # pivot " going" <- source " ", " going": the stripped " " is "" and suffix-matches first
    top = [[3, 3, 3], [4, 0, 1]]
    quirk = _align([3], [6, 2], [[0, 1]], top, "ms")
    assert quirk.source_rows == [0]
    fixed = _align([3], [6, 2], [[0, 1]], top, "ms",
                   AlignRules(empty_suffix_matches=False))
    assert fixed.source_rows == [1] and fixed.align_kind.tolist() == [ONE_TO_MANY]


def test_decomposition_failure_and_empty_row_switch():
    assert decompose(b"abc", [b"a", b"bc"]) == [0, 1]
    assert decompose(b"abc", [b"ab", b"x"]) == []
    # pivot "x" <- source "a", "zz": no suffix, no decomposition -> one-hot on the last token
    out = _align([5], [4, 5], [[0, 1]], [[0, 1, 2], [0, 1, 2]], "ms")
    assert out.align_kind.tolist() == [FALLBACK] and out.topk_ids[0, 0] == 5
    # em, exact 1 -> 1 match whose candidates all have no exact pivot token: official leaves the
    # row empty (the trainer then uses the pivot's own distribution); "one_hot" falls back
    kept = _align([4], [3], [[0]], [[5, 5, 5]], "em")
    assert kept.align_kind.tolist() == [FALLBACK] and (kept.topk_ids == PAD_ID).all()
    hot = _align([4], [3], [[0]], [[5, 5, 5]], "em", AlignRules("exact", False, True, "one_hot"))
    assert hot.topk_ids[0, 0] == 4 and hot.topk_logits[0, 0] == 1.0


def test_mined_rule_accepts_mapped_one_to_one():
    # pivot "x" vs source "zz" (group of one): texts differ; mined maps zz -> x? ED(zz, x) = 2,
    # ED(zz, a) = 2 ... lowest id "a" (0): so the rule fails for pivot "x" and passes for "a"
    vmap = build_vocab_map("mined", S2, P2)
    assert vmap[5] == 0
    ok = _align([0], [5], [[0]], [[5, 0, 1]], "mined", vmap=vmap)
    assert ok.align_kind.tolist() == [ONE_TO_ONE]
    assert ok.topk_ids[0].tolist() == [0, 1, 2]  # zz -> "a" through the map
    assert ok.candidate_counts.tolist() == [2, 1, 0]
    bad = _align([5], [5], [[0]], [[4, 0, 1]], "mined", vmap=vmap)
    assert bad.align_kind.tolist() == [FALLBACK]


def test_rules_validation():
    with pytest.raises(ValueError, match="one_to_one"):
        AlignRules(one_to_one="prefix")
    with pytest.raises(ValueError, match="empty_row"):
        AlignRules(empty_row="drop")
    with pytest.raises(ValueError, match="groups"):
        _align([0, 1], [0], [[0]], [[0, 1, 2]], "ms")
