"""Tagger = HF encoder + head (registry) + optional linear-chain CRF; losses CE, dice, focal."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from workbench.common.registry import Registry
from workbench.spans.crf import CRF
from workbench.spans.offsets import IGNORE

HEADS: Registry = Registry("span head")
LOSSES: Registry = Registry("span loss")


def _cls_vector(enc_out, pooler: nn.Module, cls_index: torch.Tensor | None = None) -> torch.Tensor:
    """tanh(W h_[CLS]) as the BERT pooler; `cls_index` (B,) where the summary token is not first (XLNet)."""
    last = enc_out.hidden_states[-1]
    h = last[:, 0] if cls_index is None else last[torch.arange(last.size(0), device=last.device), cls_index]
    return pooler(h)


class LayerAttention(nn.Module):
    """Per-token softmax over all hidden layers (embeddings + every block): shared Linear(h, 1)."""

    def __init__(self, hidden: int):
        super().__init__()
        self.score = nn.Linear(hidden, 1)
        self.last_weights: torch.Tensor | None = None

    def forward(self, hidden_states: tuple[torch.Tensor, ...]) -> torch.Tensor:
        h = torch.stack(hidden_states, dim=2)  # (B, T, L, H)
        alpha = torch.softmax(self.score(h).squeeze(-1), dim=-1)  # (B, T, L)
        self.last_weights = alpha.detach()
        return (alpha.unsqueeze(-1) * h).sum(2)


@HEADS.register("cls", paper="YNU-HPCC *CLS: pooled CLS added to each token")
class ClsHead(nn.Module):
    def __init__(self, hidden: int, num_tags: int, dropout: float = 0.1):
        super().__init__()
        self.pooler = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh())
        self.drop, self.out = nn.Dropout(dropout), nn.Linear(hidden, num_tags)

    def forward(self, enc_out, cls_index: torch.Tensor | None = None) -> torch.Tensor:
        h = enc_out.hidden_states[-1] + _cls_vector(enc_out, self.pooler, cls_index).unsqueeze(1)
        return self.out(self.drop(h))


@HEADS.register("concat_cls", paper="YNU-HPCC *ConcatCLS: pooled CLS concatenated")
class ConcatClsHead(nn.Module):
    def __init__(self, hidden: int, num_tags: int, dropout: float = 0.1):
        super().__init__()
        self.pooler = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh())
        self.drop, self.out = nn.Dropout(dropout), nn.Linear(2 * hidden, num_tags)

    def forward(self, enc_out, cls_index: torch.Tensor | None = None) -> torch.Tensor:
        last = enc_out.hidden_states[-1]
        cls = _cls_vector(enc_out, self.pooler, cls_index).unsqueeze(1).expand_as(last)
        return self.out(self.drop(torch.cat([last, cls], -1)))


class _LayerMixHead(nn.Module):
    """A combination of the encoder's layers (``combine``) plus the pooled CLS, then tags."""

    def __init__(self, hidden: int, num_tags: int, dropout: float = 0.1):
        super().__init__()
        self.pooler = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh())
        self.drop, self.out = nn.Dropout(dropout), nn.Linear(hidden, num_tags)

    def combine(self, hidden_states: tuple[torch.Tensor, ...]) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, enc_out, cls_index: torch.Tensor | None = None) -> torch.Tensor:
        h = self.combine(enc_out.hidden_states) + _cls_vector(enc_out, self.pooler, cls_index).unsqueeze(1)
        return self.out(self.drop(h))


@HEADS.register("layer_attention", paper="YNU-HPCC *ATT: layer attention + pooled CLS")
class LayerAttentionHead(_LayerMixHead):
    def __init__(self, hidden: int, num_tags: int, dropout: float = 0.1):
        super().__init__(hidden, num_tags, dropout)
        self.att = LayerAttention(hidden)

    def combine(self, hidden_states):
        return self.att(hidden_states)


