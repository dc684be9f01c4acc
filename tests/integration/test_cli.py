"""`workbench models` and `workbench data`: what a user sees after set-up."""

from __future__ import annotations

import pytest

from workbench.cli import main


def test_models_lists_every_name_and_readiness(capsys, tiny_llama_dir):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("smollm2-135m-instruct", "gemma3-270m", "qwen2.5-coder-0.5b-instruct",
                 "minilm-l6", "tiny:llama", "tiny:bert"):
        assert name in out
    row = next(line for line in out.splitlines() if line.startswith("tiny:llama "))
    assert "True" in row and "49152" in row


def test_models_prepare_tiny(capsys):
    assert main(["models", "prepare", "tiny:llama"]) == 0
    assert "tiny:llama: ready at" in capsys.readouterr().out


def test_data_lists_every_corpus(capsys):
    code = main(["data"])
    out = capsys.readouterr().out
    for name in ("toxic_spans", "wikitext2", "hh_rlhf", "sharegpt", "mtbench", "piqa",
                 "hellaswag", "winogrande", "arc_easy", "arc_challenge"):
        assert name in out
    if code != 0:
        pytest.fail(f"some corpus is not available here:\n{out}")
