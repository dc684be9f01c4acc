"""End to end on tiny models: export -> from_pretrained -> same logits; orchestrator smoke."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from workbench.common.models import load_causal_lm
from workbench.pruning import BlockModel, PruningConfig, export_pruned, run_blockpruner


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_export_reproduces_pruned_logits(arch, tmp_path):
    model, tok = load_causal_lm(f"tiny:{arch}")
    removed = [("mha", 0), ("mlp", 0), ("mha", 2), ("mlp", 3)]
    x = torch.randint(0, 500, (1, 12))
    with torch.no_grad(), BlockModel(model) as bm, bm.removed(removed):
        ref = model(input_ids=x).logits
    out = export_pruned(model, tok, removed, tmp_path / "m", {"1": [["mha", 0]]})
    loaded = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=False)
    assert loaded.config.num_hidden_layers == 3
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=x).logits, ref)
    gen = loaded.generate(x, max_new_tokens=3, do_sample=False)
    assert gen.shape == (1, 15)
    assert json.loads((out / "block_order.json").read_text())["removed"][0] == ["mha", 0]


@pytest.mark.slow
def test_orchestrator_smoke(tmp_path):
    cfg = PruningConfig.from_preset("smoke", output_dir=str(tmp_path), tasks=("piqa",),
                                    eval_limit=2, baselines=("shortgpt",), num_blocks=2)
    res = run_blockpruner(cfg)
    metrics = json.loads((res.run_dir / "metrics.json").read_text())
    assert [r["method"] for r in metrics["table"]] == ["Dense", "BlockPruner", "ShortGPT"]
    assert set(metrics["table"][0]) == {"method", "ratio", "ppl", "piqa", "avg"}
    order = json.loads((res.run_dir / "artifacts/blockpruner_del_order_list.json").read_text())
    assert list(order) == ["1", "2"]
    assert (res.run_dir / "artifacts/pruned_model/config.json").exists()
    assert "lm-evaluation-harness" in metrics["note"] and "validation" in metrics["note"]
    # a re-run of the same config reuses the saved search and evaluations: same table
    ck = json.loads((res.run_dir / "checkpoints/eval_blockpruner.json").read_text())
    assert ck["row"]["ppl"] == metrics["table"][1]["ppl"]
    again = run_blockpruner(cfg)
    assert again.run_dir == res.run_dir and again.table == res.table


def test_config_errors():
    with pytest.raises(ValueError, match="target_ratio"):
        PruningConfig.from_preset("smoke", target_ratio=1.5)
    with pytest.raises(ValueError, match="num_blocks"):
        PruningConfig.from_preset("smoke", num_blocks=0)
    with pytest.raises(ValueError, match="unknown block search"):
        PruningConfig.from_preset("smoke", method="foo")
