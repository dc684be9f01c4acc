"""SEFT tables and plotly figures (shared by the notebook, the app and the report)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go

PAPER_COLUMNS = {"model": "Model", "mtbench_turn1": "MT-Bench 1st turn",
                 "mtbench_turn2": "MT-Bench 2nd turn", "judge_score": "MT-Bench avg",
                 "win_rate_vs_sft": "Win rate vs SFT"}


def _order(name: str) -> tuple[int, int]:
    base = {"SFT": 0, "DPO": 1, "ORPO": 2}
    if name in base:
        return base[name], 0
    if name.startswith("SEFT round "):
        return 3, int(name.rsplit(" ", 1)[1])
    return 4, 0


def paper_rows(table: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows in the paper's layout: SFT, DPO, ORPO, then SEFT per round; per-turn MT-Bench columns,
    the average and the win rate vs SFT, then how many judge ratings were unparseable/forced."""
    out = []
    for r in sorted(table, key=lambda r: _order(r["model"])):
        row = {label: r.get(k) for k, label in PAPER_COLUMNS.items()}
        row["unparsed / forced"] = f"{r.get('n_unparsed', 0)} / {r.get('n_forced', 0)}"
        row["same answers as SFT"] = r.get("same_answers_as_sft")
        out.append(row)
    return out


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def seed_spread(tables: Sequence[Sequence[dict[str, Any]]],
                keys: Sequence[str] = ("mtbench_turn1", "mtbench_turn2", "judge_score",
                                       "win_rate_vs_sft")) -> list[dict[str, Any]]:
    """Per model, the mean over seeds and the spread (max - min) of each metric; a seed whose value
    is missing (null) is left out of that metric and ``n_seeds`` says how many were used."""
    names = sorted({r["model"] for t in tables for r in t}, key=_order)
    out = []
    for name in names:
        row: dict[str, Any] = {"model": name}
        for k in keys:
            vals = [_num(r.get(k)) for t in tables for r in t if r["model"] == name]
            ok = [v for v in vals if not math.isnan(v)]
            row[f"{k}_mean"] = sum(ok) / len(ok) if ok else None
            row[f"{k}_spread"] = (max(ok) - min(ok)) if ok else None
            row[f"{k}_n_seeds"] = len(ok)
        out.append(row)
    return out


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
    fig.update_layout(title="SEFT per round: share of responses the reviser revised",
                      xaxis_title="round", yaxis_title="share",
                      yaxis2=dict(title="MT-Bench avg (weak judge)", overlaying="y", side="right"))
    return fig


def score_per_round_figure(table: list[dict[str, Any]]) -> go.Figure:
    """MT-Bench score (turn 1, turn 2, average) of SEFT per round; SFT/DPO/ORPO as dashed lines."""
    seft = sorted((r for r in table if r["model"].startswith("SEFT round ")), key=lambda r: _order(
        r["model"]))
    xs = [_order(r["model"])[1] for r in seft]
    fig = go.Figure()
    for k, label in (("judge_score", "SEFT avg"), ("mtbench_turn1", "SEFT turn 1"),
                     ("mtbench_turn2", "SEFT turn 2")):
        fig.add_scatter(x=xs, y=[r.get(k) for r in seft], mode="lines+markers", name=label)
    for r in table:
        if r["model"] in ("SFT", "DPO", "ORPO") and r.get("judge_score") is not None:
            fig.add_hline(y=r["judge_score"], line_dash="dash", annotation_text=r["model"])
    fig.update_layout(title="MT-Bench score per SEFT round (weak offline judge)",
                      xaxis_title="round", yaxis_title="score 1-10")
    return fig


def table_figure(table: list[dict[str, Any]]) -> go.Figure:
    """MT-Bench per turn and win rate vs SFT per model (SFT, DPO, ORPO, SEFT round r)."""
    rows = sorted(table, key=lambda r: _order(r["model"]))
    names = [r["model"] for r in rows]
    fig = go.Figure()
    for k, label in (("mtbench_turn1", "turn 1"), ("mtbench_turn2", "turn 2"),
                     ("judge_score", "average")):
        fig.add_bar(x=names, y=[r.get(k) for r in rows], name=label)
    fig.add_scatter(x=names, y=[r.get("win_rate_vs_sft") for r in rows], name="win rate vs SFT",
                    yaxis="y2", mode="markers", marker=dict(size=12, symbol="diamond"))
    fig.update_layout(title="MT-Bench (single-answer, weak offline judge) and win rate vs SFT",
                      yaxis_title="score 1-10", barmode="group",
                      yaxis2=dict(title="win rate", overlaying="y", side="right", range=[0, 1]))
    return fig


def reviser_heldout_rows(heldout: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The reviser on held-out preference pairs, before and after its training: share of REVISE
    on the rejected and on the chosen responses, decision and pairwise accuracy, mean margins."""
    return [{"reviser": when.replace("_", " "), **h} for when, h in heldout.items()
            if h.get("n_pairs")]


def reviser_heldout_figure(heldout: dict[str, dict[str, Any]]) -> go.Figure:
    """Share of REVISE decisions on rejected vs chosen held-out responses, before and after the
    reviser's training (a reviser that tells them apart revises the rejected ones more often)."""
    rows = reviser_heldout_rows(heldout)
    xs = [r["reviser"] for r in rows]
    fig = go.Figure()
    fig.add_bar(x=xs, y=[r["share_revise_rejected"] for r in rows], name="REVISE on rejected")
    fig.add_bar(x=xs, y=[r["share_revise_chosen"] for r in rows], name="REVISE on chosen")
    n = rows[0]["n_pairs"] if rows else 0
    fig.update_layout(title=f"Reviser decisions on {n} held-out preference pairs",
                      yaxis_title="share REVISE", yaxis_range=[0, 1], barmode="group")
    return fig
