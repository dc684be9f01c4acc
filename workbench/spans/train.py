"""SpansConfig, the plain training loop, model selection on trial by the official char F1, run dir IO."""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModel, AutoTokenizer

from workbench.common.config import RunConfig
from workbench.common.io import read_json, write_json
from workbench.common.models import resolve_model
from workbench.common.rundir import RunDir, config_hash, runs_root
from workbench.common.runtime import resolve_device, seed_everything, track
from workbench.spans.metric import span_f1
from workbench.spans.model import HEADS, LOSSES, SpanTagger
from workbench.spans.offsets import spans_to_tags
from workbench.spans.predict import predict_batch
from workbench.spans.select import gate, member_spans, post_score
from workbench.spans.voting import vote_posts

KIND = "toxic_spans"
log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class SpansConfig(RunConfig):
    PRESETS: ClassVar[str] = "toxic_spans"

    encoder: str = field(default="tiny:bert", metadata={"help": "encoder name or path"})
    encoders: tuple[str, ...] = field(default=(), metadata={"help": "several encoders (vote across them); () = encoder"})
    heads: tuple[str, ...] = field(default=("cls",), metadata={"help": "HEADS keys to train"})
    crf: tuple[bool, ...] = field(default=(True,), metadata={"help": "CRF settings to train per head"})
    loss: str = field(default="ce", metadata={"help": "LOSSES key (ignored with CRF)"})
    scheme: str = field(default="io", metadata={"help": "io | bio tags"})
    word_level: bool = field(default=True, metadata={"help": "label all tokens of a toxic word"})
    epochs: int = field(default=1, metadata={"help": "training epochs"})
    max_length: int = field(default=128, metadata={"help": "window length (long posts: sliding windows)"})
    batch_size: int = field(default=16, metadata={"help": "batch size"})
    lr: float = field(default=5e-5, metadata={"help": "AdamW learning rate (encoder)"})
    head_lr: float | None = field(default=None, metadata={"help": "lr of head + CRF; None = lr"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW decay (not on bias/LayerNorm)"})
    grad_clip: float = field(default=1.0, metadata={"help": "grad-norm clip, before the step"})
    warmup_ratio: float = field(default=0.0, metadata={"help": "linear warm-up share, then linear decay"})
    evals_per_epoch: int = field(default=1, metadata={"help": "trial char-F1 checks per epoch (selection)"})
    train_limit: int | None = field(default=None, metadata={"help": "first N train posts; None = all"})
    trial_limit: int | None = field(default=None, metadata={"help": "first N trial posts; None = all"})
    test_csv: str | None = field(default=None, metadata={"help": "optional test CSV to score"})
    seeds: tuple[int, ...] = field(default=(), metadata={"help": "train each head x CRF once per seed; () = seed"})
    ensemble: bool = field(default=True, metadata={"help": "majority vote over the trained members"})
    ensemble_members: tuple[str, ...] = field(default=(), metadata={"help": "members that vote; () = all"})
    min_votes: int | None = field(default=None, metadata={"help": "votes a char needs; None = strict majority"})
    num_threads: int | None = field(default=None, metadata={"help": "torch threads; None = default"})
    cv_folds: int = field(default=0, metadata={
        "help": "k-fold CV on train picks epochs, thresholds, vote size and gate; 0 = select on trial"})
    cv_limit: int | None = field(default=None, metadata={
        "help": "CV on a random subset of N train posts (final members use all train_limit posts)"})
    gate: bool = field(default=True, metadata={"help": "with CV: choose a post-level empty-prediction gate"})
    max_final_epochs: int | None = field(default=None, metadata={
        "help": "with CV: cap on the chosen epochs (time budget; CV then chooses among epochs <= cap)"})
    lora_r: int = field(default=0, metadata={"help": "LoRA rank for the encoder (PEFT); 0 = full fine-tuning"})
    workers: int = field(default=1, metadata={
        "help": "with CV: parallel processes for the folds and final members (num_threads torch threads each)"})

    def __post_init__(self) -> None:
        super().__post_init__()
        for h in self.heads:
            HEADS.check(h)
        LOSSES.check(self.loss)
        if self.scheme not in ("io", "bio"):
            raise ValueError(f"scheme must be io|bio, got {self.scheme!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.evals_per_epoch < 1:
            raise ValueError("epochs, batch_size and evals_per_epoch must be >= 1")
        names = [n for n, *_ in member_names(self)]
        unknown = [m for m in self.ensemble_members if m not in names]
        if unknown:
            raise ValueError(f"ensemble_members {unknown} are not trained by this config; members: {names}")
        if self.min_votes is not None and self.min_votes < 1:
            raise ValueError(f"min_votes must be >= 1, got {self.min_votes}")
        if self.max_final_epochs is not None and self.max_final_epochs < 1:
            raise ValueError(f"max_final_epochs must be >= 1 or None, got {self.max_final_epochs}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.cv_folds == 1 or self.cv_folds < 0:
            raise ValueError(f"cv_folds must be 0 (off) or >= 2, got {self.cv_folds}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")


def num_tags(scheme: str) -> int:
    return 2 if scheme == "io" else 3


def cls_is_last(tok) -> bool:
    """True when the tokenizer puts its summary token at the end (XLNet) instead of first (BERT)."""
    if tok.cls_token_id is None:
        return False
    ids = tok("a")["input_ids"]
    return ids[-1] == tok.cls_token_id and ids[0] != tok.cls_token_id


CAUSAL_TYPES = ("llama", "mistral", "qwen2", "gemma3", "gemma3_text", "gpt2", "olmo")


def is_causal(config) -> bool:
    """A decoder-only LM: each token sees only its left context, so its summary token is the last."""
    return bool(getattr(config, "is_decoder", False)) or config.model_type in CAUSAL_TYPES


def add_lora(enc, r: int):
    """Wrap an encoder with PEFT LoRA adapters (rank r, alpha 2r) on every Linear; only they train."""
    from peft import LoraConfig, get_peft_model
    return get_peft_model(enc, LoraConfig(r=r, lora_alpha=2 * r, lora_dropout=0.05, target_modules="all-linear"))


def build_tagger(encoder: str, head: str, crf: bool, loss: str = "ce", scheme: str = "io",
                 lora_r: int = 0) -> tuple[SpanTagger, object]:
    """Encoder (any HF encoder, or a causal LM used as a token classifier) + head (+ CRF).

    Causal LMs pool their last token instead of a [CLS] (`cls_last`); `lora_r > 0` trains LoRA
    adapters instead of the encoder (the head and CRF train fully)."""
    path = resolve_model(encoder)
    tok = AutoTokenizer.from_pretrained(path)
    if not tok.is_fast:
        raise ValueError(f"{encoder}: a fast tokenizer (offset mapping) is required")
    enc = AutoModel.from_pretrained(path)
    cls_last = cls_is_last(tok) or is_causal(enc.config)
    hidden = enc.config.hidden_size
    if lora_r:
        enc = add_lora(enc, lora_r)
        enc.config.hidden_size = hidden
    return SpanTagger(enc, head=head, crf=crf, loss=loss, num_tags=num_tags(scheme), cls_last=cls_last), tok


def encode_train(tok, texts, spans, cfg: SpansConfig) -> list[tuple[list[int], list[int]]]:
    """Unpadded (input_ids, tags) per window; long posts become several overlapping windows."""
    enc = tok(list(texts), truncation=True, max_length=cfg.max_length,
              stride=min(32, cfg.max_length // 4), return_overflowing_tokens=True,
              return_offsets_mapping=True, return_special_tokens_mask=True)
    out = []
    for w, i in enumerate(enc["overflow_to_sample_mapping"]):
        tags = spans_to_tags(texts[i], spans[i], enc["offset_mapping"][w], cfg.scheme, cfg.word_level,
                             enc["special_tokens_mask"][w])
        out.append((enc["input_ids"][w], tags))
    return out


def make_batches(tok, texts, spans, cfg: SpansConfig, gen: torch.Generator | None = None,
                 windows: list | None = None):
    """Yield (input_ids, attention_mask, tags) batches padded to the longest window in the batch.

    With `gen`, windows are shuffled, grouped by length inside chunks of 50 batches (less padding)
    and the batches shuffled again; without it, the order is the input order.
    """
    windows = windows if windows is not None else encode_train(tok, texts, spans, cfg)
    bs = cfg.batch_size
    if gen is None:
        order = list(range(len(windows)))
    else:
        perm = torch.randperm(len(windows), generator=gen).tolist()
        chunks = [sorted(perm[s:s + 50 * bs], key=lambda k: len(windows[k][0]))
                  for s in range(0, len(perm), 50 * bs)]
        batches = [c[s:s + bs] for c in chunks for s in range(0, len(c), bs)]
        order = [k for b in torch.randperm(len(batches), generator=gen).tolist() for k in batches[b]]
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    for s in range(0, len(order), bs):
        rows = [windows[k] for k in order[s:s + bs]]
        n = max(len(r[0]) for r in rows)
        ids = torch.full((len(rows), n), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), n), dtype=torch.long)
        tags = torch.full((len(rows), n), -100, dtype=torch.long)
        for j, (x, t) in enumerate(rows):
            ids[j, :len(x)], mask[j, :len(x)], tags[j, :len(t)] = torch.tensor(x), 1, torch.tensor(t)
        yield ids, mask, tags


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float,
                   head_lr: float | None = None) -> torch.optim.AdamW:
    """AdamW; key `weight_decay` (the released code's `weight_decay_rate` was silently ignored).

    Groups: decay on weight matrices, none on bias / LayerNorm / 1-d params; parameters outside
    `model.encoder` (head, CRF) use `head_lr` when given.
    """
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = not (p.ndim < 2 or "LayerNorm" in name or name.endswith(".bias"))
        groups.setdefault((not name.startswith("encoder."), decay), []).append(p)
    params = []
    for is_head in (False, True):
        for decay in (True, False):
            if (is_head, decay) in groups:
                params.append({"params": groups[(is_head, decay)], "weight_decay": weight_decay if decay else 0.0,
                               "lr": head_lr if is_head and head_lr is not None else lr})
    return torch.optim.AdamW(params, lr=lr, eps=1e-8)


def linear_schedule(opt, total_steps: int, warmup_ratio: float = 0.0):
    """Linear warm-up over `warmup_ratio` of the steps, then linear decay to 0 (as the released code)."""
    warm = int(warmup_ratio * total_steps)

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, (total_steps - step) / max(1, total_steps - warm))
    return torch.optim.lr_scheduler.LambdaLR(opt, f)


def train_step(model, opt, batch, grad_clip: float, sched=None) -> float:
    model.train()
    ids, mask, tags = batch
    loss = model.loss(ids, mask, tags)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss {float(loss)}")
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)  # before the step
    opt.step()
    if sched is not None:
        sched.step()
    return loss.item()


