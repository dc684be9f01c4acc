"""workbench.notebook: the set-up every notebook calls, and its HTML tables."""

import plotly.io as pio

from workbench.notebook import RENDERER, setup_notebook, show_comparison, show_table


def test_setup_sets_a_renderer_with_an_html_fallback(monkeypatch):
    monkeypatch.setenv("WORKBENCH_PROGRESS", "summary")
    setup_notebook()
    assert pio.renderers.default == RENDERER and "notebook" in RENDERER.split("+")


def test_show_table_folds_cis_and_keeps_n():
    rows = [{"model": "SFT", "win_rate_vs_sft": 0.5, "n_prompts": 8},
            {"model": "SEFT round 1", "win_rate_vs_sft": 0.625, "win_rate_vs_sft_lo": 0.4,
             "win_rate_vs_sft_hi": 0.8, "n_prompts": 8, "extra": 1.23456789}]
    df = show_table(rows, paper="seft", columns=["model", "win_rate_vs_sft", "n_prompts"])
    assert list(df.columns) == ["model", "win_rate_vs_sft (%)", "n_prompts"]
    assert df.iloc[1, 1] == "62.50 [40.00, 80.00]" and df.iloc[1, 2] == "8"
    assert "<table" in df.to_html()


def test_show_comparison_labels_the_split():
    html = show_comparison("toxic_spans", {"table": [{"member": "m", "trial_f1": 60.0}]}).data
    assert "Ours: trial / CV on train; the paper's: test." in html
    assert "This run" in html and "The paper" in html
