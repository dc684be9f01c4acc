"""The block-importance explorer builds without launching; its callbacks return the payloads."""

from __future__ import annotations

import gradio as gr
import pytest

from workbench.pruning import PruningConfig, run_blockpruner
from workbench.pruning.app import build_app, compare_next_token, run_choices, step_view


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    cfg = PruningConfig.from_preset("smoke", output_dir=str(root), tasks=(), baselines=("rm",),
                                    num_blocks=2, export=False)
    run_blockpruner(cfg)
    return root


def test_build_app_empty(tmp_path):
    assert isinstance(build_app(tmp_path), gr.Blocks)
    md, *figs = step_view(tmp_path, None, 1)
    assert "No finished run" in md and figs == [None, None, None]


def test_callbacks(runs):
    assert isinstance(build_app(runs), gr.Blocks)
    (rel,) = run_choices(runs)
    md, curve, omap, ratio = step_view(runs, rel, 2)
    assert "Step 2/2" in md and "parameter ratio" in md
    assert len(omap.data[0].z) == 2 and len(omap.data[0].z[0]) == 4
    assert {t.name for t in ratio.data} == {"BlockPruner", "RM"}  # the tables' names
    from workbench.pruning.app import results_view
    res = results_view(runs, rel)
    assert res["headers"][0] == "method" and len(res["value"]) == 3  # dense, BlockPruner, RM
    assert results_view(runs, None)["value"] is None
    dense, pruned = compare_next_token(runs, rel, 2, "Hello world")
    assert len(dense) == 5 and len(pruned) == 5
    assert dense != pruned
