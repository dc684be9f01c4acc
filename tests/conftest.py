"""Session fixtures: offline env, a temp runs root, tiny model folders, and a live-app harness."""

from __future__ import annotations

import os

for _var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[_var] = "1"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("WORKBENCH_PROGRESS", "0")

import socket  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ARTIFACTS = Path(__file__).parent / "_artifacts"  # screenshots (git-ignored)


@pytest.fixture(autouse=True)
def _runs_root(tmp_path, monkeypatch):
    """Every test writes its runs into its own temp folder."""
    monkeypatch.setenv("WORKBENCH_RUNS", str(tmp_path / "runs"))


@pytest.fixture(scope="session")
def tiny_llama_dir() -> Path:
    from workbench.common.models import prepare

    return prepare("tiny:llama")


@pytest.fixture(scope="session")
def tiny_bert_dir() -> Path:
    from workbench.common.models import prepare

    return prepare("tiny:bert")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def launch_app():
    """Launch a gr.Blocks on a free loopback port; yields a function returning its URL."""
    launched = []

    def _launch(blocks):
        port = free_port()
        blocks.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True,
                              share=False, quiet=True, ssr_mode=False)
        launched.append(blocks)
        return f"http://127.0.0.1:{port}/"

    yield _launch
    for b in launched:
        b.close()


def chromium_path() -> str | None:
    for cand in (os.environ.get("WORKBENCH_CHROMIUM"), "/usr/bin/chromium",
                 "/usr/bin/chromium-browser"):
        if cand and Path(cand).exists():
            return cand
    return None


@pytest.fixture
def browser_page():
    """A real headless Chromium page (Debian chromium driven by Playwright; no download)."""
    exe = chromium_path()
    if exe is None:
        pytest.fail("Debian chromium is not installed: run scripts/setup.sh (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True,
                                    args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        yield page
        browser.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
