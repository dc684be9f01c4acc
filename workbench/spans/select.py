"""Pure kernels for cross-validated selection: folds, probability decoding, post-level gate, vote.

A member's output for one post is `(spans, probs)`: the char offsets its own decoder gives (CRF
Viterbi path, or argmax) and the per-token `(start, end, p_toxic)` list (`predict_batch(...,
return_probs=True)`). From those:
- `decode_probs(probs, tau)`: the chars of every token with `p >= tau` (IO tags: `tau = 0.5` is the
  argmax decoder); used for members without CRF;
- `post_score(probs)`: the post's highest token probability, the "has a toxic span" score;
- `gate(spans, score, tau_post)`: an empty prediction when the score is below `tau_post`;
- `ensemble_posts(...)`: the per-character vote of several members (`min_votes`), then the gate
  on the members' mean post score.
`select_member` / `select_ensemble` grid-search those settings by the mean of per-fold char F1.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from statistics import mean, pstdev

from workbench.spans.metric import post_f1
from workbench.spans.voting import vote

TAU_TOKEN = (0.3, 0.4, 0.5, 0.6, 0.7)
TAU_POST = (0.0, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)

Probs = Sequence[tuple[int, int, float]]


def kfold(n: int, k: int, seed: int = 0) -> list[list[int]]:
    """`k` disjoint held-out index lists covering range(n) (shuffled with `seed`, sizes differ by <= 1)."""
    if k < 2:
        raise ValueError(f"k-fold needs k >= 2, got {k}")
    if n < k:
        raise ValueError(f"{n} posts cannot be split into {k} folds")
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    return [sorted(idx[f::k]) for f in range(k)]


def decode_probs(probs: Probs, tau: float) -> list[int]:
    """Chars covered by tokens with p_toxic >= tau (union over overlapping windows)."""
    return sorted({c for a, b, p in probs if p >= tau for c in range(a, b)})


def post_score(probs: Probs) -> float:
    """Highest token p_toxic of a post (0 for a post without tokens)."""
    return max((p for _, _, p in probs), default=0.0)


def gate(spans: Sequence[int], score: float, tau_post: float) -> list[int]:
    """Empty prediction when the post score is below `tau_post` (0 = no gate)."""
    return list(spans) if score >= tau_post else []


def member_spans(spans: Sequence[int], probs: Probs, tau_token: float | None) -> list[int]:
    """A member's offsets: its own decoder's (`tau_token=None`, e.g. CRF) or thresholded probabilities."""
    return list(spans) if tau_token is None else decode_probs(probs, tau_token)


def ensemble_posts(member_preds: Sequence[Sequence[Sequence[int]]], member_scores: Sequence[Sequence[float]],
                   min_votes: int | None = None, tau_post: float = 0.0) -> list[list[int]]:
    """Vote post by post (`member_preds[m][i]`), then gate on the members' mean post score."""
    n = {len(m) for m in member_preds} | {len(s) for s in member_scores}
    if len(n) != 1:
        raise ValueError(f"members disagree on the number of posts: {sorted(n)}")
    out = []
    for i in range(n.pop()):
        voted = vote([m[i] for m in member_preds], min_votes)
        out.append(gate(voted, mean(s[i] for s in member_scores), tau_post))
    return out


def fold_f1(preds: Sequence[Sequence[int]], golds: Sequence[Sequence[int]],
            folds: Sequence[Sequence[int]]) -> list[float]:
    """Char F1 of each fold (posts indexed into `preds`/`golds`)."""
    return [mean(post_f1(preds[i], golds[i]) for i in f) for f in folds]


def summary(f1s: Sequence[float]) -> dict:
    """Mean and (population) sd over folds."""
    return {"cv_f1": mean(f1s), "cv_sd": pstdev(f1s) if len(f1s) > 1 else 0.0, "folds": list(f1s)}


def count_empty(preds: Sequence[Sequence[int]], golds: Sequence[Sequence[int]]) -> dict:
    """How many span-free gold posts get an empty prediction (each such post scores 1, else 0)."""
    free = [i for i, g in enumerate(golds) if not g]
    return {"span_free": len(free), "empty_pred": sum(1 for i in free if not preds[i]),
            "empty_pred_on_toxic": sum(1 for i, g in enumerate(golds) if g and not preds[i])}


def select_member(epoch_outputs: Sequence[tuple[Sequence[Sequence[int]], Sequence[Probs]]],
                  golds: Sequence[Sequence[int]], folds: Sequence[Sequence[int]], crf: bool,
                  tau_tokens: Sequence[float] = TAU_TOKEN, tau_posts: Sequence[float] = TAU_POST) -> dict:
    """Pick (epoch, tau_token, tau_post) of one member by mean per-fold char F1.

    `epoch_outputs[e] = (spans per post, probs per post)` for the checkpoint after epoch e + 1,
    every post predicted by the fold model that did not train on it. CRF members keep their
    Viterbi decoding (`tau_token = None`). Ties go to the earlier epoch / smaller thresholds.
    """
    best: dict | None = None
    for e, (spans, probs) in enumerate(epoch_outputs):
        scores = [post_score(p) for p in probs]
        for tau in ((None,) if crf else tau_tokens):
            base = [member_spans(s, p, tau) for s, p in zip(spans, probs, strict=True)]
            for tp in tau_posts:
                preds = [gate(b, sc, tp) for b, sc in zip(base, scores, strict=True)]
                res = {"epoch": e + 1, "tau_token": tau, "tau_post": tp, **summary(fold_f1(preds, golds, folds))}
                if best is None or res["cv_f1"] > best["cv_f1"] + 1e-12:
                    best = {**res, "preds": preds, "ungated": base}
    assert best is not None, "select_member needs at least one epoch"
    return best


def select_ensemble(member_preds: Sequence[Sequence[Sequence[int]]], member_scores: Sequence[Sequence[float]],
                    golds: Sequence[Sequence[int]], folds: Sequence[Sequence[int]],
                    tau_posts: Sequence[float] = TAU_POST) -> dict:
    """Pick (min_votes, tau_post) of the vote by mean per-fold char F1 (members already selected, ungated)."""
    best: dict | None = None
    for v in range(1, len(member_preds) + 1):
        for tp in tau_posts:
            preds = ensemble_posts(member_preds, member_scores, v, tp)
            res = {"min_votes": v, "tau_post": tp, **summary(fold_f1(preds, golds, folds))}
            if best is None or res["cv_f1"] > best["cv_f1"] + 1e-12:
                best = {**res, "preds": preds}
    assert best is not None, "select_ensemble needs at least one member"
    return best
