"""FuseChat fusion-training kernels (papers.md §1.a steps 3–4), pure tensor functions.

Shapes: B batch, L positions, K top-K entries, V vocabulary, C candidate distributions.
Row t of a top-K list is the distribution of token t+1 (the logits at position t, unshifted),
exactly like the model's own logits, so the loss pairs ``logits[:, t]`` with ``target[:, t]``.

- :func:`topk_distribution`: ``softmax(logits / T)`` renormalised over the top-K support;
  entries with id ``PAD_ID`` (or logit ``-inf``) get probability 0. A row with no valid entry
  gets all zeros (``valid`` False) -- callers fall back to another candidate for it.
- :func:`mince_select`: per sequence, the candidate with the lowest ``metric_ce`` (MinCE).
  NaN metric = candidate unavailable (no assistant token in that model's tokenisation): it is
  treated as +inf; ties (and the all-NaN case) go to the lowest index, i.e. the pivot, which
  the callers always put first. Like the official trainer it picks the largest reward
  ``1 / exp(metric_ce)`` computed in ``reward_dtype`` (official: bfloat16, so CEs within about
  0.4 % tie and the pivot wins; ``float32`` separates them). The choice is per *sequence*, in
  the official code as here (its rewards are per-sample scalars expanded over the positions),
  although the papers describe MinCE per position. (The official pipeline drops NaN samples before training
  (``filter_nan.py``); we keep them and let the other candidate win.)
- :func:`sparse_fusion_loss`: ``CE(Q_θ, P) = -Σ_k p_k log Q_θ(id_k)`` from a gather on the
  logits minus their logsumexp (= a gather on ``log_softmax``): the dense V × L target the
  official collator builds never exists. ``kind="kl"`` subtracts the target entropy.
- :func:`fusion_objective`: ``L = λ·L_SFT + (1−λ)·L_Fuse`` with ``m_t = [labels[t+1] != -100]``,
  both terms masked means over the same positions (the official trainer's loss mask).
- :func:`dense_targets`, :func:`dense_fusion_loss`: the official dense construction, kept as
  the reference the tests and the memory benchmark compare against; never used in training.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from workbench.fusion.formats import PAD_ID

IGNORE_INDEX = -100
FUSE_KINDS = ("ce", "kl")


def topk_distribution(ids: torch.Tensor, logits: torch.Tensor, temperature: float = 1.0
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ids [..., K], logits [..., K])`` -> ``(safe_ids, probs, valid)``.

    ``probs`` (float32) is softmax(logits / T) over the valid entries of each row (id != PAD_ID
    and finite logit), 0 elsewhere; ``safe_ids`` replaces PAD_ID by 0 (a valid gather index with
    probability 0); ``valid [...]`` is False for rows without any valid entry (all-zero probs).
    """
    if ids.shape != logits.shape:
        raise ValueError(f"top-K ids {tuple(ids.shape)} and logits {tuple(logits.shape)} differ")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    x = logits.float()
    if torch.isnan(x).any():
        raise ValueError("top-K logits contain NaN")
    keep = (ids != PAD_ID) & torch.isfinite(x)
    if (ids[keep] < 0).any():
        raise ValueError(f"top-K ids must be >= 0 or PAD_ID ({PAD_ID})")
    x = torch.where(keep, x / temperature, torch.full_like(x, float("-inf")))
    valid = keep.any(-1)
    x = torch.where(valid[..., None], x, torch.zeros_like(x))  # all -inf rows: avoid NaN
    probs = torch.softmax(x, -1) * keep
    safe = torch.where(ids == PAD_ID, torch.zeros_like(ids), ids).long()
    return safe, probs, valid


REWARD_DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}


def mince_select(metric_ce: torch.Tensor, reward_dtype: str = "bfloat16") -> torch.Tensor:
    """``metric_ce [B, C]`` -> index ``[B]`` of the candidate with the largest reward
    ``1 / exp(metric_ce)`` in ``reward_dtype`` (= the lowest sequence CE up to that rounding).

    NaN counts as +inf (reward 0); ties and all-NaN rows pick the lowest index (candidate 0 =
    the pivot), as ``torch.argmax`` in the official trainer.
    """
    if metric_ce.ndim != 2 or metric_ce.shape[1] < 1:
        raise ValueError(f"metric_ce must be [batch, candidates], got {tuple(metric_ce.shape)}")
    if reward_dtype not in REWARD_DTYPES:
        raise ValueError(f"reward_dtype must be one of {', '.join(REWARD_DTYPES)}, "
                         f"got {reward_dtype!r}")
    m = torch.nan_to_num(metric_ce.double(), nan=float("inf"), posinf=float("inf"))
    m = m.to(REWARD_DTYPES[reward_dtype])
    reward = 1 / torch.exp(m)  # computed in that dtype, as the official trainer does
    best = reward.max(1, keepdim=True).values
    hit = reward == best  # first maximum; all-zero rows: every entry hits, index 0 wins
    return hit.int().argmax(1)


