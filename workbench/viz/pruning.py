"""Plotly figures for BlockPruner runs (shared by the notebook and the app)."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

# search / baseline key -> the name the tables and the paper use (legends say the same)
METHOD_NAMES = {"blockpruner": "BlockPruner", "oneshot": "-search", "layer": "layer-level",
                "shortgpt": "ShortGPT", "rm": "RM", "size_aware": "size-aware"}


def importance_curve(steps: list[dict[str, Any]], upto: int | None = None) -> go.Figure:
    """Candidate calibration PPL at each search step (dots) and the chosen one (line)."""
    fig = go.Figure()
    steps = steps[:upto] if upto else steps
    xs, ys, txt = [], [], []
    for s in steps:
        for k, v in (s.get("candidates") or {}).items():
            if v is not None:
                xs.append(s["step"])
                ys.append(v)
                txt.append(k)
    fig.add_scatter(x=xs, y=ys, mode="markers", text=txt, name="candidates",
                    marker={"size": 5, "opacity": 0.5})
    fig.add_scatter(x=[s["step"] for s in steps], y=[s["ppl"] for s in steps],
                    mode="lines+markers", name="chosen",
                    text=[", ".join(f"{k}:{i}" for k, i in s["removed"]) for s in steps])
    fig.update_layout(title="Importance curve (calibration PPL per candidate)",
                      xaxis_title="search step", yaxis_title="calibration PPL",
                      yaxis_type="log", template="plotly_white")
    return fig


def ppl_vs_ratio(all_steps: dict[str, list[dict[str, Any]]]) -> go.Figure:
    fig = go.Figure()
    for method, steps in all_steps.items():
        fig.add_scatter(x=[100 * s["ratio"] for s in steps], y=[s["ppl"] for s in steps],
                        mode="lines+markers", name=METHOD_NAMES.get(method, method))
    fig.update_layout(title="Calibration PPL vs pruning ratio", xaxis_title="ratio (%)",
                      yaxis_title="calibration PPL", yaxis_type="log", template="plotly_white")
    return fig


def order_map(steps: list[dict[str, Any]], n_layers: int, upto: int | None = None) -> go.Figure:
    """Layer x {MHA, MLP} heatmap: the step at which each block was removed (blank = kept)."""
    z: list[list[float | None]] = [[None] * n_layers for _ in range(2)]
    for s in steps[:upto] if upto else steps:
        for kind, i in s["removed"]:
            z[0 if kind == "mha" else 1][i] = s["step"]
    fig = go.Figure(go.Heatmap(z=z, x=list(range(n_layers)), y=["MHA", "MLP"],
                               colorscale="Viridis", colorbar={"title": "step"},
                               hovertemplate="layer %{x} %{y}: step %{z}<extra></extra>"))
    fig.update_layout(title="Removal order (layer x block)", xaxis_title="layer",
                      template="plotly_white", height=260)
    return fig
