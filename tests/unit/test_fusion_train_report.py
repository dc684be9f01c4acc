"""FuseChat evaluation report (per-item files, CIs, paired comparisons) and the training stages'
loss summary on one fixed held-out batch."""

from __future__ import annotations

import json

import pytest

from workbench.fusion.config import FuseChatConfig
from workbench.fusion.dialogues import Dialogue
from workbench.fusion.train.report import batch_columns, evaluation_report, fixed_batch_losses

T = "smollm2-135m-instruct-gemma3-270m"


def _res(group: str, ce: list[float], tokens: list[int], ratings: list[float]) -> dict:
    return {"group": group,
            "heldout": {"per_dialogue": [{"nll_sum": c * t, "n_tokens": t}
                                         for c, t in zip(ce, tokens, strict=True)]},
            "mtbench": {"ratings": [{"question_id": 81 + i // 2, "turn": 1 + i % 2, "rating": r}
                                    for i, r in enumerate(ratings)]}}


def test_evaluation_report_per_item_files_cis_and_verdicts(tmp_path):
    tokens = [10, 20, 0, 30]  # dialogue 3 has no assistant token: left out
    results = {
        "pivot": _res("pivot", [2.0, 2.2, 0.0, 2.1], tokens, [5, 5, 6, 6]),
        "SFT": _res("baseline", [1.9, 2.1, 0.0, 2.0], tokens, [5, 6, 6, 6]),
        T: _res("target", [1.8, 2.0, 0.0, 1.9], tokens, [6, 6, 7, 7]),
        "SCE": _res("merge", [1.8, 2.0, 0.0, 1.9], tokens, [6, 6, 7, 7]),
        "linear": _res("merge", [1.85, 2.1, 0.0, 1.8], tokens, [6, 6, 7, 7]),
    }
    table = [{"model": k} for k in results]
    comps = evaluation_report(tmp_path, results, ["a", "b", "c", "d"], table)
    ce = json.loads((tmp_path / "per_item" / "heldout_ce.json").read_text())
    assert ce["ids"] == ["a", "b", "d"] and ce["weights"] == [10, 20, 30]
    assert ce["values"]["SFT"] == pytest.approx([1.9, 2.1, 2.0])
    judge = json.loads((tmp_path / "per_item" / "mtbench_judge.json").read_text())
    assert judge["ids"] == ["81", "82"] and judge["values"][T] == [6.0, 7.0]
    row = {r["model"]: r for r in table}["SFT"]
    # token-weighted mean (1.9*10 + 2.1*20 + 2.0*30) / 60 inside its interval
    assert row["n"] == 3 and row["heldout_ce_lo"] <= 121 / 60 <= row["heldout_ce_hi"]
    by = {(c["a"], c["b"]): c for c in comps}
    assert by[(T, "SFT")]["ce_diff"] == pytest.approx(-0.1)  # -0.1 on every dialogue
    assert by[(T, "SFT")]["ce_verdict"] == "reproduced"
    assert by[("SCE", T)]["ce_verdict"] == "not reproduced"  # identical: not lower
    assert by[("SCE", "linear")]["ce_verdict"] == "inconclusive at this scale"  # mixed signs
    assert by[(T, "SFT")]["judge_diff"] == pytest.approx(0.75)  # (6 - 5.5 + 7 - 6) / 2
    assert ("SFT", "pivot") in by and ("SCE", "SFT") in by


@pytest.mark.slow
def test_loss_summary_compares_the_same_fixed_batch(tmp_path):
    cfg = FuseChatConfig.from_preset("smoke")
    batch = [Dialogue("x", "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nhello there"
                           "<|im_end|>\n", ((51, 62),)),
             Dialogue("y", "<|im_start|>user\nsum 2+2<|im_end|>\n<|im_start|>assistant\n4"
                           "<|im_end|>\n", ((56, 58),))]
    cache = tmp_path / "loss_batch.json"
    out = fixed_batch_losses(cfg, {"same": cfg.pivot, "again": cfg.pivot}, batch, cache)
    # the pivot scored as "after" gives exactly its "before": the same batch, the same weights
    assert out["same"]["batch"] == ["x", "y"] == out["again"]["batch"]
    assert out["same"]["after"] == out["same"]["before"] and out["same"]["delta"] == 0.0
    saved = json.loads(cache.read_text())
    assert saved["ids"] == ["x", "y"] and len(saved["ce"]) == 1  # scored once, then cached
    assert len(saved["per"][cfg.pivot]) == 2  # [nll_sum, n_tokens] per dialogue: the CIs' items
    cols = batch_columns(out["same"])
    assert cols["batch_n"] == 2 and cols["batch_ce_delta"] == 0.0
    assert cols["batch_ce_before_lo"] <= cols["batch_ce_before"] <= cols["batch_ce_before_hi"]
    assert cols["batch_ce_delta_lo"] == cols["batch_ce_delta_hi"] == 0.0  # the same model twice
    other = fixed_batch_losses(cfg, {"same": cfg.pivot}, batch[:1], cache)
    assert json.loads(cache.read_text())["ids"] == ["x"]  # another batch: a fresh cache
    assert other["same"]["before"] != out["same"]["before"]