def next_token_mask(labels: torch.Tensor) -> torch.Tensor:
    """``m_t = labels[t+1] != -100`` (the last position has no next token: False)."""
    m = torch.zeros_like(labels, dtype=torch.bool)
    m[..., :-1] = labels[..., 1:] != IGNORE_INDEX
    return m


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp(min=1.0)


def sparse_fusion_loss(logits: torch.Tensor, ids: torch.Tensor, probs: torch.Tensor,
                       mask: torch.Tensor, kind: str = "ce",
                       lse: torch.Tensor | None = None) -> torch.Tensor:
    """Masked mean over positions of CE(Q_θ, P) (``kind="ce"``) or KL(P ‖ Q_θ) (``"kl"``).

    ``logits [B, L, V]``, ``ids``/``probs [B, L, K]`` (from :func:`topk_distribution`),
    ``mask [B, L]``; ``lse`` = ``logits.float().logsumexp(-1)`` when the caller has it already.
    """
    if kind not in FUSE_KINDS:
        raise ValueError(f"fusion loss kind must be one of {FUSE_KINDS}, got {kind!r}")
    if ids.shape != probs.shape or ids.shape[:2] != logits.shape[:2]:
        raise ValueError(f"shapes differ: logits {tuple(logits.shape)}, ids {tuple(ids.shape)}, "
                         f"probs {tuple(probs.shape)}")
    if lse is None:
        lse = logits.float().logsumexp(-1)
    logq = logits.gather(-1, ids).float() - lse[..., None]  # log Q_θ(id_k), [B, L, K]
    p = probs.float()
    per_pos = -(p * logq).sum(-1)
    if kind == "kl":  # KL = CE - H(P); 0·log 0 = 0
        per_pos = per_pos + torch.xlogy(p, p).sum(-1)
    return _masked_mean(per_pos, mask)


def sft_loss(logits: torch.Tensor, labels: torch.Tensor,
             lse: torch.Tensor | None = None) -> torch.Tensor:
    """Token CE of ``labels[t+1]`` from ``logits[t]`` over assistant tokens (masked mean)."""
    if lse is None:
        lse = logits.float().logsumexp(-1)
    mask = next_token_mask(labels)
    nxt = torch.zeros_like(labels)
    nxt[..., :-1] = labels[..., 1:]
    nxt = nxt.clamp(min=0)
    per_pos = lse - logits.gather(-1, nxt[..., None]).squeeze(-1).float()
    return _masked_mean(per_pos, mask)


def fusion_objective(logits: torch.Tensor, labels: torch.Tensor, ids: torch.Tensor | None,
                     probs: torch.Tensor | None, lam: float = 0.9, kind: str = "ce"
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(L, L_SFT, L_Fuse)`` with ``L = lam·L_SFT + (1−lam)·L_Fuse`` (lam = 1: SFT only)."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    lse = logits.float().logsumexp(-1)
    sft = sft_loss(logits, labels, lse)
    if lam == 1.0 or ids is None:
        if lam != 1.0:
            raise ValueError("lam < 1 needs fusion targets (ids, probs)")
        return sft, sft.detach(), torch.zeros((), device=logits.device)
    fuse = sparse_fusion_loss(logits, ids, probs, next_token_mask(labels), kind, lse)
    return lam * sft + (1.0 - lam) * fuse, sft.detach(), fuse.detach()


# ---- the official dense construction: reference for tests and the memory figure only --------
def dense_targets(ids: torch.Tensor, probs: torch.Tensor, vocab_size: int,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Scatter a top-K distribution into a dense ``[..., V]`` tensor (the official collator)."""
    out = torch.zeros(*ids.shape[:-1], vocab_size, dtype=dtype)
    return out.scatter_add_(-1, ids.long(), probs.to(dtype))


def dense_fusion_loss(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                      kind: str = "ce") -> torch.Tensor:
    """The official trainer's loss: ``cross_entropy(logits, dense target)`` / ``kl_div``."""
    v = logits.shape[-1]
    if kind == "ce":
        per_pos = F.cross_entropy(logits.float().reshape(-1, v), target.float().reshape(-1, v),
                                  reduction="none").view(mask.shape)
    elif kind == "kl":
        per_pos = F.kl_div(F.log_softmax(logits.float(), -1), target.float(),
                           reduction="none").sum(-1)
    else:
        raise ValueError(f"fusion loss kind must be one of {FUSE_KINDS}, got {kind!r}")
    return _masked_mean(per_pos, mask)


def dense_target_bytes(batch: int, length: int, vocab: int, candidates: int = 2,
                       dtype: torch.dtype = torch.bfloat16) -> int:
    """Bytes of the official collator's targets: one dense ``B × L × V`` tensor per candidate
    (pivot + each aligned source), padded to ``max_length``, in bf16."""
    return batch * length * vocab * candidates * torch.empty((), dtype=dtype).element_size()


def sparse_target_bytes(batch: int, length: int, k: int,
                        id_dtype: torch.dtype = torch.int64,
                        prob_dtype: torch.dtype = torch.float32) -> int:
    """Bytes of our batch targets: the MinCE-chosen candidate's ``B × L × K`` ids and probs."""
    return batch * length * k * (torch.empty((), dtype=id_dtype).element_size()
                                 + torch.empty((), dtype=prob_dtype).element_size())
