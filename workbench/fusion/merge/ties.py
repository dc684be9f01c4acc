"""TIES-merging: trim, elect sign, disjoint merge (Yadav et al., arXiv 2306.01708)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from workbench.fusion.merge.registry import (
    MERGE_METHODS,
    expand,
    finish,
    majority_sign,
    per_model,
    stack_deltas,
    topk_mask,
)


def magnitude_mask(delta: Tensor, density: float) -> Tensor:
    """Trim: 1 on the int(density * numel) largest |delta| entries of one task vector."""
    if not 0 <= density <= 1:
        raise ValueError(f"density must be in [0, 1], got {density}")
    if density >= 1:
        return torch.ones_like(delta)
    return topk_mask(delta.abs(), int(density * delta.numel()), delta.dtype)


@MERGE_METHODS.register("ties", paper="https://arxiv.org/abs/2306.01708")
def ties(base: Tensor, tensors: list[Tensor], *, weight: float | Sequence[float] | None = None,
         density: float | Sequence[float] | None = None, normalize: bool = True,
         lambda_: float = 1.0) -> Tensor:
    """Trim each delta to its top-`density` magnitudes, elect the sign of sum_j w_j delta_j
    (ties -> +1), and average the agreeing weighted deltas (mergekit `ties`, consensus "sum").

    Args:
        base: base tensor, shape S.
        tensors: T inputs, each shape S.
        weight: w_j, scalar or per input; default 1.
        density: fraction of entries kept per task vector, scalar or per input; default 1.
        normalize: divide by sum_j w_j m_j of the agreeing entries (0 divisor -> 1).
        lambda_: global scale of the merged delta.
    """
    deltas = stack_deltas(base, tensors)
    n = len(tensors)
    dens = per_model(density, n, "density", 1.0)
    trimmed = torch.stack([d * magnitude_mask(d, float(p)) for d, p in zip(deltas, dens, strict=True)])
    w = expand(per_model(weight, n, "weight", 1.0), trimmed)
    weighted = trimmed * w
    agree = (torch.sign(weighted) == majority_sign(weighted)).to(weighted.dtype)  # (T, *S)
    merged = (weighted * agree).sum(0)
    if normalize:
        den = (w * agree).sum(0)
        den = torch.where(den.abs() < 1e-8, torch.ones_like(den), den)
        merged = merged / den
    return finish(base, lambda_ * merged)
