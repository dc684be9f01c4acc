"""Claim verdicts on synthetic run folders: every verdict, each estimate source, the selectors."""

import json

import pytest

from workbench.eval import stats
from workbench.report.claims import (
    NOT_EVALUATED,
    check_claim,
    evaluate_claim,
    paper_claims,
    run_claims,
)

LESS = {"text": "A has lower ppl than B", "metric": "ppl", "per_item": ["nll"], "key": "method",
        "row": "A", "vs": "B", "direction": "less"}


def _run(tmp_path, table, per_item=None):
    (tmp_path / "artifacts" / "per_item").mkdir(parents=True, exist_ok=True)
    (tmp_path / "metrics.json").write_text(json.dumps({"table": table}))
    for name, body in (per_item or {}).items():
        (tmp_path / "artifacts" / "per_item" / f"{name}.json").write_text(json.dumps(body))
    return tmp_path


def _nll(a, b, weights=None):
    body = {"metric": "nll", "higher_is_better": False, "unit": "nats/token",
            "ids": [f"doc{i}" for i in range(len(a))], "values": {"A": a, "B": b}}
    if weights:
        body["weights"] = weights
    return {"nll": body}


TABLE = [{"method": "A", "ppl": 10.0}, {"method": "B", "ppl": 12.0}]


def test_paired_per_item_reproduced(tmp_path):
    b = [3.0, 2.5, 2.9, 3.3, 2.7, 3.1, 2.8, 3.0]
    run = _run(tmp_path, TABLE, _nll([x - 0.2 for x in b], b))
    r = evaluate_claim(LESS, TABLE, run)
    assert r.verdict == stats.REPRODUCED
    assert r.estimate.value == pytest.approx(-0.2) and r.n == 8
    assert "paired t interval" in r.method and "nll" in r.method  # 8 items: t


def test_paired_per_item_not_reproduced_and_inconclusive(tmp_path):
    b = [3.0, 2.5, 2.9, 3.3, 2.7, 3.1, 2.8, 3.0]
    r = evaluate_claim(LESS, TABLE, _run(tmp_path / "x", TABLE, _nll([x + 0.3 for x in b], b)))
    assert r.verdict == stats.NOT_REPRODUCED and r.estimate.lo > 0
    noisy = [x + d for x, d in zip(b, [0.5, -0.6, 0.4, -0.5, 0.6, -0.4, 0.3, -0.3], strict=True)]
    r = evaluate_claim(LESS, TABLE, _run(tmp_path / "y", TABLE, _nll(noisy, b)))
    assert r.verdict == stats.INCONCLUSIVE and r.estimate.lo < 0 < r.estimate.hi


def test_weighted_per_item(tmp_path):
    # doc 1 is 9x longer: the token-weighted difference is (1*1 + 9*(-1)) / 10 = -0.8
    run = _run(tmp_path, TABLE, _nll([2.0, 1.0], [1.0, 2.0], weights=[1, 9]))
    r = evaluate_claim(LESS, TABLE, run)
    assert r.estimate.value == pytest.approx(-0.8) and "token-weighted" in r.method


def test_table_cis_when_no_per_item(tmp_path):
    table = [{"method": "A", "ppl": 10.0, "ppl_lo": 9.0, "ppl_hi": 11.0, "n": 30},
             {"method": "B", "ppl": 14.0, "ppl_lo": 13.0, "ppl_hi": 15.0, "n": 30}]
    r = evaluate_claim(LESS, table, _run(tmp_path, table))
    assert r.verdict == stats.REPRODUCED and r.estimate.value == -4.0 and r.n == 30
    assert "table CIs" in r.method
    close = [{"method": "A", "ppl": 10.0, "ppl_stderr": 1.0, "n_ppl": 9},
             {"method": "B", "ppl": 10.5, "ppl_stderr": 1.0, "n_ppl": 9}]
    r = evaluate_claim(LESS, close)
    assert r.verdict == stats.INCONCLUSIVE and r.n == 9


def test_no_interval_is_inconclusive_and_missing_row_not_evaluated():
    r = evaluate_claim(LESS, TABLE)
    assert r.verdict == stats.INCONCLUSIVE and "no CI" in r.note
    r = evaluate_claim({**LESS, "vs": "ShortGPT"}, TABLE)
    assert r.verdict == NOT_EVALUATED and "ShortGPT" in r.note
    r = evaluate_claim(LESS, [{"method": "A", "ppl": None}, {"method": "B", "ppl": 3.0}])
    assert r.verdict == NOT_EVALUATED