class ScalarMix(nn.Module):
    """One softmax weight per hidden layer, shared by all tokens (ELMo's scalar mix), times a scale.

    Holds `max_layers` weights and uses the first len(hidden_states) of them."""

    def __init__(self, num_layers: int):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(num_layers))
        self.gamma = nn.Parameter(torch.ones(()))

    def forward(self, hidden_states: tuple[torch.Tensor, ...]) -> torch.Tensor:
        w = torch.softmax(self.weights[:len(hidden_states)], 0)
        return self.gamma * sum(wi * h for wi, h in zip(w, hidden_states, strict=True))


@HEADS.register("scalar_mix", paper="variant (not in the paper): scalar mix of all layers + pooled CLS")
class ScalarMixHead(_LayerMixHead):
    """Layer-combination variant: a per-layer (not per-token) softmax mix, then the paper's CLS addition."""

    def __init__(self, hidden: int, num_tags: int, dropout: float = 0.1, max_layers: int = 64):
        super().__init__(hidden, num_tags, dropout)
        self.mix = ScalarMix(max_layers)

    def combine(self, hidden_states):
        return self.mix(hidden_states)


@LOSSES.register("ce")
def ce_loss(logits: torch.Tensor, tags: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), tags.reshape(-1), ignore_index=IGNORE)


@LOSSES.register("focal", gamma=2.0)
def focal_loss(logits: torch.Tensor, tags: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    lg, t = logits.reshape(-1, logits.size(-1)), tags.reshape(-1)
    keep = t != IGNORE
    logp = F.log_softmax(lg[keep], -1).gather(1, t[keep].unsqueeze(1)).squeeze(1)
    return (-(1 - logp.exp()) ** gamma * logp).mean()


@LOSSES.register("dice")
def dice_loss(logits: torch.Tensor, tags: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    lg, t = logits.reshape(-1, logits.size(-1)), tags.reshape(-1)
    keep = t != IGNORE
    p = F.softmax(lg[keep], -1)
    onehot = F.one_hot(t[keep], lg.size(-1)).float()
    inter = (p * onehot).sum(0)
    dice = (2 * inter + smooth) / (p.sum(0) + onehot.sum(0) + smooth)
    return 1 - dice.mean()


class SpanTagger(nn.Module):
    """Encoder + head; with `crf=True` the loss is the CRF NLL and decoding is Viterbi."""

    def __init__(self, encoder: nn.Module, head: str = "cls", crf: bool = False, loss: str = "ce",
                 num_tags: int = 2, dropout: float = 0.1, cls_last: bool = False):
        super().__init__()
        self.cls_last = cls_last  # summary token at the end of the sequence (XLNet), not first
        hidden = encoder.config.hidden_size
        self.encoder = encoder
        self.head_name, self.loss_name, self.num_tags = head, loss, num_tags
        self.head = HEADS.get(head)(hidden, num_tags, dropout)
        self.loss_fn = LOSSES.get(loss)
        self.crf = CRF(num_tags) if crf else None

    def emissions(self, input_ids, attention_mask) -> torch.Tensor:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return self.head(out, attention_mask.long().sum(1) - 1 if self.cls_last else None)

    def loss(self, input_ids, attention_mask, tags) -> torch.Tensor:
        em = self.emissions(input_ids, attention_mask)
        if self.crf is None:
            return self.loss_fn(em, tags)
        # CRF over all attended positions; special tokens (IGNORE) are scored as O
        return self.crf.nll(em, tags.clamp(min=0), attention_mask.bool())

    @torch.inference_mode()
    def predict_tags(self, input_ids, attention_mask) -> tuple[list[list[int]], torch.Tensor]:
        """(tag paths, toxic probabilities (B, T))."""
        em = self.emissions(input_ids, attention_mask)
        probs = em.softmax(-1)[..., 1:].sum(-1)
        if self.crf is not None:
            paths = self.crf.decode(em, attention_mask.bool())
        else:
            n = attention_mask.long().sum(1).tolist()
            paths = [row[:k] for row, k in zip(em.argmax(-1).tolist(), n, strict=True)]
        return paths, probs
