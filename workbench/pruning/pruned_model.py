"""Block-pruned checkpoints whose removed blocks are gone from the file and from the forward.

No native `transformers` architecture lets a Llama-style layer lack its attention or its MLP, so
the workbench registers, for each supported family, a config and a causal-LM class with the
`Auto` classes (model_type `blockpruned_llama`, `blockpruned_mistral`, `blockpruned_qwen2`):
the family's own classes plus a config field `kept_blocks` = [[has_mha, has_mlp], ...] per kept
layer. The model builds the family's layers, then removes the absent blocks' modules (attention
+ input norm, MLP + post-attention norm) before the weights are loaded, and each layer runs only
the blocks it has. Importing `workbench.pruning` registers them; then a plain

    AutoModelForCausalLM.from_pretrained(folder)

loads the checkpoint (no remote code). Attention layers are renumbered for the KV cache so that
generation works (slot j = the j-th layer that still has attention).
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM

FAMILIES: dict[str, tuple[type, type]] = {}  # base model_type -> (config class, model class)


def _layer_forward(self: nn.Module, hidden_states: torch.Tensor, attention_mask=None,
                   position_ids=None, past_key_values=None, use_cache=False,
                   position_embeddings=None, **kwargs: Any) -> torch.Tensor:
    """A Llama-family decoder layer that runs only the blocks it still has."""
    if self.self_attn is not None:
        residual = hidden_states
        h = self.input_layernorm(hidden_states)
        h, _ = self.self_attn(hidden_states=h, attention_mask=attention_mask,
                              position_ids=position_ids, past_key_values=past_key_values,
                              use_cache=use_cache, position_embeddings=position_embeddings,
                              **kwargs)
        hidden_states = residual + h
    if self.mlp is not None:
        residual = hidden_states
        h = self.mlp(self.post_attention_layernorm(hidden_states))
        hidden_states = residual + h
    return hidden_states


def strip_blocks(model: nn.Module, kept_blocks: list[list[bool]]) -> None:
    """Remove the absent blocks' modules of `model`'s layers and renumber attention for the cache."""
    layers = model.model.layers
    if len(layers) != len(kept_blocks):
        raise ValueError(f"kept_blocks has {len(kept_blocks)} entries for {len(layers)} layers")
    slot = 0
    for layer, (mha, mlp) in zip(layers, kept_blocks, strict=True):
        if not mha:
            layer.self_attn = None
            layer.input_layernorm = None
        else:
            layer.self_attn.layer_idx = slot
            slot += 1
        if not mlp:
            layer.mlp = None
            layer.post_attention_layernorm = None
        layer.forward = types.MethodType(_layer_forward, layer)


def _register(base_type: str, cfg_cls: type, model_cls: type) -> None:
    name = "".join(p.capitalize() for p in base_type.split("_"))

    cfg = type(f"BlockPruned{name}Config", (cfg_cls,), {
        "model_type": f"blockpruned_{base_type}",
        "__doc__": f"{cfg_cls.__name__} + `kept_blocks` (see workbench.pruning.pruned_model)."})

    def __init__(self, config):  # noqa: N807 - the model class's constructor
        model_cls.__init__(self, config)
        kept = getattr(config, "kept_blocks", None)
        if kept is None:
            raise ValueError(f"{type(self).__name__}: config has no kept_blocks")
        strip_blocks(self, kept)

    model = type(f"BlockPruned{name}ForCausalLM", (model_cls,), {
        "config_class": cfg, "__init__": __init__,
        "__doc__": f"{model_cls.__name__} whose layers may lack attention or MLP blocks."})
    try:
        AutoConfig.register(cfg.model_type, cfg)
        AutoModelForCausalLM.register(cfg, model)
    except ValueError:  # registered already (module reloaded)
        cfg = AutoConfig.for_model(cfg.model_type).__class__
        model = AutoModelForCausalLM._model_mapping[cfg]
    FAMILIES[base_type] = (cfg, model)


def _register_all() -> None:
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    for t, c, m in (("llama", LlamaConfig, LlamaForCausalLM),
                    ("mistral", MistralConfig, MistralForCausalLM),
                    ("qwen2", Qwen2Config, Qwen2ForCausalLM)):
        if t not in FAMILIES:
            _register(t, c, m)


_register_all()


@torch.no_grad()
def to_pruned(model: nn.Module, removed: set) -> nn.Module:
    """A copy of `model` (a supported Llama-family causal LM) without the `removed` blocks: the
    registered class, sharing no storage with `model`, ready for `save_pretrained`."""
    import copy

    base_type = model.config.model_type
    if base_type not in FAMILIES:
        raise ValueError(f"real block removal supports {', '.join(sorted(FAMILIES))}, "
                         f"not {base_type!r}")
    cfg_cls, model_cls = FAMILIES[base_type]
    n = model.config.num_hidden_layers
    keep = [i for i in range(n) if not {("mha", i), ("mlp", i)} <= removed]
    kept_blocks = [[("mha", i) not in removed, ("mlp", i) not in removed] for i in keep]
    d = model.config.to_dict()
    for k in ("model_type", "architectures", "transformers_version"):
        d.pop(k, None)
    d["num_hidden_layers"] = len(keep)
    if d.get("layer_types"):
        d["layer_types"] = [d["layer_types"][i] for i in keep]
    cfg = cfg_cls(**d, kept_blocks=kept_blocks)
    m = copy.deepcopy(model)
    m.model.layers = nn.ModuleList([m.model.layers[i] for i in keep])
    m.__class__ = model_cls
    m.config = cfg
    m.model.config = cfg
    strip_blocks(m, kept_blocks)
    return m
