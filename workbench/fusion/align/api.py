"""Token alignment over representation datasets, and the explorer helpers (papers.md §1.a step 2).

- :func:`align_representations`: pivot + source representations (``REPR_COLUMNS``) -> the
  source's aligned representations (``ALIGNED_COLUMNS``, pivot positions and vocabulary) + stats.
- :func:`corpus_alignments` / :func:`ms_counts`: DTW over a corpus and the ``ms`` co-occurrence
  counts (build once over the whole corpus, save with ``save_counts``).
- :func:`alignment_stats`: share of pivot positions per ``align_kind`` (+ empty rows).
- :func:`align_text`: both tokenisations of a text, the DP matrices, the path and the 1->1 / 1->n /
  n->1 groups (the explorer tab).
- :func:`compare_vocab_maps`: a table of source tokens with their pivot token under each mapping.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from datasets import Dataset, Features, Value
from datasets import Sequence as DSeq
from scipy import sparse

from workbench.common.runtime import track
from workbench.fusion.align.distribution import (
    AlignRules,
    align_distributions,
    candidate_table,
    official_rules,
)
from workbench.fusion.align.dtw import DTWOptions, dtw, dtw_align
from workbench.fusion.align.normalize import TokenTexts, display_text, token_texts
from workbench.fusion.align.vocab import VOCAB_MAPS, VocabMap, build_vocab_map, cooccurrence_counts
from workbench.fusion.formats import (
    ALIGN_KINDS,
    ALIGNED_COLUMNS,
    FALLBACK,
    PAD_ID,
    REPR_COLUMNS,
    SAME_VOCAB,
)

log = logging.getLogger(__name__)

VOCAB_TEXTS = ("raw", "normalized")

__all__ = ["ALIGNED_FEATURES", "VOCAB_TEXTS", "TextAlignment", "align_representations", "align_text",
           "alignment_stats", "compare_vocab_maps", "corpus_alignments", "ms_counts",
           "same_vocabulary"]

ALIGNED_FEATURES = Features({
    "id": Value("string"),
    "input_ids": DSeq(Value("int64")),
    "labels": DSeq(Value("int64")),
    "topk_ids": DSeq(DSeq(Value("int64"))),
    "topk_logits": DSeq(DSeq(Value("float16"))),
    "align_kind": DSeq(Value("int8")),
    "metric_ce": Value("float32"),
})


def same_vocabulary(pivot_tokenizer: Any, source_tokenizer: Any) -> bool:
    """True when both tokenizers have the identical token -> id vocabulary."""
    return pivot_tokenizer is source_tokenizer or (
        len(pivot_tokenizer) == len(source_tokenizer)
        and pivot_tokenizer.get_vocab() == source_tokenizer.get_vocab())


def _check_columns(ds: Dataset, name: str) -> None:
    missing = [c for c in REPR_COLUMNS if c not in ds.column_names]
    if missing:
        raise ValueError(f"{name}: missing column(s) {missing}; expected {list(REPR_COLUMNS)}")


def _joined_rows(pivot_ds: Dataset, source_ds: Dataset) -> Iterator[tuple[dict, dict]]:
    """Pivot rows with the source row of the same ``id``; one-line errors on mismatched ids."""
    _check_columns(pivot_ds, "pivot_ds")
    _check_columns(source_ds, "source_ds")
    p_ids = pivot_ds["id"]
    s_ids = source_ds["id"]
    s_index: dict[str, int] = {}
    for k, i in enumerate(s_ids):
        if i in s_index:
            raise ValueError(f"source_ds: duplicate id {i!r}")
        s_index[i] = k
    seen = set()
    for i in p_ids:
        if i in seen:
            raise ValueError(f"pivot_ds: duplicate id {i!r}")
        seen.add(i)
        if i not in s_index:
            raise ValueError(f"source_ds: no row with id {i!r} (present in pivot_ds)")
    extra = [i for i in s_ids if i not in seen]
    if extra:
        raise ValueError(f"pivot_ds: no row with id {extra[0]!r} (present in source_ds)")
    for k, prow in enumerate(pivot_ds):
        yield prow, source_ds[s_index[p_ids[k]]]


def _check_ids(ids: Sequence[int], vocab: int, what: str, sample: str) -> None:
    arr = np.asarray(ids, dtype=np.int64)
    bad = arr[(arr < 0) | (arr >= vocab)] if arr.size else arr
    if bad.size:
        raise ValueError(f"{what} of sample {sample!r}: token id {int(bad[0])} is outside the "
                         f"vocabulary (size {vocab})")


def corpus_alignments(pairs: Iterable[tuple[Sequence[int], Sequence[int]]],
                      pivot: TokenTexts, source: TokenTexts, options: DTWOptions | None = None,
                      total: int | None = None, desc: str = "dtw",
                      ) -> Iterator[tuple[list[int], list[int], list[list[int]]]]:
    """DTW for every ``(pivot_ids, source_ids)`` pair: yields ``(pivot_ids, source_ids, groups)``."""
    unit = (options or DTWOptions()).unit
    for p_ids, s_ids in track(pairs, desc=desc, total=total):
        p_ids, s_ids = list(p_ids), list(s_ids)
        yield p_ids, s_ids, dtw_align(source.of(s_ids, unit), pivot.of(p_ids, unit), options)


def ms_counts(pivot_ds: Dataset, source_ds: Dataset, pivot_tokenizer: Any, source_tokenizer: Any,
              options: DTWOptions | None = None, group_repeats: str = "once",
              extra_pairs: Sequence[tuple[Sequence[int], Sequence[int]]] = ()
              ) -> sparse.csr_matrix:
    """The ``ms`` co-occurrence counts C[pivot id, source id] over two representation datasets
    (their ``input_ids``), plus ``extra_pairs`` of (pivot ids, source ids) of more texts: the
    official statistics come from the whole training corpus, which a small run's sample is not."""
    opts = options or DTWOptions()
    piv, src = (token_texts(pivot_tokenizer, opts.text), token_texts(source_tokenizer, opts.text))
    pairs = [(p["input_ids"], s["input_ids"]) for p, s in _joined_rows(pivot_ds, source_ds)]
    pairs += [(list(p), list(s)) for p, s in extra_pairs]
    return cooccurrence_counts(corpus_alignments(pairs, piv, src, opts, total=len(pairs)),
                               len(piv), len(src), group_repeats=group_repeats)


