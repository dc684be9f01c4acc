"""Devices, dtypes, seeds, logging and progress bars: resolved once per run."""

from __future__ import annotations

import logging
import os
import random
import sys

import torch
from tqdm.auto import tqdm

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` picks CUDA when available, else CPU (MPS is opt-in by naming it)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return dev


def resolve_dtype(dtype: str = "auto", device: torch.device | None = None) -> torch.dtype:
    """`auto` is bf16 on CUDA with compute capability >= 8, float32 elsewhere."""
    if dtype == "auto":
        dev = device or resolve_device()
        if dev.type == "cuda" and torch.cuda.get_device_capability(dev)[0] >= 8:
            return torch.bfloat16
        return torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: auto, {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch once per run; return a torch generator for kernels."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def setup_logging(level: int | str = logging.INFO) -> None:
    """For notebooks and the CLI only: the library itself installs no handlers."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "gradio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def track(iterable=None, desc: str | None = None, total: int | None = None, **kw):
    """The one tqdm wrapper: bars go to stderr, off when WORKBENCH_PROGRESS=0."""
    disable = os.environ.get("WORKBENCH_PROGRESS", "1") == "0"
    return tqdm(iterable, desc=desc, total=total, disable=disable, dynamic_ncols=True, **kw)
