"""Figures every paper uses: a plotly table, and our numbers next to the paper's anchors."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from workbench.report.anchors import load_anchors


def table_figure(rows: list[dict[str, Any]], title: str = "") -> go.Figure:
    """A plotly table of row dicts (columns in first-seen order; floats to 4 significant digits)."""
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]

    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))

    cells = [[fmt(r.get(c)) for r in rows] for c in cols]
    fig = go.Figure(go.Table(header={"values": cols, "align": "left"},
                             cells={"values": cells, "align": "left"}))
    fig.update_layout(title=title or None, margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
                      height=80 + 28 * max(len(rows), 1))
    return fig


def anchor_table(paper: str, metrics: dict[str, Any] | None = None) -> go.Figure:
    """Our result table (metrics["table"]) above the paper's own numbers (workbench/anchors)."""
    anchors = load_anchors(paper) or {}
    rows = [{"source": "this run", **r} for r in (metrics or {}).get("table", [])]
    rows += [{"source": f"paper: {anchors.get('source', '')}", **r} for r in anchors.get("table", [])]
    return table_figure(rows, title=anchors.get("title", paper))