def alignment_stats(aligned: Dataset | Iterable[Any], topk_ids: Iterable[Any] | None = None
                    ) -> dict[str, Any]:
    """Share of pivot positions per align kind, plus ``empty_rows`` (rows with no valid id).

    ``aligned`` is an aligned dataset, or an iterable of per-sample ``align_kind`` arrays (then
    ``topk_ids`` may give the matching per-sample id arrays for the empty-row count).
    """
    if isinstance(aligned, Dataset):
        kinds_it = aligned["align_kind"]
        ids_it = aligned["topk_ids"]
    else:
        kinds_it, ids_it = aligned, topk_ids
    counts = np.zeros(len(ALIGN_KINDS), dtype=np.int64)
    empty = 0
    n_samples = 0
    for k in kinds_it:
        counts += np.bincount(np.asarray(k, dtype=np.int64), minlength=len(ALIGN_KINDS))
        n_samples += 1
    if ids_it is not None:
        for rows in ids_it:
            a = np.asarray(rows, dtype=np.int64)
            if a.size:
                empty += int((a.reshape(a.shape[0], -1) == PAD_ID).all(axis=1).sum())
    n = int(counts.sum())
    out: dict[str, Any] = {"samples": n_samples, "positions": n}
    for code, name in ALIGN_KINDS.items():
        out[name] = float(counts[code] / n) if n else 0.0
    out["empty_rows"] = float(empty / n) if n else 0.0
    return out


def _resolve_map(vocab_map: VocabMap | str, piv: TokenTexts, src: TokenTexts, rows: list,
                 options: DTWOptions | None, counts, map_kwargs: dict,
                 group_repeats: str = "once") -> VocabMap:
    if isinstance(vocab_map, VocabMap):
        if len(vocab_map.pivot) != len(piv) or len(vocab_map.source) != len(src):
            raise ValueError("vocab_map: built for other tokenizers (vocabulary sizes "
                             f"{len(vocab_map.source)}->{len(vocab_map.pivot)}, expected "
                             f"{len(src)}->{len(piv)})")
        return vocab_map
    VOCAB_MAPS.check(vocab_map)
    needed = set()
    for _, s, _g in rows:
        needed.update(s["input_ids"])
        for r in s["topk_ids"]:
            needed.update(r)
    needed = {i for i in needed if 0 <= i < len(src)}  # PAD_ID and padded-vocab ids: no text
    if vocab_map == "ms" and counts is None:
        counts = cooccurrence_counts(((p["input_ids"], s["input_ids"], g) for p, s, g in rows),
                                     len(piv), len(src), group_repeats=group_repeats)
    return build_vocab_map(vocab_map, src, piv, needed=sorted(needed), counts=counts,
                           **map_kwargs)


