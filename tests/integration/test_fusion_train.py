"""FuseChat part 2 on tiny models: two pairwise targets -> SCE/linear merges -> reload + generate
-> evaluation row (held-out CE, MT-Bench with a tiny judge, zero-shot)."""

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from workbench.common.models import resolve_model
from workbench.fusion.config import FuseChatConfig
from workbench.fusion.merge import sce
from workbench.fusion.train import synthetic_representations
from workbench.fusion.train.pipeline import (
    evaluate_models,
    fusechat_table,
    heldout_dialogues,
    merge_targets,
    sce_matrix_weights,
    train_pairwise_targets,
)

VOCAB = 49152  # tiny:llama


@pytest.mark.slow
def test_two_targets_merge_reload_generate_and_evaluate(tmp_path):
    cfg = FuseChatConfig.from_preset("smoke", lr=1e-2, max_steps=2, merge_methods=("sce", "linear"),
                                     eval_size=2, mtbench_limit=1, zeroshot_limit=2)
    pivot = synthetic_representations(4, 16, VOCAB, 10, seed=0)
    aligned = {}
    for j, name in enumerate(("tiny:qwen2", "tiny:gemma3")):
        s = synthetic_representations(4, 16, VOCAB, 10, seed=j + 1, aligned=True, ce_shift=-1.0)
        aligned[name] = s.map(lambda r, i: {"input_ids": pivot[i]["input_ids"]}, with_indices=True)
    targets = train_pairwise_targets(cfg, pivot, aligned, tmp_path / "models")
    assert list(targets) == ["tiny-llama-tiny-qwen2", "tiny-llama-tiny-gemma3"]
    merges = merge_targets(cfg, targets, tmp_path / "merged")
    assert set(merges) == {"sce", "linear"}

    # the SCE output is the SCE kernel applied to the pivot and the two trained targets
    name = "model.layers.1.mlp.down_proj.weight"
    base = load_file(f"{resolve_model('tiny:llama')}/model.safetensors")[name]
    tw = [load_file(f"{p}/model.safetensors")[name] for p in targets.values()]
    assert not torch.equal(tw[0], tw[1]) and not torch.equal(tw[0], base)
    merged = load_file(f"{merges['sce']['path']}/model.safetensors")[name]
    assert torch.allclose(merged, sce(base, tw, select_topk=cfg.tau), atol=1e-6)

    weights = sce_matrix_weights(cfg.pivot, targets, cfg.tau)
    eta = {(r["tensor"], r["target"]): r["eta"] for r in weights}
    assert len(weights) == 2 * len({r["tensor"] for r in weights}) > 2
    assert eta[(name, "tiny-llama-tiny-qwen2")] + eta[(name, "tiny-llama-tiny-gemma3")] == \
        pytest.approx(1.0)

    model = AutoModelForCausalLM.from_pretrained(merges["sce"]["path"])
    tok = AutoTokenizer.from_pretrained(merges["sce"]["path"])
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                   add_generation_prompt=True)
    enc = tok(text, return_tensors="pt")
    out = model.generate(**enc, max_new_tokens=4, do_sample=False, pad_token_id=tok.eos_token_id)
    assert out.shape[1] == enc["input_ids"].shape[1] + 4

    dialogues = heldout_dialogues(cfg, set(), [tok])
    res = evaluate_models(cfg, {"SCE": ("merge", merges["sce"]["path"]),
                                "SFT": ("baseline", str(next(iter(targets.values()))))},
                          dialogues, tmp_path / "eval")
    assert res["SCE"]["heldout"]["n_tokens"] > 0 and res["SCE"]["heldout"]["ce"] > 0
    assert res["SCE"]["mtbench"]["n"] == 2  # one question, two turns
    assert 0.0 <= res["SCE"]["zeroshot"]["avg"] <= 1.0
    table = fusechat_table(res)
    assert [r["model"] for r in table] == ["SFT", "SCE"]
    assert table[0]["ce_vs_sft_pct"] == 0.0
    assert (tmp_path / "eval" / "SCE.json").exists()  # a re-run reuses it
