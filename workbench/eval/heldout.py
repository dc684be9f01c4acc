"""Held-out response CE / perplexity on chat data: assistant tokens only.

Examples are ``{"input_ids": [...], "labels": [...]}`` with every non-assistant token's label
set to -100 (the FuseChat representation format; ``workbench.fusion.represent.tokenize_dialogue``
makes them from rendered dialogues). The loss at position t scores ``labels[t+1]`` from the
logits at t, so only tokens whose label is kept are predicted, each from its full left context
(user turns included).

- ``ce``: token-weighted mean NLL (nats) over all assistant tokens; ``ppl = exp(ce)``;
- ``ce_dialogue_mean``: mean over dialogues of each dialogue's mean (the FuseChat ``metric_ce``);
- ``per_dialogue``: each dialogue's summed NLL and token count (for paired comparisons);
- ``nll_per_char``: summed NLL / ``chars`` when the caller passes the assistant character count
  (comparable across tokenizers, unlike ``ce``).

Batches are right-padded, length-sorted, at most ``token_budget`` padded tokens each.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch.nn import functional as F

from workbench.common.runtime import track

IGNORE_INDEX = -100


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position NLL of ``labels[t+1]`` from ``logits[t]`` and its mask, both ``[B, L-1]``."""
    tgt = labels[:, 1:]
    mask = tgt != IGNORE_INDEX
    nll = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                          tgt.clamp(min=0).reshape(-1), reduction="none").view(tgt.shape)
    return nll * mask, mask


def _batches(lengths: Sequence[int], batch_size: int, token_budget: int | None
             ) -> list[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    out: list[list[int]] = []
    for i in order:
        cur = out[-1] if out else None
        fits = cur is not None and len(cur) < batch_size and (
            token_budget is None or (len(cur) + 1) * lengths[cur[0]] <= token_budget)
        if fits:
            cur.append(i)
        else:
            out.append([i])
    return out


@torch.no_grad()
def response_ce(model, examples: Sequence[dict[str, Any]], *, batch_size: int = 4,
                token_budget: int | None = 8192, pad_token_id: int = 0,
                chars: int | None = None, desc: str = "held-out CE") -> dict[str, Any]:
    """Held-out response CE of ``model`` on pre-tokenised examples (see the module doc)."""
    if not examples:
        raise ValueError("response_ce: no held-out examples")
    for i, ex in enumerate(examples):
        if len(ex["input_ids"]) != len(ex["labels"]):
            raise ValueError(f"held-out example {i}: input_ids and labels differ in length")
    dev = next(model.parameters()).device
    model.eval()
    per_dialogue: list[tuple[float, int]] = [(0.0, 0)] * len(examples)
    lengths = [len(ex["input_ids"]) for ex in examples]
    for idx in track(_batches(lengths, batch_size, token_budget), desc=desc):
        n = max(lengths[i] for i in idx)
        ids = torch.full((len(idx), n), pad_token_id, dtype=torch.long)
        labels = torch.full((len(idx), n), IGNORE_INDEX, dtype=torch.long)
        attn = torch.zeros((len(idx), n), dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, : lengths[i]] = torch.tensor(examples[i]["input_ids"])
            labels[r, : lengths[i]] = torch.tensor(examples[i]["labels"])
            attn[r, : lengths[i]] = 1
        logits = model(input_ids=ids.to(dev), attention_mask=attn.to(dev), use_cache=False).logits
        nll, mask = token_nll(logits, labels.to(dev))
        for r, i in enumerate(idx):
            per_dialogue[i] = (float(nll[r].double().sum()), int(mask[r].sum()))
    total = sum(s for s, _ in per_dialogue)
    count = sum(c for _, c in per_dialogue)
    if count == 0:
        raise ValueError("response_ce: the held-out examples have no assistant tokens")
    means = [s / c for s, c in per_dialogue if c]
    ce = total / count
    out = {"ce": ce, "ppl": math.exp(ce), "ce_dialogue_mean": sum(means) / len(means),
           "n_tokens": count, "n_dialogues": len(examples), "nll_sum": total,
           "per_dialogue": [{"nll_sum": s, "n_tokens": c} for s, c in per_dialogue]}
    if chars:
        out["nll_per_char"] = total / chars
    return out
