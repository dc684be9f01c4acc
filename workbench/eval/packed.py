"""lm-eval's HF model with the choices of one context scored in one packed row.

A multiple-choice task asks for log p(choice_k | context) for every choice k of a context.
`HFLM` runs context + choice once per choice; `PackedHFLM` runs the context once and puts
every choice after it in the same row: a tree attention mask lets each choice attend to the
context and to its own earlier tokens only, and its position ids restart where the context
ends, so each choice sees exactly the sequence HFLM would feed it. Logits are computed only
where a continuation token is predicted (the context's last token predicts every choice's first
token). On HellaSwag (context ~50 tokens, 4 endings of ~30) the model reads 1.9x fewer tokens
and the vocabulary projection runs on ~40 % of the positions.

Results equal HFLM's up to the order of floating-point operations (tests: fp32, a tiny model,
log-likelihoods within 1e-4 and the same greedy flags; `benchmarks/zeroshot_packing.py`
measures agreement and speed in bf16 on a real model). Everything else is HFLM's: the
tokenization (`_encode_pair`), the `softmax_dtype`, the request order of the results. A
seq2seq model, a model on another attention kernel than eager or SDPA (flash / flex attention
would not take the 4D mask), or a request longer than the model's window (or than a sliding
attention window, which the custom mask would not apply), goes through HFLM's own path.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lm_eval.models.huggingface import HFLM
from tqdm import tqdm

Request = tuple[tuple[str, str], list[int], list[int]]


def pack_rows(requests: list[Request], max_len: int) -> tuple[list[tuple[list[int], list[int]]],
                                                               list[int]]:
    """Group requests by context into rows of at most `max_len` tokens.

    Returns (rows, rest): each row is (context tokens, request indices), in first-seen order;
    `rest` are the indices whose context + continuation alone exceed `max_len` (left to HFLM).
    A row holds its context once and each continuation minus its last token.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    rest = []
    for i, (_, ctx, cont) in enumerate(requests):
        if not ctx or not cont:
            raise ValueError(f"request {i} has an empty context or continuation")
        if len(ctx) + len(cont) - 1 > max_len:
            rest.append(i)
        else:
            groups.setdefault(tuple(ctx), []).append(i)
    rows = []
    for ctx, idx in groups.items():
        cur, n = [], len(ctx)
        for i in idx:
            k = len(requests[i][2]) - 1
            if cur and n + k > max_len:
                rows.append((list(ctx), cur))
                cur, n = [], len(ctx)
            cur.append(i)
            n += k
        rows.append((list(ctx), cur))
    return rows, rest


def packed_batch(rows: list[tuple[list[int], list[int]]], requests: list[Request],
                 dtype: torch.dtype, pad_id: int = 0) -> dict[str, Any]:
    """Tensors for one batch of packed rows: input_ids, position_ids, a 4D additive attention
    mask (0 = attend, dtype's min = masked; a padding position attends to itself), and for each
    request (row, positions whose logits predict its continuation tokens)."""
    lengths = [len(c) + sum(len(requests[i][2]) - 1 for i in idx) for c, idx in rows]
    b, t = len(rows), max(lengths)
    ids = torch.full((b, t), pad_id, dtype=torch.long)
    pos = torch.zeros((b, t), dtype=torch.long)
    allow = torch.zeros((b, 1, t, t), dtype=torch.bool)
    where: dict[int, tuple[int, list[int]]] = {}
    for r, (ctx, idx) in enumerate(rows):
        n = len(ctx)
        ids[r, :n] = torch.tensor(ctx)
        pos[r, :n] = torch.arange(n)
        allow[r, 0, :n, :n] = torch.ones(n, n, dtype=torch.bool).tril()
        off = n
        for i in idx:
            cont = requests[i][2]
            k = len(cont) - 1
            seg = slice(off, off + k)
            ids[r, seg] = torch.tensor(cont[:-1], dtype=torch.long)
            pos[r, seg] = torch.arange(n, n + k)
            allow[r, 0, seg, :n] = True
            allow[r, 0, seg, seg] = torch.ones(k, k, dtype=torch.bool).tril()
            where[i] = (r, [n - 1, *range(off, off + k)])
            off += k
        for p in range(off, t):  # padding: attend to itself only (no fully masked row)
            allow[r, 0, p, p] = True
    mask = torch.zeros((b, 1, t, t), dtype=dtype).masked_fill(~allow, torch.finfo(dtype).min)
    return {"input_ids": ids, "position_ids": pos, "attention_mask": mask, "where": where,
            "first": min(len(c) - 1 for c, _ in rows), "length": t}


class PackedHFLM(HFLM):
    """`HFLM` whose `_loglikelihood_tokens` scores the choices of a context in one packed row."""

    def _pack_limit(self) -> int:
        window = getattr(self.model.config.get_text_config(), "sliding_window", None)
        limit = self.max_length
        return min(limit, window) if isinstance(window, int) and window > 0 else limit

    @torch.no_grad()
    def _loglikelihood_tokens(self, requests: list[Request], disable_tqdm: bool = False,
                              override_bs: int | None = None) -> list[tuple[float, bool]]:
        # the tree mask is a 4D additive mask: only the eager and SDPA kernels take one as is
        if self.backend != "causal" or self.model.config._attn_implementation not in (
                "eager", "sdpa"):
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        rows, rest = pack_rows(requests, self._pack_limit())
        res: list[tuple[float, bool] | None] = [None] * len(requests)
        if rest:
            for i, ans in zip(rest, super()._loglikelihood_tokens(
                    [requests[i] for i in rest], disable_tqdm, override_bs), strict=True):
                res[i] = ans
        # longest rows first (as HFLM): little padding inside a batch, memory peaks early
        rows.sort(key=lambda r: -(len(r[0]) + sum(len(requests[i][2]) - 1 for i in r[1])))
        bs = override_bs or (self.batch_size if isinstance(self.batch_size, int) else 1)
        dtype = next(self.model.parameters()).dtype
        dtype = dtype if dtype.is_floating_point else torch.float32
        bar = tqdm(total=len(requests) - len(rest), disable=disable_tqdm or self.rank != 0,
                   desc="Running loglikelihood requests (packed)")
        for s in range(0, len(rows), bs):
            chunk = rows[s:s + bs]
            pb = packed_batch(chunk, requests, dtype, pad_id=0)
            dev = self.device
            out = self.model(input_ids=pb["input_ids"].to(dev),
                             position_ids=pb["position_ids"].to(dev),
                             attention_mask=pb["attention_mask"].to(dev),
                             logits_to_keep=pb["length"] - pb["first"], use_cache=False)
            logits = out.logits
            for _, idx in chunk:
                for i in idx:
                    r, p = pb["where"][i]
                    cont = torch.tensor(requests[i][2], device=logits.device)
                    lp = F.log_softmax(logits[r, [q - pb["first"] for q in p]], dim=-1,
                                       dtype=self.softmax_dtype)
                    ans = (float(lp.gather(1, cont[:, None]).sum()),
                           bool((lp.argmax(-1) == cont).all()))
                    res[i] = ans
                    self.cache_hook.add_partial("loglikelihood", requests[i][0], ans)
                bar.update(len(idx))
        bar.close()
        return res  # type: ignore[return-value]
