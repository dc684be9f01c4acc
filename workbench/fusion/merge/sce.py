"""SCE (Select-Calculate-Erase) merge of one parameter tensor (FuseChat, arXiv 2408.07990 §3.3).

Two variants, which give different weights (spec `papers.md` §1.a step 5):
- `"official"` (default): the FuseChat release
  (`FuseChat/mergekit/mergekit/merge_methods/sce_merging.py`): the Select mask only changes the
  coefficients eta; the sign vote and the merged deltas use the unmasked deltas.
- `"masked"`: upstream mergekit (`mergekit/merge_methods/sce.py`) and the paper's wording
  ("filtered fusion vectors"): the deltas are masked before Erase and the merge.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from workbench.fusion.merge.registry import (
    MERGE_METHODS,
    expand,
    finish,
    majority_sign,
    stack_deltas,
    topk_mask,
)

SCE_VARIANTS = ("official", "masked")


def sce_select_mask(deltas: Tensor, select_topk: float) -> Tensor:
    """Select: 1 on the top-k entries by variance across targets, k = int(tau * nnz(var)).

    Args:
        deltas: (T, *S) fusion vectors delta_j.
        select_topk: tau; >= 1 keeps everything (Select disabled).
    Returns:
        Float mask of shape S. Ties at the k-th variance: the first in index order.
    """
    if select_topk <= 0:
        raise ValueError(f"select_topk must be > 0 (>= 1 disables Select), got {select_topk}")
    if select_topk >= 1:
        return torch.ones_like(deltas[0])
    # population variance over the T targets, shape S (as mean((d - mean)^2): `Tensor.var(0)` is
    # several times slower on CPU for this layout)
    var = (deltas - deltas.mean(0)).square_().mean(0)
    return topk_mask(var, int(select_topk * int(torch.count_nonzero(var))), deltas.dtype)


def sce_coefficients(masked_deltas: Tensor) -> Tensor:
    """Calculate: eta_j = sum (M*delta_j)^2 / sum_i sum (M*delta_i)^2; uniform when all are 0.

    Returns: (T,) float32 coefficients summing to 1.
    """
    energy = masked_deltas.pow(2).flatten(1).sum(1)  # (T,)
    total = energy.sum()
    if total == 0:
        return torch.full_like(energy, 1.0 / energy.numel())
    return energy / total


def sce_erase_mask(deltas: Tensor) -> Tensor:
    """Erase: e_j = [sign(delta_j) == sign(sum_j delta_j)] (ties -> +1; zero entries erased)."""
    return (torch.sign(deltas) == majority_sign(deltas)).to(deltas.dtype)


@MERGE_METHODS.register("sce", paper="https://arxiv.org/abs/2408.07990",
                        code="https://github.com/fanqiwan/FuseAI/tree/main/FuseChat")
def sce(base: Tensor, tensors: list[Tensor], *, select_topk: float = 0.1,
        variant: Literal["official", "masked"] = "official", erase: bool = True) -> Tensor:
    """Merge T fused targets into the pivot, per tensor.

    theta = theta_p + sum_j eta_j e_j delta'_j / sum_j eta_j e_j  (element-wise; 0 divisor -> 1).

    Args:
        base: pivot tensor theta_p, shape S.
        tensors: T target tensors theta_j, each of shape S.
        select_topk: tau, fraction of highest-variance entries kept by Select; >= 1 disables it.
        variant: "official" (FuseChat code: delta' = delta, vote on unmasked deltas) or "masked"
            (upstream mergekit: delta' = M * delta, vote on the masked deltas).
        erase: False skips the sign vote (with tau >= 1 this is VaRM).
    Returns:
        Merged tensor, shape S, with the dtype and device of `base`.

    Paper: arXiv 2408.07990 §3.3. Code: FuseChat `mergekit/merge_methods/sce_merging.py`.
    """
    if variant not in SCE_VARIANTS:
        raise ValueError(f"sce variant must be one of {SCE_VARIANTS}, got {variant!r}")
    deltas = stack_deltas(base, tensors)  # (T, *S)
    if select_topk < 1:
        mask = sce_select_mask(deltas, select_topk)
        if variant == "masked":  # the masked deltas are all that is needed from here on
            merged_in = deltas.mul_(mask)
            eta = sce_coefficients(merged_in)  # (T,)
        else:  # official: the mask only enters eta
            eta = sce_coefficients(deltas * mask)
            merged_in = deltas
        del mask
    else:
        eta = sce_coefficients(deltas)
        merged_in = deltas
    if erase:
        w = sce_erase_mask(merged_in)  # (T, *S), 1 where the sign agrees with the vote
    else:
        w = torch.ones_like(merged_in)
    w.mul_(expand(eta, w))  # eta_j e_j
    den = w.sum(0)
    den = torch.where(den == 0, torch.ones_like(den), den)
    return finish(base, merged_in.mul_(w).sum(0).div_(den))  # merged_in is ours to overwrite
