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
def test_spans_trial_path_rows_carry_ci_and_per_item(tmp_path):
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
