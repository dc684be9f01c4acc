"""The stages of each paper's run as `workbench plan` sizes them (see `workbench.plan_memory`).

One function per paper reads the paper's own config (preset + overrides) and lists its stages:
which models, batch and sequence length, LoRA or full fine-tune, and the launch command template.
Training stages launch with the accelerate configs in ``configs/accelerate/`` (``ddp.yaml``,
``fsdp.yaml``, ``zero3.yaml``) and the stage CLIs (``workbench <paper> stage NAME``). A
FuseChat training stage that needs gradient checkpointing gets
``-p 'training_args={gradient_checkpointing: true}'``, a SEFT one ``-p gradient_checkpointing=true``.
"""

from __future__ import annotations

import importlib
from typing import Any

from workbench.plan_memory import Stage

TRAIN = ("accelerate launch --config_file configs/accelerate/{strategy}.yaml --num_processes "
         "{gpus} -m workbench.cli %s stage %s --preset {profile}{params}")
_DTYPE_MIXED = ("auto", "bfloat16", "float16")
FC_CKPT = "{fc_ckpt}"
LORA_STRATEGIES = ("ddp",)  # merging the adapters needs the whole model in one process


def paper_config(paper: str, profile: str, overrides: dict[str, Any]):
    """The paper's config class built from ``profile`` and ``overrides``."""
    from workbench.common.papers import PAPERS
    from workbench.common.registry import did_you_mean

    kinds = {p.kind: p for p in PAPERS}
    if paper not in kinds:
        raise ValueError(f"unknown paper {paper!r}.{did_you_mean(paper, list(kinds))} "
                         f"Papers: {', '.join(kinds)}")
    module, cls = kinds[paper].config.split(":")
    config = getattr(importlib.import_module("workbench." + module[:-3].replace("/", ".")), cls)
    return config.from_preset(profile, **overrides)


def paper_stages(paper: str, profile: str, overrides: dict[str, Any]) -> tuple[list[Stage], Any]:
    cfg = paper_config(paper, profile, overrides)
    return _BUILDERS[paper](cfg), cfg


def _blockpruner(cfg) -> list[Stage]:
    mixed = cfg.dtype in _DTYPE_MIXED
    run = "workbench reproduce blockpruner --profile {profile}{params}"
    return [
        Stage("search", "infer", (cfg.model,), batch=cfg.batch_size, seq_len=cfg.seq_len,
              mixed=mixed, launch=run, extra_gib=cfg.cache_budget_gb or 0.0,
              note="blockpruner search: " + (
                  f"its hidden-state cache ({cfg.cache_budget_gb:g} GiB, cache_budget_gb) is in "
                  "the activations" if cfg.cache_budget_gb is not None else
                  "its hidden-state cache takes up to half the GPU's free memory on top "
                  "(cache_budget_gb: None) and recomputes beyond it")),
        Stage("evaluation", "infer", (cfg.model,), batch=cfg.eval_batch_size,
              seq_len=cfg.eval_seq_len, mixed=mixed, launch=run),
    ]


def _fusechat(cfg) -> list[Stage]:
    mixed = cfg.dtype in _DTYPE_MIXED
    models = (cfg.pivot, *cfg.sources)
    train = dict(batch=cfg.batch_size, seq_len=cfg.max_length, lora=cfg.lora, mixed=mixed,
                 strategies=LORA_STRATEGIES if cfg.lora else ())
    evaluated = models if cfg.eval_sources else (cfg.pivot,)
    stages = [
        Stage("representations", "infer", models, batch=1, seq_len=cfg.token_budget,
              mixed=mixed, head="chunked",
              launch="workbench fusechat represent --preset {profile} --model {model} "
                     "--worker {worker}{params}"),
        Stage("targets", "train", (cfg.pivot,), launch=TRAIN % ("fusechat", "targets") + FC_CKPT,
              note=f"fusechat targets: one pivot fine-tune per source ({len(cfg.sources)}), "
                   "each sized here", **train),
        Stage("baselines", "train", (cfg.pivot,), launch=TRAIN % ("fusechat", "baselines") + FC_CKPT,
              **train),
        Stage("merges", "merge", (cfg.pivot,) * (len(cfg.sources) + 1),
              launch="workbench fusechat stage merges --preset {profile}{params}"),
        Stage("evaluation", "infer", evaluated, batch=cfg.eval_batch_size,
              seq_len=cfg.max_length, new_tokens=cfg.max_new_tokens, mixed=mixed,
              launch="workbench fusechat stage evaluation --preset {profile}{params}",
              note="fusechat evaluation: targets and merges have the pivot's shape"),
    ]
    if cfg.judge == "hf" or (cfg.judge == "auto" and cfg.judge_model):
        stages.append(_judge(cfg.judge_model or "qwen2.5-coder-0.5b-instruct", cfg.max_length,
                             cfg.judge_max_new_tokens, "fusechat"))
    return stages


