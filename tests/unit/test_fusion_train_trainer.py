"""train_target on tiny:llama with synthetic representations (formats.py shape)."""

import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from workbench.common.models import resolve_model
from workbench.fusion.train import TrainArgs, synthetic_representations, train_info, train_target

VOCAB = 49152  # tiny:llama (SmolLM2 tokenizer)


@pytest.fixture(scope="module")
def reps():
    pivot = synthetic_representations(4, 16, VOCAB, 10, seed=0)
    src = synthetic_representations(4, 16, VOCAB, 10, seed=1, aligned=True, ce_shift=-1.0)
    src = src.map(lambda r, i: {"input_ids": pivot[i]["input_ids"]}, with_indices=True)
    return pivot, src


def _base_weights():
    return load_file(f"{resolve_model('tiny:llama')}/model.safetensors")


@pytest.mark.slow  # ~5 s alone, 13-26 s on the shared box
def test_pairwise_target_trains_saves_and_resumes(reps, tmp_path):
    pivot, src = reps
    args = TrainArgs(model="tiny:llama", lam=0.0, lr=3e-3, max_steps=6, batch_size=2,
                     save_steps=3, warmup_ratio=0.0, keep_checkpoints=True)
    out = train_target(args, pivot, src, tmp_path / "t")
    assert (tmp_path / "t" / "checkpoints" / "checkpoint-6").is_dir()  # kept on request
    info = train_info(out)
    steps = [h for h in info["log_history"] if "fuse_loss" in h]
    assert info["global_step"] == 6 and info["num_sources"] == 1
    assert all(h["source_chosen"] == 1.0 for h in steps)  # the source has the lower metric_ce
    assert steps[-1]["fuse_loss"] < steps[0]["fuse_loss"]  # lam=0: pure fusion loss goes down
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template  # the pivot's template travels with the target
    base = _base_weights()
    name = "model.layers.0.mlp.up_proj.weight"
    assert not torch.equal(model.state_dict()[name], base[name])
    # finished: a second call returns the folder without training
    assert train_target(args, pivot, src, tmp_path / "t") == out
    # interrupted after the checkpoint at step 6: resume from it and go on to 8
    shutil.rmtree(out)
    out = train_target(TrainArgs(**{**args.__dict__, "max_steps": 8}), pivot, src,
                       tmp_path / "t")
    info = train_info(out)
    assert info["resumed_from"].endswith("checkpoint-6") and info["global_step"] == 8


@pytest.mark.slow  # ~5 s alone, 13-26 s on the shared box
def test_lora_target_is_merged_and_sft_only_needs_no_targets(reps, tmp_path):
    pivot, src = reps
    lora = train_target(TrainArgs(model="tiny:llama", lr=1e-2, max_steps=2, batch_size=2,
                                  lora=True, lora_r=4), pivot, [src, src], tmp_path / "multi")
    assert not (lora / "adapter_config.json").exists()
    # finished: the resume checkpoints (optimizer state included) are gone by default
    assert not (tmp_path / "multi" / "checkpoints").exists()
    merged = load_file(f"{lora}/model.safetensors")
    base = _base_weights()
    name = "model.layers.0.self_attn.q_proj.weight"
    assert set(merged) == set(base) and not torch.equal(merged[name], base[name])
    assert train_info(lora)["num_sources"] == 2
    sft = train_target(TrainArgs(model="tiny:llama", lam=1.0, lr=1e-3, max_steps=1,
                                 batch_size=2),
                       pivot.remove_columns(["topk_ids", "topk_logits"]), None, tmp_path / "sft")
    info = train_info(sft)
    assert info["num_sources"] == 0
    assert all(h["fuse_loss"] == 0.0 for h in info["log_history"] if "fuse_loss" in h)


def test_train_args_validation():
    with pytest.raises(ValueError, match="lam"):
        TrainArgs(model="tiny:llama", lam=1.2)
    with pytest.raises(ValueError, match="fuse_loss"):
        TrainArgs(model="tiny:llama", fuse_loss="mse")
    with pytest.raises(ValueError, match="batch_size"):
        TrainArgs(model="tiny:llama", batch_size=0)


@pytest.mark.slow  # ~3 s alone
def test_no_resume_checkpoint_is_written_at_the_last_step(reps, tmp_path, monkeypatch):
    """The final model is saved right after the last step and the resume checkpoints are then
    deleted, so Trainer's own end-of-training checkpoint (weights + optimizer state) is skipped;
    periodic ones are still written."""
    from transformers import Trainer

    saved = []
    real = Trainer._save_checkpoint
    monkeypatch.setattr(Trainer, "_save_checkpoint",
                        lambda self, *a, **k: (saved.append(self.state.global_step),
                                               real(self, *a, **k))[1])
    pivot, src = reps
    args = TrainArgs(model="tiny:llama", lr=1e-3, max_steps=4, batch_size=2, save_steps=2,
                     warmup_ratio=0.0)
    out = train_target(args, pivot, src, tmp_path / "t")
    assert saved == [2] and train_info(out)["global_step"] == 4
    assert not (tmp_path / "t" / "checkpoints").exists()
