"""Importance metrics and removal-order searches (BlockPruner Algorithm 1 and its baselines).

Searches (registry `SEARCHES`), each `fn(bm, rows, num, ...) -> list[step dict]`:
- `blockpruner`: greedy iterative search over blocks (`block_type` mix | mha | mlp), importance =
  calibration PPL with the block removed on top of the blocks already removed (the paper).
- `oneshot`: rank every block once on the dense model, remove the K lowest ("−search" ablation).
- `size_aware` (beyond the paper): the same greedy search, choosing the block with the smallest
  increase of the mean calibration NLL per removed parameter (`per_param_score`);
- `layer`: the same greedy search with whole layers as candidates ("−block" ablation, SLEB-like).
- `shortgpt`: remove the K layers with the lowest block influence 1 − cos(x_in, x_out).
- `rm`: remove the K layers with the lowest relative magnitude ‖f(x)‖ / ‖x + f(x)‖.

`reference_greedy` is Algorithm 1 as written (about ten lines: every candidate scored on every
row batch by a full forward, the first minimum kept): the tests' oracle for `greedy`, whose fast
path (`workbench.pruning.scorer`: prefix reuse within and across steps, early abandoning, an
lm_head lower bound, packed weights, a memory budget) must give the same order and the same
PPLs bit for bit at the same batch size.

Each step dict: `step`, `removed` (list of blocks removed at that step), `set` (cumulative,
sorted), `ppl` (calibration PPL after the step), `ratio`, `candidates` ({"mha:3": ppl or None
when abandoned}), `work` (row batches scored, decoder work in full forwards).
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from workbench.common.io import read_json, write_json
from workbench.common.registry import Registry
from workbench.common.runtime import track
from workbench.pruning.blocks import Block, BlockModel, layer_blocks
from workbench.pruning.scorer import Scorer, packed_linears, row_nll

log = logging.getLogger(__name__)

METRICS: Registry = Registry("importance metric")
RULES = ("ppl", "per_param")
SEARCHES: Registry = Registry("block search")


def bkey(b: Block) -> str:
    return f"{b[0]}:{b[1]}"


def sorted_set(blocks) -> list[list[Any]]:
    return [[k, i] for k, i in sorted(set(map(tuple, blocks)), key=lambda b: (b[1], b[0]))]


def _checkpoint_load(path: Path | None, ident: dict) -> list[dict]:
    if path is None or not path.exists():
        return []
    data = read_json(path)
    if data.get("ident") != ident:
        log.warning("checkpoint %s belongs to another search; starting over", path)
        return []
    log.info("resuming search from %s (%d steps done)", path, len(data["steps"]))
    return data["steps"]


def greedy(bm: BlockModel, rows: torch.Tensor, num: int, *, unit: str = "block",
           block_type: str = "mix", fast: bool = True, batch_size: int = 8,
           checkpoint: str | Path | None = None, budget_bytes: int | None = None,
           rule: str = "ppl", on_step: Callable[[dict], None] | None = None,
           stop_when: Callable[[dict], bool] | None = None, head_bound: bool = True,
           pack: bool = True) -> list[dict]:
    """Algorithm 1: greedily remove the candidate whose removal gives the lowest calibration PPL.

    `unit="block"`: candidates are blocks of `block_type`; `unit="layer"`: whole layers.
    `rule="ppl"` (the paper): lowest PPL; `rule="per_param"` (size-aware, beyond the paper):
    lowest increase of the mean calibration NLL (log PPL) per removed parameter, see
    `per_param_score`.
    Runs `num` steps, or fewer: it stops after the first step for which `stop_when(step)` is
    true (also when resuming from a checkpoint that already holds such a step).
    `fast` turns every exact speed-up of `workbench.pruning.scorer` on or off; with it,
    `head_bound` (the lm_head lower bound) and `pack` (oneDNN-packed decoder weights) can be
    turned off one by one. None of them changes a score.
    """
    units: list[tuple[Block, ...]]
    if unit == "block":
        units = [(b,) for b in bm.blocks(block_type)]
    elif unit == "layer":
        units = [tuple(layer_blocks([i])) for i in range(bm.n_layers)]
    else:
        raise ValueError(f"unit must be block|layer, got {unit!r}")
    _check_num(num, len(units), unit)
    if rule not in RULES:
        raise ValueError(f"rule must be one of {', '.join(RULES)}, got {rule!r}")
    params = {_ukey(u): sum(bm.block_params(b) for b in u) for u in units}
    ckpt = Path(checkpoint) if checkpoint else None
    ident = {"unit": unit, "block_type": block_type, "num": num, "rows": list(rows.shape),
             "rows_sum": int(rows.sum()), "n_layers": bm.n_layers}
    if rule != "ppl":
        ident["rule"] = rule
    steps = _checkpoint_load(ckpt, ident)[:num]
    if stop_when is not None:
        hit = next((i for i, s in enumerate(steps) if stop_when(s)), None)
        if hit is not None:
            return steps[: hit + 1]
    removed: set[Block] = {tuple(b) for s in steps for b in s["removed"]}
    scorer = Scorer(bm, rows, batch_size, fast, budget_bytes, head_bound)
    with contextlib.ExitStack() as stack:
        if fast and pack:
            stack.enter_context(packed_linears(bm.model, [b.numel() for b in scorer.batches]))
        steps = _greedy_steps(bm, scorer, units, steps, removed, num, unit, rule, params,
                              fast, ckpt, ident, on_step, stop_when)
    bm.set_removed(())
    greedy.last_forwards = scorer.forwards  # type: ignore[attr-defined]
    greedy.last_batch_evals = scorer.batch_evals  # type: ignore[attr-defined]
    greedy.last_head_chunks = scorer.stats["head_chunks"]  # type: ignore[attr-defined]
    return steps


def _greedy_steps(bm, scorer, units, steps, removed, num, unit, rule, params, fast, ckpt,
                  ident, on_step, stop_when) -> list[dict]:
    prior: dict[str, float] = {}  # candidate -> estimated score from the previous step
    cur: float | None = None  # total NLL of the current model (size-aware rule)
    n = scorer.n_rows

    def score(t: float, k: str) -> float:
        return t if rule == "ppl" else per_param_score(t, cur, n, params[k])

    for step in track(range(len(steps) + 1, num + 1), desc=f"{unit} search",
                      total=num - len(steps)):
        cands = [u for u in units if not set(u) & removed]
        best, best_j, best_cap = math.inf, -1, None
        work0 = (scorer.batch_evals, scorer.forwards)
        totals: dict[str, float | None] = {}
        est: dict[str, float] = {}
        if fast:
            if not scorer.cache_nll:
                cur = scorer.capture(removed)
            # score the likeliest winners first (last step's estimate, else the free block
            # influence of the cached hidden states), so most others hit the bound early
            bi = _influence(scorer.cache, cands)
            order = sorted(range(len(cands)), key=lambda j: (
                prior.get(_ukey(cands[j]), math.inf), bi[j], j))
            rows_order = scorer.batch_order()
        else:
            order, rows_order = list(range(len(cands))), None
            if rule != "ppl" and cur is None:
                cur = scorer.total(removed)[0]
        best_t = math.inf
        for j in order:
            u, k = cands[j], _ukey(cands[j])
            start = min(BlockModel.point(b) for b in u)
            # score(t) is monotone in t and the total >= any partial sum: a candidate whose
            # partial sum already scores worse than the best cannot win or tie
            t, cap = scorer.total(removed | set(u), start=start, order=rows_order,
                                  bound=lambda part, k=k, b=best: score(part, k) > b,
                                  key=k if fast else None)
            totals[k] = t
            est[k] = score(scorer.last_partial * n if t is None else t, k)
            # the plain loop keeps the first minimum in candidate order: same tie rule
            if t is not None and (score(t, k) < best or (score(t, k) == best and j < best_j)):
                best, best_t, best_j, best_cap = score(t, k), t, j, (k, start, cap)
        if fast:
            scorer.adopt(*best_cap)
            prior = est
        chosen = cands[best_j]
        removed |= set(chosen)
        cur = best_t
        rec = {"step": step, "removed": [list(b) for b in chosen], "set": sorted_set(removed),
               "ppl": scorer.ppl(best_t), "ratio": bm.ratio(removed),
               "candidates": {k: (None if v is None else scorer.ppl(v))
                              for k, v in sorted(totals.items(), key=lambda kv: _sort_key(kv[0]))},
               "work": {"row_batches": scorer.batch_evals - work0[0],
                        "full_forwards": round(scorer.forwards - work0[1], 3)}}
        if rule != "ppl":
            rec["rule"], rec["score"] = rule, best
        steps.append(rec)
        log.info("step %d: remove %s -> ppl %.3f (ratio %.2f%%)", step, _ukey(chosen),
                 rec["ppl"], 100 * rec["ratio"])
        if ckpt is not None:
            write_json(ckpt, {"ident": ident, "steps": steps})
        if on_step is not None:
            on_step(rec)
        if stop_when is not None and stop_when(rec):
            break
    return steps


def per_param_score(total: float, current: float, n_rows: int, params: int) -> float:
    """Size-aware rule: (mean NLL with the block removed - mean NLL now) / removed parameters.

    The increase of the calibration loss (log PPL) per parameter: removing parameters to reach
    a ratio is a covering knapsack, and taking the smallest cost per unit of size is its greedy
    rule; log PPL rather than PPL because successive removals add up in log space.
    """
    return (total / n_rows - current / n_rows) / params


def reference_greedy(bm: BlockModel, rows: torch.Tensor, num: int, block_type: str = "mix",
                     batch_size: int = 8, rule: str = "ppl") -> list[tuple[Block, float]]:
    """Algorithm 1 as written: [(removed block, calibration PPL)] per step. The tests' oracle."""
    def total(blocks) -> float:
        bm.set_removed(blocks)
        return math.fsum(v for i in range(0, len(rows), batch_size)
                         for v in row_nll(bm.model, rows[i:i + batch_size]).tolist())

    removed: list[Block] = []
    out: list[tuple[Block, float]] = []
    for _ in range(num):
        cur = total(removed) if rule != "ppl" else 0.0
        totals = {b: total([*removed, b]) for b in bm.blocks(block_type) if b not in removed}
        key = {b: t if rule == "ppl" else per_param_score(t, cur, len(rows), bm.block_params(b))
               for b, t in totals.items()}
        best = min(key, key=key.__getitem__)  # the first minimum in block order
        removed.append(best)
        out.append((best, math.exp(totals[best] / len(rows))))
    bm.set_removed(())
    return out


