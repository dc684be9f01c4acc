"""Fusion training on HF ``Trainer`` (papers.md §1.a steps 3–4, §1.b).

:class:`FuseTrainer` overrides ``compute_loss`` only, so accelerate's FSDP / DeepSpeed launch it
unchanged (``accelerate launch`` with the usual config; gradient checkpointing and bf16 via
``TrainArgs``). :func:`train_target` trains one target from the pivot:

- pairwise target: ``sources=[aligned_source_j]`` (MinCE between the pivot and source j);
- "Multi" baseline: ``sources=[all aligned sources]`` (MinCE over the pivot and all of them);
- SFT-only baseline: ``lam=1`` (no targets are built at all).

It writes a ``save_pretrained`` safetensors model (LoRA adapters merged with
``merge_and_unload`` first), the tokenizer and its chat template to ``<out_dir>/model``
(atomically) and resumes from the Trainer's checkpoints in ``<out_dir>/checkpoints``.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from workbench.common.io import read_json, write_json
from workbench.common.models import load_causal_lm
from workbench.common.rundir import barrier, local_device
from workbench.common.runtime import quiet_trainer, resolve_device
from workbench.common.trainargs import resume_checkpoint, split_resume
from workbench.fusion.train.data import FusionCollator, FusionDataset
from workbench.fusion.train.kernels import FUSE_KINDS, fusion_objective

log = logging.getLogger(__name__)

DONE = "fusion_train.json"  # written last into the model folder: the target is complete


@dataclass(frozen=True, kw_only=True)
class TrainArgs:
    """Fusion-training hyper-parameters (defaults: the paper's, §1.b)."""

    model: str  # the pivot: registry name or folder
    lam: float = 0.9
    fuse_loss: str = "ce"
    temperature: float = 1.0
    mince_dtype: str = "bfloat16"  # MinCE reward dtype (official: bfloat16)
    lr: float = 5e-6
    epochs: float = 3.0
    max_steps: int = -1
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int | None = None
    warmup_ratio: float = 0.03  # a fraction of the total steps (paper: 0.03)
    weight_decay: float = 0.0
    scheduler: str = "cosine"
    max_grad_norm: float = 1.0
    lora: bool = False
    lora_r: int = 8
    seed: int = 0
    dtype: str = "auto"  # auto: bf16 mixed precision on bf16 GPUs, float32 elsewhere
    device: str = "auto"
    gradient_checkpointing: bool = False
    save_steps: int | None = None  # None: a checkpoint every quarter of training, >= 10 steps
    save_total_limit: int = 1
    # the resume checkpoints (weights + optimizer state: ~3x the model) are deleted once the
    # final model is saved, unless kept
    keep_checkpoints: bool = False
    logging_steps: int = 1
    # any other TrainingArguments field (over the values above) and resume_from_checkpoint
    # (unset: the last checkpoint of <out_dir>/checkpoints; false: start over; a path)
    training_args: dict[str, Any] = field(default_factory=dict)
    chat_template: str | None = None  # override the pivot tokenizer's template in the output

    def __post_init__(self) -> None:
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {self.lam}")
        if self.fuse_loss not in FUSE_KINDS:
            raise ValueError(f"fuse_loss must be one of {FUSE_KINDS}, got {self.fuse_loss!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        for name in ("batch_size", "grad_accum", "save_steps", "lora_r"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"TrainArgs.{name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def from_config(cls, cfg: Any, **overrides: Any) -> TrainArgs:
        """From a ``FuseChatConfig`` (pivot, lam, fuse_loss, lr, ... ); overrides win."""
        values = dict(model=cfg.pivot, lam=cfg.lam, fuse_loss=cfg.fuse_loss,
                      temperature=cfg.fuse_temperature, lr=cfg.lr, epochs=cfg.epochs,
                      mince_dtype=getattr(cfg, "mince_dtype", "bfloat16"),
                      training_args=dict(getattr(cfg, "training_args", None) or {}),
                      max_steps=cfg.max_steps, batch_size=cfg.batch_size,
                      grad_accum=cfg.grad_accum, max_length=cfg.max_length, lora=cfg.lora,
                      seed=cfg.seed, dtype=cfg.dtype, device=cfg.device,
                      chat_template=cfg.chat_template)
        values.update(overrides)
        return cls(**values)


class FuseTrainer(Trainer):
    """``Trainer`` whose loss is ``lam·SFT + (1−lam)·sparse fusion CE`` (or KL).

    Batches come from :class:`FusionCollator`; ``target_*`` keys are popped before the forward
    pass. The loss is a per-batch masked mean, divided by the accumulation steps by Trainer.
    """

    loss_is_scaled_for_ga = False

    def __init__(self, *args: Any, lam: float = 0.9, fuse_loss: str = "ce", **kw: Any):
        super().__init__(*args, **kw)
        self.lam, self.fuse_loss = lam, fuse_loss
        self.model_accepts_loss_kwargs = False
        self._parts: dict[str, list[float]] = {"sft_loss": [], "fuse_loss": [],
                                               "source_chosen": []}

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.pop("labels")
        ids = inputs.pop("target_ids", None)
        probs = inputs.pop("target_probs", None)
        choice = inputs.pop("fuse_choice", None)
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                        use_cache=False)
        loss, sft, fuse = fusion_objective(outputs.logits, labels, ids, probs, self.lam,
                                           self.fuse_loss)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {self.state.global_step}: "
                                     f"sft={float(sft)}, fusion={float(fuse)}")
        if model.training:
            self._parts["sft_loss"].append(float(sft))
            self._parts["fuse_loss"].append(float(fuse))
            if choice is not None:
                self._parts["source_chosen"].append(float((choice > 0).float().mean()))
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # training logs: add the loss parts since the last log
            logs.update(self._part_means())
        super().log(logs, start_time)

    def _part_means(self) -> dict[str, float]:
        """Mean of each loss part since the last log, over every rank's batches (an all-reduce
        of sums and counts under a multi-process launch; Trainer's own ``loss`` is gathered
        the same way)."""
        keys = list(self._parts)
        sums = torch.tensor([[sum(self._parts[k]), len(self._parts[k])] for k in keys],
                            dtype=torch.float64)
        for vals in self._parts.values():
            vals.clear()
        if self.accelerator.num_processes > 1:
            sums = self.accelerator.reduce(sums.to(self.accelerator.device), "sum").cpu()
        return {k: float(s / n) for k, (s, n) in zip(keys, sums.tolist(), strict=True) if n}


class SkipFinalCheckpoint(TrainerCallback):
    """Cancel Trainer's save at the last step (weights + optimizer state, ~3x the model):
    :func:`train_target` saves the final model right after and deletes the resume checkpoints,
    so that one would be written only to be removed (~1.6 GB per 135M-parameter target). Not
    added when checkpoints are kept; a run killed during the final save resumes from the last
    periodic checkpoint."""

    def on_step_end(self, args, state, control, **kwargs):
        if state.max_steps > 0 and state.global_step >= state.max_steps:
            control.should_save = False
        return control


def _lora(model, r: int):
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.0, target_modules="all-linear",
                     task_type="CAUSAL_LM")
    return get_peft_model(model, cfg)


