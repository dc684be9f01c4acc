"""Every SEFT / FuseChat model load honours the config's device and dtype (recorded placement:
the loader is replaced by one that records its keyword arguments and stops the stage)."""

from __future__ import annotations

import pytest
import torch

import workbench.common.models as models
from workbench.fusion.config import FuseChatConfig
from workbench.seft.config import SEFTConfig


class Loaded(Exception):
    pass


@pytest.fixture
def recorded(monkeypatch):
    calls: list[tuple[str, dict]] = []

    def fake(name, **kw):
        calls.append((str(name), kw))
        raise Loaded(name)
    monkeypatch.setattr(models, "load_causal_lm", fake)
    import workbench.fusion.train.trainer as trainer  # imports the loader by name
    monkeypatch.setattr(trainer, "load_causal_lm", fake)
    return calls


def _seft(tmp_path, **kw):
    pref = tmp_path / "pref.jsonl"
    pref.write_text("".join(f'{{"prompt": "Q{i}?", "chosen": "Yes {i}.", "rejected": "no"}}\n'
                            for i in range(6)))
    pool = tmp_path / "prompts.txt"
    pool.write_text("".join(f"Prompt {i}.\n" for i in range(8)))
    return SEFTConfig.from_preset("smoke", output_dir=str(tmp_path), pref_data=str(pref),
                                  prompt_source=str(pool), pref_size=4, reviser_eval_pairs=0,
                                  baselines=("sft",), **kw)


def test_seft_loads_follow_device_and_dtype(tmp_path, recorded):
    from workbench.common.io import write_json
    from workbench.common.rundir import RunDir
    from workbench.seft.stages.baselines import stage_baseline
    from workbench.seft.stages.data import prepare_data
    from workbench.seft.stages.evaluate import answer_all
    from workbench.seft.stages.evolve import stage_round
    from workbench.seft.stages.reviser import stage_reviser

    cfg = _seft(tmp_path, device="cpu", dtype="bfloat16")
    run, data = RunDir.create(cfg, kind="seft"), prepare_data(cfg)
    for stage in (lambda: stage_reviser(cfg, run, data),
                  lambda: stage_baseline(cfg, run, data, "sft"),
                  lambda: answer_all(cfg, {"SFT": tmp_path / "m"}, ["hi"], [], tmp_path / "a")):
        with pytest.raises(Loaded):
            stage()
    write_json(run.checkpoints / "reviser_final" / "stage.json", {"loss": 1.0})
    with pytest.raises(Loaded):  # round 1: the policy (training) is loaded first
        stage_round(cfg, run, data, 1)
    assert [n for n, _ in recorded] == ["tiny:llama", "tiny:llama", str(tmp_path / "m"),
                                        "tiny:llama"]
    for _, kw in recorded:  # a named dtype is honoured by training and inference loads alike
        assert kw == {"device": torch.device("cpu"), "dtype": torch.bfloat16}


def test_seft_auto_keeps_float32_on_the_cpu(tmp_path, recorded):
    from workbench.seft.stages.common import placement

    cfg = _seft(tmp_path)
    assert placement(cfg) == {"device": torch.device("cpu"), "dtype": torch.float32}
    assert placement(cfg, train=True) == {"device": torch.device("cpu"), "dtype": torch.float32}
    with pytest.raises(ValueError, match="CUDA is not available"):
        placement(_seft(tmp_path, device="cuda:0"))


def test_seft_revision_sampling_loads_the_reviser_on_the_device(tmp_path, recorded, monkeypatch):
    from workbench.common.rundir import RunDir
    from workbench.seft.stages import evolve
    from workbench.seft.stages.data import prepare_data

    cfg = _seft(tmp_path, device="cpu", dtype="float16")
    run, data = RunDir.create(cfg, kind="seft"), prepare_data(cfg)
    with pytest.raises(Loaded):
        evolve._sample(cfg, run, data, 1, None, None, {})
    assert recorded == [(str(run.checkpoints / "reviser_final"),
                         {"device": torch.device("cpu"), "dtype": torch.float16})]


