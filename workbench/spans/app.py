"""App tab: highlighted toxic spans from trained runs (or their vote)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from workbench.common.io import read_json
from workbench.common.rundir import list_runs
from workbench.spans.predict import clean_texts
from workbench.spans.select import ensemble_posts, post_score
from workbench.viz.spans import highlight, token_heat

MAX_CHARS = 2000
_CACHE: dict = {}


def _runs(root) -> list[str]:
    return [str(p) for p in list_runs("toxic_spans", root)]


def _predictor(run: str, int8: bool = False):
    from workbench.spans.inference import load_predictor
    if (run, int8) not in _CACHE:
        _CACHE[(run, int8)] = load_predictor(run, quantize=int8)
    return _CACHE[(run, int8)]


def _prob_rows(text: str, member_probs: dict[str, list[tuple[int, int, float]]]) -> tuple[list[list], list[str]]:
    """One row per token of the first member: token text, then p(toxic) of each member sharing its tokens."""
    first = next(iter(member_probs.values()))
    same = {n: p for n, p in member_probs.items() if [(a, b) for a, b, _ in p] == [(a, b) for a, b, _ in first]}
    rows = []
    for k, (a, b, _) in enumerate(first):
        ps = [round(p[k][2], 3) for p in same.values()]
        rows.append([text[a:b], *ps] + ([round(sum(ps) / len(ps), 3)] if len(ps) > 1 else []))
    return rows, list(same)


def predict(text: str, run: str | None, member: str, gold: list[int] | None = None, int8: bool = False):
    """-> (prediction highlight, gold highlight, per-token probability table, token heat map, message)."""
    empty = ([], [], gr.update(value=[]), [])
    if not run:
        return (*empty, "No run selected: train one with `workbench reproduce toxic_spans --profile smoke`.")
    text = text or ""
    if len(text) > MAX_CHARS:
        return (*empty, f"Input is {len(text)} characters; the cap is {MAX_CHARS}. Shorten it.")
    if not text.strip():
        return (*empty, "Empty text: nothing to tag.")
    text = clean_texts([text])[0]  # lone surrogates -> U+FFFD (same offsets)
    if not (Path(run) / "artifacts" / "members").is_dir():
        return (*empty, f"Run {run} not found or has no trained members: pick another run.")
    pred = _predictor(run, bool(int8))
    m = read_json(Path(run) / "metrics.json") if (Path(run) / "metrics.json").exists() else {}
    if member in pred.members:
        names = [member]
    elif member not in (None, "", "ensemble"):
        return (*empty, f"Unknown member {member!r}; members of this run: {', '.join(pred.members)} (or ensemble).")
    else:  # the run's ensemble: its voters, vote size and gate (ensemble.json / metrics.json), else all, majority
        names = [n for n in m.get("voters") or [] if n in pred.members] or list(pred.members)
    outs = {n: pred.predict_member(n, [text], return_probs=True, gated=len(names) == 1) for n in names}
    spans = ensemble_posts([o[0] for o in outs.values()], [[post_score(o[1][0])] for o in outs.values()],
                           pred.min_votes if pred.min_votes is not None else m.get("min_votes"),
                           pred.tau_post)[0] if len(names) > 1 else outs[names[0]][0][0]
    rows, cols = _prob_rows(text, {n: o[1][0] for n, o in outs.items()})
    table = gr.update(value=rows, headers=["token", *cols] + (["mean"] if len(cols) > 1 else []))
    heat = token_heat(text, [(a, b, p) for a, b, p in outs[names[0]][1][0]])
    g = highlight(text, gold) if gold is not None else []
    who = f"vote of {len(names)} members" if len(names) > 1 else names[0]
    return highlight(text, spans), g, table, heat, f"{len(spans)} toxic characters ({who})"


def member_names(run: str | None) -> list[str]:
    """The run's members as its predictor loads them (ensemble voters, else every trained member),
    read from the folder without loading a model."""
    root = Path(run) / "artifacts" / "members" if run else None
    if root is None or not root.is_dir():
        return []
    available = sorted(p.name for p in root.iterdir() if (p / "member.json").exists())
    ens = Path(run) / "artifacts" / "ensemble.json"
    voters = [v for v in (read_json(ens).get("voters", []) if ens.exists() else []) if v in available]
    return voters or available


def results_view(run: str | None):
    """The run's result table (metrics.json `table`): CIs folded in as "x [lo, hi]", n kept."""
    from workbench.appkit import table
    f = Path(run) / "metrics.json" if run else None
    rows = read_json(f).get("table") if f is not None and f.exists() else None
    if not isinstance(rows, list) or not rows:
        return gr.update(value=None, headers=None)
    heads, values = table(rows)
    return gr.update(value=values, headers=heads)


