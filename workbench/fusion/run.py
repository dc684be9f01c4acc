"""`run_fusechat(cfg)`: the FuseChat pipeline as a list of checkpointed stages (RunDir kind "fusechat").

Part 1 (this file's stages): dialogues -> representations (pivot + every source) -> `ms`
co-occurrence counts over the corpus (per source) -> aligned representations per source and
vocabulary map (em / mined / ms; the maps are built inside `align_representations`) + stats.
Part 2 appends its stages (fusion training, merging, evaluation) to `STAGES`.

A stage is a function `fn(ctx) -> dict` (JSON-able summary). When it returns, its summary is saved
to `checkpoints/stages/<name>.json`; a re-run of the same config skips every stage whose summary
exists (and stages resume internally: representations by shard). `metrics.json` is the merge of
all summaries' `metrics` entries, written last.

    >>> res = run_fusechat(FuseChatConfig.from_preset("smoke"))        # doctest: +SKIP
    >>> res.metrics["table"]                                            # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from workbench.common import RunDir, resolve_device, resolve_dtype, seed_everything
from workbench.common.io import read_json, write_json
from workbench.common.rundir import local_device
from workbench.fusion import represent as R
from workbench.fusion.config import ALIGN_FIELDS, COUNT_FIELDS, FuseChatConfig
from workbench.fusion.context import (
    KIND,
    FuseChatContext,
    Stage,
    cached_tokenizer,
    model_slug,
    stage_path,
)
from workbench.fusion.launch import execute
from workbench.fusion.train.stages import PART2_STAGES

log = logging.getLogger(__name__)

__all__ = ["KIND", "PART1_STAGES", "PART2_STAGES", "STAGES", "FuseChatContext", "FuseChatResult",
           "Stage", "cached_tokenizer", "model_slug", "represent_one", "run_fusechat",
           "sample_text_alignment", "stage_path"]


# ------------------------------------------------------------------------------------------
# part 1 stages
# ------------------------------------------------------------------------------------------
def stage_dialogues(ctx: FuseChatContext) -> dict[str, Any]:
    """Render the chat data once with the pivot's template and cut it to fit every tokenizer."""
    cfg = ctx.cfg
    toks = [ctx.tokenizer(m) for m in cfg.models]
    template = R.resolve_chat_template(toks[0], cfg.chat_template, name=f"pivot {cfg.pivot!r}")
    # over-read: some rows have no assistant turn; 4x + 16 is plenty for ShareGPT
    rows = R.load_chat_rows(cfg.data, limit=cfg.data_size * 4 + 16)
    dialogues = R.prepare_dialogues(rows, toks[0], toks, max_length=cfg.max_length,
                                    limit=cfg.data_size, chat_template=template)
    if not dialogues:
        raise ValueError(f"data {cfg.data!r}: no dialogue with an assistant turn")
    if len(dialogues) < cfg.data_size:
        log.warning("only %d usable dialogues (data_size=%d)", len(dialogues), cfg.data_size)
    R.save_dialogues(ctx.dialogues_path, dialogues)
    return {"dialogues": len(dialogues), "fingerprint": R.dialogues_fingerprint(dialogues),
            "metrics": {"dialogues": len(dialogues)}}


def stage_representations(ctx: FuseChatContext) -> dict[str, Any]:
    """Top-K logits/ids, gold CE and metric_ce of the pivot and every source (resumable shards)."""
    cfg = ctx.cfg
    stats = {}
    for m in cfg.models:
        stats[m] = _represent(ctx, m)
        gc.collect()
    _check_all_ids(ctx)
    total_bytes = sum(s["bytes"] for s in stats.values())
    total_tokens = sum(s["tokens"] for s in stats.values())
    return {
        "models": stats,
        "metrics": {
            "repr_bytes_per_token": total_bytes / max(total_tokens, 1),
            "repr_topk_bytes_per_token": sum(s["topk_bytes_per_token"] * s["tokens"]
                                             for s in stats.values()) / max(total_tokens, 1),
            "repr_seconds": sum(s["seconds"] for s in stats.values()),
            "repr_table": [
                {"model": m, "role": "pivot" if m == cfg.pivot else "source",
                 "tokens": s["tokens"], "assistant_tokens": s["assistant_tokens"],
                 "mean_metric_ce": s["mean_metric_ce"],
                 **{f"mean_metric_ce_{k}": (s.get("mean_metric_ce_ci") or {}).get(k)
                    for k in ("lo", "hi", "stderr")},
                 "n": s["dialogues"], "bytes_per_token": s["bytes_per_token"],
                 "seconds": s["seconds"]} for m, s in stats.items()],
        },
    }


