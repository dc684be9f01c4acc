"""Inference from a run folder: load trained members (optionally int8) and predict spans with
the CV-chosen thresholds, gates and vote (`SpanPredictor`, `load_predictor`)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModel, AutoTokenizer

from workbench.common.io import read_json
from workbench.spans.model import SpanTagger
from workbench.spans.offsets import extend_to_words
from workbench.spans.predict import predict_batch
from workbench.spans.select import ensemble_posts, gate, member_spans, post_score
from workbench.spans.train import num_tags


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Dynamic int8 quantisation of every nn.Linear (weights int8, activations quantised per call).

    CPU inference only; about 2x less compute per post here. Uses `torch.ao.quantization`
    (deprecated in favour of torchao, still shipped with the pinned torch); the warning is silenced.
    """
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def load_member(folder: str | Path, device: str = "cpu", quantize: bool = False) -> tuple[SpanTagger, object, dict]:
    """Load one trained member folder (member.json + model.safetensors), in eval mode."""
    folder = Path(folder)
    if not (folder / "member.json").exists():
        raise FileNotFoundError(f"{folder}: not a trained member (no member.json)")
    meta = json.loads((folder / "member.json").read_text())
    tok = AutoTokenizer.from_pretrained(folder / "tokenizer")
    enc = AutoModel.from_config(AutoConfig.from_pretrained(folder / "encoder_config"))
    model = SpanTagger(enc, meta["head"], meta["crf"], meta["loss"], num_tags(meta["scheme"]),
                       cls_last=meta.get("cls_last", False))
    model.load_state_dict(load_file(str(folder / "model.safetensors"), device=device))
    model = model.to(device).eval()
    if quantize:
        if str(device) != "cpu":
            raise ValueError(f"int8 quantisation is CPU only, got device {device!r}")
        model = quantize_int8(model)
    return model, tok, meta


class SpanPredictor:
    """Members of a run dir (or a subset); `predict_spans(texts)` votes when several members are used.

    Settings chosen by cross-validation are applied when the run has them: each member's token
    threshold and post-level gate (`member.json` "decode"), and the ensemble's voters, vote size
    and gate (`artifacts/ensemble.json`). `min_votes` overrides the vote size. `quantize=True` runs
    dynamic int8 Linear layers (faster on CPU; check the F1 change with `workbench spans evaluate
    --int8`). `extend_words=True` grows predictions to whole words.
    """

    def __init__(self, run: str | Path, members: list[str] | None = None, device: str = "cpu",
                 quantize: bool = False, extend_words: bool = False, min_votes: int | None = None):
        root = Path(run) / "artifacts" / "members"
        if not root.is_dir():
            raise FileNotFoundError(f"{run}: no trained members (expected {root})")
        available = sorted(p.name for p in root.iterdir() if (p / "member.json").exists())
        unknown = [m for m in members or [] if m not in available]
        if unknown:
            raise ValueError(f"{run}: unknown member(s) {unknown}; available: {available}")
        ens_file = Path(run) / "artifacts" / "ensemble.json"
        self.ensemble = read_json(ens_file) if ens_file.exists() else {}
        voters = [v for v in self.ensemble.get("voters", []) if v in available]
        names = members or voters or available
        if not names:
            raise FileNotFoundError(f"{root}: no member folders")
        self.extend_words = extend_words
        self.min_votes = min_votes if min_votes is not None else (
            self.ensemble.get("min_votes") if not members else None)
        self.tau_post = self.ensemble.get("tau_post", 0.0) if not members else 0.0
        self.members = {n: load_member(root / n, device, quantize) for n in names}

    def predict_member(self, name: str, texts, return_probs: bool = False, batch_size: int = 16,
                       gated: bool | None = None):
        """One member's offsets (its CV-chosen threshold, and its gate when `gated`: by default when it
        is the only member loaded); with `return_probs` also the per-token (start, end, p) lists."""
        model, tok, meta = self.members[name]
        spans, probs = predict_batch(model, tok, texts, meta["max_length"], batch_size, return_probs=True)
        dec = meta.get("decode") or {}
        if dec:
            spans = [member_spans(s, p, dec.get("tau_token")) for s, p in zip(spans, probs, strict=True)]
            if gated or (gated is None and len(self.members) == 1):  # in a vote: the ensemble's gate
                spans = [gate(s, post_score(p), dec.get("tau_post", 0.0)) for s, p in zip(spans, probs, strict=True)]
        if self.extend_words:
            spans = [extend_to_words(t, s) for t, s in zip(texts, spans, strict=True)]
        return (spans, probs) if return_probs else spans

    def predict_spans(self, texts: list[str], batch_size: int = 16) -> list[list[int]]:
        outs = [self.predict_member(n, texts, return_probs=True, batch_size=batch_size) for n in self.members]
        if len(outs) == 1:
            return outs[0][0]
        scores = [[post_score(p) for p in o[1]] for o in outs]
        return ensemble_posts([o[0] for o in outs], scores, self.min_votes, self.tau_post)


def load_predictor(run: str | Path, members: list[str] | None = None, quantize: bool = False,
                   extend_words: bool = False, min_votes: int | None = None) -> SpanPredictor:
    return SpanPredictor(run, members, quantize=quantize, extend_words=extend_words, min_votes=min_votes)
