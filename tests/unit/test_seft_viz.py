import math

from workbench.viz.seft import (
    paper_rows,
    reviser_heldout_figure,
    reviser_heldout_rows,
    rounds_figure,
    score_per_round_figure,
    seed_spread,
    table_figure,
)

T = [{"model": "SEFT round 2", "mtbench_turn1": 5.0, "mtbench_turn2": 3.0, "judge_score": 4.0,
      "win_rate_vs_sft": 0.75, "n_unparsed": 1, "n_forced": 2},
     {"model": "DPO", "mtbench_turn1": 4.0, "mtbench_turn2": None, "judge_score": 4.0,
      "win_rate_vs_sft": 0.25, "n_unparsed": 0, "n_forced": 0},
     {"model": "SEFT round 1", "mtbench_turn1": 2.0, "mtbench_turn2": 2.0, "judge_score": 2.0,
      "win_rate_vs_sft": 0.5, "n_unparsed": 0, "n_forced": 0},
     {"model": "SFT", "mtbench_turn1": 3.0, "mtbench_turn2": 1.0, "judge_score": 2.0,
      "win_rate_vs_sft": 0.5, "n_unparsed": 0, "n_forced": 0},
     {"model": "ORPO", "mtbench_turn1": 1.0, "mtbench_turn2": 1.0, "judge_score": 1.0,
      "win_rate_vs_sft": 0.0, "n_unparsed": 0, "n_forced": 0}]


def test_paper_rows_layout():
    rows = paper_rows(T)
    assert [r["Model"] for r in rows] == ["SFT", "DPO", "ORPO", "SEFT round 1", "SEFT round 2"]
    assert list(rows[0]) == ["Model", "MT-Bench 1st turn", "MT-Bench 2nd turn", "MT-Bench avg",
                             "Win rate vs SFT", "unparsed / forced", "same answers as SFT"]
    assert rows[-1]["unparsed / forced"] == "1 / 2" and rows[1]["MT-Bench 2nd turn"] is None


def test_seed_spread_mean_range_and_missing():
    other = [dict(r) for r in T]
    other[0]["judge_score"] = 6.0       # SEFT round 2: 4 and 6
    other[1]["mtbench_turn2"] = 2.0     # DPO turn 2: null in seed 0
    s = {r["model"]: r for r in seed_spread([T, other])}
    assert s["SEFT round 2"]["judge_score_mean"] == 5.0
    assert s["SEFT round 2"]["judge_score_spread"] == 2.0
    assert s["DPO"]["mtbench_turn2_mean"] == 2.0 and s["DPO"]["mtbench_turn2_n_seeds"] == 1
    assert s["SFT"]["win_rate_vs_sft_spread"] == 0.0
    assert [r["model"] for r in seed_spread([T])][:3] == ["SFT", "DPO", "ORPO"]


def test_figures_build():
    rounds = [{"round": 1, "share_revised": 0.5, "share_malformed": 0.1},
              {"round": 2, "share_revised": 0.25, "share_malformed": 0.0}]
    f = rounds_figure(rounds, T)
    assert [list(t.y) for t in f.data[:2]] == [[0.5, 0.25], [0.1, 0.0]]
    assert list(f.data[2].y) == [2.0, 4.0]
    f = score_per_round_figure(T)
    assert list(f.data[0].x) == [1, 2] and list(f.data[0].y) == [2.0, 4.0]
    assert len(f.layout.shapes) == 3  # SFT, DPO, ORPO reference lines
    f = table_figure(T)
    assert list(f.data[0].x)[:3] == ["SFT", "DPO", "ORPO"]
    assert not math.isnan(f.data[3].y[0])


def test_reviser_heldout_rows_and_figure():
    h = {"before_training": {"n_pairs": 4, "share_revise_rejected": 1.0,
                             "share_revise_chosen": 1.0},
         "after_training": {"n_pairs": 4, "share_revise_rejected": 0.75,
                            "share_revise_chosen": 0.25}}
    rows = reviser_heldout_rows(h)
    assert [r["reviser"] for r in rows] == ["before training", "after training"]
    fig = reviser_heldout_figure(h)
    assert [list(t.y) for t in fig.data] == [[1.0, 0.75], [1.0, 0.25]]
    assert "4 held-out" in fig.layout.title.text
    assert reviser_heldout_rows({"before_training": {"n_pairs": 0}}) == []
