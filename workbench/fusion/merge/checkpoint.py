"""Streamed safetensors access: read one tensor at a time, write size-capped shards.

A `Checkpoint` never keeps a shard mapped: each `load` opens the shard with `safe_open`, copies
the one tensor out and closes it, so resident memory holds only the tensors in use (an open mmap
would count every page touched so far in the process RSS).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"

# names of input-embedding and output-head matrices whose first dim is the vocabulary
VOCAB_SUFFIXES = ("embed_tokens.weight", "lm_head.weight", "wte.weight", "word_embeddings.weight",
                  "embed_out.weight", "output.weight", "tok_embeddings.weight")
HEAD_SUFFIXES = ("lm_head.weight", "embed_out.weight", "output.weight")


def is_vocab_tensor(name: str) -> bool:
    return name.endswith(VOCAB_SUFFIXES)


class Checkpoint:
    """One model folder: config.json plus `model.safetensors` or a sharded index. A hub id
    (`owner/name`) is resolved to its local snapshot (`workbench.common.hub`: the cache only when
    offline, safetensors only)."""

    def __init__(self, folder: str | os.PathLike, label: str | None = None) -> None:
        from workbench.common.hub import is_hub_id, local_model_dir

        self.label = label or str(folder)
        # a hub id (also as `resolve_model` passes it through): its local snapshot
        self.folder = local_model_dir(str(folder)) if is_hub_id(folder) else Path(folder)
        if not self.folder.is_dir():
            raise ValueError(f"model {self.label!r}: {self.folder} is not a local folder")
        cfg_path = self.folder / "config.json"
        self.config: dict = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
        self.weight_map = self._weight_map()

    def _weight_map(self) -> dict[str, str]:
        index = self.folder / INDEX
        if index.exists():
            weight_map = json.loads(index.read_text()).get("weight_map", {})
            for shard in sorted(set(weight_map.values())):
                if not (self.folder / shard).exists():
                    raise ValueError(
                        f"model {self.label!r}: missing shard {shard} listed in {index}"
                    )
            return dict(weight_map)
        single = self.folder / SINGLE
        if single.exists():
            with safe_open(single, "pt") as f:
                return {k: SINGLE for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
        raise ValueError(
            f"model {self.label!r}: no {SINGLE} or {INDEX} in {self.folder} (only safetensors "
            f"checkpoints can be merged)"
        )

    # ---- metadata -------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self.weight_map)

    @property
    def tied(self) -> bool:
        cfg = self.config.get("text_config", self.config)
        return bool(cfg.get("tie_word_embeddings", self.config.get("tie_word_embeddings", False)))

    @property
    def architecture(self) -> tuple[str, tuple[str, ...]]:
        return self.config.get("model_type", "?"), tuple(self.config.get("architectures") or ())

    def embed_name(self) -> str | None:
        return next((n for n in self.names if is_vocab_tensor(n) and not n.endswith(HEAD_SUFFIXES)),
                    None)

    def resolve(self, name: str) -> str | None:
        """The stored name for `name`: itself, or the input embedding for a tied head."""
        if name in self.weight_map:
            return name
        if name.endswith(HEAD_SUFFIXES) and self.tied:
            return self.embed_name()
        return None

    def shape(self, name: str) -> tuple[int, ...]:
        stored = self.resolve(name)
        with safe_open(self.folder / self.weight_map[stored], "pt") as f:
            return tuple(f.get_slice(stored).get_shape())

    # ---- data -----------------------------------------------------------------------------
    def load(self, name: str) -> torch.Tensor:
        stored = self.resolve(name)
        if stored is None:
            raise ValueError(f"tensor {name!r} is missing from model {self.label!r}")
        with safe_open(self.folder / self.weight_map[stored], "pt") as f:
            return f.get_tensor(stored)


class ShardWriter:
    """Buffer tensors up to `max_shard_bytes`, then write `model-0000k-of-0000N.safetensors`.

    A single shard is named `model.safetensors` (no index), as `save_pretrained` does.
    """

    def __init__(self, folder: Path, max_shard_bytes: int) -> None:
        self.folder = folder
        self.max_shard_bytes = max_shard_bytes
        self.buffer: dict[str, torch.Tensor] = {}
        self.buffer_bytes = 0
        self.shards: list[tuple[str, list[str]]] = []  # (temporary file name, tensor names)
        self.total_size = 0

    def write(self, name: str, tensor: torch.Tensor) -> None:
        nbytes = tensor.numel() * tensor.element_size()
        if self.buffer and self.buffer_bytes + nbytes > self.max_shard_bytes:
            self.flush()
        self.buffer[name] = tensor.contiguous()
        self.buffer_bytes += nbytes
        self.total_size += nbytes

    def flush(self) -> None:
        if not self.buffer:
            return
        tmp = f"shard-{len(self.shards):05d}.tmp"
        save_file(self.buffer, str(self.folder / tmp), metadata={"format": "pt"})
        self.shards.append((tmp, list(self.buffer)))
        self.buffer, self.buffer_bytes = {}, 0

    def close(self) -> list[str]:
        """Flush, give the shards their final names, write the index; return the file names."""
        self.flush()
        n = len(self.shards)
        if n == 1:
            os.replace(self.folder / self.shards[0][0], self.folder / SINGLE)
            return [SINGLE]
        weight_map, files = {}, []
        for i, (tmp, names) in enumerate(self.shards):
            final = f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            os.replace(self.folder / tmp, self.folder / final)
            files.append(final)
            weight_map.update({k: final for k in names})
        index = {"metadata": {"total_size": self.total_size}, "weight_map": weight_map}
        (self.folder / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True))
        return [*files, INDEX]
