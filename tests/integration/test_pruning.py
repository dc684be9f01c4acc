"""End to end on tiny models: export -> from_pretrained -> same logits; orchestrator smoke."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from workbench.common.models import load_causal_lm
from workbench.pruning import BlockModel, PruningConfig, export_pruned, run_blockpruner


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3"])
def test_export_reproduces_pruned_logits(arch, tmp_path):
    model, tok = load_causal_lm(f"tiny:{arch}")
    removed = [("mha", 0), ("mlp", 0), ("mha", 2), ("mlp", 3)]
    x = torch.randint(0, 500, (1, 12))
    with torch.no_grad(), BlockModel(model) as bm, bm.removed(removed):
        ref = model(input_ids=x).logits
        gone = sum(bm.block_params(b) for b in removed)
        seq = x  # greedy decoding with the masked model, no KV cache
        for _ in range(3):
            seq = torch.cat([seq, model(input_ids=seq).logits[:, -1].argmax(-1, keepdim=True)], 1)
    dense = sum(p.numel() for p in model.parameters())
    out = export_pruned(model, tok, removed, tmp_path / "m", {"1": [["mha", 0]]})
    loaded = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=False)
    assert loaded.config.num_hidden_layers == 3
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=x).logits, ref)
    gen = loaded.generate(x, max_new_tokens=3, do_sample=False)
    info = json.loads((out / "block_order.json").read_text())
    assert info["removed"][0] == ["mha", 0]
    n = sum(p.numel() for p in loaded.parameters())
    # the removed blocks' weights are gone from the file and the model
    assert info["export"] == "removed" and n == info["parameters"] == dense - gone
    assert type(loaded).__name__.startswith("BlockPruned")
    keys = list(loaded.state_dict())  # kept layers 1, 2, 3: 2 lost its MHA, 3 its MLP
    assert loaded.config.kept_blocks == [[True, True], [False, True], [True, False]]
    assert not any(".1.self_attn." in k or ".2.mlp." in k for k in keys)
    assert any(".1.mlp." in k for k in keys) and any(".2.self_attn." in k for k in keys)
    assert torch.equal(gen, seq)  # KV-cached generation == the masked model's


@pytest.mark.slow
def test_orchestrator_smoke(tmp_path):
    cfg = PruningConfig.from_preset("smoke", output_dir=str(tmp_path), tasks=("piqa",),
                                    eval_limit=2, baselines=("shortgpt",), num_blocks=2)
    res = run_blockpruner(cfg)
    metrics = json.loads((res.run_dir / "metrics.json").read_text())
    assert [r["method"] for r in metrics["table"]] == ["Dense", "BlockPruner", "ShortGPT"]
    assert set(metrics["table"][0]) == {"method", "ratio", "ppl", "ppl_lo", "ppl_hi", "ppl_n",
                                        "piqa", "piqa_lo", "piqa_hi", "piqa_stderr", "piqa_n",
                                        "avg", "avg_stderr"}
    dense = metrics["table"][0]
    assert dense["ppl_lo"] <= dense["ppl"] <= dense["ppl_hi"] and dense["ppl_n"] == 4
    assert dense["piqa_n"] == 2 and metrics["calibration"]["documents"] == 8
    per = json.loads((res.run_dir / "artifacts/per_item/wikitext2_nll.json").read_text())
    assert set(per["values"]) == {"Dense", "BlockPruner", "ShortGPT"} and len(per["ids"]) == 4
    piqa = json.loads((res.run_dir / "artifacts/per_item/piqa.json").read_text())
    assert piqa["values"]["Dense"] in ([0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0])
    assert (res.run_dir / "artifacts/per_item/zeroshot.json").exists()
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
    with pytest.raises(ValueError, match="cache_budget_gb"):
        PruningConfig.from_preset("smoke", cache_budget_gb=-1)
    assert PruningConfig.from_preset("paper").cal_heldout is True
    assert PruningConfig.from_preset("quick").batch_size == 8


def test_eval_caps_zero_means_the_full_sets():
    # `-p eval_limit=null` would keep the preset's cap (None overrides keep preset values), so 0 = all
    cpu = PruningConfig.from_preset("cpu")
    assert cpu.eval_limit == 150 and cpu.eval_max_rows == 96
    full = PruningConfig.from_preset("cpu", eval_limit=0, eval_max_rows=0)
    assert full.eval_limit is None and full.eval_max_rows is None
    with pytest.raises(ValueError, match="eval_limit must be >= 0"):
        PruningConfig.from_preset("cpu", eval_limit=-1)


def test_notebook_takes_the_baselines():
    from workbench.nbparams import check_params

    check_params("blockpruner", "cpu", {"baselines": ["size_aware", "layer"]})  # no error
    assert PruningConfig.from_preset("cpu", baselines=["layer"]).baselines == ("layer",)
    with pytest.raises(ValueError, match="nope"):
        PruningConfig.from_preset("cpu", baselines=["nope"])
