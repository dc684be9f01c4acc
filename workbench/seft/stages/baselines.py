"""Baseline stages on the same preference pairs: ``sft`` (chosen responses), ``dpo``, ``orpo``
(TRL). Each leaves ``checkpoints/<name>_final/``."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from workbench.common.rundir import RunDir
from workbench.common.runtime import seed_everything
from workbench.seft.config import SEFTConfig
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
from workbench.seft.training import train_preference, train_sft

log = logging.getLogger(__name__)


def baseline_dir(run: RunDir, name: str) -> Path:
    return run.checkpoints / f"{name}_final"


def stage_baseline(cfg: SEFTConfig, run: RunDir, data: SEFTData, name: str) -> dict[str, Any]:
    """Train baseline ``name`` of ``cfg.baselines`` (or reuse it); returns its ``stage.json``.
    Seeded with ``seed + 100 * (its position in cfg.baselines, from 1)``, alone or chained."""
    if name not in cfg.baselines:
        raise ValueError(f"baseline {name!r} is not in the config's baselines "
                         f"({', '.join(cfg.baselines)})")
    bdir = baseline_dir(run, name)
    info = done(bdir)
    if info is not None:
        log.info("resume: baseline %s already trained", name)
        return info
    ts = time.time()
    seed_everything(cfg.seed + 100 * (cfg.baselines.index(name) + 1))
    m, ptok = load(cfg, cfg.policy, train=True)
    multi = distributed()
    save = {"save_dir": bdir} if multi else {}
    if name == "sft":
        msgs = [[{"role": "user", "content": r["prompt"]},
                 {"role": "assistant", "content": r["chosen_response"]}] for r in data.used]
        m, loss = train_sft(m, ptok, msgs, run.checkpoints / "sft", lr=cfg.lr, stage="sft",
                            **save, **train_kwargs(cfg))
    else:
        m, loss = train_preference(name, m, ptok, data.used, run.checkpoints / name,
                                   lr=cfg.pref_lr, beta=cfg.beta, **save, **train_kwargs(cfg))
    info = {"loss": loss, "seconds": time.time() - ts}
    if multi:
        mark_stage(bdir, info)
    else:
        save_stage(m, ptok, bdir, info)
    del m
    free()
    return info
