"""Uncertainty gaps closed (issue 12): every number a table shows carries n and a 95 % CI.

Toxic spans (both selection paths share `workbench.spans.report`) and FuseChat's evaluation
table (`workbench.fusion.train.report.evaluation_report`), on hand-computed inputs; one smoke
run of the toxic spans trial path (no CV) end to end.
"""

import json
import math

import numpy as np
import pytest

from workbench.eval import stats
from workbench.spans.report import ci_columns, f1_columns, post_f1s, vote_claim, write_per_item


# --- toxic spans -----------------------------------------------------------------------------
def test_f1_columns_value_ci_and_n_per_post():
    golds = [[0, 1, 2], [], [5, 6], [1]]
    preds = [[0, 1, 2], [], [6], [3]]  # F1 per post: 1, 1, 2/3, 0
    cols, items = f1_columns(preds, golds, "trial_f1")
    assert items["trial_f1"] == pytest.approx([1.0, 1.0, 2 / 3, 0.0])
    assert cols["trial_f1"] == round(100 * (2 + 2 / 3) / 4, 2) and cols["trial_f1_n"] == 4
    # under 20 posts: the t interval of the mean, clipped to [0, 100]
    t = stats.mean_ci(items["trial_f1"])
    assert cols["trial_f1_lo"] == round(100 * max(0.0, t.lo), 2)
    assert cols["trial_f1_hi"] == round(100 * min(1.0, t.hi), 2) == 100.0  # t.hi > 1: clipped
    assert cols["trial_f1_stderr"] == round(100 * t.stderr, 2)


def test_f1_columns_words_and_bootstrap_from_20_posts():
    texts = ["you idiot"] * 25
    golds = [[4, 5, 6, 7, 8]] * 25
    preds = [[4, 5]] * 10 + [[4, 5, 6, 7, 8]] * 15  # a partial word grows to the whole word
    cols, items = f1_columns(preds, golds, "trial_f1", texts)
    assert cols["trial_f1_words"] == 100.0 and cols["trial_f1_words_n"] == 25
    assert cols["trial_f1_words_lo"] == cols["trial_f1_words_hi"] == 100.0
    b = stats.bootstrap_ci(items["trial_f1"])  # 25 posts: the percentile bootstrap
    assert cols["trial_f1_lo"] == round(100 * b.lo, 2) and cols["trial_f1_hi"] == round(100 * b.hi, 2)
    assert cols["trial_f1_lo"] < cols["trial_f1"] < cols["trial_f1_hi"]


def test_ci_columns_single_post_has_n_but_no_interval():
    assert ci_columns("test_f1", [0.5]) == {"test_f1_lo": None, "test_f1_hi": None,
                                            "test_f1_stderr": None, "test_f1_n": 1}
    with pytest.raises(ValueError, match="2 predictions for 1 gold"):
        post_f1s([[], []], [[]])


def test_vote_claim_and_per_item_file(tmp_path):
    items = {"a": [1.0, 0.5, 0.0, 1.0], "ensemble": [1.0, 1.0, 0.5, 1.0]}
    c = vote_claim(items, "ensemble", "a")
    d = stats.paired_item_ci(items["ensemble"], items["a"])
    assert c["diff"] == 25.0 and c["n"] == 4 and c["lo"] == round(100 * d.lo, 2)
    assert c["verdict"] == stats.verdict(d, ">=")
    f = write_per_item(tmp_path, "char_f1", ["trial:0", "trial:1", "trial:2", "trial:3"], items)
    body = json.loads(f.read_text())
    assert body["metric"] == "char_f1" and body["higher_is_better"] and body["values"] == items
    with pytest.raises(ValueError, match="row 'a' has 4 values for 3 ids"):
        write_per_item(tmp_path, "x", ["0", "1", "2"], items)


