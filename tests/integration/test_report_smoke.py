"""Claim verdicts and the report from a real `smoke` run (BlockPruner: seconds on tiny:llama)."""

from types import SimpleNamespace

import pytest

from workbench.eval.stats import VERDICTS
from workbench.report.claims import NOT_EVALUATED, paper_claims, run_claims


@pytest.mark.slow
def test_blockpruner_smoke_claims_and_report(tmp_path, monkeypatch):
    import torch

    from workbench.pruning import PruningConfig, run_blockpruner
    from workbench.report.page import write_report

    monkeypatch.setenv("WORKBENCH_PROGRESS", "0")
    torch.set_num_threads(1)
    res = run_blockpruner(PruningConfig.from_preset("smoke", output_dir=str(tmp_path / "runs")))
    results = run_claims("blockpruner", res.run_dir)
    assert len(results) == len(paper_claims("blockpruner"))
    for r in results:  # every claim finds its rows in a real run and gets a verdict
        assert r.verdict in VERDICTS and r.verdict != NOT_EVALUATED, (r.text, r.note)
        assert r.estimate is not None and r.what
    outcome = SimpleNamespace(name="blockpruner", status="ok", seconds=1.0, output=None,
                              error=None, runs=[str(res.run_dir)])
    page = write_report(tmp_path, [outcome], "smoke").read_text()
    assert results[0].text.replace("'", "&#x27;") in page and "Scale:</b> profile smoke" in page
