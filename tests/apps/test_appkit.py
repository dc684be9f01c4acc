"""The shared app helpers: text shown as text, readable numbers, run names, caps."""

from __future__ import annotations

import pytest

from workbench.appkit import (
    html_text,
    keep_choice,
    md_code,
    md_text,
    num,
    one_line,
    rounded,
    run_label,
    table,
    too_long,
)

XSS = '<img src=x onerror="alert(1)"> **bold** `code` [link](javascript:alert(1))'


def test_markdown_and_html_escaping():
    t = md_text(XSS)
    assert "<" not in t and "&lt;img" in t
    assert "\\*\\*bold\\*\\*" in t and "\\[link\\]" in t and "\\`code\\`" in t
    assert html_text('<a href="x">') == "&lt;a href=&quot;x&quot;&gt;"
    assert md_code("a`b") == "``a`b``" and md_code("`x") == "`` `x ``" and md_code("tok") == "`tok`"
    assert "\n" not in md_text("a\nb") + md_code("a\nb")


def test_numbers_rounded_to_four_significant_digits():
    assert num(12.512345678901234) == 12.51 and num(0.000123456) == 0.0001235
    assert num(-0.0) == 0.0 and str(num(-1e-20)) == "-1e-20" and num(float("nan")) is None
    assert num(3) == 3 and num(True) is True and num("x") == "x"
    assert rounded({"a": [1.23456789, {"b": 2.0000001}]}) == {"a": [1.235, {"b": 2.0}]}


def test_table_folds_ci_and_stderr_columns():
    rows = [{"method": "Dense", "ppl": 10.123456, "ppl_lo": 9.5, "ppl_hi": 10.75, "ppl_stderr": 0.3,
             "acc": 0.5, "acc_stderr": 0.1234567, "n": 8},
            {"method": "RM", "ppl": 12.0, "ppl_lo": None, "ppl_hi": None, "acc": None, "n": 8,
             "est": {"value": 1.5, "lo": 1.0, "hi": 2.0, "n": 4}}]
    heads, values = table(rows)
    assert heads == ["method", "ppl [95% CI]", "acc ± se", "n", "est"]
    assert values[0][:4] == ["Dense", "10.12 [9.5, 10.75]", "0.5 ± 0.1235", 8]
    assert values[1] == ["RM", 12.0, "", 8, "1.5 [1, 2] (n=4)"]


def test_caps_errors_and_run_names(tmp_path):
    assert too_long("x" * 10, 10) is None
    assert too_long("x" * 11, 10, "Prompt") == "Prompt is 11 characters; the cap is 10. Shorten it."
    assert one_line(OSError("\n  first line\nsecond\n")) == "first line"
    assert one_line("x" * 400).endswith("…") and len(one_line("x" * 400)) == 300
    assert run_label(tmp_path / "runs" / "seft" / "r1") == "seft/r1"
    assert run_label(tmp_path / "runs" / "seft" / "r1", tmp_path / "runs") == "seft/r1"
    assert keep_choice([("a", "/p/a"), ("b", "/p/b")], "/p/b") == "/p/b"
    assert keep_choice(["a", "b"], "gone") == "a" and keep_choice([], "x") is None


@pytest.mark.parametrize("a, b", [("hello <b>there</b>", XSS), (XSS, XSS + " more")])
def test_seft_diff_escapes_both_sides(a, b):
    from workbench.seft.app import diff_html

    h = diff_html(a, b)
    assert "<img" not in h and "<b>" not in h and "&lt;img" in h
    assert h.count("<del") == h.count("</del>") and h.startswith("<div>")
