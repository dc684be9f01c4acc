"""The benchmark's re-implementation of the official search loop agrees with ours (same order)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from workbench.common.models import load_causal_lm
from workbench.pruning import BlockModel
from workbench.pruning.search import greedy

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "blockpruner_search.py"


def _bench():
    spec = importlib.util.spec_from_file_location("blockpruner_search_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_official_loop_as_written_gives_our_order_and_restores_the_model():
    bench = _bench()
    model, _ = load_causal_lm("tiny:llama")
    torch.manual_seed(4)
    rows = torch.randint(3, 2000, (4, 16))
    layers = list(model.model.layers)
    official = bench.official_search(model, rows, 3)
    assert list(model.model.layers) == layers  # every candidate's masks reverted
    with BlockModel(model) as bm:
        ours = greedy(bm, rows, 3, batch_size=2)
    assert [[list(b) for b in s] for s in official] == [s["set"] for s in ours]
