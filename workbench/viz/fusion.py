"""FuseChat figures (plotly), shared by the notebook and the app."""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

# ---------------------------------------------------------------------------------------------
# Token alignment (workbench.fusion.align)
# ---------------------------------------------------------------------------------------------

_RELATION_COLORS = {"1→1": "#2ca02c", "1→n": "#1f77b4", "n→1": "#ff7f0e", "none": "#7f7f7f"}


def _tick(texts: list[str], max_len: int = 14) -> list[str]:
    from workbench.fusion.align.normalize import display_text

    out = []
    for k, t in enumerate(texts):
        s = display_text(t, visible_whitespace=True)
        s = s if len(s) <= max_len else s[: max_len - 1] + "…"
        out.append(f"{k}:{s}")
    return out


def alignment_matrix_figure(alignment: Any, value: str = "cost", max_tokens: int = 200,
                            title: str | None = None) -> go.Figure:
    """The DTW alignment of :func:`workbench.fusion.align.align_text` as a matrix.

    Rows are pivot tokens, columns source tokens; the heatmap shows the pairwise edit-distance
    cost (``value="cost"``) or the cumulative DP matrix (``"cumulative"``); the DP path is drawn
    on top, its points colored by the pivot position's relation (1→1, 1→n, n→1). Only the first
    ``max_tokens`` tokens of each side are drawn.
    """
    if value not in ("cost", "cumulative"):
        raise ValueError(f"value must be 'cost' or 'cumulative', got {value!r}")
    mat = np.asarray(alignment.cost if value == "cost" else alignment.cumulative)
    n_p = min(len(alignment.pivot_texts), max_tokens)
    n_s = min(len(alignment.source_texts), max_tokens)
    y = _tick(alignment.pivot_texts[:n_p])
    x = _tick(alignment.source_texts[:n_s])
    fig = go.Figure()
    if n_p and n_s:
        fig.add_trace(go.Heatmap(
            z=mat[:n_p, :n_s], x=x, y=y, colorscale="Blues", reversescale=True,
            colorbar={"title": value},
            hovertemplate="pivot %{y}<br>source %{x}<br>" + value + " %{z}<extra></extra>"))
        path = [(i, j) for i, j in alignment.path if i < n_p and j < n_s]
        if path:
            rel = [alignment.relations[i] for i, _ in path]
            fig.add_trace(go.Scatter(
                x=[x[j] for _, j in path], y=[y[i] for i, _ in path], mode="lines+markers",
                line={"color": "#d62728", "width": 2},
                marker={"size": 7, "color": [_RELATION_COLORS.get(r, "#000") for r in rel]},
                text=rel, name="DP path", showlegend=False,
                hovertemplate="pivot %{y}<br>source %{x}<br>%{text}<extra>path</extra>"))
            for r in [r for r in _RELATION_COLORS if r in rel]:  # the legend of the point colours
                fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=f"path: {r}",
                                         marker={"size": 7, "color": _RELATION_COLORS[r]}))
    fig.update_yaxes(autorange="reversed", title="pivot tokens", type="category")
    fig.update_xaxes(title="source tokens", type="category", tickangle=-60)
    size = max(n_p, n_s, 1)
    fig.update_layout(
        title=title or f"Token alignment ({len(alignment.pivot_texts)} pivot x "
                       f"{len(alignment.source_texts)} source tokens)",
        height=min(300 + 16 * size, 2400), width=min(360 + 16 * size, 2400),
        margin={"l": 10, "r": 10, "t": 80, "b": 10}, showlegend=True,
        legend={"orientation": "h", "x": 0, "y": 1.0, "yanchor": "bottom",
                "title": {"text": "path point = pivot position's group:"}})
    return fig


def align_kind_figure(stats: dict[str, dict[str, float]], title: str = "Alignment per mapping"
                      ) -> go.Figure:
    """Stacked bars: share of pivot positions per align kind, one bar per mapping/source.

    ``stats`` maps a label (e.g. ``"gemma3-270m / ms"``) to an :func:`alignment_stats` dict.
    """
    from workbench.fusion.formats import ALIGN_KINDS

    labels = list(stats)
    fig = go.Figure()
    for name in ALIGN_KINDS.values():
        fig.add_trace(go.Bar(name=name, x=labels, y=[stats[k].get(name, 0.0) for k in labels]))
    fig.update_layout(barmode="stack", title=title, yaxis={"title": "share of pivot positions",
                                                           "range": [0, 1]})
    return fig

# ---------------------------------------------------------------------------------------------
# end of token alignment figures
# ---------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------
# Representations (workbench.fusion.represent)
# ---------------------------------------------------------------------------------------------


def repr_size_figure(metrics: dict[str, Any]) -> go.Figure:
    """Bytes per token of each model's representation shards (every column, on disk) and a line
    at the top-K columns alone (int32 ids + fp16 logits), from a FuseChat run's metrics."""
    rows = metrics.get("repr_table", [])
    topk = metrics.get("repr_topk_bytes_per_token")
    fig = go.Figure(go.Bar(x=[r["model"] for r in rows], y=[r["bytes_per_token"] for r in rows],
                           name="shards on disk (all columns)",
                           hovertemplate="%{x}<br>%{y:.1f} B/token<extra></extra>"))
    if topk is not None:
        fig.add_hline(y=topk, line_dash="dot",
                      annotation_text=f"top-K ids + logits: {topk:.1f} B/token")
    fig.update_layout(title="Representation size", yaxis_title="bytes / token", height=340,
                      margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig

# ---------------------------------------------------------------------------------------------
# end of representation figures
# ---------------------------------------------------------------------------------------------
