"""Minimal residual blocks of a decoder (BlockPruner eqs. 1-2) and how to remove them in place.

A decoder layer i holds two blocks: `("mha", i)` = input LN + self-attention (+ Gemma3's
post-attention norm) + residual, and `("mlp", i)` = pre-MLP LN + MLP (+ Gemma3's post-feedforward
norm) + residual. Removing a block replaces it by the identity: its residual passes through.

`BlockModel(model)` swaps each layer's `forward` for one that consults a per-layer control
object (no copy of the model); `bm.removed(blocks)` is a context manager; `bm.close()` restores
the original forwards. Besides removal, the control object lets the search resume a forward
from a cached hidden state at any of the 2L+1 sublayer points (`start`) and capture them.

Point numbering: point 2i is the input of layer i's MHA block, 2i+1 the input of its MLP block,
2L the output of the last layer. Block `("mha", i)` maps point 2i -> 2i+1, `("mlp", i)`
2i+1 -> 2i+2.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

Block = tuple[str, int]  # ("mha" | "mlp", layer index), the official del_order_list format
KINDS = ("mha", "mlp")

# model_type -> family (which norms a block owns)
SUPPORTED = {
    "llama": "llama", "mistral": "llama", "qwen2": "llama",
    "gemma3_text": "gemma3", "gemma3": "gemma3",
}


def supported_text() -> str:
    return "Llama, Mistral, Qwen2, Gemma3 (model_type " + ", ".join(sorted(SUPPORTED)) + ")"


def family_of(model: nn.Module) -> str:
    mt = getattr(getattr(model, "config", None), "model_type", None)
    if mt not in SUPPORTED:
        raise ValueError(f"unsupported architecture {mt!r}: block pruning supports "
                         f"{supported_text()}")
    return SUPPORTED[mt]


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    family_of(model)
    inner = getattr(model, "model", model)
    if hasattr(inner, "language_model"):  # Gemma3 multimodal wrapper
        inner = inner.language_model
    layers = getattr(inner, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"{type(model).__name__} has no decoder layer list at .model.layers")
    return layers


def parse_block(b: Any) -> Block:
    """('mha', 3), ['mlp', 0] or 'mha:3' -> Block."""
    if isinstance(b, str) and ":" in b:
        k, i = b.split(":", 1)
        b = (k, int(i))
    if not (isinstance(b, list | tuple) and len(b) == 2 and b[0] in KINDS
            and isinstance(b[1], int) and not isinstance(b[1], bool)):
        raise ValueError(f"bad block {b!r}: expected ('mha'|'mlp', layer index)")
    return (str(b[0]), int(b[1]))


# family -> block kind -> the layer attributes holding that block's modules
BLOCK_MODULE_NAMES = {
    "llama": {"mha": ("input_layernorm", "self_attn"), "mlp": ("post_attention_layernorm", "mlp")},
    "gemma3": {"mha": ("input_layernorm", "self_attn", "post_attention_layernorm"),
               "mlp": ("pre_feedforward_layernorm", "mlp", "post_feedforward_layernorm")},
}


def block_modules(layer: nn.Module, kind: str, family: str) -> list[nn.Module]:
    """The modules whose parameters belong to one block of a layer."""
    return [getattr(layer, n) for n in BLOCK_MODULE_NAMES[family][kind]]


@dataclass
class _Ctl:
    """Per-layer control consulted by the patched forward."""

    mha_off: bool = False
    mlp_off: bool = False
    skip: bool = False  # pass the input through untouched (layers before a resume point)
    inject: torch.Tensor | None = None  # replace the layer input by this tensor
    start_mlp: bool = False  # with inject: the tensor is the MLP-block input (skip the MHA part)
    capture: dict[int, torch.Tensor] | None = None
    index: int = 0
    family: str = "llama"
    extra: dict[str, Any] = field(default_factory=dict)


def _patched_forward(self: nn.Module, hidden_states: torch.Tensor, *args: Any, **kw: Any):
    ctl: _Ctl = self._bp_ctl
    if args:
        raise TypeError("block-pruned layers expect keyword arguments after hidden_states")
    if ctl.skip:
        return hidden_states
    if ctl.inject is not None:
        hidden_states = ctl.inject
    i2 = 2 * ctl.index
    if not ctl.start_mlp or ctl.inject is None:
        if ctl.capture is not None:
            ctl.capture[i2] = hidden_states
        if not ctl.mha_off:
            residual = hidden_states
            h = self.input_layernorm(hidden_states)
            h, _ = self.self_attn(hidden_states=h, **kw)
            if ctl.family == "gemma3":
                h = self.post_attention_layernorm(h)
            hidden_states = residual + h
    if ctl.capture is not None:
        ctl.capture[i2 + 1] = hidden_states
    if not ctl.mlp_off:
        residual = hidden_states
        if ctl.family == "gemma3":
            h = self.post_feedforward_layernorm(self.mlp(self.pre_feedforward_layernorm(
                hidden_states)))
        else:
            h = self.mlp(self.post_attention_layernorm(hidden_states))
        hidden_states = residual + h
    if ctl.capture is not None:
        ctl.capture[i2 + 2] = hidden_states
    return hidden_states


class BlockModel:
    """A decoder with removable blocks. Use as a context manager or call `close()`."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.family = family_of(model)
        self.layers = decoder_layers(model)
        self.n_layers = len(self.layers)
        self._ctls: list[_Ctl] = []
        for i, layer in enumerate(self.layers):
            if hasattr(layer, "_bp_ctl"):
                raise RuntimeError("model is already wrapped by a BlockModel; close() it first")
            ctl = _Ctl(index=i, family=self.family)
            layer._bp_ctl = ctl
            layer.forward = types.MethodType(_patched_forward, layer)
            self._ctls.append(ctl)
        self._removed: set[Block] = set()
        self.total_params = sum(p.numel() for p in model.parameters())

    # ---- lifecycle --------------------------------------------------------------------
    def close(self) -> None:
        for layer in self.layers:
            if "forward" in layer.__dict__:
                del layer.forward
            if hasattr(layer, "_bp_ctl"):
                del layer._bp_ctl
        self._ctls = []

    def __enter__(self) -> BlockModel:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- blocks -----------------------------------------------------------------------
    def blocks(self, block_type: str = "mix") -> list[Block]:
        if block_type not in ("mix", "mha", "mlp"):
            raise ValueError(f"block_type must be mix|mha|mlp, got {block_type!r}")
        kinds = KINDS if block_type == "mix" else (block_type,)
        return [(k, i) for i in range(self.n_layers) for k in KINDS if k in kinds]

    def check(self, blocks: Iterable[Any]) -> list[Block]:
        out = []
        for b in blocks:
            b = parse_block(b)
            if not 0 <= b[1] < self.n_layers:
                raise ValueError(f"block {b!r} does not exist: the model has {self.n_layers} "
                                 f"layers (indices 0..{self.n_layers - 1})")
            out.append(b)
        return out

    @staticmethod
    def point(b: Block) -> int:
        return 2 * b[1] + (b[0] == "mlp")

    @property
    def removed_set(self) -> frozenset[Block]:
        return frozenset(self._removed)

    def set_removed(self, blocks: Iterable[Any]) -> None:
        bl = set(self.check(blocks))
        for ctl in self._ctls:
            ctl.mha_off = ("mha", ctl.index) in bl
            ctl.mlp_off = ("mlp", ctl.index) in bl
        self._removed = bl

    @contextlib.contextmanager
    def removed(self, blocks: Iterable[Any]) -> Iterator[BlockModel]:
        """Temporarily remove `blocks` (on top of nothing: the set is absolute)."""
        before = set(self._removed)
        self.set_removed(blocks)
        try:
            yield self
        finally:
            self.set_removed(before)

    # ---- resume / capture (used by the fast search) -------------------------------------
    def set_start(self, point: int, hidden: torch.Tensor | None) -> None:
        """Resume the next forward at sublayer `point` from `hidden` (None: full forward)."""
        layer = point // 2
        for ctl in self._ctls:
            ctl.skip = hidden is not None and ctl.index < layer
            on = hidden is not None and ctl.index == layer
            ctl.inject = hidden if on else None
            ctl.start_mlp = on and point % 2 == 1

    def set_capture(self, store: dict[int, torch.Tensor] | None) -> None:
        for ctl in self._ctls:
            ctl.capture = store

    # ---- parameter accounting -----------------------------------------------------------
    def block_params(self, b: Any) -> int:
        kind, i = self.check([b])[0]
        return sum(p.numel() for m in block_modules(self.layers[i], kind, self.family)
                   for p in m.parameters())

    def ratio(self, blocks: Iterable[Any]) -> float:
        """Removed parameters / all parameters (embeddings and lm_head included), as the paper."""
        return sum(self.block_params(b) for b in set(self.check(blocks))) / self.total_params


def layer_blocks(layers: Iterable[int]) -> list[Block]:
    return [(k, i) for i in layers for k in KINDS]
