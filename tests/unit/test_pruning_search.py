"""Searches: fast == plain, resume after an interruption, baselines, errors."""

from __future__ import annotations

import math

import pytest
import torch

from workbench.common.models import load_causal_lm
from workbench.pruning.blocks import BlockModel
from workbench.pruning.search import SEARCHES, Scorer, del_order_list, greedy, reference_greedy


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


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fast_equals_the_algorithm_1_reference(dtype):
    model, _ = load_causal_lm("tiny:llama", dtype=dtype)
    torch.manual_seed(2)
    rows = torch.randint(0, 2000, (5, 16))
    with BlockModel(model) as bm:
        for bs in (1, 2, 5):
            ref = reference_greedy(bm, rows, 3, batch_size=bs)
            fast = greedy(bm, rows, 3, batch_size=bs)
            assert [s["removed"] for s in fast] == [[list(b)] for b, _ in ref]
            assert [s["ppl"] for s in fast] == [p for _, p in ref]  # bit for bit
            # the reference runs 8 + 7 + 6 full forwards (the fast path: one capture + tails)
            assert greedy.last_forwards < 0.75 * (8 + 7 + 6)


def test_memory_budget_same_order_as_unlimited(caplog):
    model, _ = load_causal_lm("tiny:llama")
    torch.manual_seed(3)
    rows = torch.randint(0, 2000, (6, 12))
    with BlockModel(model) as bm:
        free = greedy(bm, rows, 4, batch_size=2)
        free_work = greedy.last_forwards
        one = Scorer(bm, rows, 2, budget_bytes=0).n_cached
        per = 2 * 12 * model.config.hidden_size * 4 * (2 * bm.n_layers + 1)
        caplog.set_level("INFO", logger="workbench.pruning.scorer")
        for budget, cached in ((0, 0), (3 * per + 10, 1), (9 * per, 3)):
            caplog.clear()
            got = greedy(bm, rows, 4, batch_size=2, budget_bytes=budget)
            assert [s["set"] for s in got] == [s["set"] for s in free]
            assert [s["ppl"] for s in got] == [s["ppl"] for s in free]
            assert f"{cached} of 3 row batches cached" in caplog.text
            if cached < 3:
                assert "recomputed in full" in caplog.text
            # no room left for the candidates' own states: no reuse across steps, more work
            assert greedy.last_forwards > free_work
    assert one == 0


def test_fast_equals_plain_batched_and_does_less_work(setup):
    model, _ = setup
    torch.manual_seed(1)
    rows = torch.randint(0, 2000, (4, 12))
    with BlockModel(model) as bm:
        for block_type in ("mix", "mlp"):
            a = greedy(bm, rows, 2, block_type=block_type, fast=False, batch_size=2)
            plain_work = greedy.last_forwards
            b = greedy(bm, rows, 2, block_type=block_type, fast=True, batch_size=2)
            assert [s["set"] for s in a] == [s["set"] for s in b]
            assert [s["ppl"] for s in a] == [s["ppl"] for s in b]
            assert greedy.last_forwards < plain_work
            # every complete candidate PPL of the fast path is the plain loop's, bit for bit
            for sa, sb in zip(a, b, strict=True):
                assert all(v == sa["candidates"][k] for k, v in sb["candidates"].items()
                           if v is not None)


def test_ties_go_to_the_first_block_like_the_plain_loop():
    model, _ = load_causal_lm("tiny:llama")
    with torch.no_grad():  # every sublayer adds exactly 0: all removals tie at every step
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    rows = torch.randint(0, 2000, (3, 12))
    with BlockModel(model) as bm:
        a = greedy(bm, rows, 3, fast=False)
        b = greedy(bm, rows, 3, fast=True)
    assert [s["removed"] for s in a] == [s["removed"] for s in b] == [
        [["mha", 0]], [["mlp", 0]], [["mha", 1]]]
    assert len({s["ppl"] for s in a + b}) == 1


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
    # a ratio stop rule ends the search at its first step, also when resuming past it
    target = full[1]["ratio"]
    with BlockModel(model) as bm:
        cut = greedy(bm, rows, 4, checkpoint=ck, stop_when=lambda r: r["ratio"] >= target,
                     on_step=seen.append)
    assert len(seen) == 2 and [s["set"] for s in cut] == [s["set"] for s in full[:2]]


@pytest.mark.parametrize("name", ["oneshot", "shortgpt", "rm"])
def test_baselines(setup, name):
    model, rows = setup
    with BlockModel(model) as bm:
        steps = SEARCHES.get(name)(bm, rows, 2)
        assert len(steps) == 2 and steps[-1]["ppl"] > 0 and 0 < steps[-1]["ratio"] < 1
        assert bm.removed_set == frozenset()


