"""DARE (drop and rescale) + linear task-vector sum (Yu et al., arXiv 2311.03099)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from workbench.fusion.merge.registry import MERGE_METHODS, expand, finish, per_model, stack_deltas


def dare(delta: Tensor, density: float, *, rescale: bool = True,
         generator: torch.Generator | None = None) -> Tensor:
    """Keep each entry with probability `density` (drop rate p = 1 - density), rescale by 1/density."""
    if not 0 <= density <= 1:
        raise ValueError(f"density must be in [0, 1], got {density}")
    if density >= 1:
        return delta
    if density == 0:
        return torch.zeros_like(delta)
    keep = torch.rand(delta.shape, generator=generator, device=delta.device) < density
    out = delta * keep
    return out / density if rescale else out


@MERGE_METHODS.register("dare_linear", paper="https://arxiv.org/abs/2311.03099", random=True)
def dare_linear(base: Tensor, tensors: list[Tensor], *,
                weight: float | Sequence[float] | None = None,
                density: float | Sequence[float] | None = None, normalize: bool = True,
                rescale: bool = True, lambda_: float = 1.0,
                generator: torch.Generator | None = None) -> Tensor:
    """theta = base + lambda * sum_j w_j DARE(delta_j) (/ sum_j w_j when `normalize`).

    Args:
        base: base tensor, shape S.
        tensors: T inputs, each shape S.
        weight: w_j, scalar or per input; default 1.
        density: keep probability per entry, scalar or per input; default 1 (no drop).
        normalize: divide by sum_j w_j.
        rescale: divide kept entries by density (DARE's rescale).
        lambda_: global scale.
        generator: explicit torch.Generator on base's device (the orchestrator passes one seeded
            from the run seed); None uses the global RNG.
    """
    deltas = stack_deltas(base, tensors)
    n = len(tensors)
    dens = per_model(density, n, "density", 1.0)
    dropped = torch.stack([dare(d, float(p), rescale=rescale, generator=generator)
                           for d, p in zip(deltas, dens, strict=True)])
    w = per_model(weight, n, "weight", 1.0)
    merged = (expand(w, dropped) * dropped).sum(0)
    if normalize and float(w.sum()) != 0:
        merged = merged / float(w.sum())
    return finish(base, lambda_ * merged)
