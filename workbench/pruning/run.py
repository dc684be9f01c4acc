"""Orchestrators: `run_block_search(cfg)` (one search, checkpointed) and `run_blockpruner(cfg)`
(BlockPruner + baselines at matched ratios, WikiText-2 PPL + zero-shot, Table-1 layout, export).

Run folder (`RunDir`, kind "blockpruner"): `artifacts/<method>_del_order_list.json` (official
format), `artifacts/<method>_steps.json` (per-step PPL, ratio, candidate PPLs),
`checkpoints/<method>.json` (resume), `artifacts/pruned_model/` (export), `metrics.json` with
`"table"` = rows {method, ratio, ppl, piqa, winogrande, hellaswag, arc_easy, arc_challenge, avg}.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from workbench.common.config import RunConfig
from workbench.common.io import read_json, write_json
from workbench.common.rundir import RunDir
from workbench.common.runtime import resolve_device, resolve_dtype, seed_everything
from workbench.eval.zeroshot import SPLIT_NOTE
from workbench.pruning.blocks import BlockModel, decoder_layers
from workbench.pruning.search import SEARCHES, del_order_list, steps_table

log = logging.getLogger(__name__)
KIND = "blockpruner"
LAYER_METHODS = ("layer", "shortgpt", "rm")
GREEDY_METHODS = ("blockpruner", "size_aware")  # block greedy searches that can stop at a ratio


@dataclass(frozen=True, kw_only=True)
class PruningConfig(RunConfig):
    PRESETS: ClassVar[str] = "blockpruner"

    dtype: str = field(default="bfloat16", metadata={
        "help": "bfloat16 (default: the official search's dtype) | float32 | float16 | auto"})
    model: str = field(default="tiny:llama", metadata={"help": "model name or path"})
    method: str = field(default="blockpruner", metadata={
        "help": "main search (SEARCHES key): blockpruner (the paper) | size_aware (smallest "
                "log-PPL increase per removed parameter) | oneshot | layer | shortgpt | rm"})
    baselines: tuple[str, ...] = field(default=("oneshot", "layer", "shortgpt", "rm"),
                                       metadata={"help": "other searches at matched ratio"})
    block_type: str = field(default="mix", metadata={"help": "mix | mha | mlp"})
    num_blocks: int | None = field(default=4, metadata={"help": "blocks to remove"})
    target_ratio: float | None = field(default=None, metadata={
        "help": "stop the greedy search once the parameter ratio reaches this (overrides "
                "num_blocks as the stop rule)"})
    cal_data: str = field(default="sharegpt", metadata={
        "help": "sharegpt | wikitext2 | file path | datasets name (e.g. tatsu-lab/alpaca)"})
    cal_nsamples: int = field(default=16, metadata={"help": "calibration examples"})
    seq_len: int = field(default=128, metadata={"help": "calibration row length"})
    cal_max_rows: int | None = field(default=None, metadata={
        "help": "cap on calibration rows: then every sampled document gets an equal share of "
                "the rows (None: the official join-and-cut of whole documents)"})
    cal_heldout: bool = field(default=False, metadata={
        "help": "draw from the official 10 % held-out split (train_test_split 0.2 then halves, "
                "seed 42), as the official code does for Alpaca"})
    batch_size: int = field(default=8, metadata={"help": "rows per forward (the official "
                                                          "search: 2)"})
    fast: bool = field(default=True, metadata={"help": "exact speed-ups in the greedy search"})
    cache_budget_gb: float | None = field(default=None, metadata={
        "help": "memory for the fast search's hidden-state cache (None: half the free memory "
                "of a CUDA device, a quarter of the available memory on the CPU); row batches "
                "beyond it are recomputed for every candidate"})
    eval_seq_len: int = field(default=128, metadata={"help": "WikiText-2 window length"})
    eval_max_rows: int | None = field(default=8, metadata={
        "help": "WikiText-2 windows cap; None or 0 = the whole test set"})
    tasks: tuple[str, ...] = field(default=("piqa", "winogrande", "hellaswag", "arc_easy",
                                            "arc_challenge"), metadata={"help": "zero-shot"})
    eval_limit: int | None = field(default=8, metadata={
        "help": "examples per zero-shot task; None or 0 = the full validation sets"})
    eval_batch_size: int = field(default=1, metadata={
        "help": "lm-eval batch size for the zero-shot tasks (the paper: 1)"})
    eval_packed: bool = field(default=False, metadata={
        "help": "score the choices of a context in one packed row (workbench.eval.packed; "
                "~2x faster on HellaSwag, equal to lm-eval's HFLM up to floating-point order) "
                "instead of lm-eval's HFLM (the paper's)"})
    export: bool = field(default=True, metadata={"help": "save the pruned checkpoint"})

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("eval_max_rows", "eval_limit"):  # 0 = no cap (a `None` override keeps the preset's)
            v = getattr(self, name)
            if v is not None and v < 0:
                raise ValueError(f"{name} must be >= 0 (0 = all), got {v}")
            if v == 0:
                object.__setattr__(self, name, None)
        if self.block_type not in ("mix", "mha", "mlp"):
            raise ValueError(f"block_type must be mix|mha|mlp, got {self.block_type!r}")
        for m in (self.method, *self.baselines):
            SEARCHES.check(m)
        if self.num_blocks is not None and self.num_blocks < 1:
            raise ValueError(f"num_blocks must be >= 1, got {self.num_blocks}")
        if self.target_ratio is not None and not 0 < self.target_ratio < 1:
            raise ValueError(f"target_ratio must be in (0, 1), got {self.target_ratio}")
        if self.num_blocks is None and self.target_ratio is None:
            raise ValueError("set num_blocks or target_ratio")
        if self.cache_budget_gb is not None and self.cache_budget_gb < 0:
            raise ValueError(f"cache_budget_gb must be >= 0, got {self.cache_budget_gb}")
        if self.eval_batch_size < 1:
            raise ValueError(f"eval_batch_size must be >= 1, got {self.eval_batch_size}")
        if self.cal_nsamples < 1:
            raise ValueError(f"cal_nsamples must be >= 1, got {self.cal_nsamples}")


@dataclass
class PruningResult:
    run_dir: Path
    steps: dict[str, list[dict]]
    table: list[dict[str, Any]]
    metrics: dict[str, Any]


def _load(cfg: PruningConfig):
    from workbench.common.models import load_causal_lm

    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    model, tok = load_causal_lm(cfg.model, dtype=dtype, device=device)
    return model, tok


def _calibration(cfg: PruningConfig, tok):
    from workbench.pruning.calibration import calibration

    cal = calibration(tok, cfg.cal_data, cfg.cal_nsamples, cfg.seq_len, seed=42,
                      max_rows=cfg.cal_max_rows, heldout=cfg.cal_heldout)
    log.info("calibration: %d rows x %d tokens from %d of %d sampled documents (%s)",
             len(cal.rows), cal.rows.shape[1], cal.documents, cal.sampled, cal.layout)
    return cal


def _budget(cfg: PruningConfig) -> int | None:
    return None if cfg.cache_budget_gb is None else int(cfg.cache_budget_gb * 2**30)


def _search(cfg, bm, rows, method, run: RunDir, num: int, **kw) -> list[dict]:
    fn = SEARCHES.get(method)
    if method in (*GREEDY_METHODS, "layer"):
        kw["budget_bytes"] = _budget(cfg)
    steps = fn(bm, rows, num, block_type=cfg.block_type, fast=cfg.fast,
               batch_size=cfg.batch_size, checkpoint=run.checkpoints / f"{method}.json", **kw)
    run.write_artifact_json(f"{method}_steps.json", steps)
    run.write_artifact_json(f"{method}_del_order_list.json", del_order_list(steps))
    return steps


def _main_num(cfg: PruningConfig, bm: BlockModel) -> int:
    n = len(bm.blocks(cfg.block_type))
    if cfg.target_ratio is not None:
        # smallest K whose ratio can reach the target: search up to the cap, cut afterwards
        return n - 1
    if cfg.num_blocks > n:  # type: ignore[operator]
        raise ValueError(f"num_blocks must be in 1..{n} for this model, got {cfg.num_blocks}")
    return cfg.num_blocks  # type: ignore[return-value]


def _cut(steps: list[dict], target: float | None) -> list[dict]:
    if target is None:
        return steps
    for i, s in enumerate(steps):
        if s["ratio"] >= target:
            return steps[: i + 1]
    return steps


def run_block_search(cfg: PruningConfig, run: RunDir | None = None,
                     model_tok=None) -> tuple[list[dict], Any]:
    """The main search only (checkpointed after every step; resumes from the run folder)."""
    seed_everything(cfg.seed)
    run = run or RunDir.create(cfg, kind=KIND)
    model, tok = model_tok or _load(cfg)
    cal = _calibration(cfg, tok)
    rows = cal.rows
    with BlockModel(model) as bm:
        if cfg.target_ratio is not None and cfg.method in GREEDY_METHODS:
            steps = _greedy_to_ratio(cfg, bm, rows, run, cfg.method, cfg.target_ratio)
        else:
            steps = _search(cfg, bm, rows, cfg.method, run, _main_num(cfg, bm))
    return steps, (model, tok, cal)


def _greedy_to_ratio(cfg, bm, rows, run, method: str, target: float) -> list[dict]:
    """A block greedy search run until its parameter ratio reaches `target`."""
    steps = SEARCHES.get(method)(
        bm, rows, len(bm.blocks(cfg.block_type)) - 1, block_type=cfg.block_type,
        fast=cfg.fast, batch_size=cfg.batch_size, checkpoint=run.checkpoints / f"{method}.json",
        stop_when=lambda rec: rec["ratio"] >= target, budget_bytes=_budget(cfg))
    steps = _cut(steps, target)
    run.write_artifact_json(f"{method}_steps.json", steps)
    run.write_artifact_json(f"{method}_del_order_list.json", del_order_list(steps))
    return steps


def _layers_for_ratio(bm: BlockModel, ratio: float) -> int:
    per_layer = (bm.block_params(("mha", 0)) + bm.block_params(("mlp", 0))) / bm.total_params
    return max(1, min(bm.n_layers - 1, round(ratio / per_layer)))


def evaluate_set(cfg: PruningConfig, model, tok, removed, wiki_rows=None,
                 items: dict[str, Any] | None = None) -> dict[str, Any]:
    """WikiText-2 PPL and zero-shot scores (percent) of `model` with `removed` blocks masked,
    each with its uncertainty: PPL with a 95 % CI over the evaluation windows (bootstrap from 20
    windows on, t interval below: `stats.item_ci`)
    (exp of the CI of the mean window NLL), accuracies with lm-eval's stderr and a Wilson CI.

    `items` (optional, filled in): per-item values {"wikitext2_nll": [...], "<task>": [0/1...]}.
    """
    from workbench.eval.ppl import row_nll, wikitext2_rows
    from workbench.eval.stats import item_ci, proportion_ci
    from workbench.eval.zeroshot import evaluate

    if wiki_rows is None:
        wiki_rows = wikitext2_rows(tok, cfg.eval_seq_len, cfg.eval_max_rows)
    with BlockModel(model) as bm, bm.removed(removed):
        nll = row_nll(model, wiki_rows, cfg.batch_size).tolist()
        zs = (evaluate(model, tok, cfg.tasks, cfg.eval_limit, batch_size=cfg.eval_batch_size,
                       log_samples=True, packed=cfg.eval_packed)
              if cfg.tasks else {"avg": math.nan})
        ratio = bm.ratio(removed)
    est = item_ci(nll)  # t interval under 20 windows (a bootstrap over 4 undercovers)
    row: dict[str, Any] = {"ratio": round(100 * ratio, 2), "ppl": round(math.exp(est.value), 3),
                           "ppl_lo": _r(math.exp(est.lo), 3), "ppl_hi": _r(math.exp(est.hi), 3),
                           "ppl_n": est.n}
    if items is not None:
        items["wikitext2_nll"] = nll
    ses = []
    for t in cfg.tasks:
        metric = zs[t]["metric"]
        hits = [float(x[metric]) for x in sorted(zs["samples"][t], key=lambda x: x["doc_id"])]
        acc = proportion_ci(int(round(sum(hits))), len(hits))
        row[t] = round(100 * zs[t]["score"], 2)
        row[f"{t}_lo"], row[f"{t}_hi"] = _r(100 * acc.lo, 2), _r(100 * acc.hi, 2)
        row[f"{t}_stderr"], row[f"{t}_n"] = _r(100 * acc.stderr, 2), acc.n
        ses.append(acc.stderr)
        if items is not None:
            items[t] = hits
    row["avg"] = round(100 * zs["avg"], 2) if cfg.tasks else None
    if cfg.tasks:  # tasks are independent samples: SE of the mean of the task scores
        row["avg_stderr"] = _r(100 * math.sqrt(sum(x * x for x in ses)) / len(ses), 2)
    return row


def _r(x: float, digits: int) -> float | None:
    return round(x, digits) if math.isfinite(x) else None


def _write_per_item(run: RunDir, items: dict[str, dict[str, list[float]]]) -> None:
    """artifacts/per_item/<metric>.json, the shared per-item convention (one row per method)."""
    tasks = [m for m in items if m != "wikitext2_nll"]
    for metric, rows in items.items():
        n = len(next(iter(rows.values())))
        wiki = metric == "wikitext2_nll"
        write_json(run.artifacts / "per_item" / f"{metric}.json", {
            "metric": metric, "higher_is_better": not wiki,
            "unit": "mean NLL per token of a window (nats)" if wiki else "accuracy (0/1)",
            "ids": [f"window-{i}" if wiki else f"{metric}-{i}" for i in range(n)],
            "values": rows})
    if tasks:  # every zero-shot example of every task, one list per method
        write_json(run.artifacts / "per_item" / "zeroshot.json", {
            "metric": "zeroshot", "higher_is_better": True, "unit": "accuracy (0/1)",
            "ids": [f"{t}-{i}" for t in tasks for i in range(len(next(iter(items[t].values()))))],
            "values": {name: [v for t in tasks for v in items[t][name]]
                       for name in items[tasks[0]]}})


def run_blockpruner(cfg: PruningConfig) -> PruningResult:
    """Main search + baselines at matched ratio, evaluation table, export; writes metrics.json."""
    run = RunDir.create(cfg, kind=KIND)
    steps, (model, tok, cal) = run_block_search(cfg, run)
    rows = cal.rows
    all_steps = {cfg.method: steps}
    ratio = steps[-1]["ratio"]
    with BlockModel(model) as bm:
        for b in cfg.baselines:
            if b == cfg.method:
                continue
            if b in GREEDY_METHODS:  # the other block greedy, up to the same ratio
                all_steps[b] = _greedy_to_ratio(cfg, bm, rows, run, b, ratio - 1e-12)
            elif b in LAYER_METHODS:
                all_steps[b] = _search(cfg, bm, rows, b, run, _layers_for_ratio(bm, ratio))
            elif b == "oneshot":  # the ranked prefix whose ratio is closest to the main one's
                all_steps[b] = _search(cfg, bm, rows, b, run, len(bm.blocks(cfg.block_type)),
                                       target_ratio=ratio)
            else:
                all_steps[b] = _search(cfg, bm, rows, b, run, len(steps))
    from workbench.eval.ppl import wikitext2_rows

    wiki = wikitext2_rows(tok, cfg.eval_seq_len, cfg.eval_max_rows)
    from workbench.viz.pruning import METHOD_NAMES as names
    table = []
    per_item: dict[str, dict[str, list[float]]] = {}
    for m, removed in [("dense", []), *((m, st[-1]["set"]) for m, st in all_steps.items())]:
        # each evaluation is saved as it finishes: a killed run resumes after the last one
        ck = run.checkpoints / f"eval_{m}.json"
        prev = read_json(ck) if ck.exists() else None
        name = names.get(m, "Dense")
        if prev is not None and prev["removed"] == removed and "items" in prev:
            row, items = prev["row"], prev["items"]
        else:
            items = {}
            row = evaluate_set(cfg, model, tok, [tuple(b) for b in removed], wiki, items)
            write_json(ck, {"removed": removed, "row": row, "items": items})
        for metric, vals in items.items():
            per_item.setdefault(metric, {})[name] = vals
        table.append({"method": name, **row})
    _write_per_item(run, per_item)
    final = [tuple(b) for b in steps[-1]["set"]]
    if cfg.export:
        from workbench.pruning.export import export_pruned

        export_pruned(model, tok, final, run.artifacts / "pruned_model", del_order_list(steps))
    run.write_artifact_json("table.json", table)
    metrics = {"table": table, "model": cfg.model, "n_layers": len(decoder_layers(model)),
               "methods": list(all_steps), "removed": [list(b) for b in final],
               "ratio_pct": round(100 * ratio, 2), "calibration_rows": list(rows.shape),
               "calibration": {"source": cfg.cal_data, **cal.info()},
               "search_steps": steps_table(steps),
               "note": SPLIT_NOTE}
    run.finish(metrics)
    return PruningResult(run.path, all_steps, table, metrics)
