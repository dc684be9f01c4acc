"""One FuseChat stage at a time, also under ``accelerate launch`` (``workbench fusechat stage``).

    accelerate launch --config_file configs/accelerate/ddp.yaml -m workbench.cli \\
        fusechat stage targets --preset paper

Ranks: the training stages (``targets``, ``baselines``) run on every rank (the Trainer is
data-parallel; FSDP / DeepSpeed come from the accelerate config); ``representations`` splits
each model's shards over the ranks (rank i computes every N-th shard, then the main process
assembles the statistics); every other stage runs on the main process while the others wait.
Only the main process writes the stage's summary (``checkpoints/stages/<name>.json``, last), so a
later ``workbench fusechat run`` of the same config skips the stage.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from workbench.common.io import read_json, write_json
from workbench.common.rundir import RunDir, barrier, is_main_process, rank, world_size
from workbench.fusion.config import FuseChatConfig
from workbench.fusion.context import KIND, FuseChatContext, Stage, stage_path

log = logging.getLogger(__name__)

COLLECTIVE = ("targets", "baselines")  # every rank runs these (data-parallel training)


def execute(ctx: FuseChatContext, st: Stage) -> dict[str, Any]:
    """Run stage ``st`` and write its summary; returns the summary every rank then reads.
    A single process simply runs it (what ``run_fusechat`` always did)."""
    keys = {k: getattr(ctx.cfg, k) for k in st.config_keys}
    path = stage_path(ctx.run, st.name)
    multi = world_size() > 1
    t1, c1 = time.time(), time.process_time()  # the ranks' shard work counts too
    if multi and st.name == "representations":
        from workbench.fusion.run import _represent

        barrier()  # every rank past its start-up before any shard is written
        for m in ctx.cfg.models:
            _represent(ctx, m, (rank(), world_size()))
        barrier()  # all shards present: the main process assembles the statistics below
    if not multi or is_main_process() or st.name in COLLECTIVE:
        summary = st.fn(ctx)
        if keys:
            summary["config_keys"] = keys
        summary["seconds"] = time.time() - t1
        summary["cpu_seconds"] = time.process_time() - c1  # all threads of this process
        if is_main_process():
            write_json(path, summary)
    barrier()
    return read_json(path)  # what a resumed run would see


def run_stage(cfg: FuseChatConfig, name: str) -> dict[str, Any]:
    """Run stage ``name`` of ``cfg``'s run folder (every earlier stage must be finished) and
    return its summary; a finished stage is returned as it is."""
    from workbench.common.registry import did_you_mean
    from workbench.fusion.run import STAGES

    names = [s.name for s in STAGES]
    if name not in names:
        raise ValueError(f"unknown FuseChat stage {name!r}.{did_you_mean(name, names)} "
                         f"Stages: {', '.join(names)}")
    run = RunDir.create(cfg, kind=KIND)
    ctx = FuseChatContext(cfg, run)
    for st in STAGES[:names.index(name)]:
        p = stage_path(run, st.name)
        if not p.exists():
            raise ValueError(f"stage {name!r} needs stage {st.name!r} finished first "
                             f"(workbench fusechat run --until {st.name} with the same config)")
        ctx.summaries[st.name] = read_json(p)
    st = STAGES[names.index(name)]
    path = stage_path(run, name)
    if path.exists():
        log.info("stage %s: done before, skipped", name)
        return read_json(path)
    log.info("stage %s: %s (%d process(es))", name, st.doc, world_size())
    return execute(ctx, st)
