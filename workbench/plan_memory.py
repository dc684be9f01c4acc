"""The memory model of `workbench plan` (the command itself: `workbench/plan.py`).

Each stage's models are built on the ``meta`` device from their ``config.json`` (no weights read,
no memory used): a local folder, a registry name, the hub cache (offline: the cache only), or a
bundled architecture config in ``workbench/presets/model_configs/`` (the papers' models, written
from their published hyper-parameters, for sizing only). ``-p key=value`` overrides the paper's
config (e.g. ``-p pivot=/models/openchat``). For each stage the plan prints parameters, the
memory per GPU (weights, gradients + optimizer states, activations), whether it fits, and the
exact launch command; a stage that cannot fit makes the command fail (one line, exit code 2).

Memory model (bytes per GPU; every number is an estimate, not a measurement):

Notation: P parameters, P_t trainable parameters (P; with LoRA the adapters' r·(d_in + d_out)
per linear layer, lm_head excluded), N GPUs, b bytes per weight/activation element (2 in
bf16/fp16, 4 in fp32), B micro-batch per GPU (x2 for preference pairs: chosen + rejected),
L sequence length, T = B·L tokens, n layers, h hidden size, kv key/value width
(kv_heads x head_dim), i MLP width (x experts per token for a mixture of experts), a heads,
V vocabulary, U the largest FSDP unit (a decoder layer, or the embedding / lm_head matrix).

Training (``ddp``: every GPU holds everything; ``fsdp`` full shard and ``zero3`` shard weights,
gradients and optimizer states over N GPUs and gather one unit at a time). The trainers load
float32 weights and train in bf16 autocast when mixed precision is on (b = 2 then, 4 without),
so a trained parameter costs 16 bytes: the same total as the ZeRO paper's bf16 weights and
gradients with an fp32 master copy and Adam states (2 + 2 + 12):
  weights      ddp: 4·P                  fsdp / zero3: 4·P/N + 2·b·U (current + prefetched unit,
                                         gathered in the compute dtype)
  gradients    ddp: 4·P_t                fsdp / zero3: 4·P_t/N
  optimizer    AdamW m and v: 8·P_t      fsdp / zero3: 8·P_t/N
  reference    DPO with a full fine-tune: a frozen float32 copy, 4·P (ddp) or 4·P/N (sharded)
  activations  decoder layer, per token: b·(10h + 2kv + 4i) (two RMSNorms with their fp32
               upcasts 2 x 4h, q/k/v after RoPE and the attention output 2h + 2kv, SwiGLU's
               gate, activation, up and product 4i; a fused attention kernel stores no L x L
               scores). Encoder layer (BERT family, eager attention with dropout; Korthikanti et
               al. 2022): b·(9h + 2i + 2.5·a·L).
               Total: T·n·layer; with gradient checkpointing T·(n·b·h + layer) (the layer inputs
               plus one layer being recomputed).
               Loss head (causal LMs): T·V·(b + 8) (logits, their fp32 log-softmax and its
               gradient).
Inference (one process per GPU, data split with ``--worker I/N``; a model whose weights do not
fit one GPU is spread over k GPUs with ``device_map="auto"`` (``WORKBENCH_DEVICE_MAP=auto``),
N/k such groups):
  weights      b·P/k
  activations  T·b·(4h + 2kv + 3i) (one layer alive at a time) + head: full logits T·V·(b + 4)
               (perplexity, pruning search, held-out CE), or a chunked lm_head
               min(T, 2^25/V)·V·8 (FuseChat representations, top-K only)
  KV cache     generation: 2·n·kv·b·B·(prompt + new tokens) / k
Merges stream one tensor at a time: (inputs + 3 temporaries) x the largest tensor in fp32.
Every GPU also pays a fixed ``--overhead`` (CUDA context, allocator caching; default 2 GiB).
A stage fits when weights + gradients + optimizer + reference + activations + overhead <= the
GPU memory. ``--strategy auto`` takes, per training stage, the first that fits of ddp, fsdp,
fsdp with gradient checkpointing (``zero3`` is priced as ``fsdp`` and launched with DeepSpeed);
LoRA stages use ddp only (merging the adapters needs the whole model in one process).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

GiB = 1024**3
STRATEGIES = ("ddp", "fsdp", "zero3")
CHUNK_ELEMENTS = 1 << 25  # FuseChat's chunked lm_head: positions x vocab per chunk


# ---- model shapes -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Shape:
    """What the memory model needs of one architecture (from a meta-device build)."""

    name: str
    params: int
    unit: int  # largest FSDP unit: a layer, or the embedding / head matrix
    largest_tensor: int
    layers: int
    hidden: int
    kv: int
    inter: int  # MLP width per token (x experts per token)
    heads: int
    vocab: int
    encoder: bool = False
    lora: int = 0  # trainable parameters of LoRA (r = lora_r) on every linear but the head
    source: str = ""  # where config.json came from
    note: str = ""  # a bundled config's caveat


def bundled_configs() -> dict[str, Path]:
    """Bundled architecture configs: model id -> file (``owner--name.json``)."""
    folder = resources.files("workbench").joinpath("presets/model_configs")
    return {p.name[:-5].replace("--", "/"): Path(str(p)) for p in folder.iterdir()
            if p.name.endswith(".json")}


def find_config(name: str) -> tuple[dict[str, Any], str]:
    """config.json of a model name as a dict, and where it came from (see the module doc)."""
    from workbench.common import hub, models

    bundled = bundled_configs()
    if name in models.OFFLINE_MODELS and not models.is_ready(name):
        name = models.OFFLINE_MODELS.get(name).hf_equivalent  # not converted: its hub twin
    path = None
    if name.startswith("tiny:") or name in models.OFFLINE_MODELS or Path(name).expanduser().exists():
        path = hub.model_config_path(name)
    elif hub.is_hub_id(name):
        try:
            path = hub.model_config_path(name)
        except ValueError:
            if name not in bundled:
                raise ValueError(
                    f"no config.json for model {name!r}: not in the Hugging Face cache (offline) "
                    f"and not among the bundled configs ({', '.join(sorted(bundled))}); download "
                    f"its config.json once, or pass a local folder with -p") from None
    if path is None and name in bundled:
        path = bundled[name]
    if path is None:
        raise ValueError(f"no config.json for model {name!r}: not a registry name, local folder, "
                         f"cached hub id or bundled config ({', '.join(sorted(bundled))})")
    data = json.loads(Path(path).read_text())
    where = "bundled" if Path(path).parent.name == "model_configs" else str(path)
    if data.get("_note"):
        where += f" ({data['_note']})"
    return {k: v for k, v in data.items() if not k.startswith("_")}, where


def _layer_list(model, n: int):
    import torch

    best = None
    for m in model.modules():
        if isinstance(m, torch.nn.ModuleList) and len(m) == n and n > 0:
            best = best or m
    return best


def model_shape(name: str, *, encoder: bool = False, lora_r: int = 8) -> Shape:
    """Build ``name`` on the meta device and read its sizes."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    data, where = find_config(name)
    config = AutoConfig.for_model(**data)
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    with torch.device("meta"):
        auto = AutoModel if encoder else AutoModelForCausalLM
        model = auto.from_config(config, dtype=torch.bfloat16)
    params = sum(p.numel() for p in model.parameters())
    n = int(text.num_hidden_layers)
    layers = _layer_list(model, n)
    layer = (sum(p.numel() for p in layers[0].parameters()) if layers is not None
             else params // max(n, 1))
    mats = [p.numel() for p in model.parameters()]
    emb = model.get_input_embeddings().weight.numel()
    h, heads = int(text.hidden_size), int(text.num_attention_heads)
    head_dim = int(getattr(text, "head_dim", None) or h // heads)
    kv = int(getattr(text, "num_key_value_heads", None) or heads) * head_dim
    inter = int(getattr(text, "intermediate_size", None) or getattr(text, "d_inner", 4 * h))
    inter *= int(getattr(text, "num_experts_per_tok", 1) or 1)
    lora = 0
    out_emb = model.get_output_embeddings() if not encoder else None
    for mod in model.modules():
        if isinstance(mod, torch.nn.Linear) and mod is not out_emb:
            lora += lora_r * (mod.in_features + mod.out_features)
    return Shape(name=name, params=params, unit=max(layer, emb, max(mats)),
                 largest_tensor=max(mats), layers=n, hidden=h, kv=kv, inter=inter, heads=heads,
                 vocab=int(text.vocab_size), encoder=encoder, lora=lora,
                 source=where.split(" (")[0], note=where.partition(" (")[2].rstrip(")"))


# ---- the memory model (pure; see the module docstring) ----------------------------------------
def layer_activation_bytes(s: Shape, seq_len: int, b: int) -> float:
    """Bytes stored for backward per token by one layer."""
    if s.encoder:
        return b * (9 * s.hidden + 2 * s.inter + 2.5 * s.heads * seq_len)
    return b * (10 * s.hidden + 2 * s.kv + 4 * s.inter)


def train_memory(s: Shape, *, batch: int, seq_len: int, gpus: int, strategy: str,
                 lora: bool = False, mixed: bool = True, checkpointing: bool = False,
                 reference: bool = False, pairs: bool = False) -> dict[str, float]:
    """Bytes per GPU of one training stage: weights, grads, optimizer, reference, activations."""
    if strategy not in (*STRATEGIES, "single"):  # single: one process, priced as ddp
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    b = 2 if mixed else 4  # activations (and gathered units): bf16 autocast or float32
    trainable = s.lora if lora else s.params
    shard = 1 if strategy in ("ddp", "single") else gpus
    weights = 4 * s.params / shard + (0 if shard == 1 else 2 * b * s.unit)
    grads = 4 * trainable / shard
    optimizer = 8 * trainable / shard
    ref = 4 * s.params / shard if reference and not lora else 0.0
    tokens = batch * seq_len * (2 if pairs else 1)
    layer = layer_activation_bytes(s, seq_len, b)
    act = tokens * (s.layers * b * s.hidden + layer) if checkpointing else tokens * s.layers * layer
    if not s.encoder:
        act += tokens * s.vocab * (b + 8)
    return {"weights": weights, "grads": grads, "optimizer": optimizer, "reference": ref,
            "activations": act}


def infer_memory(s: Shape, *, batch: int, seq_len: int, b: int = 2, head: str = "full",
                 new_tokens: int = 0, shards: int = 1) -> dict[str, float]:
    """Bytes per GPU of inference: weights (spread over ``shards`` GPUs), activations, KV cache."""
    tokens = batch * seq_len
    act = tokens * b * (4 * s.hidden + 2 * s.kv + 3 * s.inter)
    if head == "full":
        act += tokens * s.vocab * (b + 4)
    elif head == "chunked":
        act += min(tokens, max(1, CHUNK_ELEMENTS // s.vocab)) * s.vocab * 8
    kv = 2 * s.layers * s.kv * b * batch * (seq_len + new_tokens) if new_tokens else 0.0
    # spread by device_map, each GPU holds its layers' weights and KV cache; the activations of
    # the layer being computed and the logits are on one GPU at a time
    return {"weights": b * s.params / shards, "grads": 0.0, "optimizer": 0.0, "reference": 0.0,
            "activations": act + kv / shards}


def merge_memory(s: Shape, inputs: int) -> dict[str, float]:
    return {"weights": 0.0, "grads": 0.0, "optimizer": 0.0, "reference": 0.0,
            "activations": 4.0 * s.largest_tensor * (inputs + 3)}


# ---- stages and their plans ---------------------------------------------------------------------
@dataclass(frozen=True)
class Stage:
    """One unit of work of a paper's run, as the plan sizes it."""

    name: str
    kind: str  # train | infer | merge
    models: tuple[str, ...]
    batch: int = 1
    seq_len: int = 512
    lora: bool = False
    mixed: bool = True
    checkpointing: bool | None = None  # None: the plan decides (auto)
    reference: bool = False
    pairs: bool = False
    head: str = "full"  # full | chunked | none
    new_tokens: int = 0
    encoder: bool = False
    strategies: tuple[str, ...] = ()  # allowed training strategies; () = all
    extra_gib: float = 0.0  # a stage's own cache on top (BlockPruner's cache_budget_gb)
    launch: str = ""  # template: {strategy} {gpus} {model} {worker} {profile} {params} {ckpt}
    note: str = ""


@dataclass
class StagePlan:
    stage: Stage
    model: str
    shape: Shape
    strategy: str
    checkpointing: bool
    memory: dict[str, float]
    overhead: float
    gpu_mem: float
    gpus_per_model: int = 1
    launch: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(self.memory.values()) + self.overhead

    @property
    def fits(self) -> bool:
        return self.total <= self.gpu_mem


def plan_stage(stage: Stage, shape: Shape, *, gpus: int, gpu_mem_gib: float,
               strategy: str = "auto", overhead_gib: float = 2.0) -> StagePlan:
    """Choose a strategy (training) or a number of GPUs per model (inference) and size it."""
    mem, over = gpu_mem_gib * GiB, overhead_gib * GiB
    if stage.kind == "merge":
        return StagePlan(stage, shape.name, shape, "stream", False,
                         merge_memory(shape, len(stage.models)), over, mem)
    if stage.kind == "infer":
        b = 2 if stage.mixed else 4
        kw = dict(batch=stage.batch, seq_len=stage.seq_len, b=b, head=stage.head,
                  new_tokens=stage.new_tokens)
        k = 1
        while True:
            m = infer_memory(shape, shards=k, **kw)
            m["activations"] += stage.extra_gib * GiB
            if sum(m.values()) + over <= mem or k >= gpus:
                break
            k += 1
        return StagePlan(stage, shape.name, shape, "device_map" if k > 1 else "replicas", False,
                         m, over, mem, gpus_per_model=k)
    if strategy == "auto":
        options = [("ddp", False), ("fsdp", False), ("fsdp", True)]
    else:
        options = [(strategy, False), (strategy, True)]
    if stage.strategies:
        options = [(s, c) for s, c in options if s in stage.strategies] or [
            (stage.strategies[0], False), (stage.strategies[0], True)]
    if stage.checkpointing is not None:
        options = [(s, stage.checkpointing) for s, c in options if c is False]
    best = None
    for strat, ckpt in options:
        m = train_memory(shape, batch=stage.batch, seq_len=stage.seq_len, gpus=gpus,
                         strategy=strat, lora=stage.lora, mixed=stage.mixed, checkpointing=ckpt,
                         reference=stage.reference, pairs=stage.pairs)
        best = StagePlan(stage, shape.name, shape, strat, ckpt, m, over, mem)
        if best.fits:
            break
    return best


def render_launch(p: StagePlan, *, gpus: int, profile: str, params: str) -> str:
    """The stage's command: training under accelerate with the chosen strategy's config;
    inference one process per GPU group (``--worker i/groups``), ``WORKBENCH_DEVICE_MAP=auto``
    (``workbench.common.runtime.resolve_placement``) inside a group of several GPUs."""
    st = p.stage
    if not st.launch:
        return ""
    keys = dict(strategy=p.strategy, gpus=gpus, model=p.model, profile=profile, params=params,
                ckpt=" -p gradient_checkpointing=true" if p.checkpointing else "",
                fc_ckpt=(" -p 'training_args={gradient_checkpointing: true}'"
                         if p.checkpointing else ""), worker="0/1")
    if st.kind != "infer":
        return st.launch.format(**keys)
    k = p.gpus_per_model
    groups = max(1, gpus // k)
    env = " WORKBENCH_DEVICE_MAP=auto" if k > 1 else ""
    if "{worker}" not in st.launch:
        return (f"CUDA_VISIBLE_DEVICES={','.join(map(str, range(k)))}{env} "
                + st.launch.format(**keys))
    keys["worker"] = f"$i/{groups}"
    devs = "$i" if k == 1 else ",".join(f"$(({k}*i+{j}))" for j in range(k))
    return (f"for i in $(seq 0 {groups - 1}); do CUDA_VISIBLE_DEVICES={devs}{env} "
            f"{st.launch.format(**keys)} & done; wait")


def make_plan(paper: str, profile: str = "paper", *, gpus: int = 8, gpu_mem_gib: float = 80.0,
              strategy: str = "auto", overrides: dict[str, Any] | None = None,
              overhead_gib: float = 2.0) -> list[StagePlan]:
    """Every stage of ``paper``'s ``profile`` (with ``overrides``) planned on ``gpus`` GPUs."""
    from workbench.plan_stages import paper_stages

    if gpus < 1 or gpu_mem_gib <= 0:
        raise ValueError(f"--gpus must be >= 1 and --gpu-mem > 0, got {gpus}, {gpu_mem_gib}")
    if strategy != "auto" and strategy not in STRATEGIES:
        raise ValueError(f"--strategy must be auto or one of {', '.join(STRATEGIES)}, "
                         f"got {strategy!r}")
    stages, cfg = paper_stages(paper, profile, overrides or {})
    params = "".join(f" -p {k}={_yaml(v)}" for k, v in (overrides or {}).items())
    shapes: dict[tuple[str, bool], Shape] = {}
    out = []
    for st in stages:
        targets = st.models[:1] if st.kind == "merge" else st.models
        for name in targets:
            key = (name, st.encoder)
            if key not in shapes:
                shapes[key] = model_shape(name, encoder=st.encoder,
                                          lora_r=int(getattr(cfg, "lora_r", 8) or 8))
            p = plan_stage(st, shapes[key], gpus=gpus, gpu_mem_gib=gpu_mem_gib,
                           strategy=strategy, overhead_gib=overhead_gib)
            p.notes += [n for n in (st.note, shapes[key].note and
                                    f"{name}: {shapes[key].note}") if n]
            out.append(p)
        mine = out[len(out) - len(targets):]
        if st.kind == "infer" and "{worker}" not in st.launch:
            # one process loads these models one after another: it needs the most GPUs any takes
            widest = max(mine, key=lambda q: q.gpus_per_model)
            for q in mine:
                q.launch = render_launch(widest, gpus=gpus, profile=profile, params=params)
        else:
            for q in mine:
                q.launch = render_launch(q, gpus=gpus, profile=profile, params=params)
    return out


def _yaml(v: Any) -> str:
    s = json.dumps(v) if not isinstance(v, str) else v
    return f"'{s}'" if any(c in s for c in " []{},") else s


def _gib(x: float) -> str:
    return f"{x / GiB:.1f}"


def format_plan(plans: list[StagePlan], *, paper: str, profile: str, gpus: int,
                gpu_mem_gib: float) -> str:
    lines = [f"workbench plan {paper} --profile {profile}: {gpus} GPU(s) x {gpu_mem_gib:g} GiB "
             "(GiB per GPU; estimates, see `python -m pydoc workbench.plan_memory`)"]
    head = (f"{'stage':<22} {'model':<40} {'params':>8} {'train':>8} {'strategy':<14} "
            f"{'weights':>8} {'grad+opt':>8} {'activ':>8} {'total':>8}  fits")
    lines += [head, "-" * len(head)]
    for p in plans:
        m = p.memory
        trainable = (p.shape.lora if p.stage.lora else p.shape.params) if p.stage.kind == "train" else 0
        strat = p.strategy + ("+ckpt" if p.checkpointing else "")
        if p.strategy == "device_map":
            strat = f"device_map x{p.gpus_per_model}"
        elif p.strategy == "replicas" and "{worker}" not in p.stage.launch:
            strat = "1 GPU"
        weights = m["weights"] + m["reference"]
        lines.append(
            f"{p.stage.name:<22} {_short(p.model, 40):<40} {_count(p.shape.params):>8} "
            f"{_count(trainable) if trainable else '-':>8} {strat:<14} {_gib(weights):>8} "
            f"{_gib(m['grads'] + m['optimizer']):>8} {_gib(m['activations']):>8} "
            f"{_gib(p.total):>8}  {'yes' if p.fits else 'NO'}")
    lines.append("")
    lines.append("launch:")
    seen = set()
    for p in plans:
        if p.launch and p.launch not in seen:
            seen.add(p.launch)
            lines.append(f"  # {p.stage.name}" + ("" if p.stage.kind != "infer" or "{worker}" not in
                                                     p.stage.launch else f" ({p.model})"))
            lines.append(f"  {p.launch}")
    notes = sorted({n for p in plans for n in p.notes})
    sources = sorted({f"{p.model}: {p.shape.source}" for p in plans if p.shape.source == "bundled"})
    if notes or sources:
        lines.append("")
        lines += [f"note: {n}" for n in notes]
        if sources:
            lines.append("config.json from the bundled architecture configs "
                         "(workbench/presets/model_configs/): "
                         + ", ".join(s.split(":")[0] for s in sources))
    return "\n".join(lines)


def _count(n: float) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def _short(s: str, n: int) -> str:
    return s if len(s) <= n else "..." + s[-(n - 3):]


__all__ = ["Shape", "Stage", "StagePlan", "format_plan", "infer_memory", "make_plan",
           "merge_memory", "model_shape", "plan_stage", "train_memory"]
