"""Distribution alignment (papers.md §1.a step 2.3): a source's top-K rows -> pivot positions and
pivot vocabulary, for one sample.

Off-by-one. Row t of a representation predicts token t+1 (formats.py). Pivot row i must
predict what follows pivot token i, so it takes the source row j of the source token that *ends
where pivot token i ends*: that row predicts the source token that starts where pivot token i+1
starts. Hence the suffix checks below (1->1: one text ends with the other; 1->n: the suffix-
matching source token, else the *last* token of a greedy decomposition), and never the first
token of a group. The fallback is a one-hot on the pivot's gold next token ``input_ids[i+1]``
(logit 1.0); at the last position, which has no next token, the official code repeats the last
token (``labels + [labels[-1]]``); training masks that position anyway.

Rules (:class:`AlignRules`), defaults per mapping = the official ``--align_type`` branch:

- ``one_to_one``: when pivot position i has exactly one source position j (1->1, or n->1 where j
  is shared): ``"suffix"`` (``ms``/default: either canonical text ends with the other, compared
  as bytes so split UTF-8 lines up), ``"exact"`` (``em``/hard: identical texts),
  ``"exact_or_mapped"`` (``mined``/soft: identical texts, or the vocab map sends source token j to
  pivot token i; the official code indexes the map with the *position* j instead of the token id
  at j -- a bug we do not reproduce).
- ``one_to_many`` (only ``ms`` in the official code; em/mined fall back): with markers stripped,
  the first source token of the group whose text is a suffix of the pivot text or vice versa;
  else a greedy left-to-right decomposition of the pivot text into the group's tokens, using the
  last one when the pieces concatenate to the pivot text exactly.
- ``empty_suffix_matches`` (official ``True``): a text that is empty after stripping (a
  whitespace-only token) "suffix-matches" anything (``s.endswith("")``), so the first such group
  member is taken; ``False`` skips empty texts.
- ``empty_row``: when the decomposition starts matching but does not cover the pivot text, or a
  matched row has no candidate left after mapping (em drops non-exact candidates), the official
  code leaves the row empty (``"keep"``; its collator then uses the pivot's own distribution, and
  so does ``workbench.fusion.train``); ``"one_hot"`` falls back to the gold token instead.
  Either way ``align_kind`` is ``FALLBACK``.

Texts: the 1->1 / 1->n checks compare the *sequence* texts (``seq``: the DTW's texts, by default
``tokenizer.decode([id])`` as the newest official script, spaces kept; with ``normalized`` texts
the 1->n check strips the spaces as the marker), the candidates the *vocabulary* texts of the map
(``vmap.pivot`` / ``vmap.source``: ``raw`` strings by default, see ``normalize``).

Candidates: each source top-K id maps to the pivot id with the same canonical text, else through
the vocab map; ids mapping to -1 are dropped; duplicates keep their first (highest) logit. Output
rows are padded to K with ``PAD_ID`` / ``PAD_LOGIT``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workbench.fusion.align.normalize import TokenTexts, to_bytes
from workbench.fusion.align.vocab import VocabMap
from workbench.fusion.formats import FALLBACK, ONE_TO_MANY, ONE_TO_ONE, PAD_ID, PAD_LOGIT

__all__ = ["AlignRules", "AlignedSample", "align_distributions", "candidate_table",
           "decompose", "official_rules"]

ONE_TO_ONE_RULES = ("suffix", "exact", "exact_or_mapped")


@dataclass(frozen=True)
class AlignRules:
    one_to_one: str = "suffix"
    one_to_many: bool = True
    empty_suffix_matches: bool = True
    empty_row: str = "keep"

    def __post_init__(self) -> None:
        if self.one_to_one not in ONE_TO_ONE_RULES:
            raise ValueError(f"one_to_one must be one of {ONE_TO_ONE_RULES}, "
                             f"got {self.one_to_one!r}")
        if self.empty_row not in ("keep", "one_hot"):
            raise ValueError(f"empty_row must be 'keep' or 'one_hot', got {self.empty_row!r}")


def official_rules(map_name: str) -> AlignRules:
    """The official code's rules for the ``--align_type`` matching ``map_name``."""
    from workbench.fusion.align.vocab import VOCAB_MAPS

    meta = VOCAB_MAPS.meta(map_name)
    return AlignRules(one_to_one=meta["one_to_one"], one_to_many=meta["one_to_many"])


