"""run_seft(cfg): reviser training, SFT/DPO/ORPO baselines, self-evolution rounds, judged table.

Stages and what each leaves in the run folder (a killed run restarts from the last finished one):

- ``checkpoints/reviser_final/``           reviser (merged), ``stage.json`` written last = done;
- ``checkpoints/{sft,dpo,orpo}_final/``    each baseline, same marker;
- ``artifacts/round{r}_data.json``         the round's sampled + revised data (written before the
                                           policy is trained on it; a resumed round reuses it);
- ``checkpoints/round{r}_final/``          the policy after round r, same marker;
- ``artifacts/answers/<model>.json``       eval + MT-Bench two-turn answers per model;
- ``artifacts/judgments/<model>.json``     the judge's grades per model;
- ``metrics.json``                         written last (the run is complete).

Every stage starts from ``seed_everything(seed + stage offset)``, so a resumed run samples and
trains exactly as an uninterrupted one would. Models are saved, freed, and reloaded one at a time
for evaluation (only the policy and the reviser coexist, during a round); each round starts from
the previous round's saved checkpoint, so an uninterrupted and a resumed run take the same path.

Each stage is a module of :mod:`workbench.seft.stages` and runs alone with :func:`run_stage`
(``workbench seft stage reviser|sft|dpo|orpo|round ...``, also under ``accelerate launch``: the
training stages then run data-parallel, the main process alone writes the run folder).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.common import RunDir
from workbench.common.rundir import barrier, is_main_process
from workbench.eval.chat import WEAK_JUDGE_NOTE, is_weak, make_judge
from workbench.seft.config import SEFTConfig
from workbench.seft.stages import STAGES
from workbench.seft.stages.baselines import baseline_dir, stage_baseline
from workbench.seft.stages.common import STAGE_FILE, free, place_judge
from workbench.seft.stages.data import SEFTData, mtbench_subset, prepare_data
from workbench.seft.stages.evaluate import (
    _nan_to_none,
    _same_share,
    answer_all,
    judge_answers,
    judge_warnings,
    rejudge,
)
from workbench.seft.stages.evolve import round_dir, stage_round
from workbench.seft.stages.reviser import stage_reviser

log = logging.getLogger(__name__)

__all__ = ["STAGE_FILE", "SEFTResult", "_same_share", "judge_answers", "judge_warnings", "mtbench_subset",
           "rejudge", "run_seft", "run_stage"]


@dataclass
class SEFTResult:
    run_dir: Path
    metrics: dict[str, Any]


def _open(cfg: SEFTConfig) -> tuple[RunDir, SEFTData]:
    """Threads, the run folder (rank-aware) and the data split, as every stage starts."""
    if cfg.num_threads:
        import torch
        torch.set_num_threads(cfg.num_threads)
    run = RunDir.create(cfg, kind="seft")
    data = prepare_data(cfg)
    run.write_artifact_json("reviser_data_stats.json", data.info)
    return run, data


def run_stage(cfg: SEFTConfig, stage: str, round: int | None = None) -> dict[str, Any]:
    """Run ONE training stage of ``cfg``'s run folder (``reviser``, a baseline ``sft`` / ``dpo``
    / ``orpo``, or ``round`` number ``round``) and return its ``stage.json``; a finished stage
    is returned as it is. The stages a stage needs (the reviser before round 1, round r-1 before
    round r) must be finished. A later :func:`run_seft` of the same config skips it."""
    if stage not in STAGES:
        from workbench.common.registry import did_you_mean
        raise ValueError(f"unknown SEFT stage {stage!r}.{did_you_mean(stage, list(STAGES))} "
                         f"Stages: {', '.join(STAGES)}")
    if stage == "round" and round is None:
        raise ValueError("stage round needs its number (--round R)")
    run, data = _open(cfg)
    if stage == "reviser":
        return stage_reviser(cfg, run, data)
    if stage == "round":
        return stage_round(cfg, run, data, round)
    return stage_baseline(cfg, run, data, stage)


def run_seft(cfg: SEFTConfig) -> SEFTResult:
    """The whole SEFT experiment; resumes from the last finished stage of the same run folder.
    Under a multi-process launch every rank trains; the main process alone evaluates and writes
    ``metrics.json`` (the other ranks return None metrics once training is done)."""
    t0 = time.time()
    run, data = _open(cfg)
    warnings: list[str] = list(data.warnings)
    stage_seconds: dict[str, float] = {}

    # --- reviser ------------------------------------------------------------------------------
    info = stage_reviser(cfg, run, data)
    rloss = info["loss"]
    reviser_heldout = info.get("heldout") or {}
    stage_seconds["reviser"] = info["seconds"]
    ho = reviser_heldout.get("after_training") or {"n_pairs": 0}
    if ho["n_pairs"] and ho["share_revise_rejected"] <= ho["share_revise_chosen"]:
        warnings.append(f"reviser: on {ho['n_pairs']} held-out pairs it revises the rejected "
                        f"responses no more often than the chosen ones "
                        f"({ho['share_revise_rejected']:.2f} vs {ho['share_revise_chosen']:.2f}): "
                        "its decisions carry no preference signal")

    # --- baselines ----------------------------------------------------------------------------
    from workbench.common.runtime import track

    model_dirs: dict[str, Path] = {}
    baseline_loss: dict[str, float] = {}
    for b in track(cfg.baselines, desc="baselines"):
        info = stage_baseline(cfg, run, data, b)
        baseline_loss[b] = info["loss"]
        stage_seconds[b] = info["seconds"]
        model_dirs[b.upper()] = baseline_dir(run, b)

    # --- self-evolution -----------------------------------------------------------------------
    rounds: list[dict[str, Any]] = []
    models: dict[str, Any] = {}  # the reviser / external model, kept between rounds
    for r in track(range(1, cfg.rounds + 1), desc="SEFT rounds"):
        info = stage_round(cfg, run, data, r, models)
        run.write_artifact_json(f"round{r}_stats.json", info)
        rounds.append(info)
        stage_seconds[f"round{r}"] = info["seconds"]
        model_dirs[f"SEFT round {r}"] = round_dir(run, r)
        if info.get("never_revised"):
            warnings.append(f"round {r}: the reviser revised none of {info['n']} responses "
                            f"({info['n_malformed']} malformed outputs): the policy was trained "
                            "on its own responses")
        elif info.get("n_malformed"):
            warnings.append(f"round {r}: {info['n_malformed']} of {info['n']} reviser outputs "
                            "malformed (treated as KEEP)")
    models.clear()
    free()
    barrier()
    if not is_main_process():  # evaluation is inference: the main process alone
        return SEFTResult(run.path, {})

    # --- answers: one model in memory at a time -------------------------------------------------
    from workbench.data import load_judge_prompts, load_mtbench_questions
    jp = load_judge_prompts()
    qs_all = load_mtbench_questions()
    qs = mtbench_subset([qs_all[i] for i in range(len(qs_all))], cfg.mtbench_limit)
    answers = answer_all(cfg, model_dirs, data.eval_prompts, qs, run.artifacts / "answers")

    # --- judging ------------------------------------------------------------------------------
    judge = place_judge(make_judge(cfg.judge, cfg.judge_model, cfg.judge_mode,
                                   max_new_tokens=cfg.judge_max_new_tokens,
                                   batch_size=cfg.judge_batch_size), cfg)
    table = judge_answers(judge, answers, run.artifacts / "judgments", judge_prompts=jp,
                          pairwise=cfg.mtbench_pairwise)
    warnings += judge_warnings(table)
    from workbench.seft.report import finish_table
    table = finish_table(table, run.artifacts)  # n and 95 % CIs; per-item files for the claims

    never = [s["round"] for s in rounds if s.get("never_revised")]
    metrics = {
        "table": table, "rounds": rounds, "reviser_train_loss": rloss,
        "reviser_heldout": reviser_heldout, "decision": cfg.decision,
        "baseline_train_loss": baseline_loss, "reviser_data": data.info,
        "judge": judge.name, "judge_note": WEAK_JUDGE_NOTE if is_weak(judge) else "",
        "mtbench_questions": [q["question_id"] for q in qs],
        "n_eval_prompts": len(data.eval_prompts),
        "never_revised_rounds": never, "warnings": warnings,
        "stage_seconds": stage_seconds,
        "seconds_per_round": sum(s["seconds"] for s in rounds) / len(rounds),
        "seconds_this_invocation": time.time() - t0,
    }
    for w in warnings:
        log.warning("%s", w)
    metrics = _nan_to_none(metrics)
    run.finish(metrics)
    return SEFTResult(run.path, metrics)

