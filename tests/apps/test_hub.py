"""The Gradio hub over smoke runs of all four papers: every component once, every event wired inside
its own tab, every tab working in a real Chromium, and no script injection through any input.

One runs root and one hub server per module (building the runs is most of the time)."""

from __future__ import annotations

import shutil
import types

import pytest

from tests.conftest import chromium_path, free_port, screenshot
from workbench.apphub import build_hub, describe_run, is_loopback, parse_auth, run_choices
from workbench.common.rundir import RunDir

PAYLOADS = ('<img src=x onerror="window.__xss=1;alert(1)">',
            '<script>window.__xss=2;alert(2)</script><b id="xss-b">bold</b>')
PAYLOAD = " ".join(PAYLOADS)
TABS = ("blockpruner", "fusechat", "seft", "toxic_spans")


def _seft_run(root, tiny_dir):
    """A finished SEFT run whose reviser is the tiny random llama (the playground only loads the
    reviser and reads metrics.json; a real SEFT smoke run takes minutes)."""
    run = RunDir.create({"output_dir": str(root), "run_name": "fake-smoke", "preset": "smoke",
                         "seed": 0, "max_length": 128}, "seft")
    shutil.copytree(tiny_dir, run.path / "checkpoints" / "reviser_final")
    run.finish({"judge": "tiny:llama", "judge_note": "a random judge " + PAYLOADS[0],
                "warnings": ["round 1: revised " + PAYLOADS[1]],
                "table": [{"model": "SFT", "judge_score": 3.123456789012345, "n": 4},
                          {"model": "SEFT round 1", "judge_score": 4.0, "n": 4}]})


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_llama_dir):
    import torch

    from workbench.fusion.config import FuseChatConfig
    from workbench.fusion.run import run_fusechat
    from workbench.pruning import PruningConfig, run_blockpruner
    from workbench.spans.train import SpansConfig, run_spans

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("hub") / "runs"
    run_spans(SpansConfig.from_preset("smoke", output_dir=str(root), heads=["cls"], train_limit=8,
                                      trial_limit=4))
    run_blockpruner(PruningConfig.from_preset("smoke", output_dir=str(root), tasks=(),
                                              baselines=("rm",), num_blocks=2, export=False))
    run_fusechat(FuseChatConfig.from_preset("smoke", output_dir=str(root), sources=("tiny:qwen2",),
                                            data_size=2, max_length=48), until="alignment")
    _seft_run(root, tiny_llama_dir)
    demo = RunDir.create({"output_dir": str(root), "run_name": "demo-run", "preset": "smoke",
                          "seed": 1}, "blockpruner")
    demo.finish({"ppl": 12.5, "note": PAYLOADS[0],
                 "table": [{"method": "Dense", "ppl": 10.0, "ppl_lo": 9.5, "ppl_hi": 10.5, "n": 8},
                           {"method": "BlockPruner " + PAYLOADS[1], "ppl": 12.512345678901234,
                            "ppl_lo": 11.0, "ppl_hi": 14.0, "n": 8}]})
    RunDir.create({"output_dir": str(root), "run_name": "killed", "seed": 1}, "blockpruner")
    return root


# ---------------------------------------------------------------------------------------------
# structure (no browser)
# ---------------------------------------------------------------------------------------------
def _layout_tabs(cfg) -> dict[int, str]:
    """component id -> the hub tab it sits in (by the tab's label)."""
    comps = {c["id"]: c for c in cfg["components"]}
    where: dict[int, str] = {}

    def walk(node, tab):
        c = comps.get(node["id"], {})
        if c.get("type") == "tabitem":
            tab = c["props"]["label"]
        where[node["id"]] = tab
        for child in node.get("children", []):
            walk(child, tab)

    walk(cfg["layout"], None)
    return where


def _layout_ids(node) -> list[int]:
    return [node["id"], *(i for c in node.get("children", []) for i in _layout_ids(c))]


def test_each_component_once_and_every_event_inside_its_tab(runs):
    cfg = build_hub(runs).get_config_file()
    ids = [c["id"] for c in cfg["components"]]
    assert len(ids) == len(set(ids)), "a component id appears twice in the hub's config"
    placed = _layout_ids(cfg["layout"])
    assert len(placed) == len(set(placed)), "a component is drawn twice"
    elem_ids = [c["props"]["elem_id"] for c in cfg["components"] if c["props"].get("elem_id")]
    assert len(elem_ids) == len(set(elem_ids))
    tabs = [c["props"]["label"] for c in cfg["components"] if c["type"] == "tabitem"]
    assert len(tabs) == len(set(tabs)) == 6  # Runs, four papers, Models & data
    where = _layout_tabs(cfg)
    for dep in cfg["dependencies"]:
        triggers = {where.get(t[0]) for t in dep["targets"]} - {None}
        outputs = {where.get(o) for o in dep["outputs"]} - {None}
        # a callback triggered in a tab writes only into that tab (page-load events aside)
        if triggers and outputs:
            assert len(outputs) == 1 and outputs == triggers, (dep["targets"], dep["outputs"])


