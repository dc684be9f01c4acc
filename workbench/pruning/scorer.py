"""Scoring removal sets by calibration NLL: the plain loop and the exact fast path.

A set's total is `math.fsum` of the per-row mean NLLs (`row_nll`): the exactly rounded sum, so it
does not depend on the order rows are scored in, and the sum over any subset of rows is <= the
total (NLLs are >= 0). PPL = exp(total / rows), the official formula (exp of the mean of the row
means).

Exact speed-ups (`fast=True`; every row NLL is bit-identical to the plain loop's at the same
batch size):
- prefix reuse: the hidden states at every sublayer point of the current model are cached (taken
  from the previous step's winner, so they cost no extra forward) and each candidate resumes at
  its own block;
- reuse across steps: a candidate's own states (with it removed) stay valid up to the next
  winner's block when that block comes after it, so in the next step it resumes there instead of
  at its own block; these states are kept while they fit the memory budget;
- early abandoning (row batches worst-first, candidates likeliest-winner first): a candidate is
  dropped once its partial sum exceeds the best complete total;
- the log-sum-exp of the logits in fp32 over cache-sized chunks of positions (no fp32 copy of the
  whole [rows, T, vocab] logits).

Memory budget (`budget_bytes`, default: half the free memory of a CUDA device, a quarter of the
available memory on the CPU): the cache of
the current model and two candidate captures must fit for a row batch to use prefix reuse; row
batches beyond the budget are recomputed from the embeddings for every candidate (logged). The
budget left over holds the candidates' own states.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import torch

from workbench.pruning.blocks import BlockModel

log = logging.getLogger(__name__)


@torch.no_grad()
def row_nll(model, batch: torch.Tensor) -> torch.Tensor:
    """Mean next-token NLL of each row of `batch` (float64, shape [rows]).

    Log-sum-exp in fp32 over chunks of positions (cache-sized on CPU); targets equal to the
    config's pad id are left out, as in the official `evaluate_ppl`.
    """
    dev = next(model.parameters()).device
    batch = batch.to(dev)
    logits = model(input_ids=batch, use_cache=False).logits
    tgt = batch[:, 1:]
    chunk = min(16 if dev.type == "cpu" else 4096, tgt.shape[1])
    nll = torch.empty(tgt.shape, dtype=torch.float32, device=dev)
    buf = torch.empty(chunk, logits.shape[-1], dtype=torch.float32, device=dev)
    for r in range(len(batch)):
        x = logits[r, :-1]
        m = x.amax(-1).float()  # exact: the max of bf16 values is one of them
        for s in range(0, x.shape[0], chunk):
            y = buf[: min(chunk, x.shape[0] - s)]
            y.copy_(x[s:s + chunk]).sub_(m[s:s + chunk, None]).exp_()
            nll[r, s:s + chunk] = y.sum(-1)
        nll[r] = nll[r].log_() + m - x.gather(-1, tgt[r][:, None])[:, 0].float()
    pad = getattr(getattr(model, "config", None), "pad_token_id", None)
    mask = torch.ones_like(tgt, dtype=torch.float32) if pad is None else (tgt != pad).float()
    return ((nll * mask).sum(1) / mask.sum(1).clamp(min=1)).double().cpu()


def default_budget(model) -> int:
    """Half the free memory of a CUDA device; a quarter of the available memory on the CPU (a
    machine shared with other processes)."""
    dev = next(model.parameters()).device
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return int(free * 0.5)
    try:
        import psutil

        return int(psutil.virtual_memory().available * 0.25)
    except ImportError:  # pragma: no cover - psutil ships with the workbench's dependencies
        return 4 << 30


def _bytes(store: dict[int, torch.Tensor] | None) -> int:
    return sum(h.numel() * h.element_size() for h in store.values()) if store else 0


class Scorer:
    """Scores removal sets by calibration NLL, plain or with the exact speed-ups (see module)."""

    def __init__(self, bm: BlockModel, rows: torch.Tensor, batch_size: int = 8,
                 fast: bool = True, budget_bytes: int | None = None) -> None:
        if rows.ndim != 2 or len(rows) == 0 or rows.shape[1] < 2:
            raise ValueError(f"calibration set is empty: no rows to score (shape "
                             f"{tuple(rows.shape)})")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.bm, self.fast = bm, fast
        self.batches = [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]
        self.n_rows = len(rows)
        self.cache: list[dict[int, torch.Tensor]] = []  # per cached batch: point -> hidden
        self.cache_nll: list[torch.Tensor] = []  # per batch: row NLLs of the current model
        self.own: dict[str, list[dict[int, torch.Tensor] | None]] = {}  # candidate -> states
        self.own_start: dict[str, int] = {}  # candidate -> its first point
        self.forwards = 0.0
        self.batch_evals = 0
        self.last_partial = math.nan  # mean row NLL seen by the last abandoned candidate
        self.n_cached = len(self.batches)
        self.budget = self.own_budget = 0
        if fast:
            p = next(bm.model.parameters())
            d = bm.model.config.get_text_config().hidden_size
            self.budget = default_budget(bm.model) if budget_bytes is None else int(budget_bytes)
            per = [b.numel() * d * p.element_size() * (2 * bm.n_layers + 1) for b in self.batches]
            # the current model's states + the best and the running candidate's captures
            used, self.n_cached = 0, 0
            for b in per:
                if used + 3 * b > self.budget:
                    break
                used, self.n_cached = used + 3 * b, self.n_cached + 1
            self.own_budget = self.budget - used
            log.info("search cache: %d of %d row batches cached (%.1f MB each, x3), budget "
                     "%.1f MB, %.1f MB left for candidates' own states%s", self.n_cached,
                     len(self.batches), per[0] / 2**20, self.budget / 2**20,
                     self.own_budget / 2**20,
                     "" if self.n_cached == len(self.batches) else
                     "; the other batches are recomputed in full for every candidate")
        self.own_bytes = 0

    def ppl(self, total: float) -> float:
        return math.exp(total / self.n_rows)

    def _run(self, k: int, start: int, hidden: torch.Tensor | None,
             store: dict[int, torch.Tensor] | None) -> torch.Tensor:
        bm = self.bm
        if hidden is not None:
            bm.set_start(start, hidden)
        bm.set_capture(store)
        try:
            nll = row_nll(bm.model, self.batches[k])
        finally:
            bm.set_start(0, None)
            bm.set_capture(None)
        self.forwards += (1 - (start if hidden is not None else 0) / (2 * bm.n_layers)) \
            / len(self.batches)
        self.batch_evals += 1
        return nll

    def total(self, removed: set, start: int = 0,
              bound: float | Callable[[float], bool] = math.inf,
              order: list[int] | None = None, key: str | None = None
              ) -> tuple[float | None, tuple[list, list] | None]:
        """(total NLL with `removed`, (per-batch states from `start` on, per-batch row NLLs)),
        or (None, None) once the partial sum exceeds `bound` (or `bound(partial sum)` is true).

        Fast path: every cached row batch resumes at `start` from the cache, or later from the
        candidate `key`'s own states; its states from `start` on are returned (to become the
        next cache if it wins) and kept as the candidate's own while the budget allows.
        """
        self.bm.set_removed(removed)
        order = list(range(len(self.batches))) if order is None else order
        lost = bound if callable(bound) else (lambda part, b=bound: part > b)
        vals: list[float] = []
        states: list[dict[int, torch.Tensor] | None] = [None] * len(self.batches)
        nlls: list[torch.Tensor | None] = [None] * len(self.batches)
        own = self.own.get(key) if key is not None else None
        if key is not None:
            self.own_start[key] = start
        for n, k in enumerate(order, 1):
            if self.fast and k < self.n_cached:
                prev = own[k] if own else None
                p = max(prev) if prev else start
                h = prev[p] if prev else self.cache[k][start]
                store: dict[int, torch.Tensor] = {}
                nlls[k] = self._run(k, p, h, store)
                states[k] = {**({q: v for q, v in prev.items() if q < p} if prev else {}),
                             **store}
                self._keep(key, k, states[k])
            else:
                nlls[k] = self._run(k, 0, None, None)
            vals.extend(nlls[k].tolist())
            # abandon only while rows remain: a complete total is kept (it loses the comparison)
            if self.fast and n < len(order) and lost(math.fsum(vals)):
                self.last_partial = math.fsum(vals) / len(vals)
                return None, None
        return math.fsum(vals), (states, nlls)

    def _keep(self, key: str | None, k: int, states: dict[int, torch.Tensor]) -> None:
        if key is None:
            return
        own = self.own.setdefault(key, [None] * len(self.batches))
        old, new = _bytes(own[k]), _bytes(states)
        if self.own_bytes - old + new <= self.own_budget:
            own[k] = states
            self.own_bytes += new - old
        elif own[k] is not None:
            own[k] = None
            self.own_bytes -= old

    def capture(self, removed: set) -> float:
        """Full forward with `removed`, caching every sublayer point; returns the total NLL."""
        self.bm.set_removed(removed)
        self.cache, self.cache_nll, self.own, self.own_bytes = [], [], {}, 0
        for k in range(len(self.batches)):
            store: dict[int, torch.Tensor] | None = {} if k < self.n_cached else None
            self.cache_nll.append(self._run(k, 0, None, store))
            if store is not None:
                self.cache.append(store)
        return math.fsum(v for t in self.cache_nll for v in t.tolist())

    def adopt(self, key: str, start: int, captured: tuple[list, list]) -> None:
        """The winner `key` (first block at point `start`) becomes the current model: its states
        replace the cache from `start` on; the other candidates' own states stay valid up to
        `start` (the winner's input) if they begin before it, else they are dropped."""
        states, nlls = captured
        for k in range(self.n_cached):
            self.cache[k] = {**{p: h for p, h in self.cache[k].items() if p < start},
                             **states[k]}
        self.cache_nll = nlls
        self.own.pop(key, None)
        for u in list(self.own):
            if self.own_start[u] >= start:
                del self.own[u]
                continue
            self.own[u] = [None if st is None else {p: h for p, h in st.items() if p <= start}
                           for st in self.own[u]]
        self.own_bytes = sum(_bytes(st) for u in self.own.values() for st in u)

    def batch_order(self) -> list[int]:
        """Row batches, highest cached NLL first (bad candidates then exceed the bound soonest)."""
        return sorted(range(len(self.batches)), key=lambda k: -float(self.cache_nll[k].sum()))