def test_threshold_claim_with_pick_last(tmp_path):
    spec = {"text": "win rate > 0.5", "metric": "win", "per_item": ["win"], "key": "model",
            "row": "re:^SEFT round", "pick": "last", "value": 0.5, "direction": "greater"}
    table = [{"model": "SFT", "win": 0.5}, {"model": "SEFT round 1", "win": 0.4},
             {"model": "SEFT round 2", "win": 0.8}]
    per = {"win": {"metric": "win", "ids": list(range(10)),
                   "values": {"SEFT round 1": [0.4] * 10, "SEFT round 2": [0.7, 0.9] * 5}}}
    r = evaluate_claim(spec, table, _run(tmp_path, table, per))
    assert r.verdict == stats.REPRODUCED and r.what.startswith("SEFT round 2")
    assert r.estimate.value == pytest.approx(0.8) and r.margin == 0.5
    r = evaluate_claim({**spec, "pick": "first"}, table, tmp_path)
    assert r.verdict == stats.NOT_REPRODUCED  # round 1: every prompt 0.4


def test_against_all_takes_the_worst_and_best_picks_the_strongest(tmp_path):
    spec = {"text": "vote >= every member", "metric": "f1", "key": "member", "row": "ensemble",
            "vs": {"where_not": {"member": "ensemble"}}, "direction": "greater_equal"}
    table = [{"member": "m1", "f1": 60.0, "f1_lo": 58.0, "f1_hi": 62.0, "n": 100},
             {"member": "m2", "f1": 70.0, "f1_lo": 68.0, "f1_hi": 72.0, "n": 100},
             {"member": "ensemble", "f1": 65.0, "f1_lo": 63.0, "f1_hi": 67.0, "n": 100}]
    r = evaluate_claim(spec, table)
    assert r.verdict == stats.NOT_REPRODUCED and r.what.startswith("ensemble − m2")
    assert len(r.parts) == 2 and {p.verdict for p in r.parts} == {stats.REPRODUCED,
                                                                   stats.NOT_REPRODUCED}
    best = evaluate_claim({**spec, "against": "best"}, table)
    assert best.verdict == stats.NOT_REPRODUCED and not best.parts
    # per-item, scaled to percent: the vote ties the best member on every post
    per = {"f1": {"metric": "f1", "ids": list(range(4)),
                  "values": {"m1": [0.1, 0.2, 0.3, 0.4], "m2": [0.5, 0.6, 0.7, 0.8],
                             "ensemble": [0.5, 0.6, 0.7, 0.8]}}}
    r = evaluate_claim({**spec, "against": "best", "per_item": ["f1"], "scale": 100}, table,
                       _run(tmp_path, table, per))
    assert r.verdict == stats.REPRODUCED and r.estimate.value == 0.0


def test_where_selector_and_list(tmp_path):
    table = [{"model": "SFT", "group": "baseline", "ce": 2.0, "ce_stderr": 0.01, "n": 50},
             {"model": "t1", "group": "target", "ce": 1.5, "ce_stderr": 0.01, "n": 50},
             {"model": "t2", "group": "target", "ce": 1.9, "ce_stderr": 0.01, "n": 50}]
    spec = {"text": "targets < SFT", "metric": "ce", "key": "model",
            "row": {"where": {"group": "target"}}, "vs": "SFT", "direction": "less"}
    r = evaluate_claim(spec, table)
    assert r.verdict == stats.REPRODUCED and r.what.startswith("t2") and len(r.parts) == 2
    r = evaluate_claim({**spec, "row": ["t1", "t2"], "vs": "SFT"}, table)
    assert len(r.parts) == 2


def test_bad_specs_are_named():
    with pytest.raises(ValueError, match="unknown key"):
        check_claim({**LESS, "colour": 1})
    with pytest.raises(ValueError, match="exactly one of"):
        check_claim({**LESS, "value": 1})
    with pytest.raises(ValueError, match="direction 'lower'"):
        check_claim({**LESS, "direction": "lower"})
    with pytest.raises(ValueError, match="no metrics.json"):
        run_claims("blockpruner", "/nonexistent")


@pytest.mark.parametrize("paper", ["blockpruner", "fusechat", "seft", "toxic_spans"])
def test_every_paper_declares_valid_claims(paper):
    claims = paper_claims(paper)
    assert claims and all(c["text"] for c in claims)


def test_n_column_names_the_metric_count():
    table = [{"model": "SCE", "judge": 6.0, "judge_stderr": 0.1, "judge_n": 12, "n": 300},
             {"model": "SFT", "judge": 5.0, "judge_stderr": 0.1, "judge_n": 12, "n": 300}]
    spec = {"text": "SCE > SFT", "metric": "judge", "key": "model", "row": "SCE", "vs": "SFT",
            "direction": "greater", "n_column": "judge_n"}
    r = evaluate_claim(spec, table)
    assert r.verdict == stats.REPRODUCED and r.n == 12


def test_many_items_use_the_paired_bootstrap(tmp_path):
    b = [3.0 + 0.01 * i for i in range(30)]
    r = evaluate_claim(LESS, TABLE, _run(tmp_path, TABLE, _nll([x - 0.1 for x in b], b)))
    assert r.verdict == stats.REPRODUCED and r.method.startswith("paired bootstrap over 30")