def _eval_points(n_batches: int, evals: int) -> set[int]:
    """Batch indices (0-based, within an epoch) after which trial F1 is computed; always the last."""
    return {max(0, round(n_batches * (k + 1) / evals) - 1) for k in range(evals)}


def member_names(cfg: SpansConfig) -> list[tuple[str, str, str, bool, int]]:
    """(name, encoder, head, crf, seed) of every member a config trains.

    Names are `<head>[-crf]`, prefixed by the encoder's short name with several encoders and
    suffixed `-s<seed>` with several seeds.
    """
    encoders, seeds = cfg.encoders or (cfg.encoder,), cfg.seeds or (cfg.seed,)
    out = []
    for e in encoders:
        pre = f"{Path(e).name.replace(':', '_')}-" if len(encoders) > 1 else ""
        out += [(f"{pre}{h}{'-crf' if c else ''}{f'-s{sd}' if len(seeds) > 1 else ''}", e, h, c, sd)
                for h in cfg.heads for c in cfg.crf for sd in seeds]
    return out


def fit(cfg: SpansConfig, model, tok, windows, gen: torch.Generator, device, epochs_run: int | None = None,
        on_eval=None, desc: str = "") -> list[float]:
    """Train on `windows` with the schedule of `cfg.epochs` epochs, stopping after `epochs_run` of them.

    `on_eval(epoch, batch)` is called at `cfg.evals_per_epoch` points per epoch (always the last
    batch). Returns the losses.
    """
    n_batches = -(-len(windows) // cfg.batch_size)
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay, cfg.head_lr)
    sched = linear_schedule(opt, n_batches * cfg.epochs, cfg.warmup_ratio)
    points, losses = _eval_points(n_batches, cfg.evals_per_epoch), []
    for ep in range(min(cfg.epochs, epochs_run or cfg.epochs)):
        bar = track(make_batches(tok, None, None, cfg, gen, windows), desc=f"{desc} ep{ep}", total=n_batches)
        for b, batch in enumerate(bar):
            losses.append(train_step(model, opt, [x.to(device) for x in batch], cfg.grad_clip, sched))
            if on_eval is not None and b in points:
                on_eval(ep, b, losses)
    return losses


