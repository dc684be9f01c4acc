"""Task arithmetic (Ilharco et al., "Editing models with task arithmetic", arXiv 2212.04089)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from workbench.fusion.merge.registry import MERGE_METHODS, expand, finish, per_model, stack_deltas


@MERGE_METHODS.register("task_arithmetic", paper="https://arxiv.org/abs/2212.04089")
def task_arithmetic(base: Tensor, tensors: list[Tensor], *,
                    weight: float | Sequence[float] | None = None, normalize: bool = False,
                    lambda_: float = 1.0) -> Tensor:
    """theta = base + lambda * sum_j w_j delta_j (/ sum_j w_j when `normalize`).

    Args:
        base: base tensor, shape S.
        tensors: T inputs, each shape S.
        weight: w_j, scalar or one per input; default 1.
        normalize: divide by sum_j w_j (mergekit default False for task_arithmetic).
        lambda_: global scale of the merged task vector (mergekit `lambda`).
    """
    deltas = stack_deltas(base, tensors)
    w = per_model(weight, len(tensors), "weight", 1.0)
    merged = (expand(w, deltas) * deltas).sum(0)
    if normalize and float(w.sum()) != 0:
        merged = merged / float(w.sum())
    return finish(base, lambda_ * merged)
