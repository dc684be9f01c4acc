"""Perplexity the pruning papers' way: join with "\\n\\n", tokenize, non-overlapping rows.

`rows_from_text(tokenizer, text, seq_len, max_rows)` cuts the token stream into full rows of
`seq_len` (remainder dropped); `row_nll(model, rows)` gives each row's mean next-token NLL;
`perplexity(model, rows)` = exp(mean over rows of the per-row mean NLL) (SliceGPT/BlockPruner
`utils.py`); `wikitext2_ppl(model, tokenizer, seq_len, max_rows)` on the WikiText-2 raw test.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def rows_from_text(tokenizer, text: str, seq_len: int, max_rows: int | None = None,
                   spread: bool = False) -> torch.Tensor:
    """Full rows of `seq_len` tokens. With `max_rows`, the first `max_rows` rows, or with
    `spread` `max_rows` rows evenly spaced over the whole text (first and last included)."""
    if seq_len < 2:
        raise ValueError(f"seq_len must be >= 2, got {seq_len}")
    ids = None
    if max_rows is not None and not spread and len(text) > 16 * max_rows * seq_len:
        # small profiles: tokenize a generous prefix only (a token is >= 1 character here)
        head = tokenizer(text[: 16 * max_rows * seq_len], return_tensors="pt",
                         add_special_tokens=False).input_ids[0]
        if head.numel() > max_rows * seq_len:  # the cut token is never used
            ids = head
    if ids is None:
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids[0]
    n = ids.numel() // seq_len
    if n == 0:
        raise ValueError(f"text gives {ids.numel()} tokens: not one full row of {seq_len}")
    rows = ids[: n * seq_len].view(n, seq_len)
    if max_rows is not None and max_rows < n:
        if max_rows < 1:
            raise ValueError(f"max_rows must be >= 1 or None, got {max_rows}")
        if not spread:
            return rows[:max_rows]
        pick = torch.linspace(0, n - 1, max_rows).round().long().unique()
        return rows[pick]
    return rows


@torch.no_grad()
def batch_row_nll(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Mean next-token NLL of each row of `batch` (float64, shape [rows])."""
    dev = next(model.parameters()).device
    batch = batch.to(dev)
    logits = model(input_ids=batch, use_cache=False).logits[:, :-1].float()
    tgt = batch[:, 1:]
    nll = F.cross_entropy(logits.reshape(-1, logits.size(-1)), tgt.reshape(-1), reduction="none")
    pad = getattr(getattr(model, "config", None), "pad_token_id", None)
    mask = torch.ones_like(tgt, dtype=torch.float32) if pad is None else (tgt != pad).float()
    nll = nll.view(tgt.shape) * mask
    return (nll.sum(1) / mask.sum(1).clamp(min=1)).double().cpu()


@torch.no_grad()
def row_nll(model: nn.Module, rows: torch.Tensor, batch_size: int = 1) -> torch.Tensor:
    return torch.cat([batch_row_nll(model, rows[i:i + batch_size])
                      for i in range(0, len(rows), batch_size)])


def perplexity(model: nn.Module, rows: torch.Tensor, batch_size: int = 1) -> float:
    return float(math.exp(row_nll(model, rows, batch_size).mean().item()))


def wikitext2_ppl(model: nn.Module, tokenizer, seq_len: int = 2048,
                  max_rows: int | None = None, batch_size: int = 1) -> float:
    """WikiText-2 raw test perplexity ("\\n\\n".join, non-overlapping windows of seq_len)."""
    return perplexity(model, wikitext2_rows(tokenizer, seq_len, max_rows), batch_size)


def wikitext2_rows(tokenizer, seq_len: int = 2048, max_rows: int | None = None,
                   spread: bool = True) -> torch.Tensor:
    """The WikiText-2 test windows; a `max_rows` cap keeps windows spread over the whole test
    set (not its first articles) unless `spread=False`."""
    from workbench.data import wikitext2_text

    return rows_from_text(tokenizer, wikitext2_text(), seq_len, max_rows, spread)
