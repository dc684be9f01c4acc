"""Sequence alignment of two token sequences by dynamic time warping (papers.md §1.a step 2.1).

Semantics follow the official ``dtw()`` of FuseChat (``align_token_and_vocab.py``, newest
version), with the source ("blending") sequence on the rows and the pivot ("base") sequence on the
columns:

- ``D[i, j] = c[i, j] + min(D[i-1, j], D[i, j-1], D[i-1, j-1])`` with ``D[-1, -1] = 0`` and an
  infinite border, so the path runs from (0, 0) to (n-1, m-1) with unit steps;
- backtracking from (n-1, m-1) picks the smallest of (diagonal, left, up) with ties going to the
  first in that order (``tie_order="diag_left_up"``; FuseLLM and the first FuseChat release use
  ``"diag_up_left"``);
- ``text`` names the token texts the caller aligns (``TokenTexts.mode``): ``"decode"`` (default,
  newest official code: ``tokenizer.decode([id])``, spaces kept and nothing stripped, compared by
  characters) or ``"normalized"`` (our canonical texts; the rules below strip the spaces);
- ``c[i, j]`` is the edit distance of the two token texts with the word-boundary marker stripped
  (``text="normalized"``; an older official upload stripped ``Ġ``/``▁`` from the raw strings);
  when either stripped text is empty both unstripped texts are compared instead
  (``empty_fallback``; the first release did not do this); the first release also weighted the
  cost by 0.1 when one stripped text contains the other (``substring_weight``, off in the newest
  code). Costs are integers (x10 with ``substring_weight``), so the DP is exact. The texts are
  compared as given; callers pass byte texts (``TokenTexts.of(ids, options.unit)``, default
  ``unit="byte"``, see ``normalize``) so that split UTF-8 characters line up.
- Output, like the official ``mappings_series_2``: for each pivot position the ascending list of
  source positions on the path (1 -> 1: one entry; 1 -> n: several; n -> 1: the same source
  position in several consecutive pivot lists). Empty sequences (the official code crashes) give
  one empty list per pivot position.

Speed: the cost matrix comes from one bulk edit-distance call over the *unique* texts
(rapidfuzz ``cdist``, C++), and the DP runs row by row in numpy with the left-dependency solved
by a cumulative minimum: with ``S = cumsum(c[i])`` and ``a = c[i] + min(D[i-1, j], D[i-1, j-1])``,
``D[i] = S + minimum.accumulate(a - S)``. The loop runs over the shorter side (the recurrence is
symmetric). ``benchmarks/token_alignment.py`` checks the result against
:func:`workbench.fusion.align.reference.reference_dtw` on real data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cdist

from workbench.fusion.align.normalize import UNITS, strip_marker

DTW_TEXTS = ("decode", "normalized")

__all__ = ["DTWOptions", "DTWResult", "cost_matrix", "dtw", "dtw_align"]

_INF = np.int64(1) << 40
TIE_ORDERS = ("diag_left_up", "diag_up_left")


@dataclass(frozen=True)
class DTWOptions:
    """Switches for the official quirks (defaults = newest official code)."""

    tie_order: str = "diag_left_up"
    empty_fallback: bool = True
    substring_weight: bool = False
    unit: str = "byte"
    text: str = "decode"  # token texts aligned: decode (official) | normalized (spaces stripped)

    def __post_init__(self) -> None:
        if self.text not in DTW_TEXTS:
            raise ValueError(f"text must be one of {DTW_TEXTS}, got {self.text!r}")
        if self.unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {self.unit!r}")
        if self.tie_order not in TIE_ORDERS:
            raise ValueError(f"tie_order must be one of {TIE_ORDERS}, got {self.tie_order!r}")


@dataclass
class DTWResult:
    """``groups[j]``: source positions aligned to pivot position j; ``path``: (source, pivot)
    cells from (0, 0) to the end; ``cost``/``cumulative``: source x pivot integer matrices."""

    groups: list[list[int]]
    path: list[tuple[int, int]]
    cost: np.ndarray
    cumulative: np.ndarray

    @property
    def total(self) -> int:
        return int(self.cumulative[-1, -1]) if self.cumulative.size else 0


def _unique(texts: list[str]) -> tuple[list[str], np.ndarray]:
    index: dict[str, int] = {}
    inv = np.fromiter((index.setdefault(t, len(index)) for t in texts), dtype=np.int64,
                      count=len(texts))
    return list(index), inv


def _pair_costs(us: list[str], up: list[str], opts: DTWOptions) -> np.ndarray:
    """Cost matrix between unique source texts ``us`` and unique pivot texts ``up``."""
    strip = strip_marker if opts.text == "normalized" else (lambda t: t)
    ss = [strip(t) for t in us]
    sp = [strip(t) for t in up]
    c = cdist(ss, sp, scorer=Levenshtein.distance, dtype=np.int64, workers=1)
    if opts.empty_fallback:
        er = [i for i, t in enumerate(ss) if not t]
        ec = [j for j, t in enumerate(sp) if not t]
        if er:
            c[er, :] = cdist([us[i] for i in er], up, scorer=Levenshtein.distance,
                             dtype=np.int64, workers=1)
        if ec:
            c[:, ec] = cdist(us, [up[j] for j in ec], scorer=Levenshtein.distance,
                             dtype=np.int64, workers=1)
    if opts.substring_weight:
        c = c * 10
        for i, a0 in enumerate(us):
            for j, b0 in enumerate(up):
                a, b = ss[i], sp[j]
                if opts.empty_fallback and (not a or not b):
                    a, b = a0, b0
                if a in b or b in a:
                    c[i, j] //= 10
    return c


def cost_matrix(source_texts: list[str], pivot_texts: list[str],
                options: DTWOptions | None = None) -> np.ndarray:
    """Integer cost matrix (source x pivot) between canonical token texts."""
    opts = options or DTWOptions()
    if not source_texts or not pivot_texts:
        return np.zeros((len(source_texts), len(pivot_texts)), dtype=np.int64)
    us, inv_s = _unique(source_texts)
    up, inv_p = _unique(pivot_texts)
    return _pair_costs(us, up, opts)[inv_s[:, None], inv_p[None, :]]


def _accumulate(c: np.ndarray) -> np.ndarray:
    """Cumulative DTW matrix of ``c`` (rows computed one at a time, vectorised along a row).

    Per row, in place in the output: ``d[i] = min(prev, shifted prev) + (c[i] - S[i])``, then a
    running minimum, then ``+ S[i]`` (``S`` = row-wise cumsum, computed once for all rows).
    int32 when the largest possible path cost fits, else int64.
    """
    transpose = c.shape[0] > c.shape[1]
    x = c.T if transpose else c
    n, m = x.shape
    big = int(x.max(initial=0)) * (n + m + 1)
    dtype, inf = (np.int32, 1 << 29) if big < (1 << 28) else (np.int64, int(_INF))
    x = np.ascontiguousarray(x, dtype=dtype)
    s = np.cumsum(x, axis=1, dtype=dtype)
    xs = x - s
    d = np.empty((n, m), dtype=dtype)
    prev = np.full(m, inf, dtype=dtype)
    for i in range(n):
        di = d[i]
        np.minimum(prev[1:], prev[:-1], out=di[1:])
        di[0] = 0 if i == 0 else prev[0]
        di += xs[i]
        np.minimum.accumulate(di, out=di)
        di += s[i]
        prev = di
    return d.T if transpose else d


def _backtrack(d: np.ndarray, tie_order: str) -> list[tuple[int, int]]:
    i, j = d.shape[0] - 1, d.shape[1] - 1
    left_first = tie_order == "diag_left_up"
    inf = float("inf")
    item = d.item
    path = []
    while i > 0 or j > 0:
        path.append((i, j))
        diag = item(i - 1, j - 1) if i > 0 and j > 0 else inf
        up = item(i - 1, j) if i > 0 else inf
        left = item(i, j - 1) if j > 0 else inf
        if diag <= up and diag <= left:
            i, j = i - 1, j - 1
        elif left_first:
            if left <= up:
                j -= 1
            else:
                i -= 1
        elif up <= left:
            i -= 1
        else:
            j -= 1
    path.append((0, 0))
    path.reverse()
    return path


def dtw(source_texts: list[str], pivot_texts: list[str],
        options: DTWOptions | None = None) -> DTWResult:
    """Full DTW result (groups, path, cost and cumulative matrices) for two token-text lists."""
    opts = options or DTWOptions()
    n, m = len(source_texts), len(pivot_texts)
    c = cost_matrix(source_texts, pivot_texts, opts)
    if n == 0 or m == 0:
        return DTWResult([[] for _ in range(m)], [], c, np.zeros((n, m), dtype=np.int64))
    d = _accumulate(c)
    path = _backtrack(d, opts.tie_order)
    groups: list[list[int]] = [[] for _ in range(m)]
    for i, j in path:
        groups[j].append(i)
    return DTWResult(groups, path, c, d)


def dtw_align(source_texts: list[str], pivot_texts: list[str],
              options: DTWOptions | None = None) -> list[list[int]]:
    """For each pivot position, the ascending source positions aligned to it."""
    return dtw(source_texts, pivot_texts, options).groups