def _judge(name: str, seq_len: int, new_tokens: int, paper: str, batch: int = 4) -> Stage:
    return Stage("judge (local)", "infer", (name,), batch=batch, seq_len=seq_len,
                 new_tokens=new_tokens,
                 launch=(f"workbench {paper} stage evaluation --preset {{profile}}{{params}}"
                         if paper == "fusechat" else "workbench seft run --preset {profile}{params}"))


def _seft(cfg) -> list[Stage]:
    ck = True if cfg.gradient_checkpointing else None
    train = dict(batch=cfg.batch_size, seq_len=cfg.max_length, lora=cfg.lora, mixed=cfg.bf16,
                 checkpointing=ck, strategies=LORA_STRATEGIES if cfg.lora else ())
    gen = dict(batch=8, seq_len=cfg.max_length, mixed=True)
    ckpt = "{ckpt}"
    stages = [
        Stage("reviser", "train", (cfg.reviser_base,), launch=TRAIN % ("seft", "reviser") + ckpt,
              **train),
    ]
    for b in cfg.baselines:
        stages.append(Stage(b, "train", (cfg.policy,), reference=b == "dpo",
                            pairs=b in ("dpo", "orpo"), launch=TRAIN % ("seft", b) + ckpt,
                            **train))
    if cfg.rounds > 0:
        stages += [
            Stage("round: sample", "infer", (cfg.policy,), new_tokens=cfg.max_new_tokens, **gen),
            Stage("round: revise", "infer", (cfg.reviser_base,),
                  new_tokens=cfg.reviser_max_new_tokens, **gen),
            Stage("round: train", "train", (cfg.policy,),
                  launch=TRAIN % ("seft", "round --round 1") + ckpt,
                  note=f"seft rounds: {cfg.rounds} x (sample, revise, train); `--round R` for "
                       "R = 1..rounds; evaluation: `workbench seft run` (finished stages are "
                       "skipped)", **train),
        ]
    stages.append(Stage("evaluation", "infer", (cfg.policy,), new_tokens=cfg.max_new_tokens,
                        launch="workbench seft run --preset {profile}{params}", **gen))
    if cfg.judge == "hf" or (cfg.judge == "auto" and cfg.judge_model):
        stages.append(_judge(cfg.judge_model or "qwen2.5-coder-0.5b-instruct", cfg.max_length,
                             cfg.judge_max_new_tokens, "seft", cfg.judge_batch_size))
    return stages


def _toxic_spans(cfg) -> list[Stage]:
    encoders = tuple(cfg.encoders) or (cfg.encoder,)
    return [Stage("train", "train", (e,), batch=cfg.batch_size, seq_len=cfg.max_length,
                  mixed=False, checkpointing=False, encoder=True, strategies=("single",),
                  launch="workbench reproduce toxic_spans --profile {profile}{params}",
                  note="toxic spans: one fp32 process (its own training loop); members train "
                       "one after another")
            for e in encoders]


_BUILDERS = {"blockpruner": _blockpruner, "fusechat": _fusechat, "seft": _seft,
             "toxic_spans": _toxic_spans}
