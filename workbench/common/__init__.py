"""Shared plumbing: registry, frozen configs with presets, run directories, models, runtime."""

from workbench.common.config import PROFILES, RunConfig
from workbench.common.models import (
    OFFLINE_MODELS,
    load_causal_lm,
    load_tokenizer,
    prepare,
    resolve_model,
)
from workbench.common.registry import Registry, did_you_mean
from workbench.common.rundir import RunDir, list_runs, runs_root
from workbench.common.runtime import (
    resolve_device,
    resolve_dtype,
    seed_everything,
    setup_logging,
    track,
)

__all__ = [
    "OFFLINE_MODELS", "PROFILES", "Registry", "RunConfig", "RunDir", "did_you_mean", "list_runs",
    "load_causal_lm", "load_tokenizer", "prepare", "resolve_device", "resolve_dtype",
    "resolve_model", "runs_root", "seed_everything", "setup_logging", "track",
]
