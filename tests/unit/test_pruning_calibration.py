"""Calibration rows: the official protocol against a hand construction, rows spread over every
sampled document when capped, errors."""

from __future__ import annotations

import json
import random

import pytest
import torch

from workbench.common.models import load_tokenizer
from workbench.pruning.calibration import calibration, calibration_rows


@pytest.fixture(scope="module")
def gemma_tok():  # adds BOS, like Llama-2's tokenizer in the official runs
    return load_tokenizer("tiny:gemma3")


def test_official_protocol_matches_a_hand_construction(gemma_tok, tmp_path):
    import datasets

    texts = [f"Instruction {i}: write {i % 7} words about topic {i * 3}.\n\nResponse: "
             + " ".join(f"w{i}x{j}" for j in range(i % 11 + 2)) for i in range(60)]
    f = tmp_path / "alpaca.json"
    f.write_text(json.dumps([{"text": t, "instruction": "x"} for t in texts]))
    cal = calibration(gemma_tok, str(f), 4, 16, heldout=True)
    # by hand, as block_search.py + utils.py do it
    ds = datasets.Dataset.from_dict({"text": texts}).train_test_split(test_size=0.2, seed=42)
    pool = ds["test"].train_test_split(test_size=0.5, seed=42)["train"]
    assert len(pool) == 6  # the held-out 10 %
    random.seed(42)
    picked = pool.select(random.sample(range(len(pool)), 4))
    ids = gemma_tok("\n\n".join(picked["text"]), return_tensors="pt").input_ids[0]
    assert ids[0] == gemma_tok.bos_token_id
    n = ids.numel() // 16
    assert torch.equal(cal.rows, ids[: n * 16].view(n, 16))
    assert cal.layout == "official" and cal.sampled == 4 and cal.doc_tokens is None
    assert 1 <= cal.documents <= 4


def test_capped_rows_come_from_every_sampled_document(gemma_tok, tmp_path):
    # long documents: a prefix of the joined stream would hold only the first one or two
    texts = [" ".join([f"D{i:02d}Q"] * 300) for i in range(12)]
    f = tmp_path / "long.jsonl"
    f.write_text("\n".join(json.dumps({"text": t}) for t in texts))
    cal = calibration(gemma_tok, str(f), 10, 32, max_rows=6)
    assert cal.rows.shape == (6, 32) and cal.layout == "spread"
    seen = {m for m in (f"D{i:02d}Q" for i in range(12))
            if m in gemma_tok.decode(cal.rows.flatten())}
    assert len(seen) == 10 == cal.documents == cal.sampled
    assert cal.info()["documents"] == 10 and sum(cal.info()["documents_per_row"]) >= 10
    # the budget is filled exactly and each document's share differs by at most one token
    counts = [gemma_tok.decode(cal.rows.flatten()).count(m) for m in seen]
    assert max(counts) - min(counts) <= 2
    # the official layout (no cap) on the same sample keeps whole documents: 10 of them too
    full = calibration(gemma_tok, str(f), 10, 32)
    assert full.documents == 10 and len(full.rows) > 6


def test_capped_rows_keep_short_documents_whole(gemma_tok, tmp_path):
    texts = ["short one", " ".join(["long"] * 400), "tiny", " ".join(["mid"] * 40)]
    f = tmp_path / "mix.txt"
    f.write_text("\n\n".join(texts))
    cal = calibration(gemma_tok, str(f), 4, 16, max_rows=4)
    text = gemma_tok.decode(cal.rows.flatten())
    assert "short one" in text and "tiny" in text and text.count("mid") >= 20
    assert cal.documents == 4


def test_calibration_rows_from_file_and_empty_file(tmp_path):
    tok = load_tokenizer("tiny:llama")
    f = tmp_path / "cal.jsonl"
    f.write_text('{"instruction": "Say hi", "output": "hi there"}\n{"text": "one two three"}\n')
    rows = calibration_rows(tok, str(f), 2, 3, seed=0)
    ids = tok("\n\n".join(["Say hi\nhi there", "one two three"])).input_ids
    ids2 = tok("\n\n".join(["one two three", "Say hi\nhi there"])).input_ids
    n = len(ids) // 3
    assert rows.shape == (n, 3)  # non-overlapping rows, remainder dropped
    assert rows.flatten().tolist() in (ids[: 3 * n], ids2[: 3 * n])
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n  \n")
    with pytest.raises(ValueError, match="calibration set .*empty"):
        calibration_rows(tok, str(empty), 4, 8)
    with pytest.raises(ValueError, match="calibration set 'no/such-dataset-xyz'"):
        calibration_rows(tok, "no/such-dataset-xyz", 4, 8)
