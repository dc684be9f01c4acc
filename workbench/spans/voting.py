"""Per-character majority voting over any number of span predictions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence


def vote(predictions: Sequence[Iterable[int]], min_votes: int | None = None) -> list[int]:
    """Offsets predicted by at least `min_votes` members (default: strict majority)."""
    if not predictions:
        raise ValueError("vote needs at least one prediction")
    n = len(predictions)
    need = n // 2 + 1 if min_votes is None else min_votes
    counts = Counter(o for p in predictions for o in set(p))
    return sorted(o for o, c in counts.items() if c >= need)


def vote_posts(members: Sequence[Sequence[Iterable[int]]], min_votes: int | None = None) -> list[list[int]]:
    """Vote post by post; `members[m][i]` is member m's offsets for post i."""
    if not members:
        raise ValueError("vote_posts needs at least one member")
    n_posts = {len(m) for m in members}
    if len(n_posts) != 1:
        raise ValueError(f"members disagree on the number of posts: {sorted(n_posts)}")
    return [vote([m[i] for m in members], min_votes) for i in range(n_posts.pop())]