def test_run_listing_description_and_readable_tables(runs):
    assert "blockpruner/demo-run" in run_choices(runs)
    assert "blockpruner/killed" not in run_choices(runs)  # incomplete runs are hidden
    cfg, table, scalars = describe_run(runs, "blockpruner/demo-run")
    assert cfg["preset"] == "smoke" and table[1]["method"].startswith("BlockPruner")
    from workbench.apphub import table_update

    upd = table_update(table)
    assert upd["headers"] == ["method", "ppl [95% CI]", "n"]
    assert upd["value"][1][1] == "12.51 [11, 14]"  # 4 significant digits, CI folded in
    assert describe_run(runs, "blockpruner/gone")[2]["error"].startswith("blockpruner/gone")


def test_host_and_auth_helpers():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    assert parse_auth("me:s3:cret") == ("me", "s3:cret") and parse_auth(None) is None
    with pytest.raises(ValueError, match="user:password"):
        parse_auth("me")


def test_served_hub_answers_client(runs, launch_app):
    import json
    import urllib.request

    from gradio_client import Client

    url = launch_app(build_hub(runs))
    assert url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url + "config", timeout=60) as r:  # what the browser gets
        ids = [c["id"] for c in json.load(r)["components"]]
    assert len(ids) == len(set(ids))
    cfg, table, scalars = Client(url, verbose=False).predict("blockpruner/demo-run",
                                                            api_name="/show_run")
    assert cfg["run_name"] == "demo-run" and scalars["ppl"] == 12.5
    table = table.get("value", table)  # the callback returns a gr.update
    assert [row[0] for row in table["data"]][0] == "Dense"


# ---------------------------------------------------------------------------------------------
# in Chromium: one hub server and one browser page for the module
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def hub_page(runs):
    exe = chromium_path()
    if exe is None:
        pytest.fail("Debian chromium is not installed: run scripts/setup.sh (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    hub = build_hub(runs)
    port = free_port()
    hub.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                       share=False, quiet=True, ssr_mode=False)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.dialogs = []
        page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
        page.goto(f"http://127.0.0.1:{port}/", wait_until="domcontentloaded", timeout=90_000)
        page.get_by_text("Finished runs").wait_for(timeout=90_000)
        yield page
        browser.close()
    hub.close()


def _tab(page, name: str):
    page.get_by_role("tab", name=name).click()


def _in(page, kind: str, selector: str):
    return page.locator(f"#tab-{kind} {selector}")


def _wait_text(locator, text: str, timeout: int = 60_000):
    locator.get_by_text(text).filter(visible=True).first.wait_for(timeout=timeout)


def _no_injection(page):
    assert page.dialogs == [], f"a dialog fired: {page.dialogs}"
    assert page.evaluate("window.__xss") is None
    assert page.locator('img[src="x"]').count() == 0
    assert page.locator("#xss-b").count() == 0
    assert page.evaluate("[...document.scripts].filter(s => s.text.includes('__xss')).length") == 0


@pytest.mark.browser
@pytest.mark.slow
def test_every_tab_works_in_chromium(runs, hub_page):
    page = hub_page
    # Runs: pick a run -> its table, CI folded in and rounded
    page.locator("#run-picker input").click()
    page.get_by_role("option", name="blockpruner/demo-run").click()
    _wait_text(page.locator("#run-table"), "12.51 [11, 14]")
    screenshot(page, "hub_runs")

    # BlockPruner: the slider spans the run's steps; compare fills both top-5 tables
    _tab(page, "BlockPruner: block importance")
    page.locator("#bp-run input").click()
    bp = next(r for r in run_choices(runs) if r.startswith("blockpruner/smoke"))
    page.get_by_role("option", name=bp).click()
    _wait_text(_in(page, "blockpruner", "#bp-summary"), "Step 2/2")
    assert _in(page, "blockpruner", "#bp-step input[type=range]").get_attribute("max") == "2"
    _in(page, "blockpruner", "#bp-compare").click()
    page.locator("#bp-pruned [data-testid='cell-4-1']").wait_for(timeout=60_000)
    assert page.locator("#bp-dense [role=gridcell][data-col='0']").count() == 5
    # a run finished after the page loaded shows up when the tab is selected again
    shutil.copytree(runs / bp, runs / "blockpruner" / "late-run")
    _tab(page, "Runs")
    _tab(page, "BlockPruner: block importance")
    page.locator("#bp-run input").click()
    page.get_by_role("option", name="blockpruner/late-run").wait_for(timeout=30_000)
    page.keyboard.press("Escape")

    # FuseChat: Align writes its message in this tab; the run's top-K table fills from the run
    _tab(page, "FuseChat: token alignment")
    _in(page, "fusechat", "#fc-text textarea").fill("Hello wörld")
    _in(page, "fusechat", "#fc-align").click()
    _wait_text(_in(page, "fusechat", "#fc-msg"), "pivot tokens")
    _wait_text(_in(page, "fusechat", "#fc-matrix"), "path: 1→1")  # the path colours' legend
    _wait_text(_in(page, "fusechat", "#fc-topk"), "pivot own token")

    # SEFT: Revise returns a decision for this tab
    _tab(page, "SEFT: reviser playground")
    _in(page, "seft", "#seft-prompt textarea").fill("Say hi")
    _in(page, "seft", "#seft-response textarea").fill("hello there")
    _in(page, "seft", "#seft-revise").click()
    page.wait_for_function(
        "() => /^(KEEP|REVISE)/.test(document.querySelector('#seft-decision textarea').value)",
        timeout=90_000)
    _wait_text(_in(page, "seft", "#seft-table"), "3.123")  # 16-digit floats rounded

    # Toxic spans: the member list is filled from the start; Detect reports in this tab
    _tab(page, "Toxic spans")
    _in(page, "toxic_spans", "#ts-member input").click()
    page.get_by_role("option", name="cls-crf").wait_for(timeout=30_000)
    page.keyboard.press("Escape")
    _in(page, "toxic_spans", "#ts-text textarea").fill("you are an idiot")
    _in(page, "toxic_spans", "#ts-detect").click()
    page.wait_for_function(
        "() => document.querySelector('#ts-msg textarea').value.includes('toxic characters')",
        timeout=90_000)

    # Models & data: filled when the tab opens, no click needed
    _tab(page, "Models & data")
    _wait_text(page.locator("#models-table"), "tiny:llama")
    _wait_text(page.locator("#data-table"), "toxic_spans")
    assert screenshot(page, "hub_models").stat().st_size > 10_000