def test_fusechat_evaluation_and_training_follow_device_and_dtype(tmp_path, recorded):
    from workbench.fusion.train import TrainArgs, synthetic_representations, train_target
    from workbench.fusion.train.evaluate import evaluate_model

    cfg = FuseChatConfig.from_preset("smoke", device="cpu", dtype="bfloat16")
    with pytest.raises(Loaded):
        evaluate_model(cfg, "x", "tiny:llama", [], None, "", [])
    assert recorded[-1] == ("tiny:llama", {"device": torch.device("cpu"),
                                           "dtype": torch.bfloat16})
    pivot = synthetic_representations(2, 8, 49152, 4, seed=0)
    with pytest.raises(Loaded):  # float32 master weights on the configured device
        train_target(TrainArgs.from_config(cfg), pivot, None, tmp_path / "t")
    assert recorded[-1] == ("tiny:llama", {"device": torch.device("cpu"),
                                           "dtype": torch.float32})


def test_training_args_are_checked_and_passed_through():
    from workbench.fusion.train import TrainArgs
    from workbench.seft.training import _common_args

    with pytest.raises(ValueError, match="'gradient_acumulation_steps' is not a TrainingArguments"
                                         " field. Did you mean: gradient_accumulation_steps"):
        SEFTConfig.from_preset("smoke", training_args={"gradient_acumulation_steps": 2})
    with pytest.raises(ValueError, match="output_dir.*run folder"):
        FuseChatConfig.from_preset("smoke", training_args={"output_dir": "x"})
    cfg = SEFTConfig.from_preset("smoke", training_args={"gradient_accumulation_steps": 4,
                                                         "save_strategy": "steps"})
    args = _common_args("o", lr=1e-3, epochs=1, batch_size=2, max_steps=3, seed=0,
                        max_length=64, training_args=cfg.training_args)
    assert args["gradient_accumulation_steps"] == 4 and args["save_strategy"] == "steps"
    assert _common_args("o", lr=1e-3, epochs=1, batch_size=2, max_steps=3, seed=0,
                        max_length=64)["save_strategy"] == "no"  # the default stays as it was
    fc = FuseChatConfig.from_preset("smoke", training_args={"warmup_steps": 2})
    assert TrainArgs.from_config(fc).training_args == {"warmup_steps": 2}


def test_resume_checkpoint_rules(tmp_path):
    from workbench.common.trainargs import resume_checkpoint, split_resume

    assert split_resume({"a": 1, "resume_from_checkpoint": False}) == ({"a": 1}, False)
    assert resume_checkpoint(None, tmp_path / "none") is None
    for step in (2, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
    assert resume_checkpoint(None, tmp_path).endswith("checkpoint-10")
    assert resume_checkpoint(True, tmp_path).endswith("checkpoint-10")
    assert resume_checkpoint(False, tmp_path) is None
    assert resume_checkpoint(str(tmp_path / "checkpoint-2"), tmp_path).endswith("checkpoint-2")
    with pytest.raises(ValueError, match="no such checkpoint"):
        resume_checkpoint(str(tmp_path / "nope"), tmp_path)


def test_local_judge_follows_the_run_config(tmp_path, recorded):
    from workbench.eval.judges import make_judge
    from workbench.seft.stages.common import place_judge

    judge = place_judge(make_judge("hf", "tiny:llama", "expected"),
                        _seft(tmp_path, device="cpu", dtype="bfloat16"))
    with pytest.raises(Loaded):
        judge._load()
    assert recorded[-1][1]["device"] == "cpu" and recorded[-1][1]["dtype"] == "bfloat16"
    endpoint = object()  # no placement: returned as it is
    assert place_judge(endpoint, _seft(tmp_path)) is endpoint