def run_choices(root) -> list[tuple[str, str]]:
    """(run name, run folder) pairs: the dropdown shows `toxic_spans/<run>`, never the path."""
    from workbench.appkit import run_label
    return [(run_label(r), r) for r in _runs(root)]


def build_app(runs_root: Path | None = None) -> gr.Blocks:
    from workbench.appkit import MAX_NAME, keep_choice

    runs = _runs(runs_root)
    choices = run_choices(runs_root)
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
        with gr.Row():
            run = gr.Dropdown(choices, value=runs[0] if runs else None, label="run", scale=4,
                              elem_id="ts-run")
            refresh = gr.Button("Refresh", scale=1, elem_id="ts-refresh")
        member = gr.Dropdown(["ensemble", *member_names(runs[0] if runs else None)],
                             value="ensemble", label="member (or ensemble vote)",
                             allow_custom_value=True, elem_id="ts-member")
        ex = gr.Dropdown([f"{i}: {t[:60]}" for i, (t, _) in enumerate(examples)], label="trial example")
        text = gr.Textbox(label=f"text (max {MAX_CHARS} characters)", lines=4, max_length=MAX_CHARS,
                          elem_id="ts-text")
        with gr.Row():
            int8 = gr.Checkbox(True, label="int8 inference (about 2x less CPU per post; "
                               "trial F1 unchanged on the cpu run)")
            btn = gr.Button("Detect", variant="primary", elem_id="ts-detect")
        with gr.Row():
            out = gr.HighlightedText(label="prediction", elem_id="ts-pred")
            gold = gr.HighlightedText(label="gold (dataset examples)")
        # Gradio's score legend is fixed at -1..+1; p(toxic) runs 0..1, so the range is in the label
        heat = gr.HighlightedText(label="p(toxic) per token, first member: no colour = 0, full red = 1",
                                  show_legend=False, elem_id="ts-heat")
        probs = gr.Dataframe(headers=["token", "p(toxic)"], label="per-token probabilities (per member)",
                             interactive=False, elem_id="ts-probs")
        msg = gr.Textbox(label="message", interactive=False, elem_id="ts-msg")  # plain text: safe
        results = gr.Dataframe(label="this run's results (95% CI where the run gives one)",
                               interactive=False, elem_id="ts-results")
        state = gr.State(None)

        def pick(choice):
            if not choice:
                return "", None
            t, s = examples[int(choice.split(":")[0])]
            return t, s

        def members(r):
            return gr.update(choices=["ensemble", *member_names(r)], value="ensemble")

        def relist(current):
            now = run_choices(runs_root)
            return gr.update(choices=now, value=keep_choice(now, current))

        def detect(t, r, m, g, q):
            if m and len(m) > MAX_NAME:
                return [], [], gr.update(value=[]), [], f"Member name is {len(m)} characters; the cap is {MAX_NAME}."
            return predict(t, r, m, g, q)

        refresh.click(relist, run, run)
        app.refresh_runs = (relist, [run], [run])
        ex.change(pick, ex, [text, state])
        text.input(lambda _: None, text, state)
        run.change(members, run, member)
        run.change(results_view, run, results)
        app.load(results_view, run, results)
        btn.click(detect, [text, run, member, state, int8], [out, gold, probs, heat, msg])
    return app
