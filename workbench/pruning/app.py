"""Block-importance explorer: pick a finished BlockPruner run, step through its search, see the
curves and the layer x block map; for small models compare dense vs pruned next-token top-5."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import gradio as gr

from workbench.appkit import MAX_TEXT, keep_choice, md_code, num, table, too_long
from workbench.common.io import read_json
from workbench.common.rundir import list_runs, runs_root
from workbench.viz.pruning import importance_curve, order_map, ppl_vs_ratio

KIND = "blockpruner"
MAKE_RUN = ".venv/bin/python -c \"from workbench.pruning import PruningConfig, run_blockpruner; " \
           "run_blockpruner(PruningConfig.from_preset('smoke'))\""
MAX_LIVE_PARAMS = 1_000_000_000


def run_choices(root: str | Path | None) -> list[str]:
    base = runs_root(root)
    return [str(p.relative_to(base)) for p in list_runs(KIND, base)]


def load_run(root: str | Path | None, rel: str) -> dict[str, Any]:
    path = runs_root(root) / rel
    metrics = read_json(path / "metrics.json")
    steps = {m: read_json(path / "artifacts" / f"{m}_steps.json")
             for m in metrics.get("methods", ["blockpruner"])
             if (path / "artifacts" / f"{m}_steps.json").exists()}
    return {"path": path, "metrics": metrics, "steps": steps}


def step_view(root: str | Path | None, rel: str | None, step: int):
    """(markdown summary, importance curve, order map, ppl-vs-ratio figure) at `step`."""
    if not rel:
        return f"No finished run. Make one with:\n\n`{MAKE_RUN}`", None, None, None
    run = load_run(root, rel)
    steps = run["steps"].get("blockpruner") or next(iter(run["steps"].values()), [])
    if not steps:
        return f"Run {md_code(rel)} saved no search steps (`artifacts/*_steps.json`).", None, None, None
    step = max(1, min(int(step or 1), len(steps)))
    s = steps[step - 1]
    gone = ", ".join(f"{k.upper()} {i}" for k, i in s["set"])
    md = (f"**Step {step}/{len(steps)}** — removed {len(s['set'])} blocks: {gone}  \n"
          f"calibration PPL **{s['ppl']:.3f}**, parameter ratio **{100 * s['ratio']:.2f} %**")
    n_layers = run["metrics"].get("n_layers") or 1 + max(i for _, i in steps[-1]["set"])
    return (md, importance_curve(steps, upto=step), order_map(steps, n_layers, upto=step),
            ppl_vs_ratio(run["steps"]))


@functools.lru_cache(maxsize=2)
def _model(name: str):
    from workbench.common.models import load_causal_lm

    return load_causal_lm(name)


def compare_next_token(root: str | Path | None, rel: str | None, step: int, text: str
                       ) -> tuple[list[list[Any]], list[list[Any]]]:
    """Top-5 next tokens of the dense and the pruned (at `step`) model: rows [token, prob]."""
    import torch

    from workbench.pruning.blocks import BlockModel

    if not rel or not (text or "").strip():
        return [], []
    if too_long(text, MAX_TEXT, "Sentence"):
        return [[too_long(text, MAX_TEXT, "Sentence"), None]], []
    run = load_run(root, rel)
    steps = run["steps"].get("blockpruner") or next(iter(run["steps"].values()), [])
    if not steps or "model" not in run["metrics"]:
        return [["this run saved no search steps or model name", None]], []
    model, tok = _model(run["metrics"]["model"])
    if sum(p.numel() for p in model.parameters()) > MAX_LIVE_PARAMS:
        return [["model too large for live comparison", None]], []
    removed = [tuple(b) for b in steps[max(1, min(int(step), len(steps))) - 1]["set"]]
    ids = tok(text, return_tensors="pt").input_ids
    out = []
    with torch.no_grad(), BlockModel(model) as bm:
        for rem in ([], removed):
            with bm.removed(rem):
                p = model(input_ids=ids).logits[0, -1].float().softmax(-1)
            top = p.topk(5)
            out.append([[tok.decode([int(i)]), num(float(v))]
                        for v, i in zip(top.values, top.indices, strict=True)])
    return out[0], out[1]


def results_view(root: str | Path | None, rel: str | None):
    """The run's result table (metrics.json `table`): CIs folded in as "x [lo, hi]", n kept."""
    rows = load_run(root, rel)["metrics"].get("table") if rel else None
    if not isinstance(rows, list) or not rows:
        return gr.update(value=None, headers=None)
    heads, values = table(rows)
    return gr.update(value=values, headers=heads)


def n_steps(root: str | Path | None, rel: str | None) -> int:
    """Search steps of a run's main method (0 when nothing is picked)."""
    if not rel:
        return 0
    steps = load_run(root, rel)["steps"]
    return len(steps.get("blockpruner") or next(iter(steps.values()), []))


def build_app(runs_root: Path | None = None) -> gr.Blocks:
    root = runs_root
    choices = run_choices(root)
    first = choices[0] if choices else None
    n_first = n_steps(root, first)
    with gr.Blocks(title="BlockPruner: block-importance explorer") as app:
        gr.Markdown("## BlockPruner — block-importance explorer")
        if not choices:
            gr.Markdown(f"No finished BlockPruner runs yet. Make one with `{MAKE_RUN}`")
        with gr.Row():
            pick = gr.Dropdown(choices, value=first, label="run", elem_id="bp-run", scale=3)
            refresh = gr.Button("Refresh", scale=1, elem_id="bp-refresh")
            step = gr.Slider(1, max(n_first, 2), value=max(n_first, 1), step=1,
                             label="search step", elem_id="bp-step", scale=3)
        summary = gr.Markdown(elem_id="bp-summary")
        with gr.Row():
            curve = gr.Plot(label="importance curve")
            ratio = gr.Plot(label="PPL vs ratio")
        omap = gr.Plot(label="removal order map")
        results = gr.Dataframe(label="this run's results (95% CI where the run gives one)",
                               interactive=False, elem_id="bp-results")
        with gr.Row():
            text = gr.Textbox(label=f"sentence (small models: dense vs pruned next token; max "
                              f"{MAX_TEXT} characters)", value="The capital of France is",
                              max_length=MAX_TEXT, elem_id="bp-text")
            go_btn = gr.Button("compare", elem_id="bp-compare")
        with gr.Row():
            dense = gr.Dataframe(headers=["token", "prob"], label="dense top-5", elem_id="bp-dense",
                                 interactive=False)
            pruned = gr.Dataframe(headers=["token", "prob"], label="pruned top-5",
                                  elem_id="bp-pruned", interactive=False)

        def _show(rel, k):
            return step_view(root, rel, k)

        def _pick(rel):
            n = n_steps(root, rel)  # the slider spans this run's steps (2 at least: Gradio)
            return gr.update(minimum=1, maximum=max(n, 2), value=max(n, 1))

        def relist(current):
            now = run_choices(root)
            return gr.update(choices=now, value=keep_choice(now, current))

        refresh.click(relist, pick, pick)
        app.refresh_runs = (relist, [pick], [pick])
        pick.change(_pick, pick, step)
        step.change(_show, [pick, step], [summary, curve, omap, ratio])
        app.load(_show, [pick, step], [summary, curve, omap, ratio])
        pick.change(lambda rel: results_view(root, rel), pick, results)
        app.load(lambda rel: results_view(root, rel), pick, results)
        go_btn.click(lambda rel, k, t: compare_next_token(root, rel, k, t), [pick, step, text],
                     [dense, pruned])
    return app
