"""Self-evolution round ``r``: the policy (round r-1's, or ``cfg.policy``) samples responses to
fresh prompts (or the external model writes them), the reviser revises them
(``artifacts/round{r}_data.json``, written before training: a resumed round reuses it), and the
policy is SFT-ed on the result (``checkpoints/round{r}_final/``).

Under a multi-process launch the main process samples and revises, every rank trains."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from workbench.common.io import read_json, write_json
from workbench.common.rundir import RunDir, barrier, is_main_process
from workbench.common.runtime import seed_everything
from workbench.seft.config import SEFTConfig
from workbench.seft.inference import generate_chat, reviser_input_limit, sample_and_revise
from workbench.seft.stages.common import (
    distributed,
    done,
    free,
    load,
    mark_stage,
    save_stage,
    train_kwargs,
)
from workbench.seft.stages.data import SEFTData
from workbench.seft.stages.reviser import reviser_dir
from workbench.seft.training import train_on_revised

log = logging.getLogger(__name__)


def round_dir(run: RunDir, r: int) -> Path:
    return run.checkpoints / f"round{r}_final"


def _sample(cfg: SEFTConfig, run: RunDir, data: SEFTData, r: int, policy, ptok,
            models: dict[str, Any]) -> None:
    """Write ``round{r}_data.json``: sampled (or external) responses and their revisions."""
    ts = time.time()
    if "reviser" not in models:
        models["reviser"] = load(cfg, str(reviser_dir(run)))
    rev, rtok = models["reviser"]
    seed_everything(cfg.seed + 1000 * r)
    prompts = data.round_prompts(cfg, r)
    ext_resp = None
    if cfg.evolution == "external":
        if "external" not in models:
            models["external"] = load(cfg, cfg.external_model)
        ext = models["external"]
        ext_resp = generate_chat(ext[0], ext[1], prompts, max_new_tokens=cfg.max_new_tokens)
    rows, stats = sample_and_revise(
        policy, ptok, rev, rtok, prompts, external_responses=ext_resp,
        max_new_tokens=cfg.max_new_tokens, reviser_max_new_tokens=cfg.reviser_max_new_tokens,
        decision=cfg.decision, max_input_tokens=reviser_input_limit(cfg.max_length))
    stats["seconds_sample_revise"] = time.time() - ts
    write_json(run.artifacts / f"round{r}_data.json", {"round": r, "stats": stats, "rows": rows})


def stage_round(cfg: SEFTConfig, run: RunDir, data: SEFTData, r: int,
                models: dict[str, Any] | None = None) -> dict[str, Any]:
    """Round ``r`` (or its saved result); returns its ``stage.json``. ``models`` caches the
    reviser / external model between rounds of one process (dropped by the caller)."""
    if not 1 <= r <= cfg.rounds:
        raise ValueError(f"round {r} out of range 1..{cfg.rounds}")
    fdir = round_dir(run, r)
    info = done(fdir)
    if info is not None:
        log.info("resume: round %d already finished", r)
        return info
    if done(reviser_dir(run)) is None:
        raise ValueError(f"round {r}: the reviser is not trained yet (run the reviser stage)")
    prev = round_dir(run, r - 1) if r > 1 else None
    if prev is not None and done(prev) is None:
        raise ValueError(f"round {r}: round {r - 1} is not finished yet")
    models = {} if models is None else models
    ts = time.time()
    policy, ptok = load(cfg, str(prev) if prev else cfg.policy, train=True)
    data_f = run.artifacts / f"round{r}_data.json"
    reused = data_f.exists()
    if reused:  # killed after revising: train on the same data
        log.info("resume: round %d data reused", r)
    elif is_main_process():
        _sample(cfg, run, data, r, policy, ptok, models)
    barrier()
    saved = read_json(data_f)
    rows, stats = saved["rows"], saved["stats"]
    seed_everything(cfg.seed + 1000 * r + 1)
    multi = distributed()
    policy, loss = train_on_revised(policy, ptok, rows, run.checkpoints / f"round{r}", lr=cfg.lr,
                                    **({"save_dir": fdir} if multi else {}), **train_kwargs(cfg))
    # a resumed round counts its earlier sampling/revising time too
    info = {**stats, "train_loss": loss, "round": r, "evolution": cfg.evolution,
            "seconds": time.time() - ts + (stats["seconds_sample_revise"] if reused else 0.0)}
    if multi:
        mark_stage(fdir, info)
    else:
        save_stage(policy, ptok, fdir, info)
    # the next round reloads the policy from fdir, whether this run trained it or a killed one
    # did: both paths then start from the same saved weights (exact resume)
    del policy
    free()
    return info