def _influence(cache: list[dict[int, torch.Tensor]], cands: list[tuple[Block, ...]]
               ) -> list[float]:
    """1 - cos(x_in, x_out) of each candidate on the cached hidden states (ShortGPT's BI)."""
    if not cache:
        return [0.0] * len(cands)
    out = []
    for u in cands:
        a = min(BlockModel.point(b) for b in u)
        z = max(BlockModel.point(b) for b in u) + 1
        out.append(float(torch.cat([(1 - torch.nn.functional.cosine_similarity(
            st[a].float(), st[z].float(), dim=-1)).flatten() for st in cache]).mean()))
    return out


def _ukey(u: tuple[Block, ...]) -> str:
    return bkey(u[0]) if len(u) == 1 else f"layer:{u[0][1]}"


def _sort_key(k: str) -> tuple[int, str]:
    kind, i = k.split(":")
    return int(i), kind


def _check_num(num: int, available: int, unit: str) -> None:
    if isinstance(num, bool) or not isinstance(num, int) or not 1 <= num <= available:
        raise ValueError(f"number of {unit}s to remove must be in 1..{available}, got {num!r}")


def _cumulative(bm: BlockModel, rows: torch.Tensor, order: list[tuple[Block, ...]],
                scores: dict[str, float], batch_size: int) -> list[dict]:
    scorer = Scorer(bm, rows, batch_size, fast=False)
    removed: set[Block] = set()
    steps = []
    for step, u in enumerate(track(order, desc="cumulative ppl"), 1):
        removed |= set(u)
        steps.append({"step": step, "removed": [list(b) for b in u], "set": sorted_set(removed),
                      "ppl": scorer.ppl(scorer.total(removed)[0]), "ratio": bm.ratio(removed),
                      "candidates": scores if step == 1 else {}})
    bm.set_removed(())
    return steps


