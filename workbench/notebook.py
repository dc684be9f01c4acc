"""Notebook set-up and tables, one call each, so every notebook reads the same anywhere.

    from workbench.notebook import setup_notebook, show_claims, show_comparison, show_table
    setup_notebook()                      # logging, plotly renderer, progress, pandas display

- Figures: the plotly renderer ``plotly_mimetype+notebook`` saves each figure twice: the
  interactive plotly JSON (JupyterLab) and an HTML fallback with plotly.js inlined once per
  notebook, so nbconvert's HTML and other viewers without the plotly extension show them offline.
- Tables: `show_table` returns a pandas DataFrame of display strings (a value and its CI in one
  cell, n kept, percent labelled; `workbench.report.tables`), which saves as HTML.
- Progress: under ``WORKBENCH_PROGRESS=summary`` (set by ``workbench reproduce``: papermill)
  every workbench loop prints one line when it ends and the libraries' own bars are off.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

RENDERER = "plotly_mimetype+notebook"


def setup_notebook(level: int | str = "INFO") -> None:
    """Logging to stderr, the plotly renderer, quiet library progress bars (unless bars are
    wanted), pandas showing every column."""
    import pandas as pd
    import plotly.io as pio

    from workbench.common.runtime import progress_mode, quiet_library_progress, setup_logging

    setup_logging(level)
    pio.renderers.default = RENDERER
    if progress_mode() != "bar":
        quiet_library_progress()
    pd.set_option("display.max_columns", 60)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_colwidth", 80)
    pd.set_option("display.precision", 3)  # no 16-digit floats in plain DataFrames either


def _units(paper: str | None) -> tuple[list[str], list[str]]:
    from workbench.report.anchors import load_anchors

    a = (load_anchors(paper) or {}) if paper else {}
    return list(a.get("percent") or []), list(a.get("percent_already") or [])


def show_table(rows: Sequence[dict[str, Any]], paper: str | None = None,
               columns: Sequence[str] | None = None):
    """A DataFrame for display: each metric with its CI in one cell, n columns kept, no
    None/-0, percent columns labelled (and fractions shown x100) per the paper's anchors.
    `columns`: keep only these source columns (with their CI columns)."""
    import pandas as pd

    from workbench.report.tables import display_rows

    rows = list(rows)
    if columns is not None:
        keep = set(columns) | {f"{c}_{p}" for c in columns for p in ("lo", "hi", "stderr", "n")}
        rows = [{k: v for k, v in r.items() if k in keep} for r in rows]
    pct, already = _units(paper)
    return pd.DataFrame(display_rows(rows, pct, already))


def show_claims(paper: str, run_dir: str | Path):
    """The paper's claims on this run: verdict, estimate with its 95 % CI, n (a DataFrame)."""
    import pandas as pd

    from workbench.report.claims import run_claims
    from workbench.report.page import claim_rows

    rows = claim_rows(run_claims(paper, run_dir))
    return pd.DataFrame(rows) if rows else pd.DataFrame([{"claim": "(no claims declared)"}])


def show_comparison(paper: str, metrics: dict[str, Any]):
    """This run's table (n, CIs) beside the paper's own numbers, as HTML."""
    from html import escape

    from IPython.display import HTML

    from workbench.report.anchors import load_anchors
    from workbench.report.page import anchor_html
    from workbench.report.tables import display_rows, html_table

    anchors = load_anchors(paper) or {}
    pct, already = _units(paper)
    ours = html_table(display_rows(metrics.get("table") or [], pct, already))
    note = escape(anchors.get("comparison_note", ""))
    split = (f"<b>Ours: {escape(anchors['our_split'])}; the paper's: "
             f"{escape(str(anchors.get('paper_split')))}.</b> "
             if anchors.get("our_split") else "")
    return HTML(f"<p>{split}{note}</p><div style='display:flex;flex-wrap:wrap;gap:2em'>"
                f"<div><h4>This run</h4>{ours}</div><div><h4>The paper</h4>"
                f"{anchor_html(anchors)}</div></div>")
