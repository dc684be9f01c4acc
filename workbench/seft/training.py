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

from workbench.seft.reviser_data import (
    ParsedRevision,
    format_reviser_prompt,
    parse_reviser_output,
    summarize_revisions,
)

log = logging.getLogger(__name__)


def _common_args(out_dir: Path, *, lr: float, epochs: float, batch_size: int, max_steps: int,
                 seed: int, max_length: int, bf16: bool = False,
                 gradient_checkpointing: bool = False) -> dict[str, Any]:
    """TrainingArguments shared by all stages. TRL 1.x turns bf16 and gradient checkpointing on
    by default; both are explicit here (off: fp32 and no recompute, the faster choice on CPU)."""
    return dict(output_dir=str(out_dir), learning_rate=lr, num_train_epochs=epochs,
                per_device_train_batch_size=batch_size, max_steps=max_steps, seed=seed,
                max_length=max_length, logging_steps=1, save_strategy="no", report_to=[],
                use_cpu=not torch.cuda.is_available(), disable_tqdm=True, bf16=bf16,
                gradient_checkpointing=gradient_checkpointing)


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


def train_sft(model, tokenizer, messages: list[list[dict[str, str]]], out_dir: Path, *,
              lora: bool = False, lr: float = 2e-5, epochs: float = 1.0, batch_size: int = 4,
              max_steps: int = -1, seed: int = 0, max_length: int = 512, stage: str = "sft",
              bf16: bool = False, gradient_checkpointing: bool = False):
    """SFT (assistant-only loss on the conversation's completion) with TRL's SFTTrainer.
    Returns (model with LoRA merged, final loss)."""
    from trl import SFTConfig, SFTTrainer
    ds = Dataset.from_list([{"prompt": m[:-1], "completion": m[-1:]} for m in messages])
    args = SFTConfig(**_common_args(out_dir, lr=lr, epochs=epochs, batch_size=batch_size,
                                    max_steps=max_steps, seed=seed, max_length=max_length,
                                    bf16=bf16, gradient_checkpointing=gradient_checkpointing))
    tr = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tokenizer,
                    peft_config=_lora_config(lora))
    tr.train()
    loss = check_finite(tr.state.log_history, stage)
    return _merge(tr.model), loss


def train_preference(kind: str, model, tokenizer, rows: list[dict[str, str]], out_dir: Path, *,
                     lora: bool = False, lr: float = 5e-6, beta: float = 0.1, epochs: float = 1.0,
                     batch_size: int = 4, max_steps: int = -1, seed: int = 0,
                     max_length: int = 512, bf16: bool = False,
                     gradient_checkpointing: bool = False):
    """DPO (sigmoid, β) or ORPO (λ=β) on rows with prompt/chosen/rejected (conversational)."""
    common = _common_args(out_dir, lr=lr, epochs=epochs, batch_size=batch_size,
                          max_steps=max_steps, seed=seed, max_length=max_length, bf16=bf16,
                          gradient_checkpointing=gradient_checkpointing)
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
    tr.train()
    loss = check_finite(tr.state.log_history, kind)
    return _merge(tr.model), loss


@torch.no_grad()
def generate_chat(model, tokenizer, user_texts: list[str] | list[list[dict[str, str]]], *,
                  max_new_tokens: int = 64, do_sample: bool = True, temperature: float = 0.7,
                  top_p: float = 0.9, batch_size: int = 8) -> list[str]:
    """Greedy/sampled chat generation (left padding) through the model's chat template.
    Each item is a user text (single turn) or a whole conversation (list of messages ending with
    a user turn, e.g. MT-Bench's second turn after the model's own first answer)."""
    model.eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    outs: list[str] = []
    dev = next(model.parameters()).device
    for i in range(0, len(user_texts), batch_size):
        chunk = user_texts[i:i + batch_size]
        convs = [[{"role": "user", "content": t}] if isinstance(t, str) else list(t) for t in chunk]
        texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
                 for c in convs]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(dev)
        kw = dict(do_sample=do_sample, max_new_tokens=max_new_tokens,
                  pad_token_id=tokenizer.pad_token_id)
        if do_sample:
            kw.update(temperature=temperature, top_p=top_p)
        gen = model.generate(**enc, **kw)
        outs += tokenizer.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return [o.strip() for o in outs]


