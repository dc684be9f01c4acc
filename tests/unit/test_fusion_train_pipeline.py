"""FuseChat part 2 glue: merge parameters of the FuseChat configs, Table 1 rows."""

import math

import pytest

from workbench.fusion.config import FuseChatConfig
from workbench.fusion.train.pipeline import fusechat_table, merge_config, short_name


def test_merge_config_uses_fusechat_parameters(tmp_path):
    cfg = FuseChatConfig.from_preset("smoke", tau=0.25)
    sce = merge_config(cfg, "sce", [tmp_path / "a", tmp_path / "b"], tmp_path / "o")
    assert sce.base_model == "tiny:llama" and sce.parameters == {"select_topk": 0.25}
    ties = merge_config(cfg, "ties", [tmp_path / "a", tmp_path / "b"], tmp_path / "o")
    assert ties.model_parameters == ({"weight": 0.2, "density": 0.6},) * 2
    ta = merge_config(cfg, "task_arithmetic", [tmp_path / "a"], tmp_path / "o")
    assert ta.parameters == {"normalize": False} and ta.model_parameters == ({"weight": 0.3},)
    with pytest.raises(ValueError, match="no FuseChat parameters"):
        merge_config(cfg, "slerp", [tmp_path / "a"], tmp_path / "o")


def _res(group, ce, judge, zs):
    return {"group": group, "params_m": 135.0, "heldout": {"ce": ce, "ppl": math.exp(ce)},
            "mtbench": {"score": judge, "turn1": judge, "turn2": judge}, "zeroshot": {"avg": zs}}


def test_table_orders_groups_and_reports_change_vs_sft():
    rows = fusechat_table({"SCE": _res("merge", 1.8, 5.5, 0.4), "SFT": _res("baseline", 2.0, 5.0, 0.3),
                           "p": _res("pivot", 2.2, float("nan"), 0.3),
                           "t1": _res("target", 1.9, 4.0, 0.35)})
    assert [r["model"] for r in rows] == ["p", "SFT", "t1", "SCE"]
    assert len({tuple(r) for r in rows}) == 1  # same keys in every row
    sce = rows[-1]
    assert sce["ce_vs_sft_pct"] == -10.0 and sce["judge_vs_sft_pct"] == 10.0
    assert rows[0]["judge_avg"] is None and rows[0]["ce_vs_sft_pct"] is None
    assert rows[2]["judge_vs_sft_pct"] == -20.0


def test_short_name():
    assert short_name("tiny:llama") == "tiny-llama"
    assert short_name("openchat/openchat_3.5") == "openchat_3.5"


def test_figures_from_rows():
    from workbench.viz.fusion_train import model_comparison_figure, sce_weights_figure

    rows = [{"tensor": "model.layers.0.mlp.up_proj.weight", "target": t, "eta": e,
             "delta_rms": 0.1} for t, e in (("a", 0.25), ("b", 0.75))]
    fig = sce_weights_figure(rows)
    assert [list(r) for r in fig.data[0].z] == [[0.25, 0.75]] and fig.data[0].y == ("layers.0.mlp.up_proj",)
    table = fusechat_table({"SFT": _res("baseline", 2.0, 5.0, 0.3),
                            "SCE": _res("merge", 1.8, 5.5, 0.4)})
    fig = model_comparison_figure(table)
    assert [d.name for d in fig.data] == ["baseline", "merge"] and fig.data[1].y == (1.8,)


def test_part2_stages_run_after_part1():
    from workbench.fusion.run import STAGES

    names = [s.name for s in STAGES]
    assert names[-4:] == ["targets", "baselines", "merges", "evaluation"]
    assert names.index("alignment") < names.index("targets")


def test_stage_rerun_with_new_settings_discards_its_old_outputs(tmp_path):
    from types import SimpleNamespace

    from workbench.fusion.train.pipeline import _discard_if_redone

    old = tmp_path / "merged" / "sce"
    old.mkdir(parents=True)
    (old / "model.safetensors").write_bytes(b"stale")
    ctx = SimpleNamespace(redo=set())
    _discard_if_redone(ctx, "merges", [tmp_path / "merged"])
    assert old.exists()  # a normal resume keeps finished outputs
    ctx.redo = {"merges", "evaluation"}
    _discard_if_redone(ctx, "merges", [tmp_path / "merged", tmp_path / "absent"])
    assert not (tmp_path / "merged").exists()