# ---- importance metrics (lower = less important) ------------------------------------------
@METRICS.register("ppl", paper="BlockPruner: calibration PPL with the unit removed")
def metric_ppl(bm: BlockModel, rows: torch.Tensor, units: list[tuple[Block, ...]],
               batch_size: int = 8) -> dict[str, float]:
    scorer = Scorer(bm, rows, batch_size, fast=False)
    out = {_ukey(u): scorer.ppl(scorer.total(set(u))[0]) for u in track(units, desc="ppl metric")}
    bm.set_removed(())
    return out


def _points(bm: BlockModel, rows: torch.Tensor, batch_size: int):
    scorer = Scorer(bm, rows, batch_size, fast=True)
    scorer.capture(set())
    bm.set_removed(())
    return scorer.cache


def _per_unit(bm, rows, units, batch_size, fn) -> dict[str, float]:
    cache = _points(bm, rows, batch_size)
    out = {}
    for u in units:
        a = min(BlockModel.point(b) for b in u)
        z = max(BlockModel.point(b) for b in u) + 1
        vals = [fn(st[a].float(), st[z].float()).flatten() for st in cache]
        out[_ukey(u)] = float(torch.cat(vals).mean())
    return out


@METRICS.register("block_influence", paper="ShortGPT: BI = 1 - cos(x_in, x_out)")
def metric_bi(bm: BlockModel, rows: torch.Tensor, units, batch_size: int = 8):
    return _per_unit(bm, rows, units, batch_size,
                     lambda x, y: 1 - torch.nn.functional.cosine_similarity(x, y, dim=-1))