@dataclass
class AlignedSample:
    topk_ids: np.ndarray  # L x K int64, pivot vocabulary, PAD_ID padded
    topk_logits: np.ndarray  # L x K float32, PAD_LOGIT padded
    align_kind: np.ndarray  # L int8
    source_rows: list[int | None]  # the source row used per pivot position (None: fallback)
    # over the source top-K entries of the rows used: [same text in the pivot vocab, mapped
    # through the vocab map, dropped (no mapping)]
    candidate_counts: np.ndarray | None = None
    # over the rows used: [rows, summed softmax mass of the top-K entries sent to the map's
    # no-candidate fallback token, rows whose top-1 entry went there]
    fallback: np.ndarray | None = None


def _tables(vmap: VocabMap) -> tuple[np.ndarray, np.ndarray]:
    cached = vmap.__dict__.get("_candidates")
    if cached is not None and cached[0] is vmap.source_to_pivot:
        return cached[1], cached[2]
    exact = np.fromiter((vmap.pivot.text_to_id.get(t, -1) for t in vmap.source.texts),
                        dtype=np.int64, count=len(vmap.source))
    table = np.where(exact >= 0, exact, vmap.source_to_pivot)
    vmap.__dict__["_candidates"] = (vmap.source_to_pivot, table, exact >= 0)
    return table, exact >= 0


def candidate_table(vmap: VocabMap) -> np.ndarray:
    """Per source id: exact-text pivot id, else the vocab map's id (-1: drop). Cached on the map."""
    return _tables(vmap)[0]


def decompose(target: bytes, pieces: list[bytes]) -> list[int]:
    """Greedy left-to-right cover of ``target`` by ``pieces`` (indices), [] when it fails."""
    picked = []
    for k, p in enumerate(pieces):
        if target.startswith(p):
            picked.append(k)
            target = target[len(p):]
    return picked if not target else []


def _suffix(a: bytes, b: bytes) -> bool:
    return a.endswith(b) or b.endswith(a)


def _one_to_many(pivot_s: bytes, group: list[int], source_s: list[bytes],
                 rules: AlignRules) -> tuple[int | None, bool]:
    """(source row, partial) for a 1->n group; row None = no match."""
    for j in group:
        s = source_s[j]
        if not rules.empty_suffix_matches and (not s or not pivot_s):
            continue
        if _suffix(pivot_s, s):
            return j, False
    pieces = [source_s[j] for j in group]
    picked = decompose(pivot_s, pieces)
    whole = b"".join(pieces)
    if picked or whole.endswith(pivot_s) or pivot_s.endswith(whole):
        if picked and b"".join(pieces[k] for k in picked) == pivot_s:
            return group[picked[-1]], False
        return None, True
    return None, False


