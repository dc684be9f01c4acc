"""Stage entry points: bad stage names and missing earlier stages fail in one line; a run
folder is created by the main process only (rank-aware RunDir)."""

from __future__ import annotations

import pytest

from workbench.fusion.config import FuseChatConfig
from workbench.seft.config import SEFTConfig


def test_fusechat_stage_names_and_order(tmp_path):
    from workbench.fusion.launch import run_stage

    cfg = FuseChatConfig.from_preset("smoke", output_dir=str(tmp_path))
    with pytest.raises(ValueError, match="unknown FuseChat stage 'target'.*Did you mean: targets"):
        run_stage(cfg, "target")
    with pytest.raises(ValueError, match="stage 'targets' needs stage 'dialogues' finished first"):
        run_stage(cfg, "targets")


def test_seft_stage_names_and_order(tmp_path):
    from workbench.seft.run import run_stage

    pref = tmp_path / "pref.jsonl"
    pref.write_text("".join(f'{{"prompt": "Q{i}?", "chosen": "Yes {i}.", "rejected": "no"}}\n'
                            for i in range(4)))
    pool = tmp_path / "p.txt"
    pool.write_text("".join(f"P {i}.\n" for i in range(8)))
    cfg = SEFTConfig.from_preset("smoke", output_dir=str(tmp_path), pref_data=str(pref),
                                 prompt_source=str(pool), pref_size=4, reviser_eval_pairs=0,
                                 baselines=("sft",))
    with pytest.raises(ValueError, match="unknown SEFT stage 'dop'.*Did you mean: dpo"):
        run_stage(cfg, "dop")
    with pytest.raises(ValueError, match="baseline 'orpo' is not in the config's baselines"):
        run_stage(cfg, "orpo")
    with pytest.raises(ValueError, match="needs its number"):
        run_stage(cfg, "round")
    with pytest.raises(ValueError, match="round 1: the reviser is not trained yet"):
        run_stage(cfg, "round", round=1)
    with pytest.raises(ValueError, match="round 3 out of range 1..1"):
        run_stage(cfg, "round", round=3)


def test_rundir_is_written_by_the_main_process_only(tmp_path, monkeypatch):
    from workbench.common import rundir

    cfg = SEFTConfig.from_preset("smoke", output_dir=str(tmp_path), run_name="r")
    waited = []
    monkeypatch.setattr(rundir, "barrier", lambda: waited.append(1))
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    run = rundir.RunDir.create(cfg, kind="seft")  # rank 1: waits, writes nothing
    assert waited == [1] and not (tmp_path / "seft" / "r").exists()
    run.finish({"x": 1})
    assert not (tmp_path / "seft" / "r" / "metrics.json").exists()
    monkeypatch.setenv("RANK", "0")
    run = rundir.RunDir.create(cfg, kind="seft")
    assert (run.path / "config.yaml").exists() and rundir.read_json(run.path / "env.json")[
        "world_size"] == 2
    run.finish({"x": 1})
    assert run.is_complete()
