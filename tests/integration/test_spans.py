import json
import shutil

import pytest

from workbench.spans.cli import main
from workbench.spans.inference import load_predictor
from workbench.spans.predict import predict_batch
from workbench.spans.train import SpansConfig, build_tagger, run_spans


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    cfg = SpansConfig.from_preset("smoke", output_dir=str(tmp_path_factory.mktemp("runs")),
                                  heads=["cls", "layer_attention"], train_limit=16, trial_limit=8,
                                  evals_per_epoch=2)
    return run_spans(cfg)


@pytest.mark.slow
def test_selection_history_and_resume(tmp_path):
    cfg = SpansConfig.from_preset("smoke", output_dir=str(tmp_path), heads=["cls", "concat_cls"],
                                  crf=[False], train_limit=8, trial_limit=4, evals_per_epoch=2)
    run = run_spans(cfg)
    members = run.path / "artifacts" / "members"
    meta = json.loads((members / "cls" / "member.json").read_text())
    assert len(meta["history"]) == 2  # two trial checks in the epoch
    assert meta["trial_f1"] == max(h["trial_f1"] for h in meta["history"])  # kept the best
    # interrupted run: metrics.json missing, second member lost -> the first is reused, not retrained
    stamp = (members / "cls" / "model.safetensors").stat().st_mtime_ns
    (run.path / "metrics.json").unlink()
    shutil.rmtree(members / "concat_cls")
    again = run_spans(cfg)
    assert again.path == run.path
    assert (members / "cls" / "model.safetensors").stat().st_mtime_ns == stamp
    assert (members / "concat_cls" / "member.json").exists()
    assert again.is_complete() and [r["member"] for r in again.metrics()["table"]] == ["cls", "concat_cls", "ensemble"]
    # re-running a complete run starts over: members retrained
    run_spans(cfg)
    assert (members / "cls" / "model.safetensors").stat().st_mtime_ns != stamp


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
    assert main(["spans", "evaluate", "--run", str(run_dir.path), "--data", str(good), "--member", "nope"]) == 2
    assert "unknown member" in capsys.readouterr().err
    assert main(["spans", "evaluate", "--run", str(run_dir.path), "--data", str(good), "--member", "cls-crf",
                 "--int8", "--extend-words"]) == 0
    assert "char F1" in capsys.readouterr().out
    assert main(["spans", "evaluate", "--run", str(run_dir.path), "--data", str(good), "--min-votes", "1"]) == 0
    assert "char F1" in capsys.readouterr().out


def test_min_votes_union_contains_majority(run_dir):
    texts = ["you are an idiot and a moron", "go away loser"]
    union = load_predictor(run_dir.path, min_votes=1).predict_spans(texts)
    both = load_predictor(run_dir.path).predict_spans(texts)  # 2 members: majority = both
    assert all(set(b) <= set(u) for b, u in zip(both, union, strict=True))


def test_int8_and_extend_words_predictor(run_dir):
    texts = ["you are an idiot", "have a nice day"]
    fp = load_predictor(run_dir.path, ["cls-crf"]).predict_spans(texts)
    q = load_predictor(run_dir.path, ["cls-crf"], quantize=True)
    model = q.members["cls-crf"][0]
    assert any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in model.modules())
    assert all(0 <= o < len(t) for t, p in zip(texts, q.predict_spans(texts), strict=True) for o in p)
    ext = load_predictor(run_dir.path, ["cls-crf"], extend_words=True).predict_spans(texts)
    assert all(set(a) <= set(b) for a, b in zip(fp, ext, strict=True))


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    cfg = SpansConfig.from_preset("smoke", output_dir=str(tmp_path_factory.mktemp("cvruns")),
                                  heads=["cls"], crf=[True, False], train_limit=24, trial_limit=8,
                                  epochs=2, cv_folds=2, cv_limit=12)
    return run_spans(cfg)


