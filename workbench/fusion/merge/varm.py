"""VaRM: variation-ratio merge of the first FuseChat version (arXiv 2402.16107 v6, eq. 7)."""

from __future__ import annotations

from torch import Tensor

from workbench.fusion.merge.registry import MERGE_METHODS, expand, finish, stack_deltas
from workbench.fusion.merge.sce import sce_coefficients


@MERGE_METHODS.register("varm", paper="https://arxiv.org/abs/2402.16107",
                        code="FuseChat/merge/VaRM/merge.py @ 4135974")
def varm(base: Tensor, tensors: list[Tensor]) -> Tensor:
    """theta_m = sum_j W_j theta_j with W_j = E[delta_j^2] / sum_i E[delta_i^2] (matrix level).

    Args:
        base: pivot tensor, shape S (defines delta_j = theta_j - base).
        tensors: T target tensors, each shape S.
    Returns:
        Merged tensor, shape S, dtype/device of `base`. Equals `sce(select_topk=1, erase=False)`.

    Paper: arXiv 2402.16107 v6 eq. 7 (parameter unit m = matrix).
    """
    deltas = stack_deltas(base, tensors)
    w = sce_coefficients(deltas)  # sums to 1, so sum_j W_j theta_j = base + sum_j W_j delta_j
    return finish(base, (expand(w, deltas) * deltas).sum(0))
