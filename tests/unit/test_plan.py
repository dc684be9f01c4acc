"""`workbench plan`: meta-device sizes and the memory model against hand-computed numbers."""

from __future__ import annotations

import json

import pytest

from workbench import plan_memory as pm
from workbench.cli import main

# a tiny Llama: vocab 1000, hidden 64, MLP 128, 2 layers, 4 heads of 16, 2 key/value heads
TINY = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=1000,
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, tie_word_embeddings=False, max_position_embeddings=64)
# Llama-2-7B's published hyper-parameters
LLAMA2_7B = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=32000,
                 hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=32, tie_word_embeddings=False,
                 max_position_embeddings=4096, rms_norm_eps=1e-5)


def _folder(tmp_path, name, cfg):
    d = tmp_path / name
    d.mkdir()
    (d / "config.json").write_text(json.dumps(cfg))
    return d


@pytest.fixture
def tiny(tmp_path):
    return pm.model_shape(str(_folder(tmp_path, "tiny", TINY)))


def test_tiny_shape_by_hand(tiny):
    # per layer: q 64x64 + k 64x32 + v 64x32 + o 64x64 + gate/up/down 3 x 64x128 + 2 norms x 64
    layer = 4096 + 2048 + 2048 + 4096 + 3 * 8192 + 128
    assert layer == 36_992
    assert tiny.params == 64_000 + 2 * layer + 64 + 64_000 == 202_048
    assert tiny.unit == 64_000  # the embedding (and the head) beat one layer
    assert (tiny.kv, tiny.inter, tiny.layers, tiny.vocab) == (32, 128, 2, 1000)
    # LoRA r=8 on every linear but the head: 8 x (in + out) summed per layer
    assert tiny.lora == 2 * 8 * (128 + 96 + 96 + 128 + 192 + 192 + 192) == 16_384


def test_training_memory_by_hand(tiny):
    ddp = pm.train_memory(tiny, batch=2, seq_len=16, gpus=4, strategy="ddp")
    # float32 weights and grads, AdamW m and v: 16 bytes per trained parameter
    assert ddp["weights"] == ddp["grads"] == 4 * 202_048
    assert ddp["optimizer"] == 8 * 202_048
    # bf16 autocast: 32 tokens x 2 layers x 2 bytes x (10*64 + 2*32 + 4*128)
    # + logits 32 x 1000 x (2 + 8)
    assert ddp["activations"] == 32 * 2 * 2 * 1216 + 32 * 1000 * 10 == 475_648
    fsdp = pm.train_memory(tiny, batch=2, seq_len=16, gpus=4, strategy="fsdp")
    # a quarter of the weights + two gathered bf16 units (the 64,000-entry embedding)
    assert fsdp["weights"] == 4 * 202_048 / 4 + 2 * 2 * 64_000 == 458_048
    assert fsdp["grads"] == 202_048 and fsdp["optimizer"] == 404_096
    assert fsdp == pm.train_memory(tiny, batch=2, seq_len=16, gpus=4, strategy="zero3")
    ckpt = pm.train_memory(tiny, batch=2, seq_len=16, gpus=4, strategy="ddp", checkpointing=True)
    assert ckpt["activations"] == 32 * (2 * 2 * 64 + 2 * 1216) + 320_000 == 406_016
    lora = pm.train_memory(tiny, batch=2, seq_len=16, gpus=4, strategy="ddp", lora=True)
    assert lora["weights"] == 808_192 and lora["grads"] == 4 * 16_384
    assert lora["optimizer"] == 8 * 16_384
    dpo = pm.train_memory(tiny, batch=2, seq_len=16, gpus=1, strategy="ddp", reference=True,
                          pairs=True)
    assert dpo["reference"] == 808_192 and dpo["activations"] == 2 * 475_648
    fp32 = pm.train_memory(tiny, batch=2, seq_len=16, gpus=1, strategy="ddp", mixed=False)
    assert fp32["weights"] == 808_192 and fp32["optimizer"] == 8 * 202_048
    assert fp32["activations"] == 32 * 2 * 4 * 1216 + 32 * 1000 * 12


