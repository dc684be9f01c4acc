"""Choose the FuseChat `cpu` profile's learning rate and steps by held-out CE on a DEVELOPMENT split.

The development dialogues are the `dev_size` non-training dialogues after the reported held-out
set (`workbench.fusion.dialogues.split_dialogues`), so the choice never looks at the held-out
set. Each setting trains the SFT baseline (lam = 1: the step size that moves the pivot on these
dialogues; the fusion targets add a 0.1-weighted distillation term on the same schedule) with
the profile's batch, then scores the development dialogues; the table gives the mean response CE
per dialogue and the paired difference to the untrained pivot with a 95 % bootstrap CI.

    OMP_NUM_THREADS=1 python benchmarks/fusechat_dev_sweep.py --preset cpu --lr 5e-5 2e-4 \
        --epochs 1 2 --dev-size 32 --out /tmp/fusechat_dev
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--lr", type=float, nargs="+", default=[5e-5, 2e-4])
    ap.add_argument("--epochs", type=float, nargs="+", default=[1.0, 2.0])
    ap.add_argument("--dev-size", type=int, default=32)
    ap.add_argument("--out", default="/tmp/fusechat_dev_sweep")
    ap.add_argument("-p", action="append", default=[], help="config override key=value")
    a = ap.parse_args()

    import numpy as np
    import torch
    from datasets import Dataset

    from workbench.common.models import load_causal_lm, load_tokenizer
    from workbench.eval.heldout import response_ce
    from workbench.eval.stats import mean_ci, paired_bootstrap_ci
    from workbench.fusion.config import FuseChatConfig
    from workbench.fusion.dialogues import (
        load_chat_rows,
        prepare_dialogues,
        split_dialogues,
        tokenize_dialogue,
    )
    from workbench.fusion.train.trainer import TrainArgs, train_target

    torch.set_num_threads(1)
    import yaml

    over = {k: yaml.safe_load(v) for k, v in (x.split("=", 1) for x in a.p)}
    cfg = FuseChatConfig.from_preset(a.preset, **over)
    toks = [load_tokenizer(m) for m in cfg.models]
    rows = load_chat_rows(cfg.data, limit=cfg.data_size * 4 + 16)  # as the dialogues stage
    train = prepare_dialogues(rows, toks[0], toks, max_length=cfg.max_length,
                              limit=cfg.data_size, chat_template=cfg.chat_template)
    _, dev = split_dialogues(cfg, {d.id for d in train}, toks, a.dev_size)
    cols = {"id": [], "input_ids": [], "labels": []}
    for d in train:
        ids, labels = tokenize_dialogue(d, toks[0], cfg.max_length)
        cols["id"].append(d.id)
        cols["input_ids"].append(ids)
        cols["labels"].append(labels)
    pivot_ds = Dataset.from_dict(cols)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)

    def dev_ce(path: str) -> tuple[np.ndarray, float]:
        t0 = time.time()
        model, tok = load_causal_lm(path, dtype=torch.float32)
        ex = [dict(zip(("input_ids", "labels"), tokenize_dialogue(d, tok, cfg.max_length),
                       strict=True)) for d in dev]
        res = response_ce(model, ex, pad_token_id=tok.pad_token_id or 0)
        per = np.array([p["nll_sum"] / p["n_tokens"] for p in res["per_dialogue"]
                        if p["n_tokens"]])
        return per, time.time() - t0

    base, sec = dev_ce(cfg.pivot)
    results = [{"setting": "pivot (untrained)", "dev_ce": mean_ci(base).to_dict(),
                "eval_seconds": sec}]
    print(f"train {len(train)} dialogues, dev {len(dev)}; pivot dev CE {base.mean():.4f} "
          f"({sec:.0f} s)", flush=True)
    for lr in a.lr:
        for ep in a.epochs:
            name = f"lr{lr:g}_ep{ep:g}"
            t0, c0 = time.time(), resource.getrusage(resource.RUSAGE_SELF).ru_utime
            path = train_target(TrainArgs.from_config(cfg, lam=1.0, lr=lr, epochs=ep,
                                                      max_steps=-1), pivot_ds, None, out / name)
            train_s = time.time() - t0
            cpu_s = resource.getrusage(resource.RUSAGE_SELF).ru_utime - c0
            log = json.loads((path / "fusion_train.json").read_text())
            per, sec = dev_ce(str(path))
            d = paired_bootstrap_ci(per, base)
            row = {"setting": name, "lr": lr, "epochs": ep, "steps": log.get("global_step"),
                   "dev_ce": mean_ci(per).to_dict(), "minus_pivot": d.to_dict(),
                   "train_seconds": train_s, "train_cpu_seconds": cpu_s, "eval_seconds": sec,
                   "load": os.getloadavg()}
            results.append(row)
            print(f"{name}: steps {row['steps']} dev CE {per.mean():.4f}, minus pivot "
                  f"{d.value:+.4f} [{d.lo:+.4f}, {d.hi:+.4f}]; train {train_s:.0f} s wall "
                  f"{cpu_s:.0f} s cpu, load {os.getloadavg()[0]:.1f}", flush=True)
            (out / "sweep.json").write_text(json.dumps(results, indent=1))
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
