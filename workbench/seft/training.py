"""SEFT training: reviser SFT, one self-evolution round, and the SFT/DPO/ORPO baselines (TRL 1.16).

ORPO lives in ``trl.experimental.orpo`` in TRL 1.x. Every trainer call is followed by a NaN guard:
a non-finite training loss raises ``FloatingPointError`` naming the stage.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset

from workbench.common.runtime import quiet_trainer
from workbench.common.trainargs import resume_checkpoint, split_resume
from workbench.seft.inference import (  # noqa: F401  (re-exported: the old single-module layout)
    DECISIONS,
    _chat_prompt,
    _n_tokens,
    clip_reviser_input,
    continuation_logprobs,
    decision_margins,
    generate_chat,
    revise,
    reviser_discrimination,
    reviser_input_limit,
    reviser_messages,
    sample_and_revise,
)

log = logging.getLogger(__name__)


def _common_args(out_dir: Path, *, lr: float, epochs: float, batch_size: int, max_steps: int,
                 seed: int, max_length: int, bf16: bool = False,
                 gradient_checkpointing: bool = False,
                 training_args: dict[str, Any] | None = None) -> dict[str, Any]:
    """TrainingArguments shared by all stages. TRL 1.x turns bf16 and gradient checkpointing on
    by default; both are explicit here (off: fp32 and no recompute, the faster choice on CPU).
    ``training_args`` (checked by the config) override any of them."""
    out = dict(output_dir=str(out_dir), learning_rate=lr, num_train_epochs=epochs,
               per_device_train_batch_size=batch_size, max_steps=max_steps, seed=seed,
               max_length=max_length, logging_steps=1, save_strategy="no", report_to=[],
               use_cpu=not torch.cuda.is_available(), disable_tqdm=True, bf16=bf16,
               gradient_checkpointing=gradient_checkpointing)
    out.update(training_args or {})
    return out


def _train(tr, out_dir: Path, resume: Any) -> None:
    """``tr.train()``, resuming from the stage's last checkpoint when there is one (a killed
    stage with a ``save_strategy`` continues where it stopped)."""
    ckpt = resume_checkpoint(resume, out_dir) if tr.args.save_strategy != "no" or resume \
        else None
    quiet_trainer(tr, desc=f"train {out_dir.name}")  # no per-step log dicts in saved outputs
    if ckpt:
        tr.train(resume_from_checkpoint=ckpt)
    else:
        tr.train()


def save_trained(tr, model, tokenizer, folder: Path, *, lora: bool) -> None:
    """Multi-process save of a trained model into ``folder``: full fine-tuning through
    ``trainer.save_model`` (every rank joins; FSDP / ZeRO-3 shards are gathered), a LoRA model
    merged and saved by the main process. The tokenizer goes next to it."""
    from workbench.common.rundir import barrier, is_main_process

    if lora:
        if is_main_process():
            model.save_pretrained(folder)
    else:
        tr.save_model(str(folder))
    if is_main_process():
        tokenizer.save_pretrained(folder)
        (Path(folder) / "training_args.bin").unlink(missing_ok=True)
    barrier()


def _lora_config(lora: bool, r: int = 8):
    if not lora:
        return None
    from peft import LoraConfig
    return LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules="all-linear",
                      task_type="CAUSAL_LM")


def check_finite(history: list[dict[str, Any]], stage: str) -> float:
    """NaN guard: the last logged training loss must be finite. Returns it."""
    losses = [h["loss"] for h in history if "loss" in h]
    if not losses:
        losses = [h["train_loss"] for h in history if "train_loss" in h]
    if not losses or not all(math.isfinite(x) for x in losses):
        raise FloatingPointError(f"{stage}: non-finite or missing training loss {losses!r}")
    return float(losses[-1])


def _merge(model):
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def _finish(tr, tokenizer, stage: str, lora: bool, save_dir: Path | None):
    loss = check_finite(tr.state.log_history, stage)
    model = _merge(tr.model)
    if save_dir is not None:
        save_trained(tr, model, tokenizer, save_dir, lora=lora)
    return model, loss


def train_sft(model, tokenizer, messages: list[list[dict[str, str]]], out_dir: Path, *,
              lora: bool = False, lr: float = 2e-5, epochs: float = 1.0, batch_size: int = 4,
              max_steps: int = -1, seed: int = 0, max_length: int = 512, stage: str = "sft",
              bf16: bool = False, gradient_checkpointing: bool = False,
              training_args: dict[str, Any] | None = None, save_dir: Path | None = None):
    """SFT (assistant-only loss on the conversation's completion) with TRL's SFTTrainer.
    ``training_args``: TrainingArguments overrides (and ``resume_from_checkpoint``);
    ``save_dir``: save the result there with :func:`save_trained` (multi-process runs).
    Returns (model with LoRA merged, final loss: the last logged one, the mean over ranks)."""
    from trl import SFTConfig, SFTTrainer
    extra, resume = split_resume(training_args)
    ds = Dataset.from_list([{"prompt": m[:-1], "completion": m[-1:]} for m in messages])
    args = SFTConfig(**_common_args(out_dir, lr=lr, epochs=epochs, batch_size=batch_size,
                                    max_steps=max_steps, seed=seed, max_length=max_length,
                                    bf16=bf16, gradient_checkpointing=gradient_checkpointing,
                                    training_args=extra))
    tr = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer,
                    peft_config=_lora_config(lora))
    _train(tr, out_dir, resume)
    return _finish(tr, tokenizer, stage, lora, save_dir)


def train_preference(kind: str, model, tokenizer, rows: list[dict[str, str]], out_dir: Path, *,
                     lora: bool = False, lr: float = 5e-6, beta: float = 0.1, epochs: float = 1.0,
                     batch_size: int = 4, max_steps: int = -1, seed: int = 0,
                     max_length: int = 512, bf16: bool = False,
                     gradient_checkpointing: bool = False,
                     training_args: dict[str, Any] | None = None, save_dir: Path | None = None):
    """DPO (sigmoid, β) or ORPO (λ=β) on rows with prompt/chosen/rejected (conversational);
    ``training_args`` / ``save_dir`` as for :func:`train_sft`."""
    extra, resume = split_resume(training_args)
    common = _common_args(out_dir, lr=lr, epochs=epochs, batch_size=batch_size,
                          max_steps=max_steps, seed=seed, max_length=max_length, bf16=bf16,
                          gradient_checkpointing=gradient_checkpointing, training_args=extra)
    ds = Dataset.from_list([{
        "prompt": [{"role": "user", "content": r["prompt"]}],
        "chosen": [{"role": "assistant", "content": r["chosen_response"]}],
        "rejected": [{"role": "assistant", "content": r["rejected_response"]}],
    } for r in rows])
    if kind == "dpo":
        from trl import DPOConfig, DPOTrainer
        args = DPOConfig(beta=beta, loss_type=["sigmoid"], **common)
        tr = DPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer,
                        peft_config=_lora_config(lora))
    elif kind == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer
        args = ORPOConfig(beta=beta, **common)
        tr = ORPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer,
                         peft_config=_lora_config(lora))
    else:
        raise ValueError(f"unknown preference baseline {kind!r} (dpo, orpo)")
    _train(tr, out_dir, resume)
    return _finish(tr, tokenizer, kind, lora, save_dir)


def train_on_revised(policy, policy_tok, rows: list[dict[str, Any]], out_dir: Path, *,
                     lora: bool = False, lr: float = 2e-5, epochs: float = 1.0,
                     batch_size: int = 4, max_steps: int = -1, seed: int = 0,
                     max_length: int = 512, bf16: bool = False,
                     gradient_checkpointing: bool = False,
                     training_args: dict[str, Any] | None = None, save_dir: Path | None = None):
    """Second half of a SEFT round: plain SFT of the policy on (prompt, revised response).
    Returns (new policy, final loss)."""
    msgs = [[{"role": "user", "content": r["prompt"]},
             {"role": "assistant", "content": r["revised"] or "."}] for r in rows]
    return train_sft(policy, policy_tok, msgs, out_dir, lora=lora, lr=lr, epochs=epochs,
                     batch_size=batch_size, max_steps=max_steps, seed=seed,
                     max_length=max_length, stage="seft-round", bf16=bf16,
                     gradient_checkpointing=gradient_checkpointing,
                     training_args=training_args, save_dir=save_dir)


def evolution_round(policy, policy_tok, reviser, reviser_tok, prompts: list[str], out_dir: Path, *,
                    external_responses: list[str] | None = None, lora: bool = False,
                    lr: float = 2e-5, epochs: float = 1.0, batch_size: int = 4,
                    max_steps: int = -1, seed: int = 0, max_new_tokens: int = 64,
                    reviser_max_new_tokens: int = 128, max_length: int = 512,
                    decision: str = "constrained", max_input_tokens: int | None = None):
    """One SEFT round: sample (internal) or take external responses, revise, SFT the policy.
    Returns (new policy, stats, rows); rows are the round's (prompt, response, decision, revised)."""
    rows, stats = sample_and_revise(policy, policy_tok, reviser, reviser_tok, prompts,
                                    external_responses=external_responses,
                                    max_new_tokens=max_new_tokens,
                                    reviser_max_new_tokens=reviser_max_new_tokens,
                                    decision=decision, max_input_tokens=max_input_tokens)
    policy, loss = train_on_revised(policy, policy_tok, rows, out_dir, lora=lora, lr=lr,
                                    epochs=epochs, batch_size=batch_size, max_steps=max_steps,
                                    seed=seed, max_length=max_length)
    stats["train_loss"] = loss
    return policy, stats, rows
