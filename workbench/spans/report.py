"""Uncertainty of the toxic spans tables (both selection paths: trial, k-fold CV).

Every char F1 a table shows is the mean of per-post F1 (the official metric), so its 95 % CI is
one over posts (`workbench.eval.stats.item_ci`: percentile bootstrap from 20 posts on, t interval
below, clipped to the metric's range [0, 100]); the row carries `<metric>_lo`, `<metric>_hi`,
`<metric>_stderr` and `<metric>_n` (posts). The per-post values go to
`artifacts/per_item/<name>.json` (the per-item convention), so the report can pair rows, and
`vote_claim` computes the claim "the vote >= the best single member" on the same posts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from workbench.common.io import write_json
from workbench.spans.metric import post_f1
from workbench.spans.offsets import extend_to_words


def post_f1s(preds: Sequence[Iterable[int]], golds: Sequence[Iterable[int]]) -> list[float]:
    """Char F1 of each post (0..1); raises on a length mismatch."""
    if len(preds) != len(golds):
        raise ValueError(f"{len(preds)} predictions for {len(golds)} gold posts")
    return [post_f1(p, g) for p, g in zip(preds, golds, strict=True)]


def ci_columns(prefix: str, values: Sequence[float], digits: int = 2) -> dict[str, Any]:
    """`{prefix_lo, prefix_hi, prefix_stderr, prefix_n}` of the mean per-post F1, in percent.

    No interval under 2 posts (None). The value column itself is left to the caller."""
    from workbench.eval.stats import item_ci

    e = item_ci(list(values))

    def pct(x: float, clip: bool = True) -> float | None:
        if not math.isfinite(x):
            return None
        return round(100 * (min(1.0, max(0.0, x)) if clip else x), digits)
    return {f"{prefix}_lo": pct(e.lo), f"{prefix}_hi": pct(e.hi),
            f"{prefix}_stderr": pct(e.stderr, clip=False), f"{prefix}_n": e.n}


def f1_columns(preds: Sequence[Sequence[int]], golds: Sequence[Sequence[int]], prefix: str,
               texts: Sequence[str] | None = None) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """Columns of one row: `prefix` (mean char F1, %) with its CI columns, and with `texts` the
    same for `prefix_words` (predictions grown to whole words). Also returns the per-post F1
    lists, keyed `prefix` (and `prefix_words`)."""
    items = {prefix: post_f1s(preds, golds)}
    if texts is not None:
        words = [extend_to_words(t, p) for t, p in zip(texts, preds, strict=True)]
        items[f"{prefix}_words"] = post_f1s(words, golds)
    cols: dict[str, Any] = {}
    for k, v in items.items():
        cols[k] = round(100 * sum(v) / len(v), 2) if v else None
        cols.update(ci_columns(k, v))
    return cols, items


def write_per_item(artifacts: Path, name: str, ids: Sequence[str], rows: dict[str, list[float]],
                   unit: str = "char F1 per post (0-1)") -> Path:
    """`artifacts/per_item/<name>.json`: one per-post F1 list per row (row names as the table's
    `member` column)."""
    for row, v in rows.items():
        if len(v) != len(ids):
            raise ValueError(f"per_item {name}: row {row!r} has {len(v)} values for {len(ids)} ids")
    return write_json(Path(artifacts) / "per_item" / f"{name}.json",
                      {"metric": name, "higher_is_better": True, "unit": unit,
                       "ids": list(ids), "values": rows})


def vote_claim(per_item: dict[str, list[float]], vote: str, best: str) -> dict[str, Any]:
    """'vote >= best single member': paired CI of the per-post F1 difference (percent;
    `workbench.eval.stats.paired_item_ci`), with its verdict."""
    from workbench.eval.stats import paired_item_ci, verdict

    e = paired_item_ci(per_item[vote], per_item[best])

    def pct(x: float) -> float | None:
        return round(100 * x, 2) if math.isfinite(x) else None
    return {"claim": f"{vote} >= {best}", "diff": pct(e.value), "lo": pct(e.lo), "hi": pct(e.hi),
            "n": e.n, "method": e.method, "verdict": verdict(e, ">=")}
