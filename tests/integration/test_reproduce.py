"""`workbench reproduce`: papermill execution, run collection, the HTML report."""

from __future__ import annotations

import json

import nbformat
import pytest

from workbench import reproduce as rp
from workbench.cli import main


def _write_notebook(folder, name, body):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('preset = "smoke"\noutput_dir = None\nseed = 0')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {name}"), params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / f"{name}.ipynb")


@pytest.mark.slow
def test_reproduce_runs_notebooks_and_writes_report(tmp_path, monkeypatch):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _write_notebook(nbs, "blockpruner", (
        "from workbench.common import RunDir\n"
        "run = RunDir.create({'output_dir': output_dir, 'preset': preset, 'seed': seed}, 'blockpruner')\n"
        "run.finish({'ppl': 12.5, 'table': [{'method': 'Dense', 'ppl': 10.0}, {'method': 'BlockPruner', 'ppl': 12.5}]})"))
    _write_notebook(nbs, "seft", "raise RuntimeError('boom in cell')")
    monkeypatch.setenv("WORKBENCH_NOTEBOOKS", str(nbs))
    results = tmp_path / "results"
    code = main(["reproduce", "all", "--profile", "smoke", "--results", str(results), "-p", "seed=3"])
    assert code == 1  # one notebook failed
    summary = json.loads((results / "summary.json").read_text())
    status = {n["name"]: n["status"] for n in summary["notebooks"]}
    assert status == {"blockpruner": "ok", "fusechat": "missing", "seft": "failed",
                      "toxic_spans": "missing"}
    assert summary["params"] == {"seed": 3}
    report = (results / "report.html").read_text()
    assert "BlockPruner" in report and "<td>12.50</td>" in report and "boom in cell" in report
    assert (results / "blockpruner.ipynb").exists()
    cfg = (results / "runs" / "blockpruner").glob("*/config.yaml")
    assert "seed: 3" in next(cfg).read_text()


def test_reproduce_bad_input():
    with pytest.raises(ValueError, match=r"unknown profile 'quik'.*Did you mean: quick"):
        rp.reproduce("all", "quik")
    with pytest.raises(ValueError, match=r"unknown notebook 'blockprune'.*Did you mean: blockpruner"):
        rp.select_notebooks("blockprune")
    with pytest.raises(ValueError, match="expected key=value"):
        rp.parse_params(["seed"])
    assert rp.parse_params(["n=4", "x=[1, 2]", "m=null", "s=abc"]) == {
        "n": 4, "x": [1, 2], "m": None, "s": "abc"}


def test_cli_errors_are_one_line(capsys):
    assert main(["models", "prepare", "smollm"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Did you mean: smollm2-135m-instruct" in err