@pytest.mark.browser
@pytest.mark.slow
def test_no_injection_through_any_input_or_model_output(runs, hub_page, monkeypatch):
    page = hub_page
    # model output: the reviser "revises" into the payload; the pruned model "predicts" it
    fake = types.SimpleNamespace(decision="REVISE", malformed=False, margin=1.0, response=PAYLOAD)
    monkeypatch.setattr("workbench.seft.inference.revise", lambda *a, **k: [fake])
    monkeypatch.setattr("workbench.pruning.app.compare_next_token",
                        lambda *a: ([[PAYLOADS[0], 0.5]] * 5, [[PAYLOADS[1], 0.5]] * 5))

    _tab(page, "Runs")  # a run whose table, scalars, config hold the payloads
    page.locator("#run-picker input").click()
    page.get_by_role("option", name="blockpruner/demo-run").click()
    _wait_text(page.locator("#run-table"), "BlockPruner")
    _no_injection(page)

    mains = {"blockpruner": ("BlockPruner: block importance", "#bp-compare"),
             "fusechat": ("FuseChat: token alignment", "#fc-align"),
             "seft": ("SEFT: reviser playground", "#seft-revise"),
             "toxic_spans": ("Toxic spans", "#ts-detect")}
    for kind, (title, button) in mains.items():
        _tab(page, title)
        boxes = _in(page, kind, "textarea:not([disabled])")
        assert boxes.count() >= 1
        for i in range(boxes.count()):
            boxes.nth(i).fill(PAYLOAD)
        _in(page, kind, button).click()
        page.wait_for_timeout(500)
        _no_injection(page)

    # typed names: a tokenizer called like the payload, a member called like the payload
    _tab(page, "FuseChat: token alignment")
    _in(page, "fusechat", "#fc-source input").fill(PAYLOADS[0])
    _in(page, "fusechat", "#fc-source input").press("Enter")
    _in(page, "fusechat", "#fc-align").click()
    _wait_text(_in(page, "fusechat", "#fc-msg"), "Cannot load a tokenizer")
    assert len(_in(page, "fusechat", "#fc-msg").inner_text().strip().splitlines()) == 1
    _tab(page, "Toxic spans")
    _in(page, "toxic_spans", "#ts-member input").fill(PAYLOADS[1])
    _in(page, "toxic_spans", "#ts-member input").press("Enter")
    _in(page, "toxic_spans", "#ts-detect").click()
    page.wait_for_function(
        "() => document.querySelector('#ts-msg textarea').value.length > 0", timeout=60_000)

    # the outputs arrived (payload shown as text), and nothing ran or was injected
    _tab(page, "SEFT: reviser playground")
    _wait_text(_in(page, "seft", "#seft-diff"), "window.__xss=2")
    _tab(page, "BlockPruner: block importance")
    _wait_text(_in(page, "blockpruner", "#bp-pruned"), "window.__xss=2")
    page.wait_for_timeout(1000)
    _no_injection(page)
    # the caps: a Textbox takes at most its max_length characters
    _tab(page, "SEFT: reviser playground")
    _in(page, "seft", "#seft-prompt textarea").fill("x" * 5000)
    assert len(_in(page, "seft", "#seft-prompt textarea").input_value()) == 2000
    screenshot(page, "hub_injection")