@pytest.mark.slow
def test_spans_trial_path_rows_carry_ci_and_per_item(tmp_path, capsys):
    """The `quick`/`smoke` path (selection on trial, no CV): n and CI on every F1 column, the
    per-item file the report pairs, and the vote claim; the report's table has no gap."""
    from workbench.report.claims import run_claims
    from workbench.report.tables import uncertainty_gaps
    from workbench.spans.train import SpansConfig, run_spans

    cfg = SpansConfig.from_preset("smoke", output_dir=str(tmp_path), heads=["cls", "layer_attention"],
                                  train_limit=16, trial_limit=8)
    run = run_spans(cfg)
    m = run.metrics()
    per = json.loads((run.path / "artifacts" / "per_item" / "char_f1.json").read_text())
    assert set(per["values"]) == {r["member"] for r in m["table"]} and len(per["ids"]) == 8
    for r in m["table"]:
        for col in ("trial_f1", "trial_f1_words"):
            assert r[f"{col}_n"] == 8 and r[f"{col}_lo"] <= r[col] <= r[f"{col}_hi"]
        assert abs(100 * np.mean(per["values"][r["member"]]) - r["trial_f1"]) < 0.01
    assert m["claims"][0]["n"] == 8 and m["claims"][0]["verdict"] in stats.VERDICTS
    assert uncertainty_gaps(m["table"], ["trial_f1", "trial_f1_words"]) == []
    trial_claim = run_claims("toxic_spans", run.path)[0]
    assert trial_claim.verdict in stats.VERDICTS and trial_claim.n == 8
    assert not math.isnan(trial_claim.estimate.lo)
    assert m["best_trial_f1_n"] == 8 and m["best_trial_f1_lo"] <= m["best_trial_f1"]
    # `workbench spans evaluate` prints the F1 with its CI and n
    from workbench.spans.cli import main

    data = tmp_path / "d.csv"
    data.write_text('spans,text\n"[4, 5, 6, 7, 8]",you idiot\n[],hello\n[],fine\n')
    assert main(["spans", "evaluate", "--run", str(run.path), "--data", str(data)]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("char F1 ") and "(95 % CI, n=3 posts)" in out
    one = tmp_path / "one.csv"
    one.write_text("spans,text\n[],hello\n")
    assert main(["spans", "evaluate", "--run", str(run.path), "--data", str(one)]) == 0
    assert capsys.readouterr().out.strip().endswith("(no CI, n=1 posts)")


# --- FuseChat evaluation table -----------------------------------------------------------------
def _fuse(group, ce, tokens, chars, ratings):
    """ratings: {(question, turn): rating}."""
    return {"group": group,
            "heldout": {"per_dialogue": [{"nll_sum": c * t, "n_tokens": t, "chars": ch}
                                         for c, t, ch in zip(ce, tokens, chars, strict=True)]},
            "mtbench": {"ratings": [{"question_id": q, "turn": t, "rating": r}
                                    for (q, t), r in ratings.items()]}}


def _fuse_table(results):
    from workbench.fusion.train.evaluate import fusechat_table

    for r in results.values():  # the summary numbers fusechat_table reads
        per = r["heldout"]["per_dialogue"]
        nll, tok = sum(p["nll_sum"] for p in per), sum(p["n_tokens"] for p in per)
        r["heldout"].update(ce=nll / tok, ppl=math.exp(nll / tok),
                            nll_per_char=nll / sum(p["chars"] for p in per))
        rs = r["mtbench"]["ratings"]
        r["mtbench"].update(score=np.mean([x["rating"] for x in rs]),
                            turn1=np.mean([x["rating"] for x in rs if x["turn"] == 1]),
                            turn2=np.mean([x["rating"] for x in rs if x["turn"] == 2]))
        r["params_m"] = 1.0
    return fusechat_table(results)


def test_fusechat_rows_carry_cis_for_every_metric(tmp_path):
    from workbench.fusion.train.report import evaluation_report

    tokens, chars = [10, 20, 30, 40], [40, 90, 100, 170]
    q = {(81, 1): 6, (81, 2): 5, (82, 1): 8, (82, 2): 6, (83, 1): 7, (83, 2): None}
    results = {
        "pivot": _fuse("pivot", [2.0, 2.2, 2.4, 2.1], tokens, chars, {**q, (83, 2): 4}),
        "SFT": _fuse("baseline", [1.9, 2.1, 2.2, 2.0], tokens, chars, {**q, (83, 2): 5}),
        "T": _fuse("target", [1.8, 2.0, 2.0, 1.9], tokens, chars, {**q, (81, 1): 9, (83, 2): 7}),
    }
    results["T"]["mtbench"]["ratings"] = [x for x in results["T"]["mtbench"]["ratings"]
                                          if x["rating"] is not None]
    table = _fuse_table(results)
    evaluation_report(tmp_path, results, ["a", "b", "c", "d"], table)
    by = {r["model"]: r for r in table}
    t = by["T"]
    # judge turns: per-question t interval (3 questions per turn), n stated
    t1 = stats.item_ci([9, 8, 7])
    assert t["judge_t1"] == pytest.approx(8.0) and t["judge_t1_n"] == 3
    assert (t["judge_t1_lo"], t["judge_t1_hi"]) == pytest.approx((t1.lo, t1.hi))
    assert t["judge_t2_n"] == 3 and t["judge_t2_lo"] < t["judge_t2"] < t["judge_t2_hi"]
    # ppl = exp(CE): the interval is exp of the CE interval
    assert t["heldout_ppl"] == pytest.approx(math.exp(t["heldout_ce"]))
    assert t["heldout_ppl_lo"] == pytest.approx(math.exp(t["heldout_ce_lo"]))
    assert t["heldout_ppl_hi"] == pytest.approx(math.exp(t["heldout_ce_hi"]))
    assert t["heldout_ppl_lo"] <= t["heldout_ppl"] <= t["heldout_ppl_hi"] and t["n"] == 4
    # nll per char: char-weighted bootstrap over dialogues; value = sum NLL / sum chars
    assert t["nll_per_char_n"] == 4 and t["nll_per_char_lo"] <= t["nll_per_char"] <= t["nll_per_char_hi"]
    pc = json.loads((tmp_path / "per_item" / "nll_per_char.json").read_text())
    assert pc["weights"] == chars and pc["values"]["T"][0] == pytest.approx(1.8 * 10 / 40)
    assert np.dot(pc["values"]["T"], chars) / sum(chars) == pytest.approx(t["nll_per_char"])
    # relative columns vs SFT: paired differences in percent of SFT's value
    assert t["ce_vs_sft_pct_lo"] <= t["ce_vs_sft_pct"] <= t["ce_vs_sft_pct_hi"] < 0
    assert t["judge_vs_sft_pct_n"] == 3
    assert t["judge_vs_sft_pct_lo"] <= t["judge_vs_sft_pct"] + 1e-9
    assert by["pivot"]["ce_vs_sft_pct"] is None and "ce_vs_sft_pct_lo" not in by["pivot"]


def test_fusechat_one_question_states_n_without_interval(tmp_path):
    from workbench.fusion.train.report import evaluation_report
    from workbench.report.tables import display_rows

    q = {(81, 1): 6, (81, 2): 5}
    results = {"pivot": _fuse("pivot", [2.0, 2.2], [10, 20], [30, 60], q),
               "SFT": _fuse("baseline", [1.9, 2.1], [10, 20], [30, 60], {(81, 1): 7, (81, 2): 5})}
    table = _fuse_table(results)
    evaluation_report(tmp_path, results, ["a", "b"], table)
    sft = {r["model"]: r for r in table}["SFT"]
    assert sft["judge_t1_n"] == sft["judge_t2_n"] == sft["judge_n"] == 1
    assert sft["judge_t1_lo"] is None or math.isnan(sft["judge_t1_lo"])
    shown = {r["model"]: r for r in display_rows(table)}["SFT"]
    assert shown["judge_t1"] == "7.00" and shown["judge_t1_n"] == "1"  # n shown, no fake interval


def test_fusechat_results_without_chars_keep_working(tmp_path):
    from workbench.fusion.train.report import evaluation_report

    q = {(81, 1): 6, (81, 2): 5, (82, 1): 6, (82, 2): 5}
    results = {"pivot": _fuse("pivot", [2.0, 2.2], [10, 20], [30, 60], q),
               "SFT": _fuse("baseline", [1.9, 2.1], [10, 20], [30, 60], q)}
    table = _fuse_table(results)
    for r in results.values():  # evaluated before per-dialogue chars were recorded
        for p in r["heldout"]["per_dialogue"]:
            del p["chars"]
    evaluation_report(tmp_path, results, ["a", "b"], table)
    assert not (tmp_path / "per_item" / "nll_per_char.json").exists()
    assert "nll_per_char_lo" not in table[0] and table[0]["heldout_ce_lo"] is not None


def test_fixed_batch_ce_before_after_delta_cis():
    from workbench.fusion.train.report import _batch_cis, batch_columns

    before = [[20.0, 10], [44.0, 20], [63.0, 30]]  # CE 2.0, 2.2, 2.1 per dialogue
    after = [[19.0, 10], [42.0, 20], [60.0, 30]]   # CE 1.9, 2.1, 2.0: -0.1 on each
    fixed = {"batch": ["a", "b", "c"], "before": 127 / 60, "after": 121 / 60, "delta": -6 / 60,
             **_batch_cis(before, after)}
    cols = batch_columns(fixed)
    assert cols["batch_n"] == 3 and cols["batch_ce_delta"] == pytest.approx(-0.1)
    assert cols["batch_ce_delta_lo"] == pytest.approx(-0.1) == cols["batch_ce_delta_hi"]
    assert cols["batch_ce_before_lo"] <= 127 / 60 <= cols["batch_ce_before_hi"]
    assert cols["batch_ce_after_lo"] <= 121 / 60 <= cols["batch_ce_after_hi"]
    # another tokenizer (token counts differ): no paired change, the rows' own CIs stay
    other = _batch_cis(before, [[19.0, 11], [42.0, 20], [60.0, 30]])
    assert other["delta_ci"] is None and other["after_ci"]["n"] == 3
    # a cache written before per-dialogue scores were kept: n from the batch, no interval
    old = batch_columns({"batch": ["a", "b"], "before": 2.0, "after": 1.9, "delta": -0.1,
                         **_batch_cis(None, None)})
    assert old["batch_n"] == 2 and "batch_ce_delta_lo" not in old


# --- report: scalar metrics ----------------------------------------------------------------------
def test_report_scalars_fold_their_ci_and_keep_n():
    from workbench.report.page import scalar_rows

    rows = scalar_rows({"table": [{"x": 1}], "best_member": "ensemble", "best_trial_f1": 63.14,
                        "best_trial_f1_lo": 59.2, "best_trial_f1_hi": 67.03,
                        "best_trial_f1_n": 690, "n_trial": 690, "voters": ["a", "b"]})
    shown = {r["key"]: r["value"] for r in rows}
    assert shown["best_trial_f1"] == "63.14 [59.20, 67.03]" and shown["best_trial_f1_n"] == "690"
    assert "best_trial_f1_lo" not in shown and "table" not in shown and "voters" not in shown
    assert scalar_rows({"table": []}) == []


# --- SEFT: the share of answers identical to SFT's ------------------------------------------------
def test_seft_same_answers_share_has_wilson_ci_and_shows_in_the_tab(tmp_path):
    from workbench.common.io import write_json
    from workbench.seft.app import _table_view
    from workbench.seft.stages.evaluate import _same_columns

    sft = {"eval": ["a", "b", "c"], "mtbench": [{"answers": ["d"]}]}
    other = {"eval": ["a", "x", "c"], "mtbench": [{"answers": ["y"]}]}
    cols = _same_columns(other, sft)
    w = stats.proportion_ci(2, 4)
    assert cols["same_answers_as_sft"] == 0.5 and cols["same_answers_as_sft_n"] == 4
    assert (cols["same_answers_as_sft_lo"], cols["same_answers_as_sft_hi"]) == (w.lo, w.hi)
    assert _same_columns(other, None) == {"same_answers_as_sft": None}
    run = tmp_path / "seft" / "r1"
    (run / "checkpoints" / "reviser_final").mkdir(parents=True)
    write_json(run / "metrics.json", {"table": [{"model": "SFT", "judge_score": 3.0, **cols}]})
    upd, _ = _table_view(str(run / "checkpoints" / "reviser_final"))
    col = upd["headers"].index("same answers as SFT [95% CI]")
    assert upd["value"][0][col].startswith("0.5 [") and "same answers as sft n" in upd["headers"]


def test_seft_round_and_reviser_heldout_shares_have_cis():
    from workbench.seft.inference import _discrimination_cis
    from workbench.seft.reviser_data import ParsedRevision, summarize_revisions

    parsed = [ParsedRevision("REVISE", "abcd", False), ParsedRevision("KEEP", "ab", False),
              ParsedRevision("KEEP", "abc", True), ParsedRevision("KEEP", "abcdef", False)]
    s = summarize_revisions(parsed, "REVISE")
    w = stats.proportion_ci(1, 4)
    assert (s["share_revised_lo"], s["share_revised_hi"]) == (w.lo, w.hi) and s["n"] == 4
    assert (s["share_malformed_lo"], s["share_malformed_hi"]) == (w.lo, w.hi)
    t = stats.mean_ci([4, 2, 3, 6])
    assert (s["mean_length_lo"], s["mean_length_hi"]) == (t.lo, t.hi)
    rej, cho = [1.0, 0.5, -0.2, 2.0], [-1.0, 0.1, -0.5, 1.0]
    ci = _discrimination_cis(rej, cho)
    r = stats.proportion_ci(3, 4)
    assert (ci["share_revise_rejected_lo"], ci["share_revise_rejected_hi"]) == (r.lo, r.hi)
    assert (ci["pairwise_accuracy_lo"], ci["pairwise_accuracy_hi"]) == \
        (stats.proportion_ci(4, 4).lo, 1.0)
    d = stats.mean_ci([1.0, 0.5, 0.5, 0.5])  # per pair: (rejected -> REVISE + chosen -> KEEP) / 2
    assert (ci["decision_accuracy_lo"], ci["decision_accuracy_hi"]) == (d.lo, d.hi)
    assert ci["mean_margin_chosen_lo"] == stats.mean_ci(cho).lo


def test_fusechat_model_figure_draws_the_table_cis():
    from workbench.viz.fusion_train import model_comparison_figure

    table = [{"model": "SFT", "group": "baseline", "heldout_ce": 2.0, "heldout_ce_lo": 1.9,
              "heldout_ce_hi": 2.2},
             {"model": "SCE", "group": "merge", "heldout_ce": 1.8}]  # no CI: a zero-length bar
    fig = model_comparison_figure(table)
    assert fig.data[0].error_y.array == pytest.approx((0.2,))
    assert fig.data[0].error_y.arrayminus == pytest.approx((0.1,))
    assert fig.data[1].error_y.array == (0.0,) and "95 % CI" in fig.layout.title.text



# --- stats: few weighted items --------------------------------------------------------------------
def test_weighted_paired_t_by_hand():
    # d = a - b = 1, 2, 4 with weights 1, 2, 1: value = (1 + 4 + 4) / 4 = 2.25
    e = stats.weighted_paired_t([2.0, 3.0, 5.0], [1.0, 1.0, 1.0], [1.0, 2.0, 1.0])
    se = math.sqrt(3 / 2 * ((1 * (1 - 2.25)) ** 2 + (2 * (2 - 2.25)) ** 2 + (1 * (4 - 2.25)) ** 2)) / 4
    half = stats.t_quantile(0.975, 2) * se
    assert e.value == pytest.approx(2.25) and e.stderr == pytest.approx(se) and e.n == 3
    assert (e.lo, e.hi) == pytest.approx((2.25 - half, 2.25 + half))
    assert stats.paired_item_ci([2.0, 3.0, 5.0], [1.0, 1.0, 1.0], weights=[1.0, 2.0, 1.0]) == e
    one = stats.weighted_paired_t([2.0], [1.0], [3.0])
    assert one.value == 1.0 and one.n == 1 and not one.has_ci
    with pytest.raises(ValueError, match="weights"):
        stats.weighted_paired_t([1.0, 2.0], [0.0, 0.0], [0.0, 0.0])
