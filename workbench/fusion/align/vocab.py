"""Vocabulary mappings source token -> pivot token (papers.md §1.a step 2.2), in ``VOCAB_MAPS``.

Official ``--align_type`` names: ``hard`` = ``em``, ``soft`` = ``mined``, ``default`` = ``ms``.
Every builder has the signature ``build(source, pivot, *, needed=None, counts=None, **opts) ->
VocabMap`` over :class:`~workbench.fusion.align.normalize.TokenTexts`; ``needed`` restricts the
work to the source ids that occur (input ids and top-K ids of the corpus): the others get -1.
``-1`` in ``VocabMap.source_to_pivot`` means "no mapping" (the candidate is dropped by
distribution alignment). The texts compared are those of the :class:`TokenTexts` given: the
official ``raw`` vocabulary strings (default of the pipeline's ``vocab_text``; marker -> space,
compared by characters) or our ``normalized`` texts.

- ``em``: exact match of the texts (markers converted, not stripped).
- ``mined``: exact match if present, else the pivot token with the minimum edit distance between
  the texts (normalized: in bytes by default, ``unit``), ties -> lowest pivot id (FuseLLM's
  MinED). The FuseChat code's ``soft`` branch calls ``editdistance.eval(token, array_of_vocab)``
  (one distance between a string and a list, then ``argmin`` of a scalar = 0), i.e. it maps every
  non-exact token to the first vocabulary entry; we do not reproduce that bug. Were it fixed, its
  ties would go to the first entry of ``get_vocab()``, a dict whose order under transformers 5
  fast tokenizers is the Rust hash-map order (not the id order, not stable across tokenizer
  builds): that tie order cannot be reproduced exactly, so ours (lowest pivot id) is our fix.
  Bulk distances with rapidfuzz ``cdist`` in chunks.
- ``ms`` (mapping statistics): candidates = pivot tokens p with ``C[p, s] > 0`` in the
  co-occurrence counts of the DTW alignments over the corpus (:func:`cooccurrence_counts`);
  choose ``argmin ED(s, p) * w * sigmoid(C[p, s])`` with ED between stripped texts (unstripped when
  one is empty), ``w = 0.1`` when one contains the other, ties -> lowest pivot id. Official quirk
  (``count_rule="multiply"``, default): the sigmoid multiplies, so among equal distances the
  *less* frequent pair wins; ``count_rule="divide"`` divides instead (frequent pairs win).
  BOS->BOS and EOS->EOS are forced; a source token with no candidate maps to the pivot ``unk``
  (``eos`` when there is none) as in the official code, or to -1 with ``no_candidate="drop"``;
  ``VocabMap.no_candidate`` lists those ids and ``info`` reports ``with_candidates_share``.
  The counts (:func:`cooccurrence_counts`) count a source id repeated within one pivot
  position's DTW group once (``group_repeats="once"``, official) or every time (``"each"``).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rapidfuzz.distance import Levenshtein
from rapidfuzz.process import cdist
from scipy import sparse

from workbench.common.registry import Registry
from workbench.common.runtime import track
from workbench.fusion.align.normalize import TokenTexts

log = logging.getLogger(__name__)

__all__ = ["GROUP_REPEATS", "VOCAB_MAPS", "VocabMap", "build_vocab_map", "cooccurrence_counts", "exact_ids",
           "load_counts", "save_counts"]

VOCAB_MAPS: Registry = Registry("vocabulary mapping")


@dataclass(eq=False)
class VocabMap:
    """``source_to_pivot[s]`` = pivot id for source id ``s`` (-1: none or not computed)."""

    name: str
    source: TokenTexts = field(repr=False)
    pivot: TokenTexts = field(repr=False)
    source_to_pivot: np.ndarray = field(repr=False)
    info: dict[str, Any] = field(default_factory=dict)
    # ms: the source ids with no co-occurring pivot token, sent to the fallback (unk/eos) token
    no_candidate: np.ndarray | None = field(default=None, repr=False)

    def __getitem__(self, source_id: int) -> int:
        return int(self.source_to_pivot[source_id])

    def pivot_text(self, source_id: int) -> str | None:
        p = self[source_id]
        return self.pivot.texts[p] if p >= 0 else None

    def save(self, path: str | os.PathLike) -> Path:
        """Atomically write ``source_to_pivot`` (and the info) to an ``.npz``."""
        path = Path(path)
        _atomic_npz(path, lambda f: np.savez_compressed(
            f, source_to_pivot=self.source_to_pivot, name=np.array(self.name)))
        return path


def _atomic_npz(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _needed_ids(source: TokenTexts, needed: Iterable[int] | None) -> np.ndarray:
    if needed is None:
        return np.arange(len(source), dtype=np.int64)
    ids = np.unique(np.asarray(list(needed) if not isinstance(needed, np.ndarray) else needed,
                               dtype=np.int64))
    bad = ids[(ids < 0) | (ids >= len(source))]
    if bad.size:
        raise ValueError(f"needed: source id {int(bad[0])} is outside the source vocabulary "
                         f"(size {len(source)})")
    return ids


def exact_ids(source: TokenTexts, pivot: TokenTexts, ids: np.ndarray | None = None) -> np.ndarray:
    """Pivot id with the same canonical text for each source id in ``ids`` (-1 if none)."""
    ids = np.arange(len(source)) if ids is None else ids
    get, texts = pivot.text_to_id.get, source.texts
    return np.fromiter((get(texts[i], -1) for i in ids.tolist()), dtype=np.int64, count=len(ids))


def _empty_map(source: TokenTexts) -> np.ndarray:
    return np.full(len(source), -1, dtype=np.int64)


@VOCAB_MAPS.register("em", official="hard", one_to_one="exact", one_to_many=False)
def build_em(source: TokenTexts, pivot: TokenTexts, *, needed=None, counts=None) -> VocabMap:
    """EM: exact match after marker normalisation."""
    ids = _needed_ids(source, needed)
    out = _empty_map(source)
    out[ids] = exact_ids(source, pivot, ids)
    return VocabMap("em", source, pivot, out, {"computed": int(ids.size)})


@VOCAB_MAPS.register("mined", official="soft", one_to_one="exact_or_mapped", one_to_many=False)
def build_mined(source: TokenTexts, pivot: TokenTexts, *, needed=None, counts=None,
                chunk: int = 256, include_special: bool = True, unit: str = "byte") -> VocabMap:
    """MinED: exact match, else the pivot token at minimum edit distance (lowest id on ties)."""
    ids = _needed_ids(source, needed)
    out = _empty_map(source)
    ex = exact_ids(source, pivot, ids)
    out[ids] = ex
    todo = ids[ex < 0]
    cand = np.array([i for i in range(len(pivot)) if include_special or i not in pivot.special],
                    dtype=np.int64)
    p_texts, s_texts = pivot.unit_texts(unit), source.unit_texts(unit)
    cand_texts = [p_texts[i] for i in cand.tolist()]
    starts = range(0, len(todo), chunk)
    for s in track(starts, desc="mined", total=len(starts)) if len(starts) > 4 else starts:
        q = todo[s:s + chunk]
        d = cdist([s_texts[i] for i in q.tolist()], cand_texts,
                  scorer=Levenshtein.distance, dtype=np.int32, workers=1)
        out[q] = cand[np.argmin(d, axis=1)]
    return VocabMap("mined", source, pivot, out,
                    {"computed": int(ids.size), "exact": int((ex >= 0).sum()),
                     "nearest": int(todo.size)})


def _ms_distance(s: str, p: str, s_stripped: str, p_stripped: str) -> float:
    a, b = s_stripped, p_stripped
    if not a or not b:
        a, b = s, p
    w = 0.1 if (a in b or b in a) else 1.0
    return Levenshtein.distance(a, b) * w


@VOCAB_MAPS.register("ms", official="default", one_to_one="suffix", one_to_many=True)
def build_ms(source: TokenTexts, pivot: TokenTexts, *, needed=None, counts=None,
             count_rule: str = "multiply", no_candidate: str = "unk", unit: str = "byte"
             ) -> VocabMap:
    """MS: mapping statistics from the co-occurrence counts ``counts`` (pivot x source)."""
    if counts is None:
        raise ValueError("ms needs counts: the co-occurrence matrix from cooccurrence_counts()")
    if count_rule not in ("multiply", "divide"):
        raise ValueError(f"count_rule must be 'multiply' or 'divide', got {count_rule!r}")
    if no_candidate not in ("unk", "drop"):
        raise ValueError(f"no_candidate must be 'unk' or 'drop', got {no_candidate!r}")
    if counts.shape != (len(pivot), len(source)):
        raise ValueError(f"counts: shape {counts.shape} != (pivot vocab {len(pivot)}, "
                         f"source vocab {len(source)})")
    ids = _needed_ids(source, needed)
    default = -1
    if no_candidate == "unk":
        default = pivot.unk_id if pivot.unk_id is not None else (
            pivot.eos_id if pivot.eos_id is not None else -1)
    out = _empty_map(source)
    out[ids] = default
    csc = sparse.csc_matrix(counts)
    csc.sum_duplicates()
    indptr, rows, vals = csc.indptr, csc.indices, csc.data
    with_cands = ids[indptr[ids + 1] > indptr[ids]]
    p_texts, s_texts = pivot.unit_texts(unit), source.unit_texts(unit)
    for s in with_cands.tolist():
        lo, hi = indptr[s], indptr[s + 1]
        ps, cs = rows[lo:hi], vals[lo:hi]
        order = np.argsort(ps, kind="stable")
        ps, cs = ps[order], cs[order]
        st = s_texts[s]
        ss = st.replace(" ", "")
        sig = 1.0 / (1.0 + np.exp(-cs.astype(np.float64)))
        dist = np.array([_ms_distance(st, p_texts[p], ss, p_texts[p].replace(" ", ""))
                         for p in ps.tolist()])
        score = dist * sig if count_rule == "multiply" else dist / sig
        out[s] = int(ps[int(np.argmin(score))])
    forced = set()
    for sid, pid in ((source.bos_id, pivot.bos_id), (source.eos_id, pivot.eos_id)):
        if sid is not None and pid is not None:
            out[sid] = pid
            forced.add(sid)
    without = np.setdiff1d(ids, with_cands)
    without = without[~np.isin(without, list(forced))] if default >= 0 else without[:0]
    return VocabMap("ms", source, pivot, out,
                    {"computed": int(ids.size), "with_candidates": int(with_cands.size),
                     "with_candidates_share": float(with_cands.size / ids.size) if ids.size
                     else 0.0, "fallback_id": int(default), "fallback_ids": int(without.size),
                     "count_rule": count_rule, "no_candidate": no_candidate},
                    no_candidate=without)


def build_vocab_map(name: str, source: TokenTexts, pivot: TokenTexts, **kw) -> VocabMap:
    """Build the registered mapping ``name`` (``em`` | ``mined`` | ``ms``)."""
    return VOCAB_MAPS.get(name)(source, pivot, **kw)


GROUP_REPEATS = ("once", "each")


def cooccurrence_counts(alignments: Iterable[tuple[list[int], list[int], list[list[int]]]],
                        pivot_vocab: int, source_vocab: int,
                        flush_every: int = 2_000_000, group_repeats: str = "once"
                        ) -> sparse.csr_matrix:
    """C[pivot_id, source_id] += 1 for every aligned pair, over ``(pivot_ids, source_ids,
    groups)`` triples (``groups[j]`` = source positions of pivot position j).

    ``group_repeats="once"`` (official: ``matrix[base_id, ids_of_group] += 1`` is a numpy
    fancy-index add, which adds 1 once per distinct index) counts a source id that occurs several
    times in one pivot position's group once; ``"each"`` counts every occurrence."""
    if group_repeats not in GROUP_REPEATS:
        raise ValueError(f"group_repeats must be one of {GROUP_REPEATS}, got {group_repeats!r}")
    total = sparse.csr_matrix((pivot_vocab, source_vocab), dtype=np.int64)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    pending = 0

    def flush() -> None:
        nonlocal total, rows, cols, pending
        if rows:
            r, c = np.concatenate(rows), np.concatenate(cols)
            total = total + sparse.csr_matrix((np.ones(r.size, dtype=np.int64), (r, c)),
                                              shape=(pivot_vocab, source_vocab))
        rows, cols, pending = [], [], 0

    for pivot_ids, source_ids, groups in alignments:
        lens = np.fromiter((len(g) for g in groups), dtype=np.int64, count=len(groups))
        if not lens.sum():
            continue
        pos = np.fromiter((i for g in groups for i in g), dtype=np.int64, count=int(lens.sum()))
        r = np.repeat(np.asarray(pivot_ids, dtype=np.int64), lens)
        c = np.asarray(source_ids, dtype=np.int64)[pos]
        if group_repeats == "once" and (lens > 1).any():
            grp = np.repeat(np.arange(len(groups), dtype=np.int64), lens)
            _, first = np.unique(grp * source_vocab + c, return_index=True)
            r, c = r[first], c[first]
        rows.append(r)
        cols.append(c)
        pending += int(r.size)
        if pending >= flush_every:
            flush()
    flush()
    total.sum_duplicates()
    return total


def save_counts(counts: sparse.spmatrix, path: str | os.PathLike) -> Path:
    """Atomically save the sparse co-occurrence counts as ``.npz`` (scipy format)."""
    path = Path(path)
    _atomic_npz(path, lambda f: sparse.save_npz(f, sparse.csr_matrix(counts)))
    return path


def load_counts(path: str | os.PathLike) -> sparse.csr_matrix:
    return sparse.load_npz(Path(path)).tocsr()
