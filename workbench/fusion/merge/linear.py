"""Linear (weighted average) merge, "model soups" (Wortsman et al., arXiv 2203.05482)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from workbench.fusion.merge.registry import MERGE_METHODS, per_model


@MERGE_METHODS.register("linear", paper="https://arxiv.org/abs/2203.05482", uses_base=False)
def linear(base: Tensor, tensors: list[Tensor], *, weight: float | Sequence[float] | None = None,
           normalize: bool = True) -> Tensor:
    """theta = sum_j w_j theta_j (/ sum_j w_j when `normalize`).

    Args:
        base: only gives the output dtype/device (mergekit's linear ignores `base_model`).
        tensors: T inputs, each shape S.
        weight: w_j, a scalar or one per input; default 1 each.
        normalize: divide by the sum of the weights (mergekit default True).
    Returns:
        Merged tensor, shape S, dtype/device of `base`.
    """
    if not tensors:
        raise ValueError("linear merge needs at least one input tensor")
    w = per_model(weight, len(tensors), "weight", 1.0)
    out = torch.zeros(base.shape, dtype=torch.float32, device=base.device)
    for wj, t in zip(w.tolist(), tensors, strict=True):  # accumulate: no (T, *S) stack
        out.add_(t.to(device=base.device, dtype=torch.float32), alpha=wj)
    if normalize:
        if float(w.sum()) == 0:
            raise ValueError("linear merge with normalize=True: the weights sum to 0")
        out = out / float(w.sum())
    return out.to(dtype=base.dtype, device=base.device)
