"""Batch reproduction: execute the paper notebooks with papermill, then write one HTML report.

    workbench reproduce all --profile quick            # every notebook that exists
    workbench reproduce blockpruner --profile cpu -p num_blocks=8
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from workbench.common.config import PROFILES
from workbench.common.io import write_json
from workbench.common.papers import PAPERS
from workbench.common.registry import did_you_mean
from workbench.report.anchors import load_anchors  # noqa: F401  (re-exported: its old home)

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
    # the kernel inherits it: one summary line per loop instead of progress-bar updates
    os.environ.setdefault("WORKBENCH_PROGRESS", "summary")
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
        from workbench.nbparams import params_for

        outcome = run_notebook(nb, profile, results, params_for(nb, params or {}), timeout)
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
# HTML report: workbench.report (claims with verdicts, tables with n and CIs, figures)
# ------------------------------------------------------------------------------------------
def write_report(results: Path, outcomes: list[NotebookOutcome], profile: str) -> Path:
    from workbench.report.page import write_report as _write

    return _write(results, outcomes, profile, titles=NOTEBOOKS)