def dtw_groups(pivot_ds: Dataset, source_ds: Dataset, pivot_tokenizer: Any, source_tokenizer: Any,
               options: DTWOptions | None = None) -> dict[str, list[list[int]]]:
    """``{sample id: DTW groups}`` for every joined pivot/source row (input to
    :func:`align_representations` when one source is aligned under several vocab maps)."""
    opts = options or DTWOptions()
    piv, src = token_texts(pivot_tokenizer, opts.text), token_texts(source_tokenizer, opts.text)
    unit = opts.unit
    out = {}
    for p, s in track(list(_joined_rows(pivot_ds, source_ds)), desc="dtw"):
        _check_ids(p["input_ids"], len(piv), "pivot input_ids", p["id"])
        _check_ids(s["input_ids"], len(src), "source input_ids", s["id"])
        out[p["id"]] = dtw_align(src.of(s["input_ids"], unit), piv.of(p["input_ids"], unit), options)
    return out


def align_representations(pivot_ds: Dataset, source_ds: Dataset, pivot_tokenizer: Any,
                          source_tokenizer: Any, vocab_map: VocabMap | str = "ms", *,
                          rules: AlignRules | None = None, options: DTWOptions | None = None,
                          counts: sparse.spmatrix | None = None, k: int | None = None,
                          same_vocab: bool | None = None, map_kwargs: dict | None = None,
                          groups: dict[str, list[list[int]]] | None = None,
                          vocab_text: str = "raw", group_repeats: str = "once",
                          ) -> tuple[Dataset, dict[str, Any]]:
    """Align a source's representations to the pivot's (papers.md §1.a step 2).

    Args:
        pivot_ds, source_ds: representation datasets (``REPR_COLUMNS``) joined by ``id``.
        vocab_map: a :class:`VocabMap`, or a registered name (``em`` | ``mined`` | ``ms``) to build
            here; ``ms`` uses ``counts`` (corpus-wide, from :func:`ms_counts`) or, without them,
            counts over these two datasets.
        rules: distribution-alignment rules; default = the official rules of the mapping.
        options: DTW switches (default = newest official code).
        k: width of the output rows (default: the source's K); must not exceed either vocabulary.
        same_vocab: force/skip the same-vocabulary shortcut (default: detected): rows are copied
            as-is with ``align_kind`` SAME_VOCAB (official ``replace_model.py``).
        groups: DTW groups per sample id from :func:`dtw_groups` with the same ``options``, so
            that aligning one source under several vocab maps runs the DTW once, not once per map.
        vocab_text: texts of the vocabulary map and the candidates: ``raw`` (official strings and
            marker table) | ``normalized``; the DTW and the 1->1 / 1->n checks use
            ``options.text`` (``decode`` | ``normalized``).
        group_repeats: ``ms`` counts built here (no ``counts``): see :func:`cooccurrence_counts`.

    Returns:
        (aligned dataset in the ``ALIGNED_COLUMNS`` format, :func:`alignment_stats` dict plus
        ``vocab_map``, ``map_info``, ``rules``; ``candidates_exact`` / ``candidates_via_map`` /
        ``candidates_dropped``: how the source top-K entries of the matched rows reached the pivot
        vocabulary; ``fallback_mass`` / ``fallback_top1``: mean softmax mass of a matched row's
        top-K sent to the ``ms`` no-candidate token (unk/eos), share of matched rows whose top-1
        went there; ``top1_is_gold``: share of matched positions whose aligned top-1 is the pivot's
        gold next token, a quality check of the alignment).
    """
    if vocab_text not in VOCAB_TEXTS:
        raise ValueError(f"vocab_text must be one of {', '.join(VOCAB_TEXTS)}, got {vocab_text!r}")
    opts = options or DTWOptions()
    piv, src = token_texts(pivot_tokenizer, vocab_text), token_texts(source_tokenizer, vocab_text)
    for name, size in (("pivot", len(piv)), ("source", len(src))):
        if k is not None and k > size:
            raise ValueError(f"k={k} is larger than the {name} vocabulary ({size} tokens)")
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if same_vocab is None:
        same_vocab = same_vocabulary(pivot_tokenizer, source_tokenizer)
    joined = list(_joined_rows(pivot_ds, source_ds))
    cols: dict[str, list] = {c: [] for c in ALIGNED_COLUMNS}
    if same_vocab:
        for p, s in track(joined, desc="copy (same vocab)"):
            if list(p["input_ids"]) != list(s["input_ids"]):
                raise ValueError(f"same_vocab: sample {p['id']!r} has different input_ids in "
                                 "pivot_ds and source_ds")
            ids = np.asarray(s["topk_ids"], dtype=np.int64)
            kk = ids.shape[1] if ids.ndim == 2 else 0
            if k is not None and k != kk:
                raise ValueError(f"k={k} differs from the source's top-K ({kk}) under same_vocab")
            cols["topk_ids"].append(s["topk_ids"])
            cols["topk_logits"].append(s["topk_logits"])
            cols["align_kind"].append([SAME_VOCAB] * len(p["input_ids"]))
            for c in ("id", "input_ids", "labels"):
                cols[c].append(p[c])
            cols["metric_ce"].append(s["metric_ce"])
        ds = Dataset.from_dict(cols, features=ALIGNED_FEATURES)
        stats = alignment_stats(ds)
        stats.update(vocab_map="same_vocab")
        return ds, stats

    rows = []
    unit = opts.unit
    seq = (token_texts(pivot_tokenizer, opts.text), token_texts(source_tokenizer, opts.text))
    for p, s in track(joined, desc="dtw"):
        _check_ids(p["input_ids"], len(piv), "pivot input_ids", p["id"])
        _check_ids(s["input_ids"], len(src), "source input_ids", s["id"])
        if len(s["topk_ids"]) != len(s["input_ids"]):
            raise ValueError(f"source_ds: sample {s['id']!r} has {len(s['topk_ids'])} top-K rows "
                             f"for {len(s['input_ids'])} tokens")
        if groups is not None:
            if p["id"] not in groups:
                raise ValueError(f"groups: no DTW alignment for sample {p['id']!r}")
            rows.append((p, s, groups[p["id"]]))
        else:
            rows.append((p, s, dtw_align(seq[1].of(s["input_ids"], unit),
                                         seq[0].of(p["input_ids"], unit), opts)))
    vmap = _resolve_map(vocab_map, piv, src, rows, opts, counts, map_kwargs or {}, group_repeats)
    if rules is None:
        rules = official_rules(vmap.name) if vmap.name in VOCAB_MAPS else AlignRules()
    cand = candidate_table(vmap)
    cand_counts = np.zeros(3, dtype=np.int64)
    fb = np.zeros(3, dtype=np.float64)
    gold_hits = gold_n = 0
    for p, s, groups in track(rows, desc=f"align ({vmap.name})"):
        out = align_distributions(p["input_ids"], s["input_ids"], s["topk_ids"],
                                  s["topk_logits"], groups, vmap, rules, cand, k, seq)
        cand_counts += out.candidate_counts
        fb += out.fallback
        matched = np.flatnonzero(out.align_kind[:-1] != FALLBACK)
        gold_n += matched.size
        gold_hits += int((out.topk_ids[matched, 0] == np.asarray(p["input_ids"])[matched + 1]).sum())
        for c in ("id", "input_ids", "labels"):
            cols[c].append(p[c])
        cols["topk_ids"].append(out.topk_ids.tolist())
        cols["topk_logits"].append(out.topk_logits.tolist())
        cols["align_kind"].append(out.align_kind.tolist())
        cols["metric_ce"].append(s["metric_ce"])
    ds = Dataset.from_dict(cols, features=ALIGNED_FEATURES)
    stats = alignment_stats(cols["align_kind"], cols["topk_ids"])
    total = int(cand_counts.sum())
    stats.update(
        vocab_map=vmap.name, map_info=dict(vmap.info), rules=rules.__dict__.copy(),
        dtw_text=opts.text, vocab_text=vocab_text,
        fallback_mass=float(fb[1] / fb[0]) if fb[0] else 0.0,
        fallback_top1=float(fb[2] / fb[0]) if fb[0] else 0.0,
        candidates_exact=float(cand_counts[0] / total) if total else 0.0,
        candidates_via_map=float(cand_counts[1] / total) if total else 0.0,
        candidates_dropped=float(cand_counts[2] / total) if total else 0.0,
        top1_is_gold=float(gold_hits / gold_n) if gold_n else 0.0)
    return ds, stats


