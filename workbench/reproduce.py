"""Batch reproduction: execute the paper notebooks with papermill, then write one HTML report.

    workbench reproduce all --profile quick            # every notebook that exists
    workbench reproduce blockpruner --profile cpu -p num_blocks=8
"""

from __future__ import annotations

import html
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from workbench.common.config import PROFILES
from workbench.common.io import atomic_write_text, read_json, read_yaml, write_json
from workbench.common.papers import PAPERS
from workbench.common.registry import did_you_mean

log = logging.getLogger(__name__)

# notebook name -> paper title
NOTEBOOKS: dict[str, str] = {p.kind: p.title for p in PAPERS}


def project_root() -> Path:
    return Path(__file__).resolve().parents[1]


def notebooks_dir() -> Path:
    return Path(os.environ.get("WORKBENCH_NOTEBOOKS") or project_root() / "notebooks")


@dataclass
class NotebookOutcome:
    name: str
    status: str  # ok | failed | missing
    seconds: float = 0.0
    output: str | None = None
    error: str | None = None
    runs: list[str] = field(default_factory=list)


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """`key=value` strings -> dict, values parsed as YAML literals (`4`, `true`, `[1,2]`, `null`)."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ValueError(f"parameter {pair!r}: expected key=value")
        key, value = pair.split("=", 1)
        out[key.strip()] = yaml.safe_load(value)
    return out


def select_notebooks(name: str) -> list[str]:
    if name == "all":
        return list(NOTEBOOKS)
    if name not in NOTEBOOKS:
        raise ValueError(
            f"unknown notebook {name!r}.{did_you_mean(name, list(NOTEBOOKS))} "
            f"Available: all, {', '.join(NOTEBOOKS)}"
        )
    return [name]


def run_notebook(name: str, profile: str, results: Path, params: dict[str, Any],
                 timeout: int | None = None) -> NotebookOutcome:
    import papermill as pm

    src = notebooks_dir() / f"{name}.ipynb"
    if not src.exists():
        return NotebookOutcome(name, "missing", error=f"{src} does not exist yet")
    runs_dir = results / "runs"
    out = results / f"{name}.ipynb"
    parameters = {"preset": profile, "output_dir": str(runs_dir.resolve()), **params}
    # the kernel must be this interpreter (the project's venv), whatever PATH says
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    t0 = time.time()
    log.info("executing %s (profile %s)", src.name, profile)
    try:
        pm.execute_notebook(
            str(src), str(out), parameters=parameters, kernel_name="python3",
            cwd=str(results), progress_bar=False, execution_timeout=timeout,
        )
    except Exception as e:  # papermill raises its own error types; the report shows the message
        return NotebookOutcome(name, "failed", time.time() - t0, str(out), _short(e),
                               _runs_of(runs_dir, name))
    return NotebookOutcome(name, "ok", time.time() - t0, str(out), None, _runs_of(runs_dir, name))


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    tail = [ln for ln in text if ln.strip()][-6:]
    return f"{type(e).__name__}: " + " | ".join(tail)


def _runs_of(runs_dir: Path, name: str) -> list[str]:
    folder = runs_dir / name
    if not folder.exists():
        return []
    return sorted(str(p.parent) for p in folder.glob("**/metrics.json"))


def reproduce(name: str = "all", profile: str = "quick", results: str | Path = "results",
              params: dict[str, Any] | None = None, timeout: int | None = None) -> list[NotebookOutcome]:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}.{did_you_mean(profile, PROFILES)} "
                         f"Available: {', '.join(PROFILES)}")
    results = Path(results)
    results.mkdir(parents=True, exist_ok=True)
    outcomes = []
    for nb in select_notebooks(name):
        outcome = run_notebook(nb, profile, results, params or {}, timeout)
        log.info("%s: %s in %.0f s%s", nb, outcome.status, outcome.seconds,
                 f" ({outcome.error})" if outcome.error else "")
        outcomes.append(outcome)
    write_json(results / "summary.json", {
        "profile": profile, "params": params or {},
        "notebooks": [o.__dict__ for o in outcomes],
    })
    write_report(results, outcomes, profile)
    return outcomes


# ------------------------------------------------------------------------------------------
# HTML report
# ------------------------------------------------------------------------------------------
def load_anchors(name: str) -> dict[str, Any] | None:
    path = Path(__file__).parent / "anchors" / f"{name}.yaml"
    return read_yaml(path) if path.exists() else None


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | dict):
        return html.escape(json.dumps(v)[:200])
    return html.escape(str(v))


def html_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "<p><em>(empty)</em></p>"
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def run_section(run_dir: Path) -> str:
    metrics = read_json(run_dir / "metrics.json")
    parts = [f"<h4>run <code>{html.escape(run_dir.name)}</code></h4>"]
    cfg_path = run_dir / "config.yaml"
    if cfg_path.exists():
        cfg = read_yaml(cfg_path) or {}
        keep = {k: v for k, v in cfg.items() if not isinstance(v, dict | list) or len(str(v)) < 80}
        parts.append(f"<details><summary>config</summary>{html_table([keep])}</details>")
    if isinstance(metrics.get("table"), list):
        parts.append(html_table(metrics["table"]))
    scalars = {k: v for k, v in metrics.items() if k != "table" and not isinstance(v, dict | list)}
    if scalars:
        parts.append(html_table([scalars]))
    return "\n".join(parts)


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1200px}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;
font-size:13px}th{background:#f3f3f3}.ok{color:#070}.failed{color:#b00}.missing{color:#888}"""


def write_report(results: Path, outcomes: list[NotebookOutcome], profile: str) -> Path:
    parts = [f"<html><head><meta charset='utf-8'><title>Workbench report ({profile})</title>"
             f"<style>{_CSS}</style></head><body>",
             f"<h1>Workbench reproduction report — profile <code>{html.escape(profile)}</code></h1>",
             html_table([{"notebook": o.name, "status": o.status, "seconds": round(o.seconds, 1),
                          "runs": len(o.runs), "note": o.error or ""} for o in outcomes])]
    for o in outcomes:
        parts.append(f"<h2>{html.escape(NOTEBOOKS[o.name])}</h2>")
        parts.append(f"<p class='{o.status}'>status: {o.status}"
                     + (f" — executed notebook: <a href='{o.name}.ipynb'>{o.name}.ipynb</a>"
                        if o.output else "") + "</p>")
        if o.error:
            parts.append(f"<pre>{html.escape(o.error)}</pre>")
        for run in o.runs:
            parts.append(run_section(Path(run)))
        anchors = load_anchors(o.name)
        if anchors:
            parts.append(f"<h3>The paper's numbers</h3><p>{html.escape(anchors.get('title', ''))}"
                         f" — source: {html.escape(anchors.get('source', ''))}</p>")
            parts.append(html_table(anchors.get("table", [])))
    parts.append("</body></html>")
    return atomic_write_text(results / "report.html", "\n".join(parts))
