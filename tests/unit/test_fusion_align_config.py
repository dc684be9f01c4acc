"""FuseChat alignment quirk switches reached through FuseChatConfig (what a notebook / CLI user
sets): each switch changes the alignment output it should, and a changed switch re-runs the
stages that depend on it instead of reusing their old outputs."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.fusion.align import (
    TokenTexts,
    align_distributions,
    build_vocab_map,
    cooccurrence_counts,
    cost_matrix,
    dtw_align,
)
from workbench.fusion.config import ALIGN_FIELDS, FuseChatConfig
from workbench.fusion.formats import PAD_ID
from workbench.fusion.run import (
    Stage,
    align_rules,
    dtw_options,
    run_fusechat,
    vocab_map_kwargs,
)


def cfg(**kw) -> FuseChatConfig:
    return FuseChatConfig.from_preset("smoke", **kw)


def test_defaults_are_the_official_code():
    c = cfg()
    o = dtw_options(c)
    assert (o.tie_order, o.empty_fallback, o.substring_weight) == ("diag_left_up", True, False)
    assert vocab_map_kwargs(c, "ms") == {"count_rule": "multiply", "no_candidate": "unk",
                                         "unit": "byte"}
    assert vocab_map_kwargs(c, "em") == {} and vocab_map_kwargs(c, "mined") == {"unit": "byte"}
    r = align_rules(c, "ms")
    assert (r.one_to_one, r.one_to_many, r.empty_row, r.empty_suffix_matches) == \
        ("suffix", True, "keep", True)
    assert align_rules(c, "em").one_to_one == "exact"  # the map's official branch is kept


def test_ms_count_rule_switch_picks_the_other_pivot_token_on_a_tie():
    # source "abc" co-occurs with pivot "abd" 5 times and "abe" once: both at edit distance 1.
    src = TokenTexts.from_tokens(["abc", "x"])
    piv = TokenTexts.from_tokens(["abd", "abe", "<unk>"], special={2}, unk_id=2)
    corpus = [([0] * 5 + [1], [0] * 6, [[k] for k in range(6)])]
    counts = cooccurrence_counts(corpus, len(piv), len(src))
    assert counts.toarray()[:2, 0].tolist() == [5, 1]
    picked = {}
    for rule in ("multiply", "divide"):
        kw = vocab_map_kwargs(cfg(ms_count_rule=rule), "ms")
        picked[rule] = build_vocab_map("ms", src, piv, counts=counts, **kw)
    # official: 1 * sigmoid(count) -> the rarer pair scores lower and wins
    assert picked["multiply"][0] == 1 and picked["divide"][0] == 0
    # "x" never co-occurs: official -> pivot unk; "drop" -> no mapping
    assert picked["multiply"][1] == 2
    drop = build_vocab_map("ms", src, piv, counts=counts,
                           **vocab_map_kwargs(cfg(ms_no_candidate="drop"), "ms"))
    assert drop[1] == -1


def test_dtw_switches_through_the_config():
    # source a b a, pivot b a b: left and up tie at the end of the path
    src, piv = ["a", "b", "a"], ["b", "a", "b"]
    assert dtw_align(src, piv, dtw_options(cfg())) == [[0, 1], [2], [2]]
    assert dtw_align(src, piv, dtw_options(cfg(dtw_tie_order="diag_up_left"))) == \
        [[0], [0], [1, 2]]
    # decoded texts (default) keep their spaces: " Smol"/"ol" 3, " Smol"/" Sm" 2
    assert cost_matrix([" Smol"], ["ol", " Sm"], dtw_options(cfg())).tolist() == [[3, 2]]
    norm = {"dtw_text": "normalized"}  # spaces stripped: "Smol"/"ol" 2, "Smol"/"Sm" 2
    assert cost_matrix([" Smol"], ["ol", " Sm"], dtw_options(cfg(**norm))).tolist() == [[2, 2]]
    # whitespace-only tokens: compared raw (" " vs "  ": 1) or stripped ("" vs "": 0)
    assert cost_matrix([" "], ["  "], dtw_options(cfg(**norm))).tolist() == [[1]]
    assert cost_matrix([" "], ["  "], dtw_options(cfg(dtw_empty_fallback=False, **norm))
                       ).tolist() == [[0]]
    assert cost_matrix(["go"], ["going"], dtw_options(cfg(dtw_substring_weight=True))
                       ).tolist() == [[3]]  # 3 * 0.1 in x10 units
    # a byte-split 你 (e4 bd | a0) is 1 byte from the whole character, 1 char in char units
    p = TokenTexts.from_tokens(["ä½"], "byte_level")
    s = TokenTexts.from_tokens(["你"], "sentencepiece")
    costs = {u: cost_matrix(s.of([0], u), p.of([0], u), dtw_options(cfg(align_unit=u)))
             for u in ("byte", "char")}
    assert costs["byte"].tolist() == [[1]] and costs["char"].tolist() == [[2]]


def test_distribution_switches_through_the_config():
    piv = TokenTexts.from_tokens([" going", " to", "x"])
    src = TokenTexts.from_tokens([" ", " going", " to", "zz"])
    vmap = build_vocab_map("em", src, piv)
    top = [[1, 1, 1], [1, 0, 2]]
    logits = [[3.0, 2.0, 1.0]] * 2

    def row(c, p_ids, s_ids, groups, ids, kind="ms"):
        return align_distributions(p_ids, s_ids, ids, logits[:len(ids)], groups, vmap,
                                   align_rules(c, kind))

    # pivot " going" <- source " ", " going": the empty stripped " " suffix-matches (official)
    assert row(cfg(), [0], [0, 1], [[0, 1]], top).source_rows == [0]
    assert row(cfg(empty_suffix_matches=False), [0], [0, 1], [[0, 1]], top).source_rows == [1]
    # em: " to" == " to" but its only candidate "zz" has no exact pivot token
    kept = row(cfg(), [1], [2], [[0]], [[3, 3, 3]], "em")
    assert (kept.topk_ids == PAD_ID).all()  # official: empty row
    hot = row(cfg(empty_row="one_hot"), [1], [2], [[0]], [[3, 3, 3]], "em")
    assert hot.topk_ids[0, 0] == 1 and hot.topk_logits[0, 0] == np.float32(1.0)


def test_bad_switch_values_are_one_line_errors():
    for field, bad in (("dtw_tie_order", "up"), ("align_unit", "word"),
                       ("ms_count_rule", "add"), ("ms_no_candidate", "eos"),
                       ("empty_row", "zero"), ("dtw_text", "raw"), ("vocab_text", "decode"),
                       ("ms_group_repeats", "twice"), ("mince_dtype", "float16")):
        with pytest.raises(ValueError, match=f"FuseChatConfig.{field} must be one of") as e:
            cfg(**{field: bad})
        assert "\n" not in str(e.value)
    with pytest.raises(TypeError, match="dtw_empty_fallback"):
        cfg(dtw_empty_fallback="yes")


def test_every_switch_has_help_and_changes_the_run_folder(tmp_path):
    c = cfg(output_dir=str(tmp_path))
    helps = c.help()
    assert all(helps.get(f) for f in ALIGN_FIELDS)
    from workbench.common.rundir import config_hash

    assert config_hash(c.to_dict()) != config_hash(c.replace(ms_count_rule="divide").to_dict())


def test_changed_switch_reruns_the_stage_and_every_later_one(tmp_path):
    calls = []

    def stage(name):
        def fn(ctx):
            calls.append((name, sorted(ctx.redo)))
            return {"metrics": {name: ctx.cfg.ms_count_rule}}
        return fn

    stages = [Stage("a", stage("a")), Stage("b", stage("b"), "", ("ms_count_rule",)),
              Stage("c", stage("c"))]
    c = cfg(output_dir=str(tmp_path), run_name="fixed")
    run_fusechat(c, stages=stages)
    assert [n for n, _ in calls] == ["a", "b", "c"]
    calls.clear()
    run_fusechat(c, stages=stages)
    assert calls == []  # same settings: everything skipped
    res = run_fusechat(c.replace(ms_count_rule="divide"), stages=stages)
    assert calls == [("b", ["b", "c"]), ("c", ["b", "c"])]  # "a" does not depend on it
    assert res.metrics["b"] == res.metrics["c"] == "divide" and res.metrics["a"] == "multiply"
    assert res.summaries["b"]["config_keys"] == {"ms_count_rule": "divide"}
