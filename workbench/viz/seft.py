"""Plotly figures for SEFT (shared by the notebook and the app)."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go


def rounds_figure(rounds: list[dict[str, Any]], table: list[dict[str, Any]] | None = None) -> go.Figure:
    """Share of responses revised (and malformed) per round, with the SEFT judge score per round."""
    xs = [r["round"] for r in rounds]
    fig = go.Figure()
    fig.add_bar(x=xs, y=[r["share_revised"] for r in rounds], name="share revised")
    fig.add_bar(x=xs, y=[r["share_malformed"] for r in rounds], name="share malformed")
    if table:
        scores = {row["model"]: row["judge_score"] for row in table}
        fig.add_scatter(x=xs, y=[scores.get(f"SEFT round {x}") for x in xs], name="judge score",
                        yaxis="y2", mode="lines+markers")
    fig.update_layout(title="SEFT per round", xaxis_title="round", yaxis_title="share",
                      yaxis2=dict(title="judge score (weak judge)", overlaying="y", side="right"))
    return fig


def table_figure(table: list[dict[str, Any]]) -> go.Figure:
    """Judge score per model (SFT, DPO, ORPO, SEFT round r)."""
    fig = go.Figure(go.Bar(x=[r["model"] for r in table], y=[r["judge_score"] for r in table]))
    fig.update_layout(title="Judge score (MT-Bench single-answer, weak offline judge)",
                      yaxis_title="score 1-10")
    return fig
