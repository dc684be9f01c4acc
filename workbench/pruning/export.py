"""Export a block-pruned model as a plain `from_pretrained` checkpoint (no remote code).

What the checkpoint stores:
- a layer that lost both blocks is deleted (config `num_hidden_layers` and, where present,
  `layer_types` shrink; attention `layer_idx` is renumbered);
- a layer that lost only its MHA block keeps it with `o_proj` weight (and bias, if any) set to
  zero; a layer that lost only its MLP block keeps it with `down_proj` weight (and bias) zeroed.
  The sublayer then adds exactly 0 to the residual: the attention/MLP output is `o_proj(.)` /
  `down_proj(.)` = 0 (q/k/v biases, e.g. Qwen2's, sit before o_proj and do not matter), and
  Gemma3's post-attention / post-feedforward RMSNorm maps 0 to 0. So the logits match the masked
  model; those zeroed sublayers still cost compute (and KV cache for zeroed attention) at
  inference, and their parameters are still in the file (the paper's ratio counts them as gone).
- `block_order.json`: the removed blocks, the official `del_order_list` if given.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from workbench.common.io import write_json
from workbench.pruning.blocks import BlockModel, decoder_layers, family_of


@torch.no_grad()
def prune_model(model: nn.Module, removed, *, inplace: bool = False) -> nn.Module:
    """A real pruned model (layers dropped / sublayers zeroed) for the set `removed`."""
    family_of(model)
    if any(hasattr(layer, "_bp_ctl") for layer in decoder_layers(model)):
        raise RuntimeError("close() the BlockModel wrapping this model before exporting")
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
                  order: dict[str, Any] | None = None) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pruned = prune_model(model, removed)
    pruned.save_pretrained(out)
    if tokenizer is not None:
        tokenizer.save_pretrained(out)
    write_json(out / "block_order.json", {
        "removed": [list(b) for b in sorted(set(map(tuple, removed)), key=lambda b: (b[1], b[0]))],
        "del_order_list": order or {},
        "note": "layers with both blocks removed are deleted; a lone removed MHA/MLP block is "
                "stored with o_proj/down_proj zeroed (adds exactly 0 to the residual)",
    })
    return out
