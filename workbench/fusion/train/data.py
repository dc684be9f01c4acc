"""Training examples for fusion: the pivot's representation joined with aligned sources on ``id``.

:class:`FusionDataset` reads rows lazily from the Arrow datasets of ``workbench.fusion.formats``
(pivot representation + zero or more aligned source representations) and yields, per dialogue,
``input_ids``, ``labels`` and the candidate top-K lists (pivot first) with their ``metric_ce``.
:class:`FusionCollator` applies MinCE per sample, turns only the chosen candidate into a top-K
distribution and pads the batch: the targets are ``B × L × K`` (ids int64 + probs float32),
never ``B × L × V``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from workbench.fusion.formats import ALIGNED_COLUMNS, PAD_ID, PAD_LOGIT, REPR_COLUMNS
from workbench.fusion.train.kernels import IGNORE_INDEX, mince_select, topk_distribution

log = logging.getLogger(__name__)

_NEEDED = ("id", "input_ids", "labels", "topk_ids", "topk_logits", "metric_ce")


def _check_columns(ds, role: str, expected: Sequence[str], needed: Sequence[str] = _NEEDED
                   ) -> None:
    missing = [c for c in needed if c not in ds.column_names]
    if missing:
        raise ValueError(f"{role} dataset lacks column(s) {missing}; expected the "
                         f"workbench.fusion.formats columns {list(expected)}")


class FusionDataset(Dataset):
    """Pivot rows (+ the rows of each aligned source with the same ``id``), read lazily.

    ``with_targets=False`` (the SFT-only baseline) yields ``input_ids``/``labels`` only.
    Dialogues missing from a source are dropped (logged); an aligned row whose ``input_ids``
    differ from the pivot's raises ValueError naming the id. ``max_length`` truncates.
    """

    def __init__(self, pivot, sources: Sequence[Any] = (), *, max_length: int | None = None,
                 with_targets: bool = True):
        _check_columns(pivot, "pivot", REPR_COLUMNS,
                       _NEEDED if with_targets else ("id", "input_ids", "labels"))
        for j, src in enumerate(sources):
            _check_columns(src, f"aligned source {j}", ALIGNED_COLUMNS)
        self.pivot, self.sources = pivot, list(sources)
        self.max_length, self.with_targets = max_length, with_targets
        ids = list(pivot["id"])
        if len(set(ids)) != len(ids):
            raise ValueError("pivot dataset has duplicate ids")
        maps = [{sid: i for i, sid in enumerate(src["id"])} for src in self.sources]
        self.rows: list[tuple[int, list[int]]] = []
        dropped = 0
        for i, sid in enumerate(ids):
            found = [m.get(sid) for m in maps]
            if any(f is None for f in found):
                dropped += 1
                continue
            self.rows.append((i, found))
        if dropped:
            log.warning("%d of %d pivot dialogues are missing from an aligned source: dropped",
                        dropped, len(ids))
        if not self.rows:
            raise ValueError("no dialogue id is shared by the pivot and every aligned source")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        i, found = self.rows[idx]
        row = self.pivot[i]
        n = self.max_length or len(row["input_ids"])
        out: dict[str, Any] = {"id": row["id"], "input_ids": row["input_ids"][:n],
                               "labels": row["labels"][:n]}
        if not self.with_targets:
            return out
        cands = [(row["topk_ids"][:n], row["topk_logits"][:n])]
        metrics = [row["metric_ce"]]
        for j, (src, k) in enumerate(zip(self.sources, found, strict=True)):
            srow = src[k]
            if srow["input_ids"][:n] != out["input_ids"]:
                raise ValueError(f"aligned source {j}: dialogue {row['id']!r} has other input_ids "
                                 "than the pivot's (aligned to another pivot representation?)")
            cands.append((srow["topk_ids"][:n], srow["topk_logits"][:n]))
            metrics.append(srow["metric_ce"])
        out["candidates"] = cands
        out["metric_ce"] = [float("nan") if m is None else float(m) for m in metrics]
        return out


class FusionCollator:
    """Pads ``input_ids``/``labels`` and the MinCE-chosen top-K target of every sample.

    Output keys: ``input_ids``, ``attention_mask``, ``labels`` and, with targets,
    ``target_ids`` (int64) and ``target_probs`` (float32), both ``B × L × K``, and
    ``fuse_choice`` ``[B]`` (0 = pivot, j = source j). Target rows where the chosen source has
    no valid entry take the pivot's row (the official collator's "bad case").
    """

    def __init__(self, pad_token_id: int, *, temperature: float = 1.0,
                 vocab_size: int | None = None, mince_dtype: str = "bfloat16"):
        self.pad_token_id, self.temperature, self.vocab_size = pad_token_id, temperature, vocab_size
        self.mince_dtype = mince_dtype

    def _target(self, feat: dict[str, Any], choice: int) -> tuple[torch.Tensor, torch.Tensor]:
        pid, plog = (torch.tensor(x) for x in feat["candidates"][0])
        ids, probs, _ = topk_distribution(pid.long(), plog.float(), self.temperature)
        if choice != 0:
            sid, slog = (torch.tensor(x) for x in feat["candidates"][choice])
            s_ids, s_probs, s_valid = topk_distribution(sid.long(), slog.float(),
                                                        self.temperature)
            k = max(ids.shape[-1], s_ids.shape[-1])
            ids, probs = _pad_k(ids, k), _pad_k(probs, k)
            s_ids, s_probs = _pad_k(s_ids, k), _pad_k(s_probs, k)
            ids = torch.where(s_valid[:, None], s_ids, ids)
            probs = torch.where(s_valid[:, None], s_probs, probs)
        if self.vocab_size is not None and ids.numel() and int(ids.max()) >= self.vocab_size:
            raise ValueError(f"dialogue {feat.get('id')!r}: top-K id {int(ids.max())} is outside "
                             f"the model's vocabulary ({self.vocab_size})")
        return ids, probs

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        b = len(features)
        length = max(len(f["input_ids"]) for f in features)
        input_ids = torch.full((b, length), self.pad_token_id, dtype=torch.long)
        labels = torch.full((b, length), IGNORE_INDEX, dtype=torch.long)
        attn = torch.zeros((b, length), dtype=torch.long)
        for r, f in enumerate(features):
            n = len(f["input_ids"])
            input_ids[r, :n] = torch.tensor(f["input_ids"])
            labels[r, :n] = torch.tensor(f["labels"])
            attn[r, :n] = 1
        batch = {"input_ids": input_ids, "attention_mask": attn, "labels": labels}
        if "candidates" not in features[0]:
            return batch
        metrics = torch.tensor([f["metric_ce"] for f in features], dtype=torch.float64)
        choice = mince_select(metrics, self.mince_dtype)
        targets = [self._target(f, int(c)) for f, c in zip(features, choice, strict=True)]
        k = max(t[0].shape[-1] for t in targets)
        tids = torch.zeros((b, length, k), dtype=torch.long)
        tprobs = torch.zeros((b, length, k), dtype=torch.float32)
        for r, (ids, probs) in enumerate(targets):
            n = ids.shape[0]
            tids[r, :n, : ids.shape[-1]] = ids
            tprobs[r, :n, : probs.shape[-1]] = probs
        batch.update(target_ids=tids, target_probs=tprobs, fuse_choice=choice)
        return batch


def _pad_k(x: torch.Tensor, k: int) -> torch.Tensor:
    if x.shape[-1] == k:
        return x
    return torch.nn.functional.pad(x, (0, k - x.shape[-1]))


def batch_nbytes(batch: dict[str, torch.Tensor], keys: Sequence[str] | None = None) -> int:
    """Bytes held by the tensors of a collated batch (optionally only ``keys``)."""
    return sum(v.numel() * v.element_size() for k, v in batch.items()
               if isinstance(v, torch.Tensor) and (keys is None or k in keys))


def synthetic_representations(n: int, length: int, vocab: int, k: int, *, seed: int = 0,
                              prompt_len: int = 3, aligned: bool = False,
                              ce_shift: float = 0.0):
    """A tiny dataset in the ``formats.py`` shape (tests and the memory benchmark).

    ``aligned=True`` gives the aligned-source shape (PAD_ID/PAD_LOGIT padding in the last
    column, ``align_kind``); ``ce_shift`` is added to every ``metric_ce``.
    """
    from datasets import Dataset

    g = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        ids = torch.randint(0, vocab, (length,), generator=g)
        labels = ids.clone()
        labels[:prompt_len] = IGNORE_INDEX
        top_ids = torch.stack([torch.randperm(vocab, generator=g)[:k] for _ in range(length)])
        top_logits = torch.randn(length, k, generator=g).sort(-1, descending=True).values
        row = {"id": f"s{i}", "input_ids": ids.tolist(), "labels": labels.tolist(),
               "topk_ids": top_ids.tolist(), "topk_logits": top_logits.half().float().tolist(),
               "metric_ce": float(torch.rand((), generator=g)) + 1.0 + ce_shift}
        if aligned:
            row["topk_ids"] = [r[:-1] + [PAD_ID] for r in row["topk_ids"]]
            row["topk_logits"] = [r[:-1] + [PAD_LOGIT] for r in row["topk_logits"]]
            row["align_kind"] = [1] * length
        else:
            row["gold_ce"] = [1.0] * (length - 1) + [math.nan]
        rows.append(row)
    return Dataset.from_list(rows)
