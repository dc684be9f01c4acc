"""What FuseChat's stages share: the run folder's layout, the context object, the Stage record.

Light on purpose (no training or model code): :mod:`workbench.fusion.run` (part 1 and the
orchestrator), :mod:`workbench.fusion.train.stages` (part 2) and the app import it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.common import RunDir, load_tokenizer
from workbench.fusion import represent as R
from workbench.fusion.config import FuseChatConfig

KIND = "fusechat"


def model_slug(name: str) -> str:
    """A folder name for a model name (`tiny:llama` -> `tiny_llama`, `org/m` -> `org__m`)."""
    return name.replace("/", "__").replace(":", "_").replace("\\", "__")


@functools.lru_cache(maxsize=8)
def cached_tokenizer(name: str):
    """`load_tokenizer`, once per process (a 262k-entry vocabulary takes seconds to load)."""
    return load_tokenizer(name)


@dataclass
class FuseChatContext:
    """What stages share: the config, the run folder, and the summaries of finished stages."""

    cfg: FuseChatConfig
    run: RunDir
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)
    # stages re-run because an earlier stage's recorded settings changed (see `run_fusechat`):
    # their own finished-file caches are stale
    redo: set[str] = field(default_factory=set)
    _tokenizers: dict[str, Any] = field(default_factory=dict, repr=False)

    # ---- layout -------------------------------------------------------------------------
    @property
    def dialogues_path(self) -> Path:
        return self.run.artifacts / "dialogues.json"

    def repr_dir(self, model: str) -> Path:
        return self.run.artifacts / "representations" / model_slug(model)

    def counts_path(self, source: str) -> Path:
        return self.run.artifacts / "ms_counts" / f"{model_slug(source)}.npz"

    def aligned_dir(self, source: str, kind: str) -> Path:
        return self.run.artifacts / "aligned" / model_slug(source) / kind

    # ---- shared objects -----------------------------------------------------------------
    def tokenizer(self, model: str):
        if model not in self._tokenizers:
            self._tokenizers[model] = cached_tokenizer(model)
        return self._tokenizers[model]

    def representations(self, model: str):
        return R.load_representations(self.repr_dir(model))


@dataclass(frozen=True)
class Stage:
    name: str
    fn: Callable[[FuseChatContext], dict[str, Any]]
    doc: str = ""
    # config fields the stage's output depends on beyond the run folder's identity: recorded in
    # its summary; a finished stage whose recorded values differ is re-run with every later stage
    config_keys: tuple[str, ...] = ()


def stage_path(run: RunDir, name: str) -> Path:
    """The summary of a finished stage (written last, by the main process only)."""
    return run.checkpoints / "stages" / f"{name}.json"