def _save_steps(args: TrainArgs, n: int) -> int:
    if args.save_steps is not None:
        return args.save_steps
    per_epoch = math.ceil(n / (args.batch_size * args.grad_accum))
    steps = args.max_steps if args.max_steps > 0 else math.ceil(per_epoch * args.epochs)
    return max(10, steps // 4)


def _precision(args: TrainArgs, device: torch.device) -> dict[str, bool]:
    if device.type != "cuda" or args.dtype == "float32":
        return {}
    if args.dtype == "float16":
        return {"fp16": True}
    if torch.cuda.is_bf16_supported():
        return {"bf16": True}
    return {"fp16": True} if args.dtype == "auto" else {"bf16": True}


def is_trained(out_dir: str | Path) -> bool:
    return (Path(out_dir) / "model" / DONE).exists()


def train_target(args: TrainArgs, pivot_ds, sources=None, out_dir: str | Path = "target"
                 ) -> Path:
    """Train one target from ``args.model`` and return its model folder (``<out_dir>/model``).

    ``pivot_ds``: the pivot's representation dataset; ``sources``: one aligned source dataset,
    a list of them ("Multi"), or None (with ``lam=1``: the SFT-only baseline; with ``lam<1``:
    distillation from the pivot's own top-K). Re-running with the same ``out_dir`` returns the
    finished model or resumes from the last checkpoint.
    """
    out_dir = Path(out_dir)
    final = out_dir / "model"
    if is_trained(out_dir):
        log.info("target %s already trained", final)
        return final
    if sources is None:
        sources = []
    elif not isinstance(sources, (list, tuple)):
        sources = [sources]
    t0 = time.perf_counter()
    device = resolve_device(local_device(args.device))
    extra, resume_request = split_resume(args.training_args)
    with_targets = args.lam < 1.0
    data = FusionDataset(pivot_ds, sources if with_targets else [], max_length=args.max_length,
                         with_targets=with_targets)
    # float32 master weights on this rank's device (mixed precision: ``_precision``)
    model, tok = load_causal_lm(args.model, dtype=torch.float32, device=device)
    if args.chat_template:
        path = Path(args.chat_template).expanduser()
        tok.chat_template = path.read_text(encoding="utf-8") if path.is_file() else args.chat_template
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if args.lora:
        model = _lora(model, args.lora_r)
    ckpt_dir = out_dir / "checkpoints"
    targs = TrainingArguments(**{**dict(
        output_dir=str(ckpt_dir), learning_rate=args.lr, num_train_epochs=args.epochs,
        max_steps=args.max_steps, per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum, warmup_steps=args.warmup_ratio,
        weight_decay=args.weight_decay, lr_scheduler_type=args.scheduler,
        max_grad_norm=args.max_grad_norm, seed=args.seed, data_seed=args.seed,
        logging_steps=args.logging_steps, save_strategy="steps", save_steps=_save_steps(args, len(data)),
        save_total_limit=args.save_total_limit, report_to=[], remove_unused_columns=False,
        use_cpu=device.type == "cpu", disable_tqdm=os.environ.get("WORKBENCH_PROGRESS") == "0",
        dataloader_num_workers=0, **_precision(args, device)), **extra})
    collator = FusionCollator(pad, temperature=args.temperature, mince_dtype=args.mince_dtype,
                              vocab_size=model.get_input_embeddings().num_embeddings)
    trainer = FuseTrainer(model=model, args=targs, train_dataset=data, data_collator=collator,
                          processing_class=tok, lam=args.lam, fuse_loss=args.fuse_loss)
    if not args.keep_checkpoints:
        trainer.add_callback(SkipFinalCheckpoint())
    quiet_trainer(trainer, desc=f"train {Path(out_dir).name}")  # no bar/log lines under papermill
    resume = resume_checkpoint(resume_request, ckpt_dir)
    if resume:
        log.info("resuming %s from %s", out_dir, resume)
    result = trainer.train(resume_from_checkpoint=resume)
    history = trainer.state.log_history
    losses = [h["loss"] for h in history if "loss" in h]
    if not losses or not all(math.isfinite(x) for x in losses):
        raise FloatingPointError(f"fusion training of {out_dir}: non-finite or missing loss "
                                 f"{losses[-5:]!r}")
    info = {"args": asdict(args), "num_sources": len(sources) if with_targets else 0,
            "num_samples": len(data), "global_step": trainer.state.global_step,
            "train_loss": result.training_loss, "seconds": time.perf_counter() - t0,
            "resumed_from": resume, "log_history": history}
    _save(trainer, tok, final, info, lora=args.lora)
    if not args.keep_checkpoints and trainer.is_world_process_zero():
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    barrier()  # multi-process: every rank sees the finished model before going on
    return final


def _save(trainer: Trainer, tok, final: Path, info: dict[str, Any], *, lora: bool) -> None:
    """Write the model (safetensors), tokenizer + chat template and ``DONE`` into a temp folder,
    then rename it into place (main process only).

    Full fine-tuning goes through ``trainer.save_model``, which gathers FSDP / DeepSpeed-sharded
    weights; LoRA adapters are merged into the base weights first (``merge_and_unload``: a single
    process holding the whole model -- LoRA is the small-machine option).
    """
    tmp = final.parent / f".{final.name}.tmp"
    main = trainer.is_world_process_zero()
    if main:
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    try:
        if lora:
            if main:
                model = trainer.model.merge_and_unload().to("cpu")
                model.config.use_cache = True
                model.save_pretrained(tmp, safe_serialization=True)
        else:
            trainer.model.config.use_cache = True
            trainer.save_model(str(tmp))  # every process joins (sharded state dicts)
        if main:
            tok.save_pretrained(tmp)
            for extra in ("training_args.bin",):
                (tmp / extra).unlink(missing_ok=True)
            write_json(tmp / DONE, info)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
    except BaseException:
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def train_info(model_dir: str | Path) -> dict[str, Any]:
    """The ``fusion_train.json`` a finished target carries (args, losses, steps, seconds)."""
    return read_json(Path(model_dir) / DONE)
