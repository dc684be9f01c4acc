"""Searches: fast == plain, resume after an interruption, baselines, errors."""

from __future__ import annotations

import pytest
import torch

from workbench.common.models import load_causal_lm
from workbench.pruning.blocks import BlockModel
from workbench.pruning.search import SEARCHES, Scorer, del_order_list, greedy


@pytest.fixture(scope="module")
def setup():
    model, _ = load_causal_lm("tiny:qwen2")
    torch.manual_seed(0)
    rows = torch.randint(0, 2000, (3, 24))
    return model, rows


def test_fast_equals_plain(setup):
    model, rows = setup
    with BlockModel(model) as bm:
        for unit in ("block", "layer"):
            a = greedy(bm, rows, 3, unit=unit, fast=False)
            b = greedy(bm, rows, 3, unit=unit, fast=True)
            assert [s["set"] for s in a] == [s["set"] for s in b]
            assert [s["ppl"] for s in a] == [s["ppl"] for s in b]
        mha = greedy(bm, rows, 2, block_type="mha")
        assert all(k == "mha" for s in mha for k, _ in s["set"])
    d = del_order_list(a)
    assert list(d) == ["1", "2", "3"] and len(d["3"]) == 6


def test_resume_after_interruption(setup, tmp_path):
    model, rows = setup
    ck = tmp_path / "ck.json"
    with BlockModel(model) as bm:
        full = greedy(bm, rows, 4)

        def boom(rec):
            if rec["step"] == 2:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            greedy(bm, rows, 4, checkpoint=ck, on_step=boom)
        seen = []
        resumed = greedy(bm, rows, 4, checkpoint=ck, on_step=lambda r: seen.append(r["step"]))
    assert seen == [3, 4]
    assert [s["set"] for s in resumed] == [s["set"] for s in full]


@pytest.mark.parametrize("name", ["oneshot", "shortgpt", "rm"])
def test_baselines(setup, name):
    model, rows = setup
    with BlockModel(model) as bm:
        steps = SEARCHES.get(name)(bm, rows, 2)
        assert len(steps) == 2 and steps[-1]["ppl"] > 0 and 0 < steps[-1]["ratio"] < 1
        assert bm.removed_set == frozenset()


def test_errors(setup):
    model, rows = setup
    with BlockModel(model) as bm:
        with pytest.raises(ValueError, match=r"in 1\.\.8"):
            greedy(bm, rows, 9)
        with pytest.raises(ValueError, match=r"in 1\.\.8"):
            greedy(bm, rows, 0)
        with pytest.raises(ValueError, match="calibration set is empty"):
            Scorer(bm, rows[:0])
    with pytest.raises(ValueError, match="unknown block search"):
        SEARCHES.get("blockpruner2")
