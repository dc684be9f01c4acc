import gradio as gr

from workbench.common import load_causal_lm
from workbench.seft.app import build_app, diff_html, revise_one


def test_builds_without_runs(tmp_path):
    assert isinstance(build_app(tmp_path), gr.Blocks)


def test_diff_html():
    h = diff_html("a b c", "a x c")
    assert "<del" in h and ">b<" in h and "<ins" in h and ">x<" in h


def test_revise_callback_tiny():
    m, t = load_causal_lm("tiny:llama")
    decision, resp, diff = revise_one("", "Hi?", "hello there", max_new_tokens=4, model=m,
                                      tokenizer=t)
    assert decision.startswith("KEEP") or decision.startswith("REVISE")
    if "malformed" in decision:
        assert resp == "hello there"
    assert diff.startswith("<div>")


def test_run_table_from_a_finished_run(tmp_path):
    from workbench.common.io import write_json
    from workbench.seft.app import run_table
    run = tmp_path / "seft" / "r1"
    (run / "checkpoints" / "reviser_final").mkdir(parents=True)
    write_json(run / "metrics.json", {
        "judge": "j", "judge_note": "weak", "warnings": ["round 1: the reviser revised none"],
        "table": [{"model": "SEFT round 1", "judge_score": 4.0, "judge_score_lo": 3.5,
                   "judge_score_hi": 4.5, "n_questions": 4},
                  {"model": "SFT", "judge_score": 3.0}]})
    rows, notes = run_table(str(run / "checkpoints" / "reviser_final"))
    assert [r["Model"] for r in rows] == ["SFT", "SEFT round 1"]
    from workbench.seft.app import _table_view
    upd, _ = _table_view(str(run / "checkpoints" / "reviser_final"))
    assert "MT-Bench avg [95% CI]" in upd["headers"] and "n questions" in upd["headers"]
    assert "4 [3.5, 4.5]" in upd["value"][1]  # the CI beside the run's number
    assert "weak" in notes and "revised none" in notes
    assert run_table(None) == ([], "") and run_table(str(tmp_path / "x" / "y")) == ([], "")
    assert isinstance(build_app(tmp_path), gr.Blocks)  # the app lists this run


def test_revise_callback_constrained_shows_margin_and_uses_the_runs_input_limit(tmp_path):
    from workbench.common.io import write_yaml
    from workbench.seft.app import _input_limit
    m, t = load_causal_lm("tiny:llama")
    decision, resp, _ = revise_one("", "Hi?", "hello there", "constrained", max_new_tokens=4,
                                   model=m, tokenizer=t)
    assert "log p(REVISE) - log p(KEEP)" in decision
    assert decision.startswith("REVISE") or (decision.startswith("KEEP") and resp == "hello there")
    run = tmp_path / "seft" / "r1"
    (run / "checkpoints" / "reviser_final").mkdir(parents=True)
    write_yaml(run / "config.yaml", {"kind": "seft", "max_length": 256})
    assert _input_limit(str(run / "checkpoints" / "reviser_final")) == 192
    assert _input_limit("") is None and _input_limit(str(tmp_path / "a" / "b")) is None
