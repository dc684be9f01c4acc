import gradio as gr
import pytest

from workbench.spans.app import MAX_CHARS, build_app, predict
from workbench.spans.train import SpansConfig, run_spans


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    run = run_spans(SpansConfig.from_preset("smoke", output_dir=str(root), train_limit=8, trial_limit=4))
    return root, run


def test_build_without_runs(tmp_path):
    assert isinstance(build_app(tmp_path), gr.Blocks)


def test_predict_payload(runs_root):
    root, run = runs_root
    assert isinstance(build_app(root), gr.Blocks)
    hl, gold, rows, msg = predict("you are an idiot", str(run.path), "ensemble", [11, 12, 13, 14, 15])
    assert "".join(c for c, _ in hl) == "you are an idiot"
    assert all(lab in (None, "toxic") for _, lab in hl)
    assert "".join(c for c, _ in gold) == "you are an idiot" and rows
    assert "toxic characters" in msg
    _, _, _, msg = predict("x" * (MAX_CHARS + 1), str(run.path), "ensemble")
    assert "cap" in msg