def _heldout(pairs):
    return {"ce": sum(n for n, _ in pairs) / sum(t for _, t in pairs),
            "per_dialogue": [{"nll_sum": n, "n_tokens": t} for n, t in pairs]}


def test_paired_ce_diff_hand_computed():
    from workbench.fusion.train.report import paired_ce_diff

    # x = [1, -1] over 15 tokens: diff 0, se = sqrt(2/1 * (1 + 1)) / 15
    r = paired_ce_diff(_heldout([(10, 5), (20, 10)]), _heldout([(9, 5), (21, 10)]))
    assert r["diff"] == 0.0 and r["se"] == pytest.approx(2 / 15)
    # x = [2, 0] over 8 tokens: diff 0.25, residuals [2 - 1, 0 - 1] -> se = sqrt(2 * 2) / 8
    r = paired_ce_diff(_heldout([(12, 4), (8, 4)]), _heldout([(10, 4), (8, 4)]))
    assert r["diff"] == 0.25 and r["se"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="same dialogues"):
        paired_ce_diff(_heldout([(12, 4)]), _heldout([(10, 5)]))


def test_seed_table_over_two_runs(tmp_path):
    from workbench.common.io import write_json
    from workbench.fusion.train.report import seed_table

    runs = []
    for seed, sce_nll in ((0, 9.0), (1, 11.0)):
        run = tmp_path / f"seed{seed}"
        write_json(run / "metrics.json", {"table": [{"model": "SFT"}, {"model": "SCE"}]})
        for label, group, nll in (("SFT", "baseline", 10.0), ("SCE", "merge", sce_nll)):
            write_json(run / "checkpoints" / "eval" / f"{label}.json",
                       {"model": label, "group": group,
                        "heldout": _heldout([(nll, 10), (10.0, 10)]),
                        "mtbench": {"score": 5.0}, "zeroshot": {"avg": 0.5}})
        runs.append(run)
    rows = {r["model"]: r for r in seed_table(runs)}
    assert rows["SCE"]["ce"] == [0.95, 1.05] and rows["SCE"]["ce_mean"] == 1.0
    assert rows["SCE"]["ce_spread"] == 0.1
    assert rows["SCE"]["d_vs_sft_1e4"] == [-500.0, 500.0]
    assert rows["SFT"]["d_vs_sft_1e4"] == [0.0, 0.0]
    assert rows["SCE"]["judge"] == [5.0, 5.0] and rows["SCE"]["zeroshot"] == [0.5, 0.5]


def test_rejudge_regrades_saved_answers_and_feeds_the_seed_table(tmp_path):
    from workbench.common.io import read_json, write_json
    from workbench.fusion.train.report import rejudge, seed_table

    ans = [{"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Shorter."],
            "answers": ["Roses are red.", "Red."]}]
    runs = []
    for seed in (0, 1):
        run = tmp_path / f"seed{seed}"
        write_json(run / "metrics.json", {"table": [{"model": "SFT"}, {"model": "SCE"}]})
        for label, group in (("SFT", "baseline"), ("SCE", "merge")):
            write_json(run / "checkpoints" / "eval" / f"{label}.json",
                       {"model": label, "group": group, "params_m": 1.0,
                        "heldout": _heldout([(10.0, 10)]), "mtbench": {"score": 5.0},
                        "mtbench_answers": ans, "zeroshot": {"avg": 0.5}})
        table = rejudge(run, judge="hf", judge_model="tiny:llama", mode="expected")
        assert {r["model"] for r in table} == {"SFT", "SCE"}
        saved = read_json(run / "artifacts" / "judgments-tiny_llama-expected" / "SCE.json")
        assert saved["mtbench"]["mode"] == "expected" and saved["mtbench"]["n"] == 2
        assert 1 <= saved["mtbench"]["score"] <= 10
        assert (run / "artifacts" / "table-tiny_llama-expected.json").exists()
        runs.append(run)
    rows = {r["model"]: r for r in seed_table(runs, judgments="tiny_llama-expected")}
    assert rows["SCE"]["judge"][0] != 5.0 and 1 <= rows["SCE"]["judge"][1] <= 10
    with pytest.raises(ValueError, match="judgments-nope"):
        seed_table(runs, judgments="nope")
    write_json(tmp_path / "empty" / "checkpoints" / "eval" / "SFT.json", {"model": "SFT"})
    with pytest.raises(ValueError, match="no saved MT-Bench answers"):
        rejudge(tmp_path / "empty", judge="hf", judge_model="tiny:llama")