def test_cv_selection_tiny_model(cv_run):
    m = cv_run.metrics()
    assert [r["member"] for r in m["table"]] == ["cls-crf", "cls", "ensemble"]
    assert m["n_cv"] == 12 and m["n_train"] == 24 and "2-fold CV" in m["selection"]
    crf, plain, ens = m["table"]
    assert crf["tau_token"] is None and plain["tau_token"] in (0.3, 0.4, 0.5, 0.6, 0.7)
    assert all(r["epoch"] in (1, 2) for r in (crf, plain))
    assert ens["min_votes"] in (1, 2) and 0.0 <= ens["tau_post"] < 1.0
    for r in m["table"]:  # CV mean +- sd, trial, CIs and the span-free counts before/after the gate
        assert 0 <= r["cv_f1"] <= 100 and r["cv_sd"] >= 0 and r["cv_f1_n"] == 12 and r["trial_f1_n"] == 8
        assert r["trial_f1_lo"] <= r["trial_f1"] <= r["trial_f1_hi"]
        assert r["empty_before"] <= m["cv_span_free_posts"] and r["empty_after"] <= m["cv_span_free_posts"]
    arts = cv_run.path / "artifacts"
    folds = sorted(p.name for p in (arts / "cv" / "cls").iterdir())
    assert folds == ["fold0.json", "fold1.json"] and len(json.loads((arts / "cv" / "cls" / "fold0.json").read_text())) == 2
    # final members train on all 24 posts for the CV-chosen epochs; the member files record the choice
    meta = json.loads((arts / "members" / "cls" / "member.json").read_text())
    assert meta["decode"]["epoch"] == plain["epoch"] and len(meta["history"]) == 1
    ens_file = json.loads((arts / "ensemble.json").read_text())
    assert ens_file["voters"] == ["cls-crf", "cls"] and ens_file["min_votes"] == ens["min_votes"]
    # per-item files (convention): one value per trial post / CV post for each row; the claim is computed
    per = json.loads((arts / "per_item" / "char_f1.json").read_text())
    assert per["metric"] == "char_f1" and len(per["ids"]) == 8 and set(per["values"]) == {"cls-crf", "cls", "ensemble"}
    assert abs(100 * sum(per["values"]["ensemble"]) / 8 - ens["trial_f1"]) < 0.01
    assert len(json.loads((arts / "per_item" / "cv_char_f1.json").read_text())["ids"]) == 12
    assert {c["on"] for c in m["claims"]} == {"trial", "cv"}
    assert all(c["verdict"] in ("reproduced", "not reproduced", "inconclusive at this scale") for c in m["claims"])


def test_cv_run_predictor_and_cli(cv_run, tmp_path, capsys):
    pred = load_predictor(cv_run.path)
    assert list(pred.members) == ["cls-crf", "cls"] and pred.min_votes == cv_run.metrics()["min_votes"]
    out = pred.predict_spans(["you idiot", ""])
    assert out[1] == [] and all(0 <= o < 9 for o in out[0])
    # the table's ensemble trial row (from the members' trial outputs) is what the predictor gives
    from workbench.spans.metric import span_f1
    from workbench.spans.train import _split
    trial = _split("trial", 8)
    row = cv_run.metrics()["table"][-1]
    assert round(100 * span_f1(pred.predict_spans(trial["text"]), trial["spans"]), 2) == row["trial_f1"]
    good = tmp_path / "good.csv"
    good.write_text('spans,text\n"[4, 5, 6, 7, 8]",you idiot\n\n[],hello\n')  # blank line: skipped
    assert main(["spans", "evaluate", "--run", str(cv_run.path), "--data", str(good)]) == 0
    assert "char F1" in capsys.readouterr().out
    latin = tmp_path / "latin.csv"
    latin.write_bytes(b"spans,text\n[],h\xe9llo\n")
    assert main(["spans", "evaluate", "--run", str(cv_run.path), "--data", str(latin)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: latin.csv row 2: not UTF-8 (byte 0xe9 at offset 15); re-save the file as UTF-8"


def test_app_bad_input(cv_run, tmp_path):
    from workbench.spans.app import predict
    *_, msg = predict("you idiot", str(tmp_path / "gone"), "ensemble")
    assert "not found" in msg and "gone" in msg
    *_, msg = predict("you idiot", str(cv_run.path), "clss")
    assert msg.startswith("Unknown member 'clss'") and "cls-crf" in msg
    hl, _, _, _, msg = predict("you \ud800 idiot", str(cv_run.path), "ensemble")
    assert "".join(c for c, _ in hl) == "you \ufffd idiot" and "toxic characters" in msg
    hl, _, _, _, msg = predict("you idiot", str(cv_run.path), "cls")
    assert "".join(c for c, _ in hl) == "you idiot" and "(cls)" in msg


@pytest.mark.slow
def test_causal_lm_lora_member_cv_save_and_load(tmp_path):
    cfg = SpansConfig.from_preset("smoke", output_dir=str(tmp_path), encoder="tiny:llama", heads=["layer_attention"],
                                  crf=[True], train_limit=16, trial_limit=6, epochs=1, cv_folds=2, cv_limit=8, lora_r=4)
    run = run_spans(cfg)
    assert [r["member"] for r in run.metrics()["table"]] == ["layer_attention-crf"]
    pred = load_predictor(run.path)  # LoRA merged at save: loads into the plain encoder
    model, _, meta = pred.members["layer_attention-crf"]
    assert meta["cls_last"] and not any("lora_" in n for n, _ in model.named_parameters())
    out = pred.predict_spans(["you are an idiot", ""])
    assert out[1] == [] and all(0 <= o < 16 for o in out[0])