def represent_one(cfg: FuseChatConfig, model: str, worker: tuple[int, int] = (0, 1)
                  ) -> dict[str, Any] | None:
    """Representations of ONE model of `cfg` (or, with `worker=(i, n)`, every n-th of its shards)
    into the run folder `run_fusechat(cfg)` uses, to spread the work over processes / GPUs; the
    dialogues stage runs first if needed. A later `run_fusechat(cfg)` reuses every finished shard.
    Returns the model's statistics, or None while other workers' shards are missing."""
    if model not in cfg.models:
        raise ValueError(f"model {model!r} is not in the config; pivot + sources: "
                         f"{', '.join(cfg.models)}")
    run = RunDir.create(cfg, kind=KIND)
    ctx = FuseChatContext(cfg, run)
    if not stage_path(run, "dialogues").exists():
        write_json(stage_path(run, "dialogues"), stage_dialogues(ctx))
    return _represent(ctx, model, worker)


def _represent(ctx: FuseChatContext, model: str, worker: tuple[int, int] = (0, 1)
               ) -> dict[str, Any] | None:
    cfg = ctx.cfg
    device = resolve_device(local_device(cfg.device))  # this rank's GPU under a launch
    st = R.compute_representations(
        model, R.load_dialogues(ctx.dialogues_path), ctx.repr_dir(model), top_k=cfg.top_k,
        max_length=cfg.max_length, batch_size=cfg.repr_batch_size,
        token_budget=cfg.token_budget, shard_size=cfg.shard_size, device=device,
        dtype=resolve_dtype(cfg.dtype, device), worker=worker)
    return None if st is None else asdict(st)


def _check_all_ids(ctx: FuseChatContext) -> None:
    """Every model's representation holds the pivot's dialogues in the pivot's order."""
    pivot_ids = ctx.representations(ctx.cfg.pivot)["id"]
    for s in ctx.cfg.sources:
        R.check_same_ids(pivot_ids, ctx.representations(s)["id"], (ctx.cfg.pivot, s))



# the alignment switches of the config (official-code quirks), as workbench.fusion.align takes them
DTW_FIELDS = COUNT_FIELDS


def align_settings(cfg: FuseChatConfig, fields: tuple[str, ...] = ALIGN_FIELDS) -> dict[str, Any]:
    """`{field: value}` of the config's alignment switches (recorded next to their outputs)."""
    return {k: getattr(cfg, k) for k in fields}


def dtw_options(cfg: FuseChatConfig):
    """`DTWOptions` from the config: the same for the ms counts and every alignment."""
    from workbench.fusion import align as A

    return A.DTWOptions(tie_order=cfg.dtw_tie_order, empty_fallback=cfg.dtw_empty_fallback,
                        substring_weight=cfg.dtw_substring_weight, unit=cfg.align_unit,
                        text=cfg.dtw_text)


def vocab_map_kwargs(cfg: FuseChatConfig, kind: str) -> dict[str, Any]:
    """Builder options of vocab map `kind` from the config (em has none)."""
    if kind == "ms":
        return {"count_rule": cfg.ms_count_rule, "no_candidate": cfg.ms_no_candidate,
                "unit": cfg.align_unit}
    return {"unit": cfg.align_unit} if kind == "mined" else {}


def align_rules(cfg: FuseChatConfig, kind: str):
    """The official distribution-alignment rules of map `kind`, with the config's switches."""
    from workbench.fusion import align as A

    return dataclasses.replace(A.official_rules(kind), empty_row=cfg.empty_row,
                               empty_suffix_matches=cfg.empty_suffix_matches)


