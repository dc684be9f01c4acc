"""Block-pruned checkpoints whose removed blocks are gone from the file and from the forward.

No native `transformers` architecture lets a decoder layer lack its attention or its MLP, so the
workbench registers, for each supported family, a config and a causal-LM class with the `Auto`
classes (model_type `blockpruned_llama`, `blockpruned_mistral`, `blockpruned_qwen2`,
`blockpruned_gemma3_text`): the family's own classes plus a config field `kept_blocks` =
[[has_mha, has_mlp], ...] per kept layer. The model builds the family's layers, then removes the
absent blocks' modules before the weights are loaded, and each layer runs only the blocks it has.
A block's modules are those of `workbench.pruning.blocks.BLOCK_MODULE_NAMES`:

- Llama family: MHA = input norm + attention, MLP = post-attention norm + MLP;
- Gemma3: MHA = input norm + attention + post-attention norm, MLP = pre-feedforward norm + MLP +
  post-feedforward norm. `layer_types` (sliding/full attention) follows the kept layers, so each
  attention keeps its window and its rotary embedding (local or global); the embedding scaling,
  the final norm and the logit soft-capping are Gemma3's own.

Importing `workbench.pruning` registers them; then a plain

    AutoModelForCausalLM.from_pretrained(folder)

loads the checkpoint (no remote code). KV cache: transformers builds it from `layer_types`
(sliding layers get a windowed cache), so slot j is kept layer j, of its own kind, and a layer
without attention gets a `DummyLayer` (the config's `kv_sharing_modes` marks it, the hook
transformers uses for layers that store no cache), which the cache skips for lengths and mask
sizes. (Numbering the slots by attention layers instead gave a Qwen2 with mixed sliding / full
layers caches of the wrong kind: tests/integration/test_pruning_export_sliding.py.)
"""

from __future__ import annotations

import types
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM

from workbench.pruning.blocks import BLOCK_MODULE_NAMES, SUPPORTED

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


def _gemma3_layer_forward(self: nn.Module, hidden_states: torch.Tensor, **kwargs: Any
                          ) -> torch.Tensor:
    """A Gemma3 decoder layer that runs only the blocks it still has (both post-norms kept)."""
    if self.self_attn is not None:
        residual = hidden_states
        h, _ = self.self_attn(hidden_states=self.input_layernorm(hidden_states), **kwargs)
        hidden_states = residual + self.post_attention_layernorm(h)
    if self.mlp is not None:
        residual = hidden_states
        h = self.mlp(self.pre_feedforward_layernorm(hidden_states))
        hidden_states = residual + self.post_feedforward_layernorm(h)
    return hidden_states


def strip_blocks(model: nn.Module, kept_blocks: list[list[bool]], family: str = "llama") -> None:
    """Remove the absent blocks' modules of `model`'s layers and number attention for the cache."""
    layers = model.model.layers
    if len(layers) != len(kept_blocks):
        raise ValueError(f"kept_blocks has {len(kept_blocks)} entries for {len(layers)} layers")
    attrs = BLOCK_MODULE_NAMES[family]
    forward = _gemma3_layer_forward if family == "gemma3" else _layer_forward
    for j, (layer, (mha, mlp)) in enumerate(zip(layers, kept_blocks, strict=True)):
        for kind, kept in (("mha", mha), ("mlp", mlp)):
            if not kept:
                for name in attrs[kind]:
                    setattr(layer, name, None)
        # cache slot = kept layer, of that layer's `layer_types` kind (sliding or full); a layer
        # without attention gets a DummyLayer through the config's `kv_sharing_modes`
        if hasattr(layer, "layer_idx"):
            layer.layer_idx = j
        if mha:
            layer.self_attn.layer_idx = j
        layer.forward = types.MethodType(forward, layer)


def _kv_sharing_modes(self) -> list[str | None]:
    """Read by transformers' cache: "reuse" -> a DummyLayer (no cache) for a layer without
    attention; None -> the layer's own cache of its `layer_types` kind. Without any attention
    left, plain (never filled) caches: the cache needs one real layer to report a length."""
    modes = [None if mha else "reuse" for mha, _ in self.kept_blocks]
    return modes if None in modes else [None] * len(modes)


def _register(base_type: str, cfg_cls: type, model_cls: type) -> None:
    name = "".join(p.capitalize() for p in base_type.split("_"))
    family = SUPPORTED[base_type]
    extra: dict[str, Any] = {"kv_sharing_modes": property(_kv_sharing_modes)}

    cfg = type(f"BlockPruned{name}Config", (cfg_cls,), {
        "model_type": f"blockpruned_{base_type}", **extra,
        "__doc__": f"{cfg_cls.__name__} + `kept_blocks` (see workbench.pruning.pruned_model)."})

    def __init__(self, config):  # noqa: N807 - the model class's constructor
        model_cls.__init__(self, config)
        kept = getattr(config, "kept_blocks", None)
        if kept is None:
            raise ValueError(f"{type(self).__name__}: config has no kept_blocks")
        strip_blocks(self, kept, family)

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
        Gemma3ForCausalLM,
        Gemma3TextConfig,
        LlamaConfig,
        LlamaForCausalLM,
        MistralConfig,
        MistralForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    for t, c, m in (("llama", LlamaConfig, LlamaForCausalLM),
                    ("mistral", MistralConfig, MistralForCausalLM),
                    ("qwen2", Qwen2Config, Qwen2ForCausalLM),
                    ("gemma3_text", Gemma3TextConfig, Gemma3ForCausalLM)):
        if t not in FAMILIES:
            _register(t, c, m)


_register_all()


@torch.no_grad()
def to_pruned(model: nn.Module, removed: set) -> nn.Module:
    """A copy of `model` (a causal LM of a supported family) without the `removed` blocks: the
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
    # the copied layers keep the model's attention kernel; the masks must be built for it
    cfg._attn_implementation = model.config._attn_implementation
    m = copy.deepcopy(model)
    m.model.layers = nn.ModuleList([m.model.layers[i] for i in keep])
    m.__class__ = model_cls
    m.config = cfg
    m.model.config = cfg
    strip_blocks(m, kept_blocks, SUPPORTED[base_type])
    return m