@METRICS.register("relative_magnitude", paper="RM: ||f(x)|| / ||x + f(x)||")
def metric_rm(bm: BlockModel, rows: torch.Tensor, units, batch_size: int = 8):
    return _per_unit(bm, rows, units, batch_size,
                     lambda x, y: (y - x).norm(dim=-1) / y.norm(dim=-1).clamp(min=1e-12))


# ---- searches ----------------------------------------------------------------------------
@SEARCHES.register("blockpruner", paper="BlockPruner (greedy, PPL, blocks)")
def search_blockpruner(bm, rows, num, *, block_type="mix", fast=True, batch_size=8,
                       checkpoint=None, on_step=None, stop_when=None, budget_bytes=None):
    return greedy(bm, rows, num, unit="block", block_type=block_type, fast=fast,
                  batch_size=batch_size, checkpoint=checkpoint, on_step=on_step,
                  stop_when=stop_when, budget_bytes=budget_bytes)


@SEARCHES.register("size_aware", paper="size-aware BlockPruner (beyond the paper): smallest "
                   "log-PPL increase per removed parameter")
def search_size_aware(bm, rows, num, *, block_type="mix", fast=True, batch_size=8,
                      checkpoint=None, on_step=None, stop_when=None, budget_bytes=None):
    return greedy(bm, rows, num, unit="block", block_type=block_type, fast=fast,
                  batch_size=batch_size, checkpoint=checkpoint, on_step=on_step,
                  rule="per_param", stop_when=stop_when, budget_bytes=budget_bytes)


@SEARCHES.register("layer", paper="BlockPruner -block ablation (greedy, PPL, layers; SLEB-like)")
def search_layer(bm, rows, num, *, block_type="mix", fast=True, batch_size=8,
                 checkpoint=None, on_step=None, budget_bytes=None):
    return greedy(bm, rows, num, unit="layer", fast=fast, batch_size=batch_size,
                  checkpoint=checkpoint, on_step=on_step, budget_bytes=budget_bytes)


def _ranked(bm, rows, num, units, metric, batch_size, target_ratio=None):
    """Rank `units` once by `metric`, remove the `num` lowest; with `target_ratio`, remove the
    prefix of the ranking (at most `num` units) whose parameter ratio is closest to it."""
    _check_num(num, len(units), "unit")
    scores = METRICS.get(metric)(bm, rows, units, batch_size=batch_size)
    order = sorted(units, key=lambda u: (scores[_ukey(u)], _sort_key(_ukey(u).replace(
        "layer", "mha"))))[:num]
    if target_ratio is not None:
        ratios = [bm.ratio([b for u in order[:k] for b in u]) for k in range(1, num + 1)]
        order = order[:1 + min(range(num), key=lambda k: (abs(ratios[k] - target_ratio), k))]
    return _cumulative(bm, rows, order, scores, batch_size)


@SEARCHES.register("oneshot", paper="BlockPruner -search ablation (rank once by PPL)")
def search_oneshot(bm, rows, num, *, block_type="mix", batch_size=8, target_ratio=None, **_):
    return _ranked(bm, rows, num, [(b,) for b in bm.blocks(block_type)], "ppl", batch_size,
                   target_ratio)


@SEARCHES.register("shortgpt", paper="ShortGPT (layer block influence)")
def search_shortgpt(bm, rows, num, *, batch_size=8, **_):
    units = [tuple(layer_blocks([i])) for i in range(bm.n_layers)]
    return _ranked(bm, rows, num, units, "block_influence", batch_size)


@SEARCHES.register("rm", paper="Relative magnitude (layer), ShortGPT's removal rule")
def search_rm(bm, rows, num, *, batch_size=8, **_):
    units = [tuple(layer_blocks([i])) for i in range(bm.n_layers)]
    return _ranked(bm, rows, num, units, "relative_magnitude", batch_size)


def del_order_list(steps: list[dict]) -> dict[str, list[list[Any]]]:
    """The official `del_order_list` JSON: {"K": cumulative sorted block set after K steps}."""
    return {str(s["step"]): s["set"] for s in steps}


def steps_table(steps: list[dict]) -> list[dict[str, Any]]:
    return [{"step": s["step"], "removed": ", ".join(f"{k}:{i}" for k, i in s["removed"]),
             "ppl": round(s["ppl"], 4), "ratio_pct": round(100 * s["ratio"], 2)} for s in steps]

