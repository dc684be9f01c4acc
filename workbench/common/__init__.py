"""Shared plumbing: registry, frozen configs with presets, run directories, models, runtime.

The names below load on first use (PEP 562), so importing a light submodule such as
`workbench.common.papers` (the CLI's `--help`, its parameter checks) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PROFILES": "config", "RunConfig": "config",
    "OFFLINE_MODELS": "models", "load_causal_lm": "models", "load_tokenizer": "models",
    "prepare": "models", "resolve_model": "models",
    "Registry": "registry", "did_you_mean": "registry",
    "RunDir": "rundir", "list_runs": "rundir", "runs_root": "rundir",
    "resolve_device": "runtime", "resolve_dtype": "runtime", "seed_everything": "runtime",
    "setup_logging": "runtime", "track": "runtime",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'workbench.common' has no attribute {name!r}")
    # Not cached in this namespace: a name always follows its source module (monkeypatching
    # `workbench.common.models.load_causal_lm` in a test reaches every caller).
    return getattr(importlib.import_module(f"workbench.common.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
