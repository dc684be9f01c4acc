"""SpansConfig, the plain training loop, model selection on trial by the official char F1, run dir IO."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoTokenizer

from workbench.common.config import RunConfig
from workbench.common.models import resolve_model
from workbench.common.rundir import RunDir
from workbench.common.runtime import resolve_device, seed_everything, track
from workbench.spans.metric import span_f1
from workbench.spans.model import HEADS, LOSSES, SpanTagger
from workbench.spans.offsets import spans_to_tags
from workbench.spans.predict import encode_windows, predict_batch
from workbench.spans.voting import vote_posts

KIND = "toxic_spans"


@dataclass(frozen=True, kw_only=True)
class SpansConfig(RunConfig):
    PRESETS: ClassVar[str] = "toxic_spans"

    encoder: str = field(default="tiny:bert", metadata={"help": "encoder name or path"})
    heads: tuple[str, ...] = field(default=("cls",), metadata={"help": "HEADS keys to train"})
    crf: tuple[bool, ...] = field(default=(True,), metadata={"help": "CRF settings to train per head"})
    loss: str = field(default="ce", metadata={"help": "LOSSES key (ignored with CRF)"})
    scheme: str = field(default="io", metadata={"help": "io | bio tags"})
    word_level: bool = field(default=True, metadata={"help": "label all tokens of a toxic word"})
    epochs: int = field(default=1, metadata={"help": "training epochs"})
    max_length: int = field(default=128, metadata={"help": "window length (long posts: sliding windows)"})
    batch_size: int = field(default=16, metadata={"help": "batch size"})
    lr: float = field(default=5e-5, metadata={"help": "AdamW learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW decay (not on bias/LayerNorm)"})
    grad_clip: float = field(default=1.0, metadata={"help": "grad-norm clip, before the step"})
    train_limit: int | None = field(default=None, metadata={"help": "first N train posts; None = all"})
    trial_limit: int | None = field(default=None, metadata={"help": "first N trial posts; None = all"})
    test_csv: str | None = field(default=None, metadata={"help": "optional test CSV to score"})
    ensemble: bool = field(default=True, metadata={"help": "majority vote over all trained members"})
    num_threads: int | None = field(default=None, metadata={"help": "torch threads; None = default"})

    def __post_init__(self) -> None:
        super().__post_init__()
        for h in self.heads:
            HEADS.check(h)
        LOSSES.check(self.loss)
        if self.scheme not in ("io", "bio"):
            raise ValueError(f"scheme must be io|bio, got {self.scheme!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be >= 1")


def num_tags(scheme: str) -> int:
    return 2 if scheme == "io" else 3


def build_tagger(encoder: str, head: str, crf: bool, loss: str = "ce", scheme: str = "io") -> tuple[SpanTagger, object]:
    path = resolve_model(encoder)
    tok = AutoTokenizer.from_pretrained(path)
    if not tok.is_fast:
        raise ValueError(f"{encoder}: a fast tokenizer (offset mapping) is required")
    enc = AutoModel.from_pretrained(path)
    return SpanTagger(enc, head=head, crf=crf, loss=loss, num_tags=num_tags(scheme)), tok


def make_batches(tok, texts, spans, cfg: SpansConfig, gen: torch.Generator | None = None):
    """Yield (input_ids, attention_mask, tags) batches of windows, shuffled with `gen`."""
    enc = encode_windows(tok, texts, cfg.max_length)
    tags = torch.full_like(enc["input_ids"], -100)
    for w, i in enumerate(enc["overflow_to_sample_mapping"].tolist()):
        om = [tuple(x) for x in enc["offset_mapping"][w].tolist()]
        special = enc["attention_mask"][w].eq(0).tolist()
        tags[w] = torch.tensor(spans_to_tags(texts[i], spans[i], om, cfg.scheme, cfg.word_level, special))
    order = torch.randperm(len(tags), generator=gen) if gen is not None else torch.arange(len(tags))
    for s in range(0, len(order), cfg.batch_size):
        b = order[s:s + cfg.batch_size]
        yield enc["input_ids"][b], enc["attention_mask"][b], tags[b]


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with two param groups: decay on weights, none on bias / LayerNorm (key `weight_decay`)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "LayerNorm" in name or name.endswith(".bias") else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, eps=1e-8)


def train_step(model, opt, batch, grad_clip: float) -> float:
    model.train()
    ids, mask, tags = batch
    loss = model.loss(ids, mask, tags)
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite loss {float(loss)}")
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)  # before the step
    opt.step()
    return loss.item()


def train_member(cfg: SpansConfig, head: str, crf: bool, train, trial, out_dir: Path) -> dict:
    """Train one head x CRF member; keep the epoch with the best trial char F1; save safetensors."""
    gen = seed_everything(cfg.seed)
    model, tok = build_tagger(cfg.encoder, head, crf, cfg.loss, cfg.scheme)
    device = resolve_device(cfg.device)
    model.to(device)
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
    best, best_state, t0, losses = -1.0, None, time.time(), []
    for ep in range(cfg.epochs):
        for batch in track(list(make_batches(tok, train["text"], train["spans"], cfg, gen)),
                           desc=f"{head}{'+crf' if crf else ''} ep{ep}"):
            losses.append(train_step(model, opt, [x.to(device) for x in batch], cfg.grad_clip))
        pred = predict_batch(model, tok, trial["text"], cfg.max_length, cfg.batch_size)
        f1 = span_f1(pred, trial["spans"])
        if f1 > best:
            best, best_pred = f1, pred
            best_state = {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(best_state, str(out_dir / "model.safetensors"))
    tok.save_pretrained(out_dir / "tokenizer")
    AutoConfig.from_pretrained(resolve_model(cfg.encoder)).save_pretrained(out_dir / "encoder_config")
    meta = {"head": head, "crf": crf, "loss": cfg.loss, "scheme": cfg.scheme, "max_length": cfg.max_length,
            "encoder": cfg.encoder, "trial_f1": best, "train_s": time.time() - t0,
            "final_loss": losses[-1] if losses else None}
    (out_dir / "member.json").write_text(json.dumps(meta, indent=1))
    return {**meta, "trial_pred": best_pred}


def load_member(folder: str | Path, device: str = "cpu") -> tuple[SpanTagger, object, dict]:
    """Load one trained member folder (member.json + model.safetensors)."""
    folder = Path(folder)
    meta = json.loads((folder / "member.json").read_text())
    tok = AutoTokenizer.from_pretrained(folder / "tokenizer")
    enc = AutoModel.from_config(AutoConfig.from_pretrained(folder / "encoder_config"))
    model = SpanTagger(enc, meta["head"], meta["crf"], meta["loss"], num_tags(meta["scheme"]))
    model.load_state_dict(load_file(str(folder / "model.safetensors"), device=device))
    return model.to(device).eval(), tok, meta


class SpanPredictor:
    """Members of a run dir (or a subset); `predict_spans(texts)` votes when several members are used."""

    def __init__(self, run: str | Path, members: list[str] | None = None, device: str = "cpu"):
        root = Path(run) / "artifacts" / "members"
        if not root.is_dir():
            raise FileNotFoundError(f"{run}: no trained members (expected {root})")
        names = members or sorted(p.name for p in root.iterdir() if (p / "member.json").exists())
        if not names:
            raise FileNotFoundError(f"{root}: no member folders")
        self.members = {n: load_member(root / n, device) for n in names}

    def predict_member(self, name: str, texts, return_probs: bool = False):
        model, tok, meta = self.members[name]
        return predict_batch(model, tok, texts, meta["max_length"], return_probs=return_probs)

    def predict_spans(self, texts: list[str]) -> list[list[int]]:
        preds = [self.predict_member(n, texts) for n in self.members]
        return preds[0] if len(preds) == 1 else vote_posts(preds)


def load_predictor(run: str | Path, members: list[str] | None = None) -> SpanPredictor:
    return SpanPredictor(run, members)


def _split(name: str, limit: int | None, path: str | None = None) -> dict:
    from workbench.data import load_toxic_spans
    ds = load_toxic_spans(name, path=path)
    n = len(ds) if limit is None else min(limit, len(ds))
    return {"text": list(ds["text"][:n]), "spans": [list(s) for s in ds["spans"][:n]]}


def run_spans(cfg: SpansConfig) -> RunDir:
    """Train heads x CRF on train, select on trial (char F1), vote, score test if given."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    run = RunDir.create(cfg, kind=KIND)
    train, trial = _split("train", cfg.train_limit), _split("trial", cfg.trial_limit)
    test = _split("test", None, cfg.test_csv) if cfg.test_csv else None
    rows, trial_preds, test_preds = [], [], []
    for head in cfg.heads:
        for crf in cfg.crf:
            name = f"{head}{'-crf' if crf else ''}"
            m = train_member(cfg, head, crf, train, trial, run.artifacts / "members" / name)
            row = {"member": name, "head": head, "crf": crf, "trial_f1": round(100 * m["trial_f1"], 2),
                   "train_s": round(m["train_s"], 1)}
            trial_preds.append(m["trial_pred"])
            if test is not None:
                pred = SpanPredictor(run.path, [name]).predict_spans(test["text"])
                test_preds.append(pred)
                row["test_f1"] = round(100 * span_f1(pred, test["spans"]), 2)
            rows.append(row)
    if cfg.ensemble and len(rows) > 1:
        row = {"member": "ensemble", "head": "vote", "crf": None,
               "trial_f1": round(100 * span_f1(vote_posts(trial_preds), trial["spans"]), 2),
               "train_s": round(sum(r["train_s"] for r in rows), 1)}
        if test is not None:
            row["test_f1"] = round(100 * span_f1(vote_posts(test_preds), test["spans"]), 2)
        rows.append(row)
    run.write_artifact_json("trial_predictions.json", {"members": [r["member"] for r in rows
                                                                   if r["member"] != "ensemble"],
                                                       "preds": trial_preds})
    best = max(rows, key=lambda r: r["trial_f1"])
    run.finish({"table": rows, "best_member": best["member"], "best_trial_f1": best["trial_f1"],
                "n_train": len(train["text"]), "n_trial": len(trial["text"])})
    return run