def train_member(cfg: SpansConfig, head: str, crf: bool, train, trial, out_dir: Path,
                 seed: int | None = None, encoder: str | None = None, epochs_run: int | None = None,
                 decode: dict | None = None) -> dict:
    """Train one head x CRF member; save safetensors.

    Without `decode` (trial selection): keep the checkpoint with the best trial char F1. With
    `decode` (settings chosen by cross-validation: `tau_token`, `tau_post`, `epoch`): train
    `epochs_run` epochs of the `cfg.epochs` schedule, keep the last checkpoint, and score trial
    once with those settings (trial is then a final check, not a selection set).

    A member folder that already holds `member.json` (same run dir = same config) is reused: an
    interrupted `run_spans` resumes at the first unfinished member.
    """
    done = out_dir / "member.json"
    if done.exists() and (out_dir / "trial_pred.json").exists():
        meta = json.loads(done.read_text())
        extra = read_json(out_dir / "trial_out.json") if (out_dir / "trial_out.json").exists() else {}
        return {**meta, **extra, "trial_pred": read_json(out_dir / "trial_pred.json"), "resumed": True}
    if decode is not None:
        epochs_run = min(cfg.epochs, epochs_run or cfg.epochs)
    gen = seed_everything(cfg.seed if seed is None else seed)
    encoder = encoder or cfg.encoder
    model, tok = build_tagger(encoder, head, crf, cfg.loss, cfg.scheme, cfg.lora_r)
    device = resolve_device(cfg.device)
    model.to(device)
    windows = encode_train(tok, train["text"], train["spans"], cfg)
    n_batches = -(-len(windows) // cfg.batch_size)
    best, best_state, best_pred, t0, c0, history = -1.0, None, None, time.time(), time.process_time(), []
    name = f"{head}{'+crf' if crf else ''}"
    trial_out: dict = {}

    def trial_pred():
        if decode is None:
            return predict_batch(model, tok, trial["text"], cfg.max_length, 2 * cfg.batch_size)
        spans, probs = predict_batch(model, tok, trial["text"], cfg.max_length, 2 * cfg.batch_size,
                                     return_probs=True)
        ungated = [member_spans(s, p, decode.get("tau_token")) for s, p in zip(spans, probs, strict=True)]
        scores = [post_score(p) for p in probs]
        trial_out.update(ungated=ungated, scores=scores)  # for the ensemble, without a second pass
        return [gate(u, sc, decode.get("tau_post", 0.0)) for u, sc in zip(ungated, scores, strict=True)]

    def on_eval(ep, b, losses):
        nonlocal best, best_state, best_pred
        if decode is not None and not (ep + 1 == epochs_run and b == n_batches - 1):
            return
        pred = trial_pred()
        f1 = span_f1(pred, trial["spans"])
        history.append({"epoch": ep, "step": ep * n_batches + b + 1, "trial_f1": f1,
                        "loss": sum(losses[-50:]) / len(losses[-50:])})
        log.info("%s epoch %d step %d: trial char F1 %.4f", name, ep, b + 1, f1)
        if f1 > best or decode is not None:
            best, best_pred = f1, pred
            best_state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}

    losses = fit(cfg, model, tok, windows, gen, device, epochs_run, on_eval, name)
    if cfg.lora_r:  # merge the adapters: the saved weights load into the plain encoder
        model.load_state_dict(best_state)
        model.encoder = model.encoder.merge_and_unload()
        best_state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(best_state, str(out_dir / "model.safetensors"))
    tok.save_pretrained(out_dir / "tokenizer")
    AutoConfig.from_pretrained(resolve_model(encoder)).save_pretrained(out_dir / "encoder_config")
    meta = {"head": head, "crf": crf, "loss": cfg.loss, "scheme": cfg.scheme, "max_length": cfg.max_length,
            "encoder": encoder, "cls_last": model.cls_last, "trial_f1": best, "train_s": time.time() - t0,
            "train_cpu_s": time.process_time() - c0,
            "final_loss": losses[-1] if losses else None, "n_windows": len(windows), "history": history,
            **({"decode": decode} if decode is not None else {})}
    if trial_out:
        write_json(out_dir / "trial_out.json", trial_out)
    write_json(out_dir / "trial_pred.json", best_pred)
    write_json(done, meta)  # last: marks the member complete
    return {**meta, **trial_out, "trial_pred": best_pred}


