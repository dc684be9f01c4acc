"""FusionDataset (join on id) and FusionCollator (MinCE + sparse padding)."""

import math

import pytest
import torch
from datasets import Dataset

from workbench.fusion.formats import PAD_ID, PAD_LOGIT
from workbench.fusion.train import (
    FusionCollator,
    FusionDataset,
    batch_nbytes,
    sparse_target_bytes,
    synthetic_representations,
)


def _rows(ids, length, metric, top_id, aligned=False):
    out = []
    for i, sid in enumerate(ids):
        row = {"id": sid, "input_ids": list(range(10 + i, 10 + i + length)),
               "labels": [-100] + list(range(11 + i, 10 + i + length)),
               "topk_ids": [[top_id, top_id + 1]] * length,
               "topk_logits": [[0.0, 0.0]] * length, "metric_ce": metric[i]}
        if aligned:
            row["align_kind"] = [1] * length
        else:
            row["gold_ce"] = [1.0] * length
        out.append(row)
    return Dataset.from_list(out)


def test_dataset_joins_on_id_and_drops_missing():
    pivot = _rows(["a", "b", "c"], 4, [1.0, 1.0, 1.0], 1)
    src = _rows(["c", "a"], 4, [0.5, 2.0], 5, aligned=True)
    src = src.map(lambda r: {"input_ids": list(range(10, 14)) if r["id"] == "a"
                             else list(range(12, 16))})
    ds = FusionDataset(pivot, [src])
    assert len(ds) == 2
    item = ds[0]
    assert item["id"] == "a" and len(item["candidates"]) == 2
    assert item["metric_ce"] == [1.0, 2.0]
    assert item["candidates"][1][0][0] == [5, 6]


def test_dataset_bad_input():
    pivot = _rows(["a"], 4, [1.0], 1)
    with pytest.raises(ValueError, match="lacks column"):
        FusionDataset(pivot.remove_columns("metric_ce"))
    with pytest.raises(ValueError, match="no dialogue id"):
        FusionDataset(pivot, [_rows(["z"], 4, [1.0], 1, aligned=True)])
    other = _rows(["a"], 4, [1.0], 1, aligned=True).map(lambda r: {"input_ids": [0, 0, 0, 0]})
    with pytest.raises(ValueError, match="other input_ids"):
        FusionDataset(pivot, [other])[0]


def _feat(sid, n, pivot_metric, src_metric, src_ids):
    return {"id": sid, "input_ids": [7] * n, "labels": [-100] + [7] * (n - 1),
            "candidates": [([[1, 2]] * n, [[0.0, 0.0]] * n), (src_ids, [[0.0, PAD_LOGIT]] * n)],
            "metric_ce": [pivot_metric, src_metric]}


def test_collator_applies_mince_per_sample_and_pads():
    col = FusionCollator(pad_token_id=0, vocab_size=50)
    f0 = _feat("x", 3, 2.0, 1.0, [[9, PAD_ID]] * 3)  # source wins
    f1 = _feat("y", 2, 1.0, 3.0, [[9, PAD_ID]] * 2)  # pivot wins
    batch = col([f0, f1])
    assert batch["fuse_choice"].tolist() == [1, 0]
    assert batch["input_ids"].tolist() == [[7, 7, 7], [7, 7, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"][1].tolist() == [-100, 7, -100]
    assert batch["target_ids"].shape == (2, 3, 2)
    assert batch["target_ids"][0, 0].tolist() == [9, 0]
    assert batch["target_probs"][0, 0].tolist() == [1.0, 0.0]
    assert batch["target_ids"][1, 0].tolist() == [1, 2]
    assert batch["target_probs"][1, 1].tolist() == [0.5, 0.5]
    assert batch["target_probs"][1, 2].tolist() == [0.0, 0.0]  # padding position


def test_collator_falls_back_to_pivot_row_when_source_row_is_empty():
    f = _feat("x", 2, 2.0, 1.0, [[9, PAD_ID], [PAD_ID, PAD_ID]])
    batch = FusionCollator(pad_token_id=0)([f])
    assert batch["target_ids"][0].tolist() == [[9, 0], [1, 2]]
    assert batch["target_probs"][0].tolist() == [[1.0, 0.0], [0.5, 0.5]]


def test_collator_nan_metric_and_vocab_check():
    f = _feat("x", 2, 1.0, math.nan, [[9, PAD_ID]] * 2)
    assert FusionCollator(pad_token_id=0)([f])["fuse_choice"].tolist() == [0]
    f = _feat("bad", 2, 2.0, 1.0, [[99, PAD_ID]] * 2)
    with pytest.raises(ValueError, match="'bad'.*outside"):
        FusionCollator(pad_token_id=0, vocab_size=50)([f])


def test_sparse_batch_bytes_match_the_shape_formula():
    pivot = synthetic_representations(2, 64, 100, 10, seed=0)
    src = synthetic_representations(2, 64, 100, 10, seed=1, aligned=True)
    src = src.map(lambda r, i: {"input_ids": pivot[i]["input_ids"]}, with_indices=True)
    batch = FusionCollator(pad_token_id=0)([FusionDataset(pivot, [src])[i] for i in range(2)])
    assert batch_nbytes(batch, ("target_ids", "target_probs")) == sparse_target_bytes(2, 64, 10)
    assert batch["target_probs"].sum(-1).allclose(torch.ones(2, 64))
