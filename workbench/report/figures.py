"""Report figures: each claim's estimate and CI against its threshold, and a metric per row with
its CI. Plain plotly; the report embeds them (plotly.js inlined once) so the page works offline."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

from workbench.eval import stats
from workbench.report.claims import NOT_EVALUATED, ClaimResult
from workbench.report.tables import ci_columns, columns_of

VERDICT_COLOURS = {stats.REPRODUCED: "#1a7f37", stats.NOT_REPRODUCED: "#c62828",
                   stats.INCONCLUSIVE: "#b26a00", NOT_EVALUATED: "#888888"}


def _wrap(text: str, width: int = 48) -> str:
    return "<br>".join(textwrap.wrap(text, width)) or text


def claims_figure(results: Sequence[ClaimResult], title: str = "") -> go.Figure | None:
    """One panel per claim (claims differ in units): the estimate with its 95 % CI (colour =
    verdict) and the claim's threshold (0 for a difference) as a dashed line. None when no
    claim has a number."""
    from plotly.subplots import make_subplots

    rows = [r for r in results if r.estimate is not None and math.isfinite(r.estimate.value)]
    if not rows:
        return None
    fig = make_subplots(rows=len(rows), cols=1, vertical_spacing=min(0.12, 0.5 / len(rows)),
                        subplot_titles=[_wrap(r.text, 110) for r in rows])
    shown: set[str] = set()
    for i, r in enumerate(rows, 1):
        e = r.estimate
        colour = VERDICT_COLOURS.get(r.verdict, "#888888")
        err = ({"type": "data", "symmetric": False, "array": [e.hi - e.value],
                "arrayminus": [e.value - e.lo]} if e.has_ci else None)
        fig.add_trace(go.Scatter(
            x=[e.value], y=[r.what], mode="markers", error_x=err, name=r.verdict,
            legendgroup=r.verdict, showlegend=r.verdict not in shown,
            marker={"color": colour, "size": 11},
            hovertemplate=f"{r.what}<br>{stats.fmt_ci(e, 3)}<br>{r.verdict}<extra></extra>"),
            row=i, col=1)
        shown.add(r.verdict)
        fig.add_vline(x=r.margin, line_dash="dash", line_color="black", row=i, col=1)
        lo = min(e.lo if e.has_ci else e.value, r.margin)
        hi = max(e.hi if e.has_ci else e.value, r.margin)
        pad = (hi - lo) * 0.15 or abs(hi) * 0.1 or 1.0
        fig.update_xaxes(range=[lo - pad, hi + pad], row=i, col=1)
        fig.update_yaxes(showticklabels=True, row=i, col=1)
    fig.update_layout(title=title or "Claims: estimate and 95 % CI against the claim's "
                      "threshold (dashed)", height=120 + 130 * len(rows),
                      margin={"l": 10, "r": 10, "t": 80, "b": 30},
                      legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 1,
                              "xanchor": "right"})
    fig.update_annotations(font_size=12)
    return fig


def metric_figure(table: Sequence[dict[str, Any]], metric: str, key: str | None = None,
                  scale: float = 1.0, title: str = "") -> go.Figure | None:
    """A bar per row of `metric` with its CI as error bars (x `scale`, e.g. 100 for percent).
    None when no row has the metric."""
    table = [r for r in table if isinstance(r.get(metric), int | float)
             and not isinstance(r.get(metric), bool) and math.isfinite(r[metric])]
    if not table:
        return None
    cols = columns_of(table)
    key = key or cols[0]
    parts = ci_columns(cols).get(metric, {})
    xs = [str(r.get(key)) for r in table]
    ys = [scale * r[metric] for r in table]
    err = None
    if "lo" in parts and "hi" in parts:
        hi = [scale * r[parts["hi"]] - y if isinstance(r.get(parts["hi"]), int | float) else 0
              for r, y in zip(table, ys, strict=True)]
        lo = [y - scale * r[parts["lo"]] if isinstance(r.get(parts["lo"]), int | float) else 0
              for r, y in zip(table, ys, strict=True)]
        err = {"type": "data", "symmetric": False, "array": hi, "arrayminus": lo}
    elif "stderr" in parts:
        z = 1.959964
        err = {"type": "data", "array": [z * scale * (r.get(parts["stderr"]) or 0)
                                         for r in table]}
    fig = go.Figure(go.Bar(x=xs, y=ys, error_y=err, marker_color="#4c78a8"))
    fig.update_layout(title=title or f"{metric} per {key}" + (" (95 % CI)" if err else
                                                              " (no CI in the table)"),
                      height=360, margin={"l": 10, "r": 10, "t": 50, "b": 10},
                      yaxis_title=metric)
    return fig