def test_inference_memory_by_hand(tiny):
    m = pm.infer_memory(tiny, batch=2, seq_len=16, b=2, head="full")
    assert m["weights"] == 404_096
    assert m["activations"] == 32 * 2 * (4 * 64 + 2 * 32 + 3 * 128) + 32 * 1000 * 6 == 237_056
    g = pm.infer_memory(tiny, batch=2, seq_len=16, b=2, head="none", new_tokens=8, shards=2)
    kv = 2 * 2 * 32 * 2 * 2 * (16 + 8)
    assert g["weights"] == 202_048 and g["activations"] == 45_056 + kv / 2


def test_llama2_7b_config_and_a_refused_plan(tmp_path, capsys):
    folder = _folder(tmp_path, "llama2-7b", LLAMA2_7B)
    shape = pm.model_shape(str(folder))
    assert shape.params == 6_738_415_616  # the published 6.74 B
    full = pm.Stage("sft", "train", (str(folder),), batch=4, seq_len=2048)
    one = pm.plan_stage(full, shape, gpus=1, gpu_mem_gib=80, strategy="ddp")
    assert not one.fits  # 16 bytes x 6.74 B alone is 100 GiB
    assert one.memory["weights"] + one.memory["grads"] + one.memory["optimizer"] == 16 * shape.params
    eight = pm.plan_stage(full, shape, gpus=8, gpu_mem_gib=80)
    assert eight.fits and eight.strategy == "fsdp"
    # the CLI: a 7B model cannot be evaluated on one 8 GiB GPU -> one line, exit code 2
    rc = main(["plan", "blockpruner", "--gpus", "1", "--gpu-mem", "8", "-p", f"model={folder}"])
    err = capsys.readouterr()
    assert rc == 2
    lines = [x for x in err.err.splitlines() if x.strip()]
    assert len(lines) == 1 and "plan does not fit" in lines[0] and "8 GiB" in lines[0]
    assert "6.74B" in err.out and "NO" in err.out
    assert main(["plan", "blockpruner", "--gpus", "1", "--gpu-mem", "40",
                 "-p", f"model={folder}"]) == 0


def test_smoke_profile_plans_every_stage_with_launch_lines(tiny_llama_dir):
    plans = pm.make_plan("seft", "smoke", gpus=2, gpu_mem_gib=24)
    names = [p.stage.name for p in plans]
    assert names[:4] == ["reviser", "sft", "dpo", "orpo"] and "evaluation" in names
    assert all(p.fits for p in plans)
    sft = plans[1]
    assert sft.launch == ("accelerate launch --config_file configs/accelerate/ddp.yaml "
                          "--num_processes 2 -m workbench.cli seft stage sft --preset smoke")
    text = pm.format_plan(plans, paper="seft", profile="smoke", gpus=2, gpu_mem_gib=24)
    assert "reviser" in text and "launch:" in text


def test_bundled_configs_match_published_sizes():
    expect = {"meta-llama/Llama-2-7b-hf": 6.74e9, "mistralai/Mixtral-8x7B-Instruct-v0.1": 46.7e9,
              "NousResearch/Nous-Hermes-2-SOLAR-10.7B": 10.7e9, "Qwen/Qwen1.5-72B-Chat": 72.3e9,
              "openchat/openchat_3.5": 7.24e9, "bert-large-cased": 0.333e9}
    bundled = pm.bundled_configs()
    for name, n in expect.items():
        assert name in bundled
        s = pm.model_shape(name, encoder=name.startswith("bert"))
        assert abs(s.params - n) / n < 0.01, (name, s.params)
        assert s.source == "bundled"


def test_hub_cache_config_wins_over_the_bundled_one(tmp_path, monkeypatch):
    commit = "a" * 40
    entry = tmp_path / "hub" / "models--meta-llama--Llama-2-7b-hf"
    (entry / "snapshots" / commit).mkdir(parents=True)
    (entry / "refs").mkdir()
    (entry / "refs" / "main").write_text(commit)
    (entry / "snapshots" / commit / "config.json").write_text(json.dumps(TINY))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    s = pm.model_shape("meta-llama/Llama-2-7b-hf")
    assert s.params == 202_048 and s.source.endswith("config.json")


def test_unknown_model_is_one_line():
    with pytest.raises(ValueError, match=r"no config.json for model 'org/unknown'") as e:
        pm.model_shape("org/unknown")
    assert "\n" not in str(e.value)
