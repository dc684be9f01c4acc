"""Every paper notebook: the style contract, then a papermill run on the `smoke` profile."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import os
import sys
from pathlib import Path

import nbformat
import pytest

from workbench.common.config import RunConfig
from workbench.common.papers import PAPERS
from workbench.reproduce import NOTEBOOKS, notebooks_dir

PACKAGES = {p.kind: p.package for p in PAPERS}
EXISTING = [n for n in NOTEBOOKS if (notebooks_dir() / f"{n}.ipynb").exists()]


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def config_fields(name: str) -> set[str]:
    importlib.import_module(PACKAGES[name])
    fields: set[str] = set()
    for cls in _subclasses(RunConfig):
        if name == cls.PRESETS:
            fields |= {f.name for f in dataclasses.fields(cls)}
    return fields


@pytest.mark.parametrize("name", list(PACKAGES))
def test_every_paper_package_imports_and_has_presets(name):
    importlib.import_module(PACKAGES[name])
    assert (Path(__file__).resolve().parents[2] / "workbench" / "presets" / f"{name}.yaml").exists() \
        or name not in EXISTING


@pytest.mark.parametrize("name", EXISTING)
def test_notebook_contract(name):
    nb = nbformat.read(notebooks_dir() / f"{name}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert nb.cells[0].cell_type == "markdown", "first cell explains the paper"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged `parameters`"
    names = {t.id for node in ast.parse(tagged[0].source).body if isinstance(node, ast.Assign)
             for t in node.targets if isinstance(t, ast.Name)}
    assert {"preset", "output_dir"} <= names
    fields = config_fields(name)
    assert fields, f"no RunConfig subclass with PRESETS = {name!r}"
    assert names <= fields, f"parameters that are not config fields: {sorted(names - fields)}"
    for cell in code:
        tree = ast.parse(cell.source.replace("%", "#").replace("!", "#"))
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)], \
            "notebooks hold no def/class"
        assert not cell.get("outputs"), "outputs are stripped before commit"


@pytest.mark.parametrize("name", EXISTING)
def test_notebook_metadata_names_the_workbench_kernel(name):
    nb = nbformat.read(notebooks_dir() / f"{name}.ipynb", as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "workbench"
    assert nb.metadata["kernelspec"]["display_name"] == "Python (workbench)"


PLOTLY = "application/vnd.plotly.v1+json"


def check_readable_anywhere(nb) -> None:
    """What a reader without Jupyter sees: every plotly figure has an HTML fallback that
    nbconvert keeps (plotly.js inlined once), every table is HTML, no output floods."""
    from nbconvert import HTMLExporter

    figures = tables = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        streams = [o for o in cell.outputs if o.output_type == "stream"]
        text = "".join(o.text for o in streams)
        assert text.count("\n") <= 100, \
            f"cell floods its output ({len(streams)} streams, {text.count(chr(10))} lines): " \
            f"{cell.source[:60]!r}"
        assert "\r" not in text, f"progress bar updates saved in the output: {cell.source[:60]!r}"
        assert "IProgress not found" not in text, "tqdm's ipywidgets warning in the output"
        for o in cell.outputs:
            data = o.get("data", {})
            if PLOTLY in data:
                figures += 1
                assert "text/html" in data or "image/png" in data, \
                    f"a figure without a static/HTML fallback: {cell.source[:60]!r}"
            if "text/html" in data and "<table" in data["text/html"]:
                tables += 1
    body, _ = HTMLExporter().from_notebook_node(nb)
    assert body.count("Plotly.newPlot") >= figures, "a figure is missing from nbconvert's HTML"
    assert figures and tables, "the notebook shows no figure or no HTML table"
    assert "plotly.js v" in body or "plotly-latest" in body or "Plotly=" in body or \
        body.count("Plotly") > figures, "plotly.js is not in the converted HTML"


@pytest.mark.slow
@pytest.mark.parametrize("name", EXISTING)
def test_notebook_runs_on_smoke(name, tmp_path, monkeypatch):
    import papermill as pm

    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    monkeypatch.setenv("WORKBENCH_PROGRESS", "summary")  # as `workbench reproduce` runs them
    out = tmp_path / f"{name}.ipynb"
    pm.execute_notebook(str(notebooks_dir() / f"{name}.ipynb"), str(out),
                        parameters={"preset": "smoke", "output_dir": str(tmp_path / "runs")},
                        kernel_name="python3", cwd=str(tmp_path), progress_bar=False)
    runs = list((tmp_path / "runs").glob("**/metrics.json"))
    assert runs, "the notebook finished without a complete run directory"
    check_readable_anywhere(nbformat.read(out, as_version=4))
