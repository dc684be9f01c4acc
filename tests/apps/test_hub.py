"""The Gradio hub: builds without launching, serves on loopback, and works in a real Chromium."""

from __future__ import annotations

import pytest

from tests.conftest import screenshot
from workbench.apphub import build_hub, describe_run, run_choices
from workbench.common.rundir import RunDir


@pytest.fixture
def runs(tmp_path):
    root = tmp_path / "runs"
    run = RunDir.create({"output_dir": str(root), "run_name": "demo-run", "preset": "smoke",
                         "seed": 1}, "blockpruner")
    run.finish({"ppl": 12.5, "table": [{"method": "Dense", "ppl": 10.0},
                                       {"method": "BlockPruner", "ppl": 12.5}]})
    RunDir.create({"output_dir": str(root), "run_name": "killed", "seed": 1}, "blockpruner")
    return root


def test_run_listing_and_description(runs):
    assert run_choices(runs) == ["blockpruner/demo-run"]  # incomplete runs are hidden
    cfg, table, scalars = describe_run(runs, "blockpruner/demo-run")
    assert cfg["preset"] == "smoke" and table[1]["method"] == "BlockPruner"
    assert scalars == {"ppl": 12.5}


def test_hub_builds_without_launching(runs):
    hub = build_hub(runs)
    assert hub.title == "Paper workbench"
    assert not getattr(hub, "is_running", False)


def test_hub_served_on_loopback_answers_client(runs, launch_app):
    from gradio_client import Client

    url = launch_app(build_hub(runs))
    assert url.startswith("http://127.0.0.1:")
    client = Client(url, verbose=False)
    cfg, table, scalars = client.predict("blockpruner/demo-run", api_name="/show_run")
    assert cfg["run_name"] == "demo-run" and scalars["ppl"] == 12.5
    table = table.get("value", table)  # the callback returns a gr.update
    assert table["headers"] == ["method", "ppl"]
    assert [row[0] for row in table["data"]] == ["Dense", "BlockPruner"]


@pytest.mark.browser
def test_hub_in_chromium(runs, launch_app, browser_page):
    url = launch_app(build_hub(runs))
    page = browser_page
    page.goto(url, wait_until="domcontentloaded", timeout=60_000)
    page.get_by_text("Finished runs").wait_for(timeout=60_000)
    # the run picker starts on the only complete run, whose table loads with the page
    page.locator("#run-table").get_by_text("BlockPruner").filter(visible=True).first.wait_for(timeout=20_000)
    shot = screenshot(page, "hub_runs")
    assert page.locator("#run-metrics").get_by_text("12.5").count() >= 1
    page.get_by_role("tab", name="Models & data").click()
    page.locator("#check-status").click()
    page.locator("#models-table").get_by_text("tiny:llama").filter(visible=True).first.wait_for(timeout=30_000)
    assert shot.stat().st_size > 10_000
