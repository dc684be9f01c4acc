"""Plotly figures and highlight payloads for toxic spans (notebook and app)."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go

from workbench.spans.metric import post_f1


def highlight(text: str, offsets: Sequence[int], label: str = "toxic") -> list[tuple[str, str | None]]:
    """`gr.HighlightedText` payload: consecutive (chunk, label-or-None) pieces."""
    s, out, i = set(offsets), [], 0
    while i < len(text):
        j, on = i, i in s
        while j < len(text) and (j in s) == on:
            j += 1
        out.append((text[i:j], label if on else None))
        i = j
    return out


def token_heat(text: str, token_probs: Sequence[tuple[int, int, float]]) -> list[tuple[str, float | None]]:
    """`gr.HighlightedText` payload with a score per token (colour intensity); gaps get None."""
    out, pos = [], 0
    for a, b, p in sorted(token_probs):
        if a < pos:  # overlapping sliding windows: keep the first occurrence
            continue
        if a > pos:
            out.append((text[pos:a], None))
        out.append((text[a:b], round(float(p), 3)))
        pos = b
    if pos < len(text):
        out.append((text[pos:], None))
    return out


def html_highlight(text: str, offsets: Sequence[int], color: str = "#f4a6a6") -> str:
    import html
    return "".join(f'<mark style="background:{color}">{html.escape(c)}</mark>' if lab else html.escape(c)
                   for c, lab in highlight(text, offsets))


def f1_by_length(texts, preds, golds, edges=(0, 50, 100, 200, 400, 10_000)) -> go.Figure:
    xs, ys, ns = [], [], []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        idx = [i for i, t in enumerate(texts) if a <= len(t) < b]
        if idx:
            xs.append(f"{a}-{b}")
            ys.append(100 * sum(post_f1(preds[i], golds[i]) for i in idx) / len(idx))
            ns.append(len(idx))
    fig = go.Figure(go.Bar(x=xs, y=ys, text=[f"n={n}" for n in ns]))
    return fig.update_layout(title="char F1 per post length (chars)", yaxis_title="F1", xaxis_title="length")


def precision_recall(members: dict[str, Sequence], golds) -> go.Figure:
    fig = go.Figure()
    for name, preds in members.items():
        tp = sum(len(set(p) & set(g)) for p, g in zip(preds, golds, strict=True))
        np_ = sum(len(set(p)) for p in preds)
        ng = sum(len(set(g)) for g in golds)
        fig.add_trace(go.Scatter(x=[tp / ng if ng else 0], y=[tp / np_ if np_ else 0], mode="markers+text",
                                 text=[name], name=name))
    return fig.update_layout(title="char precision / recall (pooled)", xaxis_title="recall", yaxis_title="precision")