def align_distributions(pivot_ids: list[int], source_ids: list[int],
                        source_topk_ids, source_topk_logits, groups: list[list[int]],
                        vmap: VocabMap, rules: AlignRules, candidates: np.ndarray | None = None,
                        k: int | None = None,
                        seq: tuple[TokenTexts, TokenTexts] | None = None) -> AlignedSample:
    """Align one sample's source top-K rows to the pivot positions (see the module doc).

    ``seq`` = (pivot, source) texts of the sequence checks; default: the map's texts."""
    piv: TokenTexts = vmap.pivot if seq is None else seq[0]
    src: TokenTexts = vmap.source if seq is None else seq[1]
    L = len(pivot_ids)
    if len(groups) != L:
        raise ValueError(f"groups: {len(groups)} entries for {L} pivot positions")
    cand = candidate_table(vmap) if candidates is None else candidates
    s_ids = np.asarray(source_topk_ids, dtype=np.int64).reshape(len(source_ids), -1)
    s_logits = np.asarray(source_topk_logits, dtype=np.float32).reshape(len(source_ids), -1)
    K = s_ids.shape[1] if k is None else k
    out_ids = np.full((L, K), PAD_ID, dtype=np.int64)
    out_logits = np.full((L, K), PAD_LOGIT, dtype=np.float32)
    kinds = np.full(L, FALLBACK, dtype=np.int8)
    rows: list[int | None] = [None] * L
    p_text = piv.of(pivot_ids)
    s_text = src.of(source_ids)
    p_bytes = [to_bytes(t) for t in p_text]
    s_bytes = [to_bytes(t) for t in s_text]
    if piv.mode == "normalized":  # the marker is the space: stripped for 1->n
        p_strip = [b.replace(b" ", b"") for b in p_bytes]
        s_strip = [b.replace(b" ", b"") for b in s_bytes]
    else:  # decoded texts: the official .replace(marker, "") finds no marker, spaces stay
        p_strip, s_strip = p_bytes, s_bytes
    mapped_all = exact_all = fb_all = None
    is_exact = (_tables(vmap)[1] if len(cand) == len(vmap.source)
                else np.zeros(len(cand), dtype=bool))
    fb_ids = vmap.no_candidate
    if s_ids.size:  # ids past the tokenizer (padded model vocabularies) have no text: dropped
        ok = (s_ids >= 0) & (s_ids < len(cand))
        safe = np.where(ok, s_ids, 0)
        mapped_all = np.where(ok, cand[safe], -1)
        exact_all = ok & is_exact[safe]
        fb_all = np.zeros_like(ok) if fb_ids is None else ok & ~exact_all & np.isin(safe, fb_ids)
    counts = np.zeros(3, dtype=np.int64)
    fallback = np.zeros(3, dtype=np.float64)
    nxt = list(pivot_ids[1:]) + ([pivot_ids[-1]] if L else [])
    for i, group in enumerate(groups):
        j, partial = None, False
        if len(group) == 1:
            g = group[0]
            if rules.one_to_one == "suffix":
                ok = _suffix(p_bytes[i], s_bytes[g])
            elif rules.one_to_one == "exact":
                ok = p_text[i] == s_text[g]
            else:
                ok = p_text[i] == s_text[g] or vmap[source_ids[g]] == pivot_ids[i]
            if ok:
                j, kind = g, ONE_TO_ONE
        elif len(group) > 1 and rules.one_to_many:
            j, partial = _one_to_many(p_strip[i], group, s_strip, rules)
            kind = ONE_TO_MANY
        if j is not None:
            valid = s_ids[j] != PAD_ID
            counts += [int((exact_all[j] & valid).sum()),
                       int((~exact_all[j] & (mapped_all[j] >= 0) & valid).sum()),
                       int(((mapped_all[j] < 0) & valid).sum())]
            x = np.where(valid & np.isfinite(s_logits[j]), s_logits[j].astype(np.float64), -np.inf)
            if np.isfinite(x).any():
                pr = np.exp(x - x.max())
                pr /= pr.sum()
                fallback += [1.0, float(pr[fb_all[j]].sum()), float(fb_all[j][int(np.argmax(x))])]
            seen: set[int] = set()
            col = 0
            for pid, logit in zip(mapped_all[j].tolist(), s_logits[j].tolist(), strict=True):
                if pid < 0 or pid in seen or col >= K:
                    continue
                seen.add(pid)
                out_ids[i, col] = pid
                out_logits[i, col] = logit
                col += 1
            if col:
                kinds[i] = kind
                rows[i] = j
                continue
            partial = True
        if partial and rules.empty_row == "keep":
            continue
        out_ids[i, 0] = nxt[i]
        out_logits[i, 0] = 1.0
    return AlignedSample(out_ids, out_logits, kinds, rows, counts, fallback)
