"""FuseChat part 2 figures: per-matrix SCE weights, and the models of Table 1 side by side."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

GROUP_COLORS = {"pivot": "#7f7f7f", "source": "#bcbd22", "baseline": "#1f77b4",
                "target": "#2ca02c", "merge": "#d62728"}


def _short(name: str) -> str:
    return name.removeprefix("model.").removesuffix(".weight")


def sce_weights_figure(rows: Sequence[dict[str, Any]], title: str = "SCE weights η per matrix"
                       ) -> go.Figure:
    """Heatmap of η_j (``rows`` from ``sce_matrix_weights``): matrices down, targets across."""
    tensors = list(dict.fromkeys(r["tensor"] for r in rows))
    targets = list(dict.fromkeys(r["target"] for r in rows))
    eta = {(r["tensor"], r["target"]): r["eta"] for r in rows}
    z = [[eta.get((t, g)) for g in targets] for t in tensors]
    fig = go.Figure(go.Heatmap(z=z, x=targets, y=[_short(t) for t in tensors], zmin=0, zmax=1,
                               colorscale="RdBu", colorbar={"title": "η"}))
    fig.update_layout(title=title, height=max(300, 60 + 9 * len(tensors)),
                      yaxis={"autorange": "reversed", "tickfont": {"size": 8}},
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def model_comparison_figure(table: Sequence[dict[str, Any]], metric: str = "heldout_ce",
                            title: str | None = None) -> go.Figure:
    """One bar per model of Table 1 (``metrics["table"]``), coloured by group; the row's 95 % CI
    (``<metric>_lo``/``_hi``) as error bars where the table has one."""
    rows = [r for r in table if r.get(metric) is not None]

    def bound(r: dict[str, Any], side: str) -> float:
        b = r.get(f"{metric}_{side}")
        return float(b) if isinstance(b, int | float) else float(r[metric])

    fig = go.Figure()
    for group, color in GROUP_COLORS.items():
        sub = [r for r in rows if r.get("group") == group]
        if sub:
            err = {"type": "data", "symmetric": False,
                   "array": [bound(r, "hi") - r[metric] for r in sub],
                   "arrayminus": [r[metric] - bound(r, "lo") for r in sub]}
            fig.add_bar(x=[r["model"] for r in sub], y=[r[metric] for r in sub], name=group,
                        marker_color=color, error_y=err)
    ci = any(isinstance(r.get(f"{metric}_lo"), int | float) for r in rows)
    fig.update_layout(title=title or f"{metric} per model" + (" (95 % CI)" if ci else ""),
                      yaxis_title=metric, barmode="group",
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    if rows:
        lo = min(bound(r, "lo") for r in rows)
        hi = max(bound(r, "hi") for r in rows)
        pad = (hi - lo) * 0.2 or abs(hi) * 0.01 or 1.0
        fig.update_yaxes(range=[lo - pad, hi + pad])
    return fig