def revise(reviser, tokenizer, prompts: list[str], responses: list[str], *,
           max_new_tokens: int = 128, batch_size: int = 8, return_raw: bool = False):
    """Run the reviser (greedy) on (prompt, response) pairs and parse its outputs.
    Returns the parsed revisions, or (parsed, raw outputs) with ``return_raw``."""
    inputs = [format_reviser_prompt(p, r) for p, r in zip(prompts, responses, strict=True)]
    raw = generate_chat(reviser, tokenizer, inputs, max_new_tokens=max_new_tokens,
                        do_sample=False, batch_size=batch_size)
    parsed: list[ParsedRevision] = [parse_reviser_output(t, r)
                                    for t, r in zip(raw, responses, strict=True)]
    return (parsed, raw) if return_raw else parsed


def sample_and_revise(policy, policy_tok, reviser, reviser_tok, prompts: list[str], *,
                      external_responses: list[str] | None = None, max_new_tokens: int = 64,
                      reviser_max_new_tokens: int = 128) -> tuple[list[dict[str, Any]], dict]:
    """First half of a SEFT round: the policy's sampled responses (internal evolution) or the given
    external ones, revised by the reviser. Returns (rows, stats); rows are the round's data
    (prompt, response, decision, revised, malformed, reviser_output), stats from
    :func:`summarize_revisions`."""
    if not prompts:
        raise ValueError("SEFT round: the prompt pool is empty (no unlabelled prompts left)")
    if external_responses is not None:
        if len(external_responses) != len(prompts):
            raise ValueError("external_responses must match prompts in length")
        responses = list(external_responses)
    else:
        responses = generate_chat(policy, policy_tok, prompts, max_new_tokens=max_new_tokens)
    parsed, raw = revise(reviser, reviser_tok, prompts, responses,
                         max_new_tokens=reviser_max_new_tokens, return_raw=True)
    stats = summarize_revisions(parsed)
    if stats["never_revised"]:
        log.warning("SEFT round: the reviser revised none of %d responses (%d malformed)",
                    stats["n"], stats["n_malformed"])
    rows = [{"prompt": p, "response": r, "decision": q.decision, "revised": q.response,
             "malformed": q.malformed, "reviser_output": o}
            for p, r, q, o in zip(prompts, responses, parsed, raw, strict=True)]
    return rows, stats


def train_on_revised(policy, policy_tok, rows: list[dict[str, Any]], out_dir: Path, *,
                     lora: bool = False, lr: float = 2e-5, epochs: float = 1.0,
                     batch_size: int = 4, max_steps: int = -1, seed: int = 0,
                     max_length: int = 512, bf16: bool = False,
                     gradient_checkpointing: bool = False):
    """Second half of a SEFT round: plain SFT of the policy on (prompt, revised response).
    Returns (new policy, final loss)."""
    msgs = [[{"role": "user", "content": r["prompt"]},
             {"role": "assistant", "content": r["revised"] or "."}] for r in rows]
    return train_sft(policy, policy_tok, msgs, out_dir, lora=lora, lr=lr, epochs=epochs,
                     batch_size=batch_size, max_steps=max_steps, seed=seed,
                     max_length=max_length, stage="seft-round", bf16=bf16,
                     gradient_checkpointing=gradient_checkpointing)


def evolution_round(policy, policy_tok, reviser, reviser_tok, prompts: list[str], out_dir: Path, *,
                    external_responses: list[str] | None = None, lora: bool = False,
                    lr: float = 2e-5, epochs: float = 1.0, batch_size: int = 4,
                    max_steps: int = -1, seed: int = 0, max_new_tokens: int = 64,
                    reviser_max_new_tokens: int = 128, max_length: int = 512):
    """One SEFT round: sample (internal) or take external responses, revise, SFT the policy.
    Returns (new policy, stats, rows); rows are the round's (prompt, response, decision, revised)."""
    rows, stats = sample_and_revise(policy, policy_tok, reviser, reviser_tok, prompts,
                                    external_responses=external_responses,
                                    max_new_tokens=max_new_tokens,
                                    reviser_max_new_tokens=reviser_max_new_tokens)
    policy, loss = train_on_revised(policy, policy_tok, rows, out_dir, lora=lora, lr=lr,
                                    epochs=epochs, batch_size=batch_size, max_steps=max_steps,
                                    seed=seed, max_length=max_length)
    stats["train_loss"] = loss
    return policy, stats, rows
