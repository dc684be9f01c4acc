"""Perturbed copies of a model: inputs for tests, the benchmark and the smoke notebook."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from workbench.common.models import MANIFEST, resolve_model
from workbench.fusion.merge.checkpoint import INDEX, Checkpoint, ShardWriter


def perturbed_copies(name: str, root: str | Path, n: int = 3, *, scale: float = 0.02,
                     seed: int = 0, max_shard_bytes: int = 2_000_000_000) -> list[Path]:
    """Write `n` folders `root/model_<i>` with theta + scale * std(theta) * N(0, 1) per tensor.

    Streams tensor by tensor; other files (config, tokenizer) are copied. `max_shard_bytes`
    smaller than the model writes sharded checkpoints with an index.
    """
    src = Checkpoint(resolve_model(name), name)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        folder = Path(root) / f"model_{i}"
        folder.mkdir(parents=True, exist_ok=True)
        for f in src.folder.iterdir():
            if f.is_file() and not f.name.endswith(".safetensors") and f.name not in (INDEX, MANIFEST):
                shutil.copy2(f, folder / f.name)
        writer = ShardWriter(folder, max_shard_bytes)
        for key in src.names:
            t = src.load(key)
            if t.is_floating_point():
                std = float(t.float().std()) if t.numel() > 1 else 1.0
                noise = torch.randn(t.shape, generator=gen) * scale * (std or 1.0)
                t = (t.float() + noise).to(t.dtype)
            writer.write(key, t)
        writer.close()
        out.append(folder)
    return out