@dataclass
class TextAlignment:
    """One text under two tokenizers and their DTW alignment (pivot rows x source columns)."""

    text: str
    pivot_ids: list[int]
    source_ids: list[int]
    pivot_tokens: list[str]  # raw vocabulary strings
    source_tokens: list[str]
    pivot_texts: list[str]  # the texts aligned (options.text: decoded or canonical)
    source_texts: list[str]
    cost: np.ndarray  # pivot x source
    cumulative: np.ndarray  # pivot x source
    path: list[tuple[int, int]]  # (pivot position, source position)
    groups: list[list[int]]  # per pivot position: source positions
    relations: list[str]  # per pivot position: "1→1", "1→n", "n→1" or "none"

    def table(self) -> pd.DataFrame:
        """One row per pivot position: token, aligned source tokens, relation (printable)."""
        show = lambda t: display_text(t, visible_whitespace=True)  # noqa: E731
        return pd.DataFrame({
            "pivot_pos": range(len(self.pivot_ids)),
            "pivot_token": [show(t) for t in self.pivot_texts],
            "source_pos": [list(g) for g in self.groups],
            "source_tokens": [" | ".join(show(self.source_texts[j]) for j in g)
                              for g in self.groups],
            "relation": self.relations,
        })


def _relations(groups: list[list[int]]) -> list[str]:
    shared: dict[int, int] = {}
    for g in groups:
        if len(g) == 1:
            shared[g[0]] = shared.get(g[0], 0) + 1
    out = []
    for g in groups:
        if not g:
            out.append("none")
        elif len(g) > 1:
            out.append("1→n")
        else:
            out.append("n→1" if shared[g[0]] > 1 else "1→1")
    return out


