"""Stages under `accelerate launch` on the CPU (2 processes, gloo): FuseChat target training and
SEFT's SFT stage give ONE run folder, the final loss of one process (within 1e-4: the same
samples per optimizer step, batch 1 x 2 ranks vs batch 1 x 2 accumulation steps), and a launch
killed after its first checkpoint resumes from that checkpoint and finishes.

`accelerate launch --cpu` starts ONE process (it expects mpirun for more), so the launch is
`--multi_gpu --num_processes 2` on a machine without CUDA: torchrun starts the ranks and the
trainers join them over gloo (`use_cpu`)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-4  # |loss(2 ranks) - loss(1 process)|; measured 0.0 (identical floats) on this box


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(args: list[str], n: int) -> subprocess.Popen:
    """`python -m workbench.cli ARGS` in one process, or under accelerate with ``n`` ranks."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORKBENCH_PROGRESS": "0",
           "TOKENIZERS_PARALLELISM": "false"}
    if n == 1:
        cmd = [sys.executable, "-m", "workbench.cli", *args]
    else:
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
               "--num_processes", str(n), "--num_machines", "1", "--mixed_precision", "no",
               "--dynamo_backend", "no", "--main_process_port", str(_free_port()),
               "-m", "workbench.cli", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _finish(p: subprocess.Popen, timeout: float = 600) -> str:
    out, _ = p.communicate(timeout=timeout)
    assert p.returncode == 0, out[-4000:]
    return out


def _kill_all(p: subprocess.Popen) -> None:
    """SIGKILL the launcher and every process below it (torchrun may start its ranks in
    sessions of their own, out of reach of a process-group kill)."""
    import psutil

    procs = [psutil.Process(p.pid)]
    with contextlib.suppress(psutil.NoSuchProcess):
        procs += procs[0].children(recursive=True)
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    p.communicate()


def _kill_after_checkpoint(p: subprocess.Popen, ckpt_root: Path, timeout: float = 600) -> Path:
    """Kill the launch (every rank) as soon as a complete checkpoint exists."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        done = sorted(ckpt_root.glob("checkpoint-*/trainer_state.json"))
        if done:
            _kill_all(p)
            return done[0].parent
        if p.poll() is not None:
            pytest.fail(f"launch ended before its first checkpoint: {p.communicate()[0][-3000:]}")
        time.sleep(0.02)
    _kill_all(p)
    pytest.fail("no checkpoint within the timeout")


def test_fusechat_targets_two_ranks_match_one_process_and_resume(tmp_path):
    import shutil

    from workbench.fusion.config import FuseChatConfig
    from workbench.fusion.run import run_fusechat

    params = {"run_name": "dist", "sources": ["tiny:qwen2"], "compare_vocab_maps": ["em"],
              "vocab_map": "em", "batch_size": 1, "max_steps": 6}
    cfg = FuseChatConfig.from_preset("smoke", output_dir=str(tmp_path / "one"), **params)
    run_fusechat(cfg, until="alignment")  # part 1 once, in this process
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    p_args = [a for k, v in params.items() for a in ("-p", f"{k}={json.dumps(v)}")]
    stage = ["fusechat", "stage", "targets", "--preset", "smoke"]

    # one process, 2 accumulation steps of batch 1 == 2 ranks of batch 1
    _finish(_launch([*stage, "--output-dir", str(tmp_path / "one"), *p_args,
                     "-p", "grad_accum=2"], 1))
    # two ranks, a checkpoint every step; killed after the first one, then launched again
    two = [*stage, "--output-dir", str(tmp_path / "two"), *p_args,
           "-p", 'training_args={"save_steps": 1, "save_total_limit": 10}']
    target = tmp_path / "two" / "fusechat" / "dist" / "artifacts" / "models" / \
        "tiny-llama-tiny-qwen2"
    ckpt = _kill_after_checkpoint(_launch(two, 2), target / "checkpoints")
    assert not (target / "model").exists()
    out = _finish(_launch(two, 2))
    assert "resuming" in out and ckpt.name in out

    assert [p.name for p in (tmp_path / "two" / "fusechat").iterdir()] == ["dist"]
    info = {k: json.loads((tmp_path / k / "fusechat" / "dist" / "artifacts" / "models" /
                           "tiny-llama-tiny-qwen2" / "model" / "fusion_train.json").read_text())
            for k in ("one", "two")}
    assert info["two"]["resumed_from"].endswith(ckpt.name)
    assert info["one"]["global_step"] == info["two"]["global_step"] == 6
    last = {k: [h for h in v["log_history"] if "loss" in h][-1] for k, v in info.items()}
    for key in ("loss", "sft_loss", "fuse_loss"):  # loss parts are gathered over the ranks
        assert abs(last["one"][key] - last["two"][key]) < TOL, (key, last)
    summary = tmp_path / "two" / "fusechat" / "dist" / "checkpoints" / "stages" / "targets.json"
    assert json.loads(summary.read_text())["targets"]  # the stage marker, written once


def _seft_files(tmp_path: Path) -> tuple[str, str]:
    pref = tmp_path / "pref.jsonl"
    pref.write_text("\n".join(json.dumps({"prompt": f"Question {i}?",
                                          "chosen": f"A helpful answer number {i}.",
                                          "rejected": f"no {i}"}) for i in range(8)) + "\n")
    pool = tmp_path / "prompts.txt"
    pool.write_text("\n".join(f"Tell me about topic {i}." for i in range(8)) + "\n")
    return str(pref), str(pool)


def test_seft_sft_stage_two_ranks_match_one_process_and_resume(tmp_path):
    pref, pool = _seft_files(tmp_path)
    p_args = ["-p", "run_name=dist", "-p", f"pref_data={pref}", "-p", f"prompt_source={pool}",
              "-p", "pref_size=8", "-p", "reviser_eval_pairs=0", "-p", "batch_size=1",
              "-p", "max_steps=6", "-p", "lr=0.001", "-p", "baselines=[sft]"]
    stage = ["seft", "stage", "sft", "--preset", "smoke"]
    _finish(_launch([*stage, "--output-dir", str(tmp_path / "one"), *p_args,
                     "-p", "training_args={gradient_accumulation_steps: 2}"], 1))
    two = [*stage, "--output-dir", str(tmp_path / "two"), *p_args,
           "-p", "training_args={save_strategy: steps, save_steps: 1}"]
    run = tmp_path / "two" / "seft" / "dist"
    ckpt = _kill_after_checkpoint(_launch(two, 2), run / "checkpoints" / "sft")
    assert not (run / "checkpoints" / "sft_final" / "stage.json").exists()
    out = _finish(_launch(two, 2))
    assert "resuming from" in out and ckpt.name in out

    assert [p.name for p in (tmp_path / "two" / "seft").iterdir()] == ["dist"]
    one = json.loads((tmp_path / "one" / "seft" / "dist" / "checkpoints" / "sft_final" /
                      "stage.json").read_text())
    two_info = json.loads((run / "checkpoints" / "sft_final" / "stage.json").read_text())
    assert abs(one["loss"] - two_info["loss"]) < TOL, (one, two_info)
    assert (run / "checkpoints" / "sft_final" / "model.safetensors").exists()
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(run / "checkpoints" / "sft_final")  # loads as saved
