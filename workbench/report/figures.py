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
    """One row per claim: the estimate with its 95 % CI (colour = verdict) and the claim's
    threshold (0 for a difference) as an open diamond. None when no claim has a number."""
    rows = [r for r in results if r.estimate is not None and math.isfinite(r.estimate.value)]
    if not rows:
        return None
    fig = go.Figure()
    for verdict, colour in VERDICT_COLOURS.items():
        sel = [r for r in rows if r.verdict == verdict]
        if not sel:
            continue
        e = [r.estimate for r in sel]
        fig.add_trace(go.Scatter(
            x=[x.value for x in e], y=[_wrap(r.text) for r in sel], mode="markers",
            marker={"color": colour, "size": 10}, name=verdict,
            error_x={"type": "data", "symmetric": False,
                     "array": [x.hi - x.value if x.has_ci else 0 for x in e],
                     "arrayminus": [x.value - x.lo if x.has_ci else 0 for x in e]},
            customdata=[[r.what, stats.fmt_ci(r.estimate, 3)] for r in sel],
            hovertemplate="%{customdata[0]}<br>%{customdata[1]}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[r.margin for r in rows], y=[_wrap(r.text) for r in rows],
                             mode="markers", name="claim's threshold",
                             marker={"symbol": "diamond-open", "size": 12, "color": "black"}))
    fig.update_layout(title=title or "Claims: estimate and 95 % CI (difference, or value vs "
                      "threshold)", height=140 + 70 * len(rows),
                      margin={"l": 10, "r": 10, "t": 50, "b": 40},
                      xaxis_title="estimate (units of the claim's metric)",
                      legend={"orientation": "h", "y": -0.2})
    fig.update_yaxes(autorange="reversed")
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
