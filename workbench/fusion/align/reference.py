"""Plain-Python reference DTW written from the spec (papers.md §1.a step 2.1), used by the tests
and ``benchmarks/token_alignment.py`` to check :func:`workbench.fusion.align.dtw.dtw_align`.

One ``editdistance.eval`` per cell (the official library), float matrix with an infinite border,
backtracking with ``argmin`` over the options in the chosen tie order. Deliberately unoptimised.
"""

from __future__ import annotations

import editdistance

__all__ = ["reference_cost", "reference_dtw"]


def reference_cost(source: str, pivot: str, empty_fallback: bool = True,
                   substring_weight: bool = False, strip: bool = True) -> float:
    """``strip``: remove the spaces (normalized texts); False: compare as given (decoded)."""
    a, b = (source.replace(" ", ""), pivot.replace(" ", "")) if strip else (source, pivot)
    if empty_fallback and (not a or not b):
        a, b = source, pivot
    w = 0.1 if substring_weight and (a in b or b in a) else 1.0
    return editdistance.eval(a, b) * w


def reference_dtw(source_texts: list[str], pivot_texts: list[str],
                  tie_order: str = "diag_left_up", empty_fallback: bool = True,
                  substring_weight: bool = False, strip: bool = True) -> list[list[int]]:
    n, m = len(source_texts), len(pivot_texts)
    if n == 0 or m == 0:
        return [[] for _ in range(m)]
    inf = float("inf")
    mat = [[inf] * (m + 1) for _ in range(n + 1)]
    mat[0][0] = 0.0
    for i in range(n):
        for j in range(m):
            cost = reference_cost(source_texts[i], pivot_texts[j], empty_fallback,
                                  substring_weight, strip)
            if substring_weight:  # keep the sums exact (costs are multiples of 0.1)
                cost = round(cost * 10)
            mat[i + 1][j + 1] = cost + min(mat[i][j + 1], mat[i + 1][j], mat[i][j])
    d = [row[1:] for row in mat[1:]]
    i, j = n - 1, m - 1
    groups: list[list[int]] = [[] for _ in range(m)]
    while i > 0 or j > 0:
        groups[j].append(i)
        diag = d[i - 1][j - 1] if i > 0 and j > 0 else inf
        up = d[i - 1][j] if i > 0 else inf
        left = d[i][j - 1] if j > 0 else inf
        if tie_order == "diag_left_up":
            options = [(diag, -1, -1), (left, 0, -1), (up, -1, 0)]
        else:
            options = [(diag, -1, -1), (up, -1, 0), (left, 0, -1)]
        best = min(range(3), key=lambda k: (options[k][0], k))
        i, j = i + options[best][1], j + options[best][2]
    groups[0].append(0)
    for g in groups:
        g.reverse()
    return groups
