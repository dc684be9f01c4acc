"""FuseChat part 2 as stages of :func:`workbench.fusion.run.run_fusechat` (``fn(ctx) -> summary``
with ``"metrics"``): pairwise targets -> baselines -> merges -> evaluation table.

Each stage resumes (a finished target / merge / model evaluation is kept, an interrupted target
resumes from its Trainer checkpoint). The work itself lives in :mod:`.targets`, :mod:`.merges`
and :mod:`.evaluate`; reading finished run folders (paired CE differences, tables over seeds,
re-grading saved answers) in :mod:`.report`.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workbench.common.io import write_json
from workbench.common.rundir import barrier, is_main_process
from workbench.fusion.context import Stage
from workbench.fusion.train.evaluate import evaluate_models, fusechat_table, heldout_dialogues
from workbench.fusion.train.merges import merge_targets, sce_matrix_weights
from workbench.fusion.train.report import batch_columns, evaluation_report, loss_summary
from workbench.fusion.train.targets import (
    short_name,
    train_baselines,
    train_pairwise_targets,
    train_summary,
)

log = logging.getLogger(__name__)


def _models_dir(ctx) -> Path:
    return ctx.run.artifacts / "models"


def _discard_if_redone(ctx, stage: str, folders: Sequence[Path]) -> None:
    """A stage re-run because settings it depends on changed (``ctx.redo``) must not pick up the
    models, merges or evaluations its earlier run left behind: delete them first."""
    if stage not in ctx.redo:
        return
    if is_main_process():
        for f in folders:
            if f.is_dir():
                log.warning("stage %s is re-run with new settings: discarding %s", stage, f)
                shutil.rmtree(f)
    barrier()


def _aligned(ctx) -> dict[str, Any]:
    from datasets import load_from_disk

    cfg = ctx.cfg
    out = {}
    for src in cfg.sources:
        folder = ctx.aligned_dir(src, cfg.vocab_map)
        if not folder.exists():
            raise ValueError(f"aligned representations of {src!r} ({cfg.vocab_map}) missing at "
                             f"{folder}: run the alignment stage first")
        out[src] = load_from_disk(str(folder))
    return out


def stage_targets(ctx) -> dict[str, Any]:
    """Pairwise fusion: one target per source (pivot + source, MinCE, λ·SFT + (1−λ)·fusion)."""
    _discard_if_redone(ctx, "targets", [_models_dir(ctx) / f"{short_name(ctx.cfg.pivot)}-"
                                        f"{short_name(s)}" for s in ctx.cfg.sources])
    paths = train_pairwise_targets(ctx.cfg, ctx.representations(ctx.cfg.pivot), _aligned(ctx),
                                   _models_dir(ctx))
    info = train_summary(paths)
    fixed = loss_summary(ctx, paths)  # one held-out batch before / after (report.py)
    return {"targets": info, "metrics": {"target_train": [
        {"model": k, "steps": v["steps"], "first_loss": v["first_loss"],
         "last_loss": v["last_loss"], **batch_columns(fixed[k]), "source_chosen": v["source_chosen"],
         "seconds": v["seconds"]} for k, v in info.items()]}}


def stage_baselines(ctx) -> dict[str, Any]:
    """SFT-only (λ=1) and Multi (all sources at once) baselines from the pivot."""
    _discard_if_redone(ctx, "baselines", [_models_dir(ctx) / "sft", _models_dir(ctx) / "multi"])
    paths = train_baselines(ctx.cfg, ctx.representations(ctx.cfg.pivot), _aligned(ctx),
                            _models_dir(ctx))
    info, fixed = train_summary(paths), loss_summary(ctx, paths)
    return {"baselines": info, "metrics": {"baseline_train": [
        {"model": k, "steps": v["steps"], **batch_columns(fixed[k]), "seconds": v["seconds"]}
        for k, v in info.items()]}}


def stage_merges(ctx) -> dict[str, Any]:
    """Merge the pairwise targets into the pivot with every method of ``cfg.merge_methods``."""
    _discard_if_redone(ctx, "merges", [ctx.run.artifacts / "merged"])
    targets = {k: Path(v["path"]) for k, v in ctx.summaries["targets"]["targets"].items()}
    info = merge_targets(ctx.cfg, targets, ctx.run.artifacts / "merged")
    weights = sce_matrix_weights(ctx.cfg.pivot, targets, ctx.cfg.tau)
    path = write_json(ctx.run.artifacts / "merged" / "sce_weights.json", weights)
    return {"merges": info, "sce_weights": str(path.relative_to(ctx.run.path)),
            "metrics": {"merge_seconds": {k: v["seconds"] for k, v in info.items()}}}


def stage_evaluation(ctx) -> dict[str, Any]:
    """Held-out CE, MT-Bench judge score and zero-shot average per model; Table 1 layout."""
    _discard_if_redone(ctx, "evaluation", [ctx.run.checkpoints / "eval"])
    cfg = ctx.cfg
    train_ids = set(ctx.representations(cfg.pivot)["id"])
    toks = [ctx.tokenizer(m) for m in cfg.models]
    dialogues = heldout_dialogues(cfg, train_ids, toks)
    models: dict[str, tuple[str, str]] = {cfg.pivot: ("pivot", cfg.pivot)}
    if cfg.eval_sources:
        models.update({s: ("source", s) for s in cfg.sources})
    models.update({k: ("baseline", v["path"])
                   for k, v in ctx.summaries["baselines"]["baselines"].items()})
    models.update({k: ("target", v["path"])
                   for k, v in ctx.summaries["targets"]["targets"].items()})
    models.update({k.upper() if k == "sce" else k: ("merge", v["path"])
                   for k, v in ctx.summaries["merges"]["merges"].items()})
    results = evaluate_models(cfg, models, dialogues, ctx.run.checkpoints / "eval")
    table = fusechat_table(results)
    comparisons = evaluation_report(ctx.run.artifacts, results, [d.id for d in dialogues], table)
    judge_note = next((r["mtbench"]["judge_note"] for r in results.values()
                       if r.get("mtbench", {}).get("judge_note")), "")
    return {"heldout_dialogues": [d.id for d in dialogues],
            "metrics": {"table": table, "fusechat_table": table, "judge_note": judge_note,
                        "comparisons": comparisons,
                        "heldout_dialogues": len(dialogues),
                        "eval_seconds": {k: r["seconds"] for k, r in results.items()},
                        # summed over the models: load, heldout, answers, judge, zeroshot
                        "eval_phase_seconds": _phase_seconds(results)}}


def _phase_seconds(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for r in results.values():
        for phase, sec in (r.get("timing") or {}).items():
            out[phase] = out.get(phase, 0.0) + float(sec)
    return out


# workbench.fusion.run appends them to part 1's stages
PART2_STAGES: tuple[Stage, ...] = (
    Stage("targets", stage_targets, "pairwise fusion training: one target per source"),
    Stage("baselines", stage_baselines, "SFT-only and Multi baselines"),
    Stage("merges", stage_merges, "SCE and the other merge methods over the targets"),
    Stage("evaluation", stage_evaluation, "held-out CE, MT-Bench judge, zero-shot; Table 1"),
)
