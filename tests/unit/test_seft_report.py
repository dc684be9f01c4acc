"""SEFT's table uncertainty from saved judge grades: per-question / per-prompt items, CIs, n."""

import json

import pytest

from workbench.eval.stats import mean_ci
from workbench.report.claims import run_claims
from workbench.seft.report import add_uncertainty, finish_table, per_item_files, per_question


def _judgment(ratings, per_prompt=None):
    j = {"mtbench": {"ratings": [{"question_id": q, "turn": t, "rating": r}
                                 for q, t, r in ratings]}}
    if per_prompt is not None:
        j["win_rate"] = {"win_rate": sum(x for x in per_prompt if x is not None)
                         / len([x for x in per_prompt if x is not None]), "per_prompt": per_prompt}
    return j


SFT = _judgment([(81, 1, 5.0), (81, 2, 3.0), (91, 1, 6.0), (91, 2, None), (101, 1, 4.0),
                 (101, 2, 4.0)])
SEFT = _judgment([(81, 1, 7.0), (81, 2, 5.0), (91, 1, 8.0), (91, 2, 6.0), (101, 1, 5.0),
                  (101, 2, 5.0)], per_prompt=[0.9, 0.7, None, 0.8])


def test_per_question_means_skip_unparsed():
    assert per_question(SFT) == {"81": 4.0, "91": 6.0, "101": 4.0}
    assert per_question(SFT, turn=2) == {"81": 3.0, "101": 4.0}


def test_add_uncertainty_columns():
    table = [{"model": "SFT", "mtbench_turn1": 5.0, "mtbench_turn2": 3.5, "judge_score": 4.4,
              "win_rate_vs_sft": 0.5},
             {"model": "SEFT round 1", "mtbench_turn1": 6.67, "mtbench_turn2": 5.33,
              "judge_score": 6.0, "win_rate_vs_sft": 0.8}]
    rows = add_uncertainty(table, {"SFT": SFT, "SEFT round 1": SEFT})
    sft, seft = rows
    assert sft["n_questions"] == 3 and sft["n_questions_turn2"] == 2
    want = mean_ci([4.0, 6.0, 4.0])  # 3 questions: the t interval, not a bootstrap
    assert (sft["judge_score_lo"], sft["judge_score_hi"]) == (round(want.lo, 4), round(want.hi, 4))
    assert "win_rate_vs_sft_lo" not in sft  # SFT's 0.5 is a definition
    assert seft["n_prompts"] == 3 and seft["win_rate_vs_sft_lo"] <= 0.8 <= seft["win_rate_vs_sft_hi"]
    assert list(seft)[:4] == ["model", "mtbench_turn1", "mtbench_turn1_lo", "mtbench_turn1_hi"]


def test_per_item_files_share_ids():
    files = per_item_files({"SFT": SFT, "SEFT round 1": SEFT})
    mt = files["mtbench_score"]
    assert mt["ids"] == ["81", "91", "101"]
    assert mt["values"]["SEFT round 1"] == [6.0, 7.0, 5.0]
    wr = files["win_rate_vs_sft"]
    assert wr["ids"] == ["prompt0", "prompt1", "prompt3"] and wr["values"]["SEFT round 1"] == [0.9, 0.7, 0.8]


def test_finish_table_feeds_the_claims(tmp_path):
    (tmp_path / "artifacts" / "judgments").mkdir(parents=True)
    for name, j in (("sft", SFT), ("seft_round_1", SEFT)):
        (tmp_path / "artifacts" / "judgments" / f"{name}.json").write_text(json.dumps(j))
    table = [{"model": "SFT", "judge_score": 4.4, "win_rate_vs_sft": 0.5},
             {"model": "SEFT round 1", "judge_score": 6.0, "win_rate_vs_sft": 0.8}]
    rows = finish_table(table, tmp_path / "artifacts")
    (tmp_path / "metrics.json").write_text(json.dumps({"table": rows}))
    res = {r.text: r for r in run_claims("seft", tmp_path)}
    win = next(r for t, r in res.items() if "win rate > 0.5" in t)
    assert win.verdict == "reproduced" and win.n == 3 and "t interval" in win.method
    mt = next(r for t, r in res.items() if "than SFT on MT-Bench" in t)
    assert mt.estimate.value == pytest.approx(6.0 - 14 / 3) and mt.n == 3  # 6, 7, 5 vs 4, 6, 4
    assert "paired t interval" in mt.method  # 3 questions: t, not a bootstrap
    dpo = next(r for t, r in res.items() if "DPO" in t)
    assert dpo.verdict == "not evaluated"