def stage_cooccurrence(ctx: FuseChatContext) -> dict[str, Any]:
    """Per source, the `ms` co-occurrence counts C[pivot id, source id] over the whole corpus."""
    from workbench.fusion import align as A

    cfg = ctx.cfg
    out: dict[str, Any] = {}
    if "ms" not in cfg.compare_vocab_maps:
        return {"counts": out, "metrics": {}}
    ptok = ctx.tokenizer(cfg.pivot)
    pivot_ds = ctx.representations(cfg.pivot)
    settings = align_settings(cfg, DTW_FIELDS)
    extra = None  # more dialogues for the counts (cfg.ms_count_dialogues), tokenised only
    for src in cfg.sources:
        path = ctx.counts_path(src)
        made_with = path.with_suffix(".settings.json")  # DTW switches the counts were made with
        t0 = time.time()
        if not (path.exists() and made_with.exists() and read_json(made_with) == settings):
            if extra is None:
                extra = R.extra_count_dialogues(cfg, [ctx.tokenizer(m) for m in cfg.models])
            counts = A.ms_counts(pivot_ds, ctx.representations(src), ptok, ctx.tokenizer(src),
                                 options=dtw_options(cfg), group_repeats=cfg.ms_group_repeats,
                                 extra_pairs=R.id_pairs(extra, ptok, ctx.tokenizer(src),
                                                        cfg.max_length))
            A.save_counts(counts, path)
            write_json(made_with, settings)
        counts = A.load_counts(path)
        sec = time.time() - t0
        out[src] = {"path": str(path.relative_to(ctx.run.path)), "pairs": int(counts.sum()),
                    "extra_dialogues": None if extra is None else len(extra),
                    "nonzero": int(counts.nnz), "seconds": sec,
                    "samples_per_second": len(pivot_ds) / sec if sec > 0 else None}
    return {"counts": out, "metrics": {}}


TABLE_KEYS = ("samples", "positions", "same_vocab", "one_to_one", "one_to_many", "fallback",
              "empty_rows", "candidates_exact", "candidates_via_map", "fallback_mass")


def stage_alignment(ctx: FuseChatContext) -> dict[str, Any]:
    """Aligned source representations (pivot positions and vocabulary) per source and map."""
    from workbench.fusion import align as A

    cfg = ctx.cfg
    ptok = ctx.tokenizer(cfg.pivot)
    pivot_ds = ctx.representations(cfg.pivot)
    table, details = [], {}
    settings = align_settings(cfg)
    for src in cfg.sources:
        stok = ctx.tokenizer(src)
        source_ds = ctx.representations(src)
        counts = A.load_counts(ctx.counts_path(src)) if ctx.counts_path(src).exists() else None
        groups = None  # DTW once per source, shared by every vocab map below
        for kind in cfg.compare_vocab_maps:
            folder = ctx.aligned_dir(src, kind)
            stats_path = folder.parent / f"{kind}.stats.json"
            stats = read_json(stats_path) if folder.exists() and stats_path.exists() else None
            if stats is None or stats.get("align_settings") != settings:  # else: done before a kill
                t0 = time.time()
                if groups is None and not A.same_vocabulary(ptok, stok):
                    groups = A.dtw_groups(pivot_ds, source_ds, ptok, stok, dtw_options(cfg))
                aligned, stats = A.align_representations(
                    pivot_ds, source_ds, ptok, stok, kind, counts=counts if kind == "ms" else None,
                    rules=align_rules(cfg, kind), options=dtw_options(cfg),
                    map_kwargs=vocab_map_kwargs(cfg, kind), groups=groups,
                    vocab_text=cfg.vocab_text, group_repeats=cfg.ms_group_repeats)
                stats = {**stats, "seconds": time.time() - t0, "align_settings": settings}
                tmp = folder.parent / f".{kind}.tmp"
                shutil.rmtree(tmp, ignore_errors=True)
                aligned.save_to_disk(str(tmp))
                if folder.exists():
                    shutil.rmtree(folder)
                tmp.rename(folder)
                write_json(stats_path, stats)
            details[f"{src}/{kind}"] = stats
            table.append({"pivot": cfg.pivot, "source": src, "vocab_map": kind,
                          "mapping_used": stats.get("vocab_map", kind),
                          **{k: stats.get(k) for k in TABLE_KEYS},
                          "with_candidates_share":
                              (stats.get("map_info") or {}).get("with_candidates_share"),
                          "seconds": stats.get("seconds")})
    return {"stats": details, "metrics": {"alignment_table": table, "table": table}}


