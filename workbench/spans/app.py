"""App tab: highlighted toxic spans from trained runs (or their vote)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from workbench.common.rundir import list_runs
from workbench.viz.spans import highlight

MAX_CHARS = 2000
_CACHE: dict = {}


def _runs(root) -> list[str]:
    return [str(p) for p in list_runs("toxic_spans", root)]


def _predictor(run: str):
    from workbench.spans.train import load_predictor
    if run not in _CACHE:
        _CACHE[run] = load_predictor(run)
    return _CACHE[run]


def predict(text: str, run: str | None, member: str, gold: list[int] | None = None):
    """-> (prediction highlight, gold highlight, per-token probability rows, message)."""
    if not run:
        return [], [], [], "No run selected: train one with `workbench reproduce toxic_spans --profile smoke`."
    text = text or ""
    if len(text) > MAX_CHARS:
        return [], [], [], f"Input is {len(text)} characters; the cap is {MAX_CHARS}. Shorten it."
    pred = _predictor(run)
    if member == "ensemble" or member not in pred.members:
        spans = pred.predict_spans([text])[0]
        name = next(iter(pred.members))
    else:
        spans, name = pred.predict_member(member, [text])[0], member
    _, probs = pred.predict_member(name, [text], return_probs=True)
    rows = [[text[a:b], round(p, 3)] for a, b, p in probs[0]]
    g = highlight(text, gold) if gold is not None else []
    return highlight(text, spans), g, rows, f"{len(spans)} toxic characters"


def build_app(runs_root: Path | None = None) -> gr.Blocks:
    runs = _runs(runs_root)
    examples: list[tuple[str, list[int]]] = []
    try:
        from workbench.data import load_toxic_spans
        ds = load_toxic_spans("trial")
        examples = [(t, list(s)) for t, s in zip(ds["text"][:50], ds["spans"][:50], strict=True)]
    except Exception:  # data missing: the tab still builds
        examples = []
    with gr.Blocks() as app:
        gr.Markdown("## Toxic spans (YNU-HPCC, SemEval-2021 Task 5)")
        if not runs:
            gr.Markdown("No finished runs. Make one: `workbench reproduce toxic_spans --profile smoke`.")
        run = gr.Dropdown(runs, value=runs[0] if runs else None, label="run")
        member = gr.Dropdown(["ensemble"], value="ensemble", label="member (or ensemble vote)",
                             allow_custom_value=True)
        ex = gr.Dropdown([f"{i}: {t[:60]}" for i, (t, _) in enumerate(examples)], label="trial example")
        text = gr.Textbox(label=f"text (max {MAX_CHARS} characters)", lines=4)
        btn = gr.Button("Detect")
        with gr.Row():
            out = gr.HighlightedText(label="prediction")
            gold = gr.HighlightedText(label="gold (dataset examples)")
        probs = gr.Dataframe(headers=["token", "p(toxic)"], label="per-token probabilities")
        msg = gr.Markdown()
        state = gr.State(None)

        def pick(choice):
            if not choice:
                return "", None
            t, s = examples[int(choice.split(":")[0])]
            return t, s

        def members(r):
            names = ["ensemble"] + (list(_predictor(r).members) if r else [])
            return gr.update(choices=names, value="ensemble")

        ex.change(pick, ex, [text, state])
        text.input(lambda _: None, text, state)
        run.change(members, run, member)
        btn.click(predict, [text, run, member, state], [out, gold, probs, msg])
    return app
