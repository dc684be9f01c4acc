"""Export a block-pruned model as a checkpoint that plain `from_pretrained` loads (no remote code).

Llama, Mistral, Qwen2 and Gemma3 text models (`real=True`, the default): the removed blocks'
weights are gone from the file and from the forward pass. A layer that lost both blocks is
deleted; a layer that lost one keeps only the other (`workbench.pruning.pruned_model`: classes
registered with the `Auto` classes when `workbench.pruning` is imported; Gemma3's blocks keep
their post-norms and `layer_types` follows the kept layers). Parameters = dense - removed
blocks'; the logits equal the masked model's.

`real=False`, and the multimodal Gemma3 wrapper (`gemma3`, no registered class): a layer that
lost both blocks is deleted (config `num_hidden_layers` and `layer_types` shrink; attention
`layer_idx` is renumbered); a lone removed block is kept with its output projection zeroed
(`o_proj` for MHA, `down_proj` for MLP, biases too), so it adds exactly 0 to the residual
(Gemma3's post-norms map 0 to 0): same logits, but those weights are still stored and computed.

`block_order.json`: the removed blocks, the official `del_order_list` if given, and the kind of
export.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workbench.common.io import write_json
from workbench.pruning.blocks import BlockModel, decoder_layers, family_of
from workbench.pruning.pruned_model import FAMILIES, to_pruned


@torch.no_grad()
def prune_model(model: nn.Module, removed, *, inplace: bool = False, real: bool = True
                ) -> nn.Module:
    """The pruned model for the set `removed`: blocks gone (Llama family and Gemma3 text,
    `real`), else layers dropped and lone removed blocks zeroed."""
    family_of(model)
    if any(hasattr(layer, "_bp_ctl") for layer in decoder_layers(model)):
        raise RuntimeError("close() the BlockModel wrapping this model before exporting")
    if real and model.config.model_type in FAMILIES:
        with BlockModel(model) as bm:
            removed = set(bm.check(removed))
        return to_pruned(model, removed)
    m = model if inplace else copy.deepcopy(model)
    layers = decoder_layers(m)
    with BlockModel(m) as bm:
        removed = set(bm.check(removed))
    keep = []
    for i, layer in enumerate(layers):
        mha, mlp = ("mha", i) in removed, ("mlp", i) in removed
        if mha and mlp:
            continue
        if mha:
            _zero(layer.self_attn.o_proj)
        if mlp:
            _zero(layer.mlp.down_proj)
        keep.append(i)
    new = nn.ModuleList([layers[i] for i in keep])
    for j, layer in enumerate(new):
        if hasattr(layer.self_attn, "layer_idx"):
            layer.self_attn.layer_idx = j
        if hasattr(layer, "layer_idx"):
            layer.layer_idx = j
    inner = m.model.language_model if hasattr(m.model, "language_model") else m.model
    inner.layers = new
    cfg = getattr(m.config, "text_config", m.config)
    cfg.num_hidden_layers = len(keep)
    if getattr(cfg, "layer_types", None):
        cfg.layer_types = [cfg.layer_types[i] for i in keep]
    return m


def _zero(lin: nn.Linear) -> None:
    lin.weight.zero_()
    if getattr(lin, "bias", None) is not None:
        lin.bias.zero_()


def export_pruned(model: nn.Module, tokenizer, removed, out_dir: str | Path,
                  order: dict[str, Any] | None = None, real: bool = True) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pruned = prune_model(model, removed, real=real)
    kind = "removed" if type(pruned).__name__.startswith("BlockPruned") else "zeroed"
    pruned.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    write_json(out / "block_order.json", {
        "removed": [list(b) for b in sorted(set(map(tuple, removed)), key=lambda b: (b[1], b[0]))],
        "del_order_list": order or {},
        "export": kind,
        "parameters": sum(p.numel() for p in pruned.parameters()),
        "note": ("removed blocks are absent from the weights and the forward (load after "
                 "`import workbench.pruning`)" if kind == "removed" else
                 "layers with both blocks removed are deleted; a lone removed MHA/MLP block is "
                 "stored with o_proj/down_proj zeroed (adds exactly 0 to the residual)"),
    })
    return out
