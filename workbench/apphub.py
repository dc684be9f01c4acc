"""The Gradio hub: a Runs tab, one tab per paper's `build_app()`, and a Models & data tab.

Each paper app is built as its own `gr.Blocks` first and rendered exactly once inside its tab
(Gradio's way to compose Blocks: the app's components and events move into the hub; building it
inside the tab *and* calling `.render()` would draw it twice, cross-wired). An app that sets
`app.refresh_runs = (fn, inputs, outputs)` gets its run lists refreshed whenever its tab is
selected (each app also has its own Refresh button).

`workbench app` launches it on 127.0.0.1 with analytics off; it works with no internet.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from workbench.appkit import keep_choice, rounded, table  # noqa: E402
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
    if not (folder / "metrics.json").exists():
        return {}, [], {"error": f"{rel}: no finished run there (refresh the list)"}
    metrics = read_json(folder / "metrics.json")
    rows = metrics.get("table") if isinstance(metrics.get("table"), list) else []
    scalars = {k: v for k, v in metrics.items() if k != "table"}
    return read_yaml(folder / "config.yaml"), rows, scalars


def table_update(rows: list[dict[str, Any]]):
    """A `gr.Dataframe` update showing row dicts readably (rounded floats, CIs folded)."""
    if not rows:
        return gr.update(value=None, headers=None)
    heads, values = table(rows)
    return gr.update(value=values, headers=heads)


def build_runs_tab(root: str | Path | None, hub: gr.Blocks):
    """The Runs tab; returns its (refresh fn, inputs, outputs) for the tab's select event."""
    choices = run_choices(root)
    gr.Markdown("### Finished runs\nEvery run directory with a `metrics.json` (complete runs only).")
    if not choices:
        gr.Markdown(EMPTY_HINT.format(root=runs_root(root)))
    with gr.Row():
        picker = gr.Dropdown(choices=choices, value=choices[0] if choices else None,
                             label="Run", elem_id="run-picker", scale=4)
        refresh = gr.Button("Refresh", scale=1, elem_id="run-refresh")
    tbl = gr.Dataframe(label="Result table (95% CI where the run gives one)", interactive=False,
                       elem_id="run-table")
    with gr.Row():
        config = gr.JSON(label="config.yaml")
        scalars = gr.JSON(label="metrics.json", elem_id="run-metrics")

    def show(rel):
        cfg, rows, sc = describe_run(root, rel)
        return cfg, table_update(rows), rounded(sc)

    def relist(current):
        now = run_choices(root)
        return gr.update(choices=now, value=keep_choice(now, current))

    picker.change(show, picker, [config, tbl, scalars], api_name="show_run")
    hub.load(show, picker, [config, tbl, scalars])
    refresh.click(relist, picker, picker)
    return relist, [picker], [picker]


def model_rows() -> list[list[Any]]:
    from workbench.common import models

    return [[r["name"], r["ready"], r.get("kind", ""), r.get("vocab", ""),
             r.get("chat_template", "")] for r in map(models.describe, models.all_model_names())]


def data_rows() -> list[list[Any]]:
    from workbench.data import corpus_status

    return [[r["name"], r["available"], str(r.get("rows", "")), str(r.get("where", ""))[:120]]
            for r in corpus_status()]


def build_status_tab(tab: gr.Tab) -> None:
    gr.Markdown("### Models and data available offline\nFilled when this tab opens; **Check** "
                "looks again.")
    mt = gr.Dataframe(headers=["model", "ready", "kind", "vocab", "chat template"],
                      interactive=False, elem_id="models-table")
    dt = gr.Dataframe(headers=["corpus", "available", "rows", "where"], interactive=False,
                      elem_id="data-table")
    btn = gr.Button("Check", elem_id="check-status")
    btn.click(model_rows, None, mt).then(data_rows, None, dt)
    tab.select(model_rows, None, mt).then(data_rows, None, dt)


def build_hub(root: str | Path | None = None) -> gr.Blocks:
    """Build (never launch) the hub."""
    apps: list[tuple[str, str, gr.Blocks]] = []
    for paper in PAPERS:  # each paper app is built on its own, then rendered once in its tab
        module = optional_import(f"{paper.package}.app")
        if module is not None:
            apps.append((paper.tab, paper.kind, module.build_app(Path(root) if root else None)))
    with gr.Blocks(title="Paper workbench", analytics_enabled=False) as hub:
        gr.Markdown("# Paper workbench\nFuseChat · BlockPruner · SEFT · toxic spans")
        with gr.Tab("Runs", id="runs") as runs_tab:
            fn, inputs, outputs = build_runs_tab(root, hub)
        runs_tab.select(fn, inputs, outputs)
        for title, kind, app in apps:
            with gr.Tab(title, id=kind, elem_id=f"tab-{kind}") as tab:
                app.render()
            refresh = getattr(app, "refresh_runs", None)
            if refresh is not None:
                tab.select(*refresh)
        with gr.Tab("Models & data", id="status") as status_tab:
            build_status_tab(status_tab)
    return hub


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """`user:pass` -> (user, pass) for Gradio's login page; None when not given."""
    if value is None:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError("--auth: expected user:password (both non-empty)")
    return user, password
