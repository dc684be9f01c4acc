import pytest

from workbench.spans.cli import main
from workbench.spans.predict import predict_batch
from workbench.spans.train import SpansConfig, build_tagger, load_predictor, run_spans


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    cfg = SpansConfig.from_preset("smoke", output_dir=str(tmp_path_factory.mktemp("runs")),
                                  heads=["cls", "layer_attention"], train_limit=16, trial_limit=8)
    return run_spans(cfg)


def test_run_table_and_predict(run_dir):
    m = run_dir.metrics()
    assert [r["member"] for r in m["table"]] == ["cls-crf", "layer_attention-crf", "ensemble"]
    assert all(0 <= r["trial_f1"] <= 100 for r in m["table"])
    assert list((run_dir.path / "artifacts" / "members" / "cls-crf").glob("*.safetensors"))
    pred = load_predictor(run_dir.path).predict_spans(["you idiot", "", "  "])
    assert pred[1] == [] and pred[2] == []
    assert all(0 <= o < 9 for o in pred[0])


def test_long_text_sliding_windows():
    model, tok = build_tagger("tiny:bert", "cls", False)
    text = "word " * 400
    spans, probs = predict_batch(model, tok, [text], max_length=32, return_probs=True)
    covered = {c for a, b, _ in probs[0] for c in range(a, b)}
    assert max(covered) >= len(text.rstrip()) - 1  # the end of the post is seen, not truncated
    assert all(0 <= o < len(text) for o in spans[0])


def test_predict_rejects_single_string():
    model, tok = build_tagger("tiny:bert", "cls", False)
    with pytest.raises(TypeError):
        predict_batch(model, tok, "text")


def test_cli_evaluate(run_dir, tmp_path, capsys):
    good = tmp_path / "good.csv"
    good.write_text('spans,text\n"[0, 1, 2]",you idiot\n[],hello\n')
    assert main(["spans", "evaluate", "--run", str(run_dir.path), "--data", str(good)]) == 0
    assert "char F1" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text('spans,text\n"[0, 1,",you idiot\n')
    assert main(["spans", "evaluate", "--run", str(run_dir.path), "--data", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err
