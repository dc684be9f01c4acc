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
- the lm_head bound (`head_bound`): the lm_head runs in parts (the batch's distinct targets,
  then chunks of `VOCAB_CHUNK` ids, see `row_nll`) and a candidate is dropped as soon as the
  log-sum-exp over the parts computed so far (a lower bound of the full one) makes its total
  exceed the best complete total: losers skip most of the lm_head and log-sum-exp;
- `packed_linears` (`pack`, bf16 on a CPU with oneDNN): the decoder's linear weights are laid
  out for oneDNN once per search instead of at every call, only where that is bit-identical to
  `F.linear`.

The scoring function itself (`row_nll`, used by the plain loop and the reference too) computes
the lm_head in those parts with M = every position (a multiple of 16 rows: AMX GEMMs with
M = 504 instead of 512 took 1.8x as long here) and the log-sum-exp in fp32 over cache-sized
blocks (no [rows, T, vocab] logits are materialised). Its values are a function of the batch
alone; they differ in the last bits from a full `lm_head` + cross-entropy (another GEMM
blocking and summation order), as the official bf16 cross-entropy does from both.

Memory budget (`budget_bytes`, default: half the free memory of a CUDA device, a quarter of the
available memory on the CPU): the cache of
the current model and two candidate captures must fit for a row batch to use prefix reuse; row
batches beyond the budget are recomputed from the embeddings for every candidate (logged). The
budget left over holds the candidates' own states.
"""

from __future__ import annotations

import contextlib
import logging
import math
import types
from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

from workbench.pruning.blocks import BlockModel

log = logging.getLogger(__name__)


VOCAB_CHUNK = 4096  # lm_head columns per GEMM (the scoring function's fixed vocabulary split)
# positions per fp32 log-sum-exp block: CPU 64 (1 MiB at 4096 columns: cache-sized), GPU 4096
_POS_BLOCK = {"cpu": 64}
# causal LMs whose logits are exactly lm_head(decoder output): no bias, soft-capping or scale
# relative tolerance of the lm_head bound: covers the fp32 rounding of the log-sum-exps (a few
# ulps) and of the row sums (torch's cascade sums: about log2(T) x 6e-8 relative) many times
_TOL = 3e-5
_PLAIN_HEAD = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Gemma3ForCausalLM")


@torch.no_grad()
def row_nll(model, batch: torch.Tensor, bound: Callable[[float], bool] | None = None,
            stats: dict[str, int] | None = None) -> torch.Tensor | None:
    """Mean next-token NLL of each row of `batch` (float64, shape [rows]), or None when `bound`
    says the rows' lower bound already loses.

    The lm_head runs in parts with M = every position of the batch (so a part's logits do not
    depend on which other parts are computed): first the batch's distinct target tokens (their
    logits give every position's target logit), then the vocabulary in chunks of
    `VOCAB_CHUNK` columns in id order, the targets' columns left out. Each part's log-sum-exp
    is taken in fp32 over cache-sized blocks of positions and the parts are combined in that
    order: the result is a function of the batch alone. With `bound`, after each part the
    exact lower bound of the batch's sum of row NLLs (log-sum-exp over the parts so far <= the
    full one, minus a relative fp32 tolerance `_TOL`) is passed to `bound`; True abandons the
    batch (its remaining parts are not computed). Models whose logits are not a plain lm_head
    of the decoder output take the full-logits path (no bound). Targets equal to the config's
    pad id are left out, as in the official `evaluate_ppl`.
    """
    dev = next(model.parameters()).device
    batch = batch.to(dev)
    tgt = batch[:, 1:]
    pad = getattr(getattr(model, "config", None), "pad_token_id", None)
    mask = torch.ones_like(tgt, dtype=torch.float32) if pad is None else (tgt != pad).float()
    count = mask.sum(1).clamp(min=1)
    head = model.get_output_embeddings() if type(model).__name__ in _PLAIN_HEAD else None
    cfg = getattr(model, "config", None)
    if (not isinstance(head, nn.Linear) or head.bias is not None
            or getattr(cfg, "final_logit_softcapping", None)):
        nll = _full_logits_nll(model(input_ids=batch, use_cache=False).logits, tgt)
        return ((nll * mask).sum(1) / count).double().cpu()
    h = model.get_decoder()(input_ids=batch, use_cache=False).last_hidden_state
    # every position (M = rows x T: GEMMs with M a multiple of 16 are much faster with AMX);
    # the last position of each row has no target and is masked out
    x = h.reshape(-1, h.shape[-1])
    mask = torch.cat([mask, torch.zeros_like(mask[:, :1])], 1)
    t = torch.cat([tgt, torch.zeros_like(tgt[:, :1])], 1).reshape(-1)
    w = head.weight
    c = VOCAB_CHUNK
    tid = torch.unique(t[mask.reshape(-1) > 0])  # the batch's distinct targets, sorted
    if not len(tid):  # every target is padding
        return torch.zeros(len(batch), dtype=torch.float64)
    xt = torch.zeros(len(t), dtype=torch.float32, device=dev)
    parts = [None, *range(-(-w.shape[0] // c))]  # None: the targets; k: ids [k c, (k + 1) c)
    lse = torch.full((len(parts), len(t)), -math.inf, dtype=torch.float32, device=dev)
    pb = _POS_BLOCK.get(dev.type, 4096)
    buf = torch.empty(min(pb, len(t)) * c, dtype=torch.float32, device=dev)
    for n, k in enumerate(parts):
        if k is None:
            z, drop = nn.functional.linear(x, w[tid]), None
            pos = torch.searchsorted(tid, t).clamp_(max=len(tid) - 1)
            xt.copy_(z.gather(1, pos[:, None])[:, 0])  # positions masked out: any value
        else:
            z = nn.functional.linear(x, w[k * c:(k + 1) * c])
            drop = tid[(tid >= k * c) & (tid < k * c + z.shape[1])] - k * c
            if len(drop) == z.shape[1]:
                continue  # every column is a target: counted in the first part
        width = z.shape[1]
        for s in range(0, len(t), pb):
            zs = z[s:s + pb]
            y = buf[: zs.shape[0] * width].view(zs.shape[0], width).copy_(zs)
            if drop is not None and len(drop):
                y.index_fill_(1, drop, -math.inf)
            m = y.amax(-1)
            lse[n, s:s + len(m)] = y.sub_(m[:, None]).exp_().sum(-1).log_().add_(m)
        if stats is not None:
            stats["head_chunks"] = stats.get("head_chunks", 0) + (k is not None)
        if bound is not None and n < len(parts) - 1:
            part = torch.logsumexp(lse[: n + 1], 0)
            lb = (part - xt - _TOL * (part.abs() + xt.abs()) - 1e-6).clamp_(min=0)
            if bound(math.fsum(((lb.view_as(mask) * mask).sum(1) / count).double().tolist())):
                return None
    nll = (torch.logsumexp(lse, 0) - xt).view_as(mask)
    return ((nll * mask).sum(1) / count).double().cpu()


def _full_logits_nll(logits: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
    """Per-position NLL from full logits: log-sum-exp in fp32 over chunks of positions."""
    chunk = min(16 if logits.device.type == "cpu" else 4096, tgt.shape[1])
    nll = torch.empty(tgt.shape, dtype=torch.float32, device=logits.device)
    buf = torch.empty(chunk, logits.shape[-1], dtype=torch.float32, device=logits.device)
    for r in range(len(tgt)):
        x = logits[r, :-1]
        m = x.amax(-1).float()  # exact: the max of bf16 values is one of them
        for s in range(0, x.shape[0], chunk):
            y = buf[: min(chunk, x.shape[0] - s)]
            y.copy_(x[s:s + chunk]).sub_(m[s:s + chunk, None]).exp_()
            nll[r, s:s + chunk] = y.sum(-1)
        nll[r] = nll[r].log_() + m - x.gather(-1, tgt[r][:, None])[:, 0].float()
    return nll


@contextlib.contextmanager
def packed_linears(model, ms: Iterable[int] = ()) -> Iterator[int]:
    """bf16 on a CPU with oneDNN: the decoder's `nn.Linear` weights are re-laid out once for
    oneDNN (`mkldnn._reorder_linear_weight`) instead of at every call; yields how many layers
    were packed. A layer is packed only when its packed product equals `F.linear`'s bit for bit
    on a random input of every row count in `ms` (checked per weight shape), so scores do not
    change; elsewhere (fp32, CUDA, no oneDNN, not enough free memory for the copy) a no-op.
    """
    lin = [m for n, m in model.named_modules() if isinstance(m, nn.Linear)
           and m is not model.get_output_embeddings() and m.weight.dtype == torch.bfloat16
           and m.weight.device.type == "cpu"]
    ops = getattr(torch.ops, "mkldnn", None)
    extra = sum(m.weight.numel() * 2 for m in lin)
    if (not lin or not torch.backends.mkldnn.is_available()
            or not hasattr(ops, "_reorder_linear_weight") or extra > default_budget(model)):
        yield 0
        return
    ms = sorted(set(ms)) or [1]
    ok: dict[tuple[int, ...], bool] = {}
    done = []
    try:
        with torch.no_grad():
            for m in lin:
                shape = tuple(m.weight.shape)
                pk = ops._reorder_linear_weight(m.weight, ms[-1])
                if shape not in ok:
                    g = torch.Generator().manual_seed(0)
                    ok[shape] = all(torch.equal(
                        ops._linear_pointwise(x, pk, m.bias, "none", [], ""),
                        nn.functional.linear(x, m.weight, m.bias))
                        for x in (torch.randn(r, shape[1], generator=g).bfloat16() for r in ms))
                if ok[shape]:
                    m._bp_packed = pk
                    m.forward = types.MethodType(_packed_forward, m)
                    done.append(m)
        if len(done) < len(lin):
            log.info("packed %d of %d linear layers (the others differ from F.linear in bits)",
                     len(done), len(lin))
        yield len(done)
    finally:
        for m in done:
            del m.forward, m._bp_packed


def _packed_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._linear_pointwise(x, self._bp_packed, self.bias, "none", [], "")


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
                 fast: bool = True, budget_bytes: int | None = None,
                 head_bound: bool = True) -> None:
        if rows.ndim != 2 or len(rows) == 0 or rows.shape[1] < 2:
            raise ValueError(f"calibration set is empty: no rows to score (shape "
                             f"{tuple(rows.shape)})")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.bm, self.fast = bm, fast
        self.head_bound = fast and head_bound  # lm_head vocabulary-chunk bound (see row_nll)
        self.stats: dict[str, int] = {"head_chunks": 0}  # lm_head chunks computed
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
             store: dict[int, torch.Tensor] | None,
             bound: Callable[[float], bool] | None = None) -> torch.Tensor | None:
        bm = self.bm
        if hidden is not None:
            bm.set_start(start, hidden)
        bm.set_capture(store)
        try:
            nll = row_nll(bm.model, self.batches[k], bound, self.stats)
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
        lbs: list[float] = []

        def chk(lb: float) -> bool:  # the lm_head bound: this batch's on top of those done
            lbs.append(lb)
            return lost(math.fsum([*vals, lb]))

        head = chk if self.head_bound and (callable(bound) or bound < math.inf) else None

        for n, k in enumerate(order, 1):
            if self.fast and k < self.n_cached:
                prev = own[k] if own else None
                p = max(prev) if prev else start
                h = prev[p] if prev else self.cache[k][start]
                store: dict[int, torch.Tensor] = {}
                nlls[k] = self._run(k, p, h, store, head)
                states[k] = {**({q: v for q, v in prev.items() if q < p} if prev else {}),
                             **store}
                self._keep(key, k, states[k])  # the decoder states are complete either way
            else:
                nlls[k] = self._run(k, 0, None, None, head)
            if nlls[k] is None:  # lost on the lm_head bound (a lower bound of the mean)
                self.last_partial = math.fsum([*vals, lbs[-1]]) / (len(vals)
                                                                   + len(self.batches[k]))
                return None, None
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
