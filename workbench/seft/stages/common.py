"""What every SEFT stage shares: the stage marker, model placement, trainer keyword arguments."""

from __future__ import annotations

import gc
import logging
from pathlib import Path
from typing import Any

from workbench.common.io import read_json, write_json
from workbench.common.rundir import barrier, is_main_process, local_device, world_size

log = logging.getLogger(__name__)

STAGE_FILE = "stage.json"


def done(folder: Path) -> dict[str, Any] | None:
    """The stage's ``stage.json`` (it is finished), else None."""
    f = folder / STAGE_FILE
    return read_json(f) if f.exists() else None


def save_stage(model, tok, folder: Path, info: dict[str, Any]) -> None:
    """One process: model + tokenizer, then ``stage.json`` last (marks the stage finished)."""
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    write_json(folder / STAGE_FILE, info)


def mark_stage(folder: Path, info: dict[str, Any]) -> None:
    """Multi-process: the model is saved already (every rank joined); the main process writes
    ``stage.json`` last, the other ranks wait until it exists."""
    if is_main_process():
        write_json(folder / STAGE_FILE, info)
    barrier()


def free() -> None:
    gc.collect()


def distributed() -> bool:
    return world_size() > 1


def placement(cfg, *, train: bool = False) -> dict[str, Any]:
    """``load_causal_lm`` keyword arguments from ``cfg.device`` / ``cfg.dtype`` (this rank's GPU
    under a multi-process launch). Inference: ``dtype`` as resolved (auto: bf16 on CUDA >= sm80,
    float32 on CPU). Training: float32 master weights unless a dtype is named (mixed precision is
    the trainers' ``bf16``), so ``auto`` trains exactly as before on every device."""
    from workbench.common.runtime import resolve_device, resolve_dtype

    device = resolve_device(local_device(cfg.device))
    if train and cfg.dtype == "auto":
        import torch

        return {"device": device, "dtype": torch.float32}
    return {"device": device, "dtype": resolve_dtype(cfg.dtype, device)}


def load(cfg, name: str, *, train: bool = False):
    """``(model, tokenizer)`` of ``name`` placed per :func:`placement`."""
    from workbench.common.models import load_causal_lm

    return load_causal_lm(name, **placement(cfg, train=train))


def place_judge(judge, cfg):
    """A local judge (lazy ``HFJudge``) loads on ``cfg.device`` / ``cfg.dtype`` (this rank's GPU
    under a launch); an endpoint judge has no placement and is returned as it is."""
    if isinstance(getattr(judge, "placement", None), dict):
        judge.placement.update(device=local_device(cfg.device), dtype=cfg.dtype)
    return judge


def train_kwargs(cfg) -> dict[str, Any]:
    """Keyword arguments every SEFT trainer call shares."""
    return dict(lora=cfg.lora, epochs=cfg.epochs, batch_size=cfg.batch_size,
                max_steps=cfg.max_steps, seed=cfg.seed, max_length=cfg.max_length,
                bf16=cfg.bf16, gradient_checkpointing=cfg.gradient_checkpointing,
                training_args=dict(cfg.training_args))
