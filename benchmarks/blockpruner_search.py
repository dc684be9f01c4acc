"""BlockPruner greedy search: the official loop as written vs ours, same model, same rows, one
process.

    .venv/bin/python benchmarks/blockpruner_search.py [--model smollm2-135m-instruct]
        [--steps 2] [--nsamples 64] [--seq-len 64] [--max-rows 8] [--batch-size 8]
        [--repeats 1] [--threads 1]

"Official" is a re-implementation of MrGGLS/BlockPruner `block_search.py` as written, with the
three edits transformers 5 needs (a decoder layer returns a tensor; attention returns two values;
the rotary `position_embeddings` are passed through): for every candidate it swaps the masked
layers for a `MaskedLlamaDecoderLayer`-like module, runs the whole model on every row batch of 2
(`input_ids` + all-ones `attention_mask`), computes the next-token cross-entropy on the bf16
logits permuted to [B, V, T] (`ignore_index` = the pad id when it is truthy), takes each row's
mean and exp(mean of the row means), and keeps the first strict minimum. Both run in bf16.

Ours: `workbench.pruning.search.greedy` with its defaults (exact fast path).

The script asserts that the two removal orders are identical and prints process CPU time and
wall time (medians over repeats; on a shared machine CPU time is the number other processes
distort least), and as its last line `speedup_vs_official <CPU-time ratio>x`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn

os.environ.setdefault("WORKBENCH_PROGRESS", "0")


class OfficialMaskedLayer(nn.Module):
    """The official `MaskedLlamaDecoderLayer`: keeps the unmasked sublayers of a layer."""

    def __init__(self, layer: nn.Module, mask: str) -> None:
        super().__init__()
        self.mask_block = mask
        self.self_attn = None if "mha" in mask else layer.self_attn
        self.input_layernorm = None if "mha" in mask else layer.input_layernorm
        self.mlp = None if "mlp" in mask else layer.mlp
        self.post_attention_layernorm = None if "mlp" in mask else layer.post_attention_layernorm

    def forward(self, hidden_states, attention_mask=None, position_ids=None,
                past_key_values=None, use_cache=False, position_embeddings=None, **kwargs):
        if "mha" not in self.mask_block:
            residual = hidden_states
            hidden_states = self.input_layernorm(hidden_states)
            hidden_states, _ = self.self_attn(
                hidden_states=hidden_states, attention_mask=attention_mask,
                position_ids=position_ids, past_key_values=past_key_values, use_cache=use_cache,
                position_embeddings=position_embeddings, **kwargs)
            hidden_states = residual.to(hidden_states.device) + hidden_states
        if "mlp" not in self.mask_block:
            residual = hidden_states
            hidden_states = self.post_attention_layernorm(hidden_states)
            hidden_states = self.mlp(hidden_states)
            hidden_states = residual.to(hidden_states.device) + hidden_states
        return hidden_states


def official_ppl(model, pad_token_id, loader) -> float:
    """utils.evaluate_ppl as written."""
    if pad_token_id:
        loss_fn = nn.CrossEntropyLoss(reduction="none", ignore_index=pad_token_id)
    else:
        loss_fn = nn.CrossEntropyLoss(reduction="none")
    nlls = []
    for batch in loader:
        logits = model(**batch).logits
        logits = logits[:, :-1, :]
        shift_labels = batch["input_ids"][:, 1:]
        nll = loss_fn(logits.permute(0, 2, 1), shift_labels).float()
        mask = shift_labels != loss_fn.ignore_index
        nlls.append((nll * mask).sum(dim=1) / mask.sum(dim=1))
    return torch.exp(torch.cat(nlls).mean()).item()


@torch.no_grad()
def official_search(model, rows: torch.Tensor, del_block_num: int, batch_size: int = 2
                    ) -> list[list[tuple[str, int]]]:
    """block_search_by_ppl as written (mix blocks); returns the sorted set after each step."""
    layers = model.model.layers
    n = model.config.num_hidden_layers
    loader = [{"input_ids": rows[i:i + batch_size],
               "attention_mask": torch.ones_like(rows[i:i + batch_size])}
              for i in range(0, len(rows), batch_size)]
    current: frozenset = frozenset()
    out = []
    for _ in range(del_block_num):
        best, best_ppl = None, float("inf")
        cands = [("mha", i) for i in range(n) if ("mha", i) not in current] + \
                [("mlp", i) for i in range(n) if ("mlp", i) not in current]
        for cand in cands:
            seq = current | {cand}
            saved = {}
            for kind, i in seq:  # apply_block_masks
                if isinstance(layers[i], OfficialMaskedLayer):
                    layers[i] = OfficialMaskedLayer(saved[i], layers[i].mask_block + kind)
                else:
                    saved[i] = layers[i]
                    layers[i] = OfficialMaskedLayer(saved[i], kind)
            ppl = official_ppl(model, model.config.pad_token_id, loader)
            for i, layer in saved.items():  # revert_block_masks
                layers[i] = layer
            if ppl < best_ppl:
                best_ppl, best = ppl, seq
        current = best
        out.append(sorted(current, key=lambda x: x[1]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--nsamples", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--max-rows", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=None, help="ours (default: all rows)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-official", action="store_true", help="ours only (profiling)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)

    from workbench.common.models import load_causal_lm
    from workbench.pruning.blocks import BlockModel
    from workbench.pruning.calibration import calibration
    from workbench.pruning.search import greedy

    model, tok = load_causal_lm(a.model, dtype=torch.bfloat16)
    model.config.use_cache = False  # as the official from_pretrained(..., use_cache=False)
    cal = calibration(tok, "sharegpt", a.nsamples, a.seq_len, seed=42, max_rows=a.max_rows)
    rows = cal.rows
    print(f"model {a.model} bf16: calibration {tuple(rows.shape)} from {cal.documents} ShareGPT "
          f"documents, {a.steps} greedy steps (mix), official batch 2, ours batch "
          f"{a.batch_size or 'default'}, {a.threads} thread(s)", flush=True)
    wall: dict[str, list[float]] = {"official": [], "ours": []}
    cpu: dict[str, list[float]] = {"official": [], "ours": []}
    orders: dict[str, list] = {}
    for _ in range(a.repeats):
        for who in ("ours", "official"):
            if who == "official" and a.skip_official:
                continue
            t0, c0 = time.perf_counter(), time.process_time()
            if who == "official":
                orders[who] = [[list(b) for b in s] for s in official_search(model, rows, a.steps)]
            else:
                kw = {} if a.batch_size is None else {"batch_size": a.batch_size}
                with BlockModel(model) as bm:
                    steps = greedy(bm, rows, a.steps, **kw)
                orders[who] = [s["set"] for s in steps]
                ppls = [round(s["ppl"], 4) for s in steps]
            wall[who].append(time.perf_counter() - t0)
            cpu[who].append(time.process_time() - c0)
            print(f"{who}: wall {wall[who][-1]:.1f} s, cpu {cpu[who][-1]:.1f} s", flush=True)
    print("order:", orders["ours"][-1], "ppl per step:", ppls)
    print(f"ours: decoder work {greedy.last_forwards:.1f} full forwards, "
          f"{greedy.last_batch_evals} row batches, lm_head chunks {greedy.last_head_chunks}")
    if a.skip_official:
        return
    assert orders["ours"] == orders["official"], (orders["ours"], orders["official"])
    ow, fw = statistics.median(wall["official"]), statistics.median(wall["ours"])
    oc, fc = statistics.median(cpu["official"]), statistics.median(cpu["ours"])
    print(f"identical orders; wall: official {ow:.1f} s, ours {fw:.1f} s ({ow / fw:.2f}x); "
          f"cpu: official {oc:.1f} s, ours {fc:.1f} s")
    print(f"speedup_vs_official {oc / fc:.2f}x")


if __name__ == "__main__":
    main()
