"""The Gradio hub: a Runs tab, a Models & data tab, and one tab per paper's `build_app()`.

`workbench app` launches it on 127.0.0.1 with analytics off; it works with no internet.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from workbench.common.io import read_json, read_yaml  # noqa: E402
from workbench.common.papers import PAPERS, optional_import  # noqa: E402
from workbench.common.rundir import list_runs, runs_root  # noqa: E402

log = logging.getLogger(__name__)

# tab title -> module with build_app(runs_root)
PAPER_APPS: dict[str, str] = {p.tab: f"{p.package}.app" for p in PAPERS}

EMPTY_HINT = ("No finished runs under `{root}` yet. Make some with "
              "`workbench reproduce all --profile smoke --results results` and launch "
              "`workbench app --runs results/runs`.")


def run_choices(root: str | Path | None) -> list[str]:
    base = runs_root(root)
    return [str(p.relative_to(base)) for p in list_runs(None, base)]


def describe_run(root: str | Path | None, rel: str | None) -> tuple[Any, list[list[Any]], Any]:
    """(config dict, metrics table rows, scalar metrics) for the Runs tab."""
    if not rel:
        return {}, [], {}
    folder = runs_root(root) / rel
    metrics = read_json(folder / "metrics.json")
    table = metrics.get("table") if isinstance(metrics.get("table"), list) else []
    scalars = {k: v for k, v in metrics.items() if k != "table"}
    return read_yaml(folder / "config.yaml"), table, scalars


def _table_update(rows: list[dict[str, Any]]):
    if not rows:
        return gr.update(value=None, headers=None)
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    return gr.update(value=[[r.get(c, "") for c in cols] for r in rows], headers=cols)


def build_runs_tab(root: str | Path | None, hub: gr.Blocks) -> None:
    choices = run_choices(root)
    gr.Markdown("### Finished runs\nEvery run directory with a `metrics.json` (complete runs only).")
    if not choices:
        gr.Markdown(EMPTY_HINT.format(root=runs_root(root)))
    with gr.Row():
        picker = gr.Dropdown(choices=choices, value=choices[0] if choices else None,
                             label="Run", elem_id="run-picker", scale=4)
        refresh = gr.Button("Refresh", scale=1)
    table = gr.Dataframe(label="Result table", interactive=False, elem_id="run-table")
    with gr.Row():
        config = gr.JSON(label="config.yaml")
        scalars = gr.JSON(label="metrics.json", elem_id="run-metrics")

    def show(rel):
        cfg, rows, sc = describe_run(root, rel)
        return cfg, _table_update(rows), sc

    picker.change(show, picker, [config, table, scalars], api_name="show_run")
    hub.load(show, picker, [config, table, scalars])
    refresh.click(lambda: gr.update(choices=run_choices(root)), None, picker)


def build_status_tab() -> None:
    from workbench.common import models

    def model_rows():
        return [[r["name"], r["ready"], r.get("kind", ""), r.get("vocab", ""),
                 r.get("chat_template", "")] for r in map(models.describe, models.all_model_names())]

    def data_rows():
        from workbench.data import corpus_status

        return [[r["name"], r["available"], str(r.get("rows", "")), str(r.get("where", ""))[:120]]
                for r in corpus_status()]

    gr.Markdown("### Models and data available offline")
    mt = gr.Dataframe(headers=["model", "ready", "kind", "vocab", "chat template"],
                      interactive=False, elem_id="models-table")
    dt = gr.Dataframe(headers=["corpus", "available", "rows", "where"], interactive=False)
    btn = gr.Button("Check", elem_id="check-status")
    btn.click(model_rows, None, mt).then(data_rows, None, dt)


def build_hub(root: str | Path | None = None) -> gr.Blocks:
    """Build (never launch) the hub."""
    with gr.Blocks(title="Paper workbench", analytics_enabled=False) as hub:
        gr.Markdown("# Paper workbench\nFuseChat · BlockPruner · SEFT · toxic spans")
        with gr.Tab("Runs", id="runs"):
            build_runs_tab(root, hub)
        for title, mod in PAPER_APPS.items():
            module = optional_import(mod)
            if module is None:
                continue
            with gr.Tab(title):
                module.build_app(Path(root) if root else None).render()
        with gr.Tab("Models & data", id="status"):
            build_status_tab()
    return hub