def test_oneshot_matches_a_target_ratio(setup):
    model, rows = setup
    with BlockModel(model) as bm:
        target = bm.ratio([("mlp", 0), ("mlp", 1)])  # two MLP blocks' worth
        steps = SEARCHES.get("oneshot")(bm, rows, 8, target_ratio=target)
        ranked = SEARCHES.get("oneshot")(bm, rows, 8)
    got = steps[-1]["ratio"]
    assert [s["set"] for s in steps] == [s["set"] for s in ranked[: len(steps)]]
    assert all(abs(got - target) <= abs(s["ratio"] - target) for s in ranked)


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



def test_per_param_score_hand_values():
    from workbench.pruning.search import per_param_score

    # mean NLL 4.0 with the block removed vs 2.0 now, over 4 parameters
    assert per_param_score(12.0, 6.0, 3, 4) == 0.5
    assert per_param_score(6.0, 6.0, 3, 10) == 0.0


def test_size_aware_rule_on_a_hand_built_case(setup):
    model, rows = setup
    with BlockModel(model) as bm:
        plain = greedy(bm, rows, 1, fast=False)
        ppl_pick = plain[0]["removed"][0]
        dense = bm.model and greedy(bm, rows, 1, fast=False, rule="per_param")
        # hand-built sizes: one block other than the PPL winner is 10^6 times bigger
        big = ["mlp", 3] if ppl_pick != ["mlp", 3] else ["mlp", 2]
        sizes = {(k, i): (10**9 if [k, i] == big else 1000) for k, i in bm.blocks("mix")}
        bm.block_params = lambda b: sizes[tuple(b)]
        cur = math.log(Scorer(bm, rows, fast=False).ppl(Scorer(bm, rows, fast=False)
                                                         .total(set())[0]))
        for fast in (False, True):
            got = greedy(bm, rows, 1, fast=fast, rule="per_param")
            cands = plain[0]["candidates"]
            # by hand: the smallest (log PPL with the block removed - log PPL now) / size
            want = min(cands, key=lambda k: (math.log(cands[k]) - cur)
                       / sizes[(k.split(":")[0], int(k.split(":")[1]))])
            assert f"{got[0]['removed'][0][0]}:{got[0]['removed'][0][1]}" == want
            assert got[0]["rule"] == "per_param" and got[0]["ppl"] == cands[want]
        if (math.log(cands[f"{big[0]}:{big[1]}"]) - cur) > 0:
            assert got[0]["removed"][0] == big != ppl_pick
        assert dense  # the unpatched run works too
    with BlockModel(model) as bm, pytest.raises(ValueError, match="rule must be"):
        greedy(bm, rows, 1, rule="size")


def test_size_aware_fast_equals_reference(setup):
    model, rows = setup
    with BlockModel(model) as bm:
        ref = reference_greedy(bm, rows, 3, batch_size=2, rule="per_param")
        got = greedy(bm, rows, 3, batch_size=2, rule="per_param")
    assert [s["removed"] for s in got] == [[list(b)] for b, _ in ref]
    assert [s["ppl"] for s in got] == [p for _, p in ref]


def test_row_nll_lm_head_bound_is_a_lower_bound_and_abandons():
    from workbench.pruning.scorer import VOCAB_CHUNK, row_nll

    model, _ = load_causal_lm("tiny:llama", dtype=torch.bfloat16)
    torch.manual_seed(5)
    rows = torch.randint(0, model.config.vocab_size, (3, 16))
    n_chunks = -(-model.config.vocab_size // VOCAB_CHUNK)
    assert n_chunks > 1
    full = row_nll(model, rows)
    seen: list[float] = []
    stats: dict[str, int] = {}
    same = row_nll(model, rows, bound=lambda lb: seen.append(lb) or False, stats=stats)
    assert torch.equal(same, full)  # chunk order and bound checks do not change the value
    assert len(seen) == n_chunks and stats["head_chunks"] == n_chunks  # targets + chunks
    assert all(0 <= lb <= math.fsum(full.tolist()) for lb in seen)
    assert seen == sorted(seen)  # more chunks, tighter bound
    stats = {}
    assert row_nll(model, rows, bound=lambda lb: True, stats=stats) is None
    assert stats.get("head_chunks", 0) == 0  # abandoned after the targets' logits


def test_packed_linears_keep_the_bits():
    from workbench.pruning.scorer import packed_linears

    model, _ = load_causal_lm("tiny:llama", dtype=torch.bfloat16)
    rows = torch.randint(0, 2000, (2, 16))
    with torch.no_grad():
        ref = model(input_ids=rows).logits
        with packed_linears(model, [rows.numel()]) as n:
            got = model(input_ids=rows).logits
    assert torch.equal(got, ref)
    assert n in (0, sum(isinstance(m, torch.nn.Linear) for m in model.model.modules()))
    assert not any("forward" in m.__dict__ for m in model.modules()
                   if isinstance(m, torch.nn.Linear))