def _split(name: str, limit: int | None, path: str | None = None) -> dict:
    from workbench.data import load_toxic_spans
    ds = load_toxic_spans(name, path=path)
    n = len(ds) if limit is None else min(limit, len(ds))
    return {"text": list(ds["text"][:n]), "spans": [list(s) for s in ds["spans"][:n]]}


def run_spans(cfg: SpansConfig) -> RunDir:
    """Train heads x CRF on train, select on trial (char F1), vote, score test if given.

    An interrupted run (no metrics.json) resumes: finished members are reused. Re-running a
    complete run starts over (RunDir's contract), so its members are retrained.
    """
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    name = cfg.run_name or f"{cfg.preset}-{config_hash(cfg.to_dict())}"
    was_complete = (runs_root(cfg.output_dir) / KIND / name / "metrics.json").exists()
    run = RunDir.create(cfg, kind=KIND)
    if was_complete:
        shutil.rmtree(run.artifacts / "members", ignore_errors=True)
        shutil.rmtree(run.artifacts / "cv", ignore_errors=True)
    train, trial = _split("train", cfg.train_limit), _split("trial", cfg.trial_limit)
    test = _split("test", None, cfg.test_csv) if cfg.test_csv else None
    if cfg.cv_folds:
        from workbench.spans.cv import run_cv
        return run_cv(cfg, run, train, trial, test)
    from workbench.spans.inference import SpanPredictor
    from workbench.spans.report import f1_columns, vote_claim, write_per_item
    rows, trial_preds, test_preds, items = [], {}, {}, {"trial": {}, "test": {}}
    for name, encoder, head, crf, seed in member_names(cfg):
        m = train_member(cfg, head, crf, train, trial, run.artifacts / "members" / name, seed, encoder)
        trial_preds[name] = m["trial_pred"]
        cols, per = f1_columns(m["trial_pred"], trial["spans"], "trial_f1", trial["text"])
        items["trial"][name] = per["trial_f1"]
        row = {"member": name, "encoder": encoder, "head": head, "crf": crf, "seed": seed, **cols,
               "train_s": round(m["train_s"], 1)}
        if test is not None:
            test_preds[name] = SpanPredictor(run.path, [name]).predict_spans(test["text"])
            cols, per = f1_columns(test_preds[name], test["spans"], "test_f1")
            row, items["test"][name] = {**row, **cols}, per["test_f1"]
        rows.append(row)
    voters = list(cfg.ensemble_members or trial_preds)
    if cfg.ensemble and len(voters) > 1:
        voted = vote_posts([trial_preds[n] for n in voters], cfg.min_votes)
        cols, per = f1_columns(voted, trial["spans"], "trial_f1", trial["text"])
        items["trial"]["ensemble"] = per["trial_f1"]
        row = {"member": "ensemble", "encoder": None, "head": "vote of " + ", ".join(voters), "crf": None,
               "seed": None, **cols, "train_s": round(sum(r["train_s"] for r in rows if r["member"] in voters), 1)}
        if test is not None:
            voted = vote_posts([test_preds[n] for n in voters], cfg.min_votes)
            cols, per = f1_columns(voted, test["spans"], "test_f1")
            row, items["test"]["ensemble"] = {**row, **cols}, per["test_f1"]
        rows.append(row)
    run.write_artifact_json("trial_predictions.json", {"members": list(trial_preds), "voters": voters,
                                                       "preds": list(trial_preds.values())})
    write_per_item(run.artifacts, "char_f1", [f"trial:{i}" for i in range(len(trial["text"]))], items["trial"])
    if test is not None:
        write_per_item(run.artifacts, "test_char_f1", [f"test:{i}" for i in range(len(test["text"]))], items["test"])
    best = max(rows, key=lambda r: r["trial_f1"])
    single = max((r for r in rows if r["member"] != "ensemble"), key=lambda r: r["trial_f1"])
    claims = ([{"on": "trial", **vote_claim(items["trial"], "ensemble", single["member"]),
                "note": "checkpoints selected on trial: every row is optimistic"}]
              if "ensemble" in items["trial"] else [])
    run.finish({"table": rows, "best_member": best["member"], "best_trial_f1": best["trial_f1"],
                **{f"best_{k}": best.get(k) for k in ("trial_f1_lo", "trial_f1_hi", "trial_f1_n")}, "voters": voters,
                "min_votes": cfg.min_votes, "claims": claims,
                "n_train": len(train["text"]), "n_trial": len(trial["text"])})
    return run
