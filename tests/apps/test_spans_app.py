import gradio as gr
import pytest

from workbench.spans.app import MAX_CHARS, build_app, predict
from workbench.spans.train import SpansConfig, run_spans


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    run = run_spans(SpansConfig.from_preset("smoke", output_dir=str(root), heads=["cls", "concat_cls"],
                                            train_limit=8, trial_limit=4))
    return root, run


def test_build_without_runs(tmp_path):
    assert isinstance(build_app(tmp_path), gr.Blocks)


def test_predict_payload(runs_root):
    root, run = runs_root
    assert isinstance(build_app(root), gr.Blocks)
    from workbench.spans.app import member_names, results_view
    assert member_names(str(run.path)) == ["cls-crf", "concat_cls-crf"]  # listed without loading
    res = results_view(str(run.path))
    assert res["value"] and all(isinstance(v, str) or len(repr(v)) < 12 for r in res["value"] for v in r)
    hl, gold, table, heat, msg = predict("you are an idiot", str(run.path), "ensemble", [11, 12, 13, 14, 15])
    assert "".join(c for c, _ in hl) == "you are an idiot"
    assert all(lab in (None, "toxic") for _, lab in hl)
    assert gold == [("you are an ", None), ("idiot", "toxic")]  # gold shown beside the prediction
    assert [r[0] for r in table["value"]] == ["you", "are", "an", "idiot"]
    assert all(0.0 <= p <= 1.0 for r in table["value"] for p in r[1:])
    assert "".join(c for c, _ in heat) == "you are an idiot"  # token heat map covers the text
    assert "toxic characters" in msg
    _, _, _, _, msg = predict("x" * (MAX_CHARS + 1), str(run.path), "ensemble")
    assert "cap" in msg and str(MAX_CHARS) in msg
    _, _, _, _, msg = predict("   ", str(run.path), "ensemble")
    assert "Empty text" in msg


def test_member_choice_and_ensemble(runs_root):
    _, run = runs_root
    _, _, table, _, msg = predict("you idiot", str(run.path), "ensemble")
    assert "vote of 2 members" in msg and table["headers"] == ["token", "cls-crf", "concat_cls-crf", "mean"]
    _, _, table, _, msg = predict("you idiot", str(run.path), "concat_cls-crf")
    assert "concat_cls-crf" in msg and table["headers"] == ["token", "concat_cls-crf"]
    hl, _, _, _, msg = predict("you idiot", str(run.path), "concat_cls-crf", None, int8=True)
    assert "".join(c for c, _ in hl) == "you idiot" and "toxic characters" in msg
