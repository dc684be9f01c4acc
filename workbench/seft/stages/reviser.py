"""Reviser stage: SFT of ``reviser_base`` on KEEP / REVISE examples, with its decisions on
held-out pairs before and after training. Leaves ``checkpoints/reviser_final/``."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from workbench.common.rundir import RunDir, is_main_process
from workbench.common.runtime import seed_everything
from workbench.seft.config import SEFTConfig
from workbench.seft.inference import reviser_discrimination, reviser_input_limit, reviser_messages
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
from workbench.seft.training import train_sft

log = logging.getLogger(__name__)


def reviser_dir(run: RunDir) -> Path:
    return run.checkpoints / "reviser_final"


def stage_reviser(cfg: SEFTConfig, run: RunDir, data: SEFTData) -> dict[str, Any]:
    """Train the reviser (or reuse a finished one); returns its ``stage.json``."""
    rdir = reviser_dir(run)
    info = done(rdir)
    if info is not None:
        log.info("resume: reviser already trained (%s)", rdir)
        return info
    ts = time.time()
    seed_everything(cfg.seed)
    rev_limit = reviser_input_limit(cfg.max_length)
    rev, rtok = load(cfg, cfg.reviser_base, train=True)
    before = reviser_discrimination(rev, rtok, data.heldout, max_input_tokens=rev_limit) \
        if is_main_process() else None
    rev_kw = {**train_kwargs(cfg),
              "epochs": cfg.reviser_epochs if cfg.reviser_epochs is not None else cfg.epochs,
              "max_steps": cfg.reviser_max_steps if cfg.reviser_max_steps is not None
              else cfg.max_steps}
    multi = distributed()
    rev, rloss = train_sft(rev, rtok, reviser_messages(rtok, data.examples, rev_limit),
                           run.checkpoints / "reviser", lr=cfg.lr, stage="reviser",
                           save_dir=rdir if multi else None, **rev_kw)
    if multi:  # the weights are saved (sharded ones gathered): score the saved reviser
        del rev
        free()
        after = None
        if is_main_process():
            rev, rtok = load(cfg, str(rdir))
            after = reviser_discrimination(rev, rtok, data.heldout, max_input_tokens=rev_limit)
        info = {"loss": rloss, "seconds": time.time() - ts,
                "heldout": {"before_training": before, "after_training": after}}
        mark_stage(rdir, info)
    else:
        after = reviser_discrimination(rev, rtok, data.heldout, max_input_tokens=rev_limit)
        info = {"loss": rloss, "seconds": time.time() - ts,
                "heldout": {"before_training": before, "after_training": after}}
        save_stage(rev, rtok, rdir, info)
    rev = rtok = None
    free()
    return done(rdir) or info
