"""The token-alignment explorer: builds without launching, its callbacks return the payloads, and
the served app answers a client."""

from __future__ import annotations

import math

import gradio as gr
import pytest

from workbench.fusion.app import (
    EXAMPLE,
    MAX_CHARS,
    build_app,
    compare_topk,
    explore_text,
    run_choices,
    run_view,
    sample_length,
)
from workbench.fusion.config import FuseChatConfig
from workbench.fusion.run import run_fusechat

pytestmark = pytest.mark.slow  # a smoke run + three real tokenizers: ~30 s alone, more when shared

SMOL, QWEN = "smollm2-135m-instruct", "qwen2.5-coder-0.5b-instruct"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    cfg = FuseChatConfig.from_preset("smoke", output_dir=str(root), sources=("tiny:qwen2",),
                                     data_size=2, max_length=48)
    res = run_fusechat(cfg, until="alignment")
    return root, res


def test_build_app_without_runs(tmp_path):
    assert isinstance(build_app(tmp_path), gr.Blocks)
    msg, sources, samples = run_view(tmp_path, None)
    assert "run_fusechat" in msg and sources == [] and samples == []


def test_explore_text_payload():
    msg, ptoks, stoks, fig, groups, maps = explore_text(EXAMPLE, SMOL, QWEN)
    assert "counts from this text only" in msg
    assert len(groups) == len(ptoks) and len(maps) == len(stoks)
    assert {"em", "mined", "ms", "agree"} <= set(maps.columns)
    assert set(groups["relation"]) <= {"1→1", "1→n", "n→1", "none"}
    assert fig is not None and len(fig.data) >= 1
    # the same tokenizer on both sides: identity alignment, every map sends a token to itself
    msg, ptoks, stoks, _, groups, maps = explore_text("naïve café 🙂 x**2", SMOL, SMOL)
    assert list(groups["relation"]) == ["1→1"] * len(groups)
    assert list(maps["em_id"]) == list(maps["source_id"]) and maps["agree"].all()
    msg, *rest = explore_text("x" * (MAX_CHARS + 1), SMOL, QWEN)
    assert "capped" in msg and rest[2] is None
    msg, *_ = explore_text("hi", SMOL, "no-such-tokenizer")
    assert "Cannot load a tokenizer" in msg and len(msg.splitlines()) == 1
    msg, *_ = explore_text("hi", SMOL, "x" * 201)
    assert "cap is 200" in msg


def test_topk_before_and_after_alignment(runs):
    root, res = runs
    (rel,) = run_choices(root)
    msg, sources, samples = run_view(root, rel)
    assert sources == ["tiny:qwen2"] and len(samples) == 2 and "top-10" in msg
    msg, table = compare_topk(root, rel, "tiny:qwen2", "ms", samples[0], 20)
    assert "Pivot position 20" in msg and "align kind" in msg
    assert len(table) == 10 and table["rank"].tolist() == list(range(1, 11))
    assert {"pivot own token", "source before token", "source after (ms) token"} <= set(table.columns)
    from datasets import load_from_disk

    from workbench.common import load_tokenizer
    from workbench.fusion.align import display_text, token_texts
    from workbench.fusion.represent import load_representations

    pivot = load_representations(res.run_dir / "artifacts" / "representations" / "tiny_llama")
    tok = load_tokenizer(SMOL)
    texts = token_texts(tok)
    own = [display_text(texts.texts[i], visible_whitespace=True) for i in pivot[0]["topk_ids"][20]]
    assert table["pivot own token"].tolist() == own
    assert table["pivot own logit"].tolist() == pytest.approx(pivot[0]["topk_logits"][20], abs=1e-3)
    aligned = load_from_disk(str(res.run_dir / "artifacts" / "aligned" / "tiny_qwen2" / "ms"))
    kept = [v for v in aligned[0]["topk_logits"][20] if v != float("-inf")]
    assert [v for v in table["source after (ms) logit"] if not math.isnan(v)] == \
        pytest.approx(kept, abs=1e-3)
    assert sample_length(root, rel, samples[0]) == len(pivot[0]["input_ids"])
    msg, table = compare_topk(root, rel, "tiny:qwen2", "ms", "missing-id", 0)
    assert "not in this run" in msg and table is None


def test_served_app_answers_a_client(runs, launch_app):
    from gradio_client import Client

    root, _ = runs
    client = Client(launch_app(build_app(root)), verbose=False)
    msg, *_ = client.predict("Hello world", SMOL, QWEN, api_name="/explore_text")
    assert "corpus counts of run" not in msg  # the run's pivot is tiny:llama, not smollm2
    msg, *_ = client.predict("Hello world", "tiny:llama", "tiny:qwen2", api_name="/explore_text")
    assert "corpus counts of run" in msg


@pytest.mark.browser
def test_explorer_in_chromium(runs, launch_app, browser_page):
    from tests.conftest import screenshot

    root, _ = runs
    page = browser_page
    page.goto(launch_app(build_app(root)), wait_until="domcontentloaded", timeout=60_000)
    page.get_by_text("token-alignment explorer").first.wait_for(timeout=60_000)
    page.locator("#fc-text textarea").fill("Hello wörld 🙂")
    page.locator("#fc-align").click()
    page.locator("#fc-msg").get_by_text("pivot tokens").wait_for(timeout=90_000)
    assert page.locator("#fc-maps").get_by_text("agree").count() >= 1
    assert screenshot(page, "fusechat_explorer").stat().st_size > 10_000