def align_text(text: str, pivot_tokenizer: Any, source_tokenizer: Any,
               add_special_tokens: bool = False, options: DTWOptions | None = None
               ) -> TextAlignment:
    """Tokenise ``text`` with both tokenizers and align them (for the explorer and the figure)."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    opts = options or DTWOptions()
    piv, src = token_texts(pivot_tokenizer, opts.text), token_texts(source_tokenizer, opts.text)
    p_ids = pivot_tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
    s_ids = source_tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
    unit = opts.unit
    res = dtw(src.of(s_ids, unit), piv.of(p_ids, unit), opts)
    return TextAlignment(
        text=text, pivot_ids=list(p_ids), source_ids=list(s_ids),
        pivot_tokens=pivot_tokenizer.convert_ids_to_tokens(p_ids),
        source_tokens=source_tokenizer.convert_ids_to_tokens(s_ids),
        pivot_texts=piv.of(p_ids), source_texts=src.of(s_ids),
        cost=res.cost.T, cumulative=res.cumulative.T,
        path=[(j, i) for i, j in res.path], groups=res.groups, relations=_relations(res.groups))


def compare_vocab_maps(source_ids: Iterable[int], maps: dict[str, VocabMap] | Sequence[VocabMap],
                       only_disagreements: bool = False) -> pd.DataFrame:
    """Source tokens with their pivot token under each mapping; ``agree`` is False where the
    mappings differ (a missing mapping counts as its own value)."""
    if not isinstance(maps, dict):
        maps = {m.name: m for m in maps}
    if not maps:
        raise ValueError("maps: give at least one VocabMap")
    first = next(iter(maps.values()))
    for name, m in maps.items():
        if len(m.source) != len(first.source) or len(m.pivot) != len(first.pivot):
            raise ValueError(f"maps: {name!r} is built for other tokenizers than "
                             f"{first.name!r}")
    ids = [int(i) for i in source_ids]
    for i in ids:
        if not 0 <= i < len(first.source):
            raise ValueError(f"source_ids: {i} is outside the source vocabulary "
                             f"(size {len(first.source)})")
    show = lambda t: None if t is None else display_text(t, visible_whitespace=True)  # noqa: E731
    data: dict[str, list] = {"source_id": ids,
                             "source_token": [show(t) for t in first.source.of(ids)]}
    for name, m in maps.items():
        data[f"{name}_id"] = [m[i] for i in ids]
        data[name] = [show(m.pivot_text(i)) for i in ids]
    df = pd.DataFrame(data)
    id_cols = [f"{n}_id" for n in maps]
    df["agree"] = df[id_cols].nunique(axis=1) == 1
    return df[~df["agree"]].reset_index(drop=True) if only_disagreements else df
