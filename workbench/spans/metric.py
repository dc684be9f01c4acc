"""Official SemEval-2021 Task 5 metric: per-post F1 over character offsets, mean over posts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def post_f1(pred: Iterable[int], gold: Iterable[int]) -> float:
    """F1 of one post (organisers' definition, `semeval2021.py`)."""
    p, g = set(pred), set(gold)
    if not g:
        return 1.0 if not p else 0.0
    if not p:
        return 0.0
    return 2 * len(p & g) / (len(p) + len(g))


def span_f1(preds: Sequence[Iterable[int]], golds: Sequence[Iterable[int]]) -> float:
    """Mean per-post F1; raises on length mismatch or no posts."""
    if len(preds) != len(golds):
        raise ValueError(f"{len(preds)} predictions for {len(golds)} gold posts")
    if not golds:
        raise ValueError("span_f1 needs at least one post")
    return sum(post_f1(p, g) for p, g in zip(preds, golds, strict=True)) / len(golds)
