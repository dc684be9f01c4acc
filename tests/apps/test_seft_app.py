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
