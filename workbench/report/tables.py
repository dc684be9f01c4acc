"""Tables for people: rounded numbers, a value and its CI in one cell, n kept, percent labelled.

Shared by the HTML report and the notebooks (`workbench.notebook.show_table`). A row's metric
`m` with columns `m_lo` and `m_hi` is shown as one cell `12.3 [11.0, 13.6]`; with only
`m_stderr`, as `12.3 ± 0.7`. Columns listed in `percent` (values in 0..1) are shown x100 and
every percent column's header ends in "(%)", so fractions never sit unlabelled next to
percentages. Missing values and NaN show as "–", never "None"; "-0.00" never appears.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

MISSING = "–"
_CI_PARTS = ("lo", "hi", "stderr")


def fmt_value(v: Any, digits: int | None = None) -> str:
    """One cell: None/NaN -> "–"; bool -> yes/no; int as is; float rounded by magnitude
    (>= 100: 1 decimal, >= 1: 2, else 3) unless `digits` is given; lists joined."""
    if v is None:
        return MISSING
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return MISSING
        if digits is None:
            a = abs(v)
            digits = 1 if a >= 100 else 2 if a >= 1 else 3
        r = round(v, digits)
        if r == 0:
            r = 0.0  # no "-0.00"
        return f"{r:.{digits}f}"
    if isinstance(v, list | tuple):
        text = ", ".join(fmt_value(x) for x in v)
        return text if len(text) <= 120 else text[:117] + "..."
    if isinstance(v, dict):
        text = json.dumps(v, default=str)
        return text if len(text) <= 120 else text[:117] + "..."
    return str(v)


def _digits_for(values: Iterable[Any]) -> int | None:
    """One number of decimals for a whole column (by its largest magnitude)."""
    mags = [abs(v) for v in values if isinstance(v, float) and math.isfinite(v)]
    if not mags:
        return None
    m = max(mags)
    return 1 if m >= 100 else 2 if m >= 1 or m == 0 else 3


def columns_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    return cols


def ci_columns(cols: Sequence[str]) -> dict[str, dict[str, str]]:
    """metric -> {"lo": col, "hi": col, "stderr": col} for the metrics that carry an interval."""
    out: dict[str, dict[str, str]] = {}
    for c in cols:
        parts = {p: f"{c}_{p}" for p in _CI_PARTS if f"{c}_{p}" in cols}
        if ("lo" in parts and "hi" in parts) or "stderr" in parts:
            out[c] = parts
    return out


def n_columns(cols: Sequence[str]) -> list[str]:
    return [c for c in cols if c == "n" or c.startswith("n_") or c.endswith("_n")]


def display_rows(rows: Sequence[dict[str, Any]], percent: Sequence[str] = (),
                 percent_already: Sequence[str] = ()) -> list[dict[str, str]]:
    """Rows of strings for display (see the module docstring). Keeps column order; the `_lo`,
    `_hi`, `_stderr` columns fold into their metric's cell."""
    rows = list(rows)
    cols = columns_of(rows)
    cis = ci_columns(cols)
    folded = {c for parts in cis.values() for c in parts.values()}
    pct = set(percent)
    pct_cols = pct | set(percent_already)

    def scale(c: str) -> float:
        return 100.0 if c in pct else 1.0

    def num(r: dict, c: str) -> Any:
        v = r.get(c)
        if c in pct and isinstance(v, int | float) and not isinstance(v, bool):
            return float(v) * 100.0
        return v

    out = []
    digits = {c: _digits_for(num(r, c) for r in rows) for c in cols}
    for r in rows:
        d: dict[str, str] = {}
        for c in cols:
            if c in folded:
                continue
            head = f"{c} (%)" if c in pct_cols and not c.endswith("_pct") else c
            v = num(r, c)
            dg = digits[c]
            cell = fmt_value(v, dg if isinstance(v, float) else None)
            parts = cis.get(c)
            if parts and cell != MISSING:
                lo, hi = r.get(parts.get("lo", "")), r.get(parts.get("hi", ""))
                se = r.get(parts.get("stderr", ""))
                if isinstance(lo, int | float) and isinstance(hi, int | float) and \
                        math.isfinite(lo) and math.isfinite(hi):
                    lo, hi = float(lo) * scale(c), float(hi) * scale(c)
                    cell += f" [{fmt_value(lo, dg)}, {fmt_value(hi, dg)}]"
                elif isinstance(se, int | float) and math.isfinite(se):
                    cell += f" ± {fmt_value(float(se) * scale(c), dg)}"
            d[head] = cell
        out.append(d)
    return out


def uncertainty_gaps(rows: Sequence[dict[str, Any]], metrics: Sequence[str] = ()) -> list[str]:
    """What a table lacks for a reader to tell signal from noise: no n column, or numeric
    metrics (of `metrics`, default: none checked) without an interval."""
    cols = columns_of(rows)
    gaps = []
    if rows and not n_columns(cols):
        gaps.append("no n column")
    cis = ci_columns(cols)
    missing = [m for m in dict.fromkeys(metrics) if m in cols and m not in cis]
    if missing:
        gaps.append("no CI/stderr for " + ", ".join(missing))
    return gaps


def html_table(rows: Sequence[dict[str, Any]], cls: str = "") -> str:
    """Rows of display strings (or raw values) as an escaped HTML table."""
    if not rows:
        return "<p><em>(empty)</em></p>"
    cols = columns_of(rows)
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v if isinstance(v, str) else fmt_value(v))}</td>"
                         for v in (r.get(c, MISSING) for c in cols)) + "</tr>"
        for r in rows)
    c = f" class='{cls}'" if cls else ""
    return f"<table{c}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