PART1_STAGES: tuple[Stage, ...] = (
    Stage("dialogues", stage_dialogues, "render + cut the chat data once"),
    Stage("representations", stage_representations, "teacher-forced top-K per model"),
    Stage("cooccurrence", stage_cooccurrence, "ms co-occurrence counts over the corpus",
          DTW_FIELDS),
    Stage("alignment", stage_alignment, "aligned source representations + stats", ALIGN_FIELDS),
)

# part 2 (workbench.fusion.train.stages): targets, baselines, merges, evaluation
STAGES: list[Stage] = [*PART1_STAGES, *PART2_STAGES]


# ------------------------------------------------------------------------------------------
# the orchestrator
# ------------------------------------------------------------------------------------------
@dataclass
class FuseChatResult:
    run_dir: Path
    metrics: dict[str, Any]
    summaries: dict[str, dict[str, Any]]


def run_fusechat(cfg: FuseChatConfig, stages: list[Stage] | tuple[Stage, ...] | None = None,
                 until: str | None = None) -> FuseChatResult:
    """Run `stages` (default `STAGES`) in order, skipping finished ones; stop after `until`."""
    stages = list(STAGES if stages is None else stages)
    names = [s.name for s in stages]
    if until is not None and until not in names:
        raise ValueError(f"until={until!r} is not a stage; stages: {', '.join(names)}")
    t0 = time.time()
    seed_everything(cfg.seed)
    run = RunDir.create(cfg, kind=KIND)
    ctx = FuseChatContext(cfg, run)
    timings, cpu = {}, {}
    for st in stages:
        path = stage_path(run, st.name)
        keys = {k: getattr(cfg, k) for k in st.config_keys}
        done = path.exists() and st.name not in ctx.redo
        if done and keys and read_json(path).get("config_keys") != keys:
            log.warning("stage %s: finished with other settings than %s; re-running it and every "
                        "later stage", st.name, keys)
            done = False
            ctx.redo.update(s.name for s in stages[names.index(st.name):])
        if done:
            ctx.summaries[st.name] = read_json(path)
            log.info("stage %s: done before, skipped", st.name)
        else:
            log.info("stage %s: %s", st.name, st.doc)
            # runs it, writes its summary (main process only under accelerate launch; see
            # workbench.fusion.launch) and returns what a resumed run would see
            ctx.summaries[st.name] = execute(ctx, st)
        timings[st.name] = ctx.summaries[st.name].get("seconds")
        cpu[st.name] = ctx.summaries[st.name].get("cpu_seconds")
        if st.name == until:
            break
    metrics: dict[str, Any] = {}
    for s in ctx.summaries.values():
        metrics.update(s.get("metrics", {}))
    metrics["stages_done"] = list(timings)  # fewer than all stages when stopped by `until`
    metrics["stage_seconds"] = timings
    metrics["stage_cpu_seconds"] = cpu
    metrics["wall_seconds"] = time.time() - t0
    run.finish(metrics)
    return FuseChatResult(run.path, metrics, ctx.summaries)


def sample_text_alignment(run_dir: str | Path, source: str, index: int = 0,
                          max_chars: int = 300):
    """`align_text` (pivot vs `source`) of the first assistant turn of dialogue `index` of a run,
    cut to `max_chars` characters: the input of `viz.fusion.alignment_matrix_figure`."""
    from workbench.common.io import read_yaml
    from workbench.fusion import align as A

    run_dir = Path(run_dir)
    cfg = read_yaml(run_dir / "config.yaml")
    dialogues = R.load_dialogues(run_dir / "artifacts" / "dialogues.json")
    if not 0 <= index < len(dialogues):
        raise ValueError(f"index {index} out of range: the run has {len(dialogues)} dialogues")
    d = dialogues[index]
    a, b = d.spans[0]
    run_cfg = FuseChatConfig.from_dict({k: v for k, v in cfg.items()
                                        if k in FuseChatConfig.field_names()})
    return A.align_text(d.text[a:b][:max_chars], cached_tokenizer(cfg["pivot"]),
                        cached_tokenizer(source), options=dtw_options(run_cfg))
