"""Char offsets <-> token tags for any fast tokenizer (offset_mapping), IO and BIO schemes.

Tags: IO uses {0: O, 1: I}; BIO uses {0: O, 1: B, 2: I}. Special tokens and padding get -100
(ignored by the loss). A token is toxic when any of its characters is a gold offset.
`word_level=True` labels every token of a word (whitespace-delimited) toxic when any char of the
word is toxic (the released code's word-level labels copied to sub-word pieces).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence

IGNORE = -100


def check_spans(text: str, spans: Iterable[int]) -> list[int]:
    """Sorted unique offsets; raises ValueError for offsets outside the text."""
    s = sorted(set(int(o) for o in spans))
    bad = [o for o in s if o < 0 or o >= len(text)]
    if bad:
        raise ValueError(f"span offsets outside text of length {len(text)}: {bad[:5]}")
    return s


def is_word_space(ch: str) -> bool:
    """Whitespace as BERT-style pre-tokenizers define it: space, tab, newline, carriage return and
    Unicode space separators (Zs). Python's `str.isspace` also counts control characters such as
    \\x1c-\\x1f and \\x0b, which tokenizers delete instead of splitting on, so a token could
    straddle two "words" and decoding would leak past the word boundary."""
    return ch in " \t\n\r" or unicodedata.category(ch) == "Zs"


def word_bounds(text: str) -> list[tuple[int, int]]:
    """(start, end) of whitespace-delimited words (whitespace per `is_word_space`)."""
    out, start = [], None
    for i, ch in enumerate(text):
        if is_word_space(ch):
            if start is not None:
                out.append((start, i))
                start = None
        elif start is None:
            start = i
    if start is not None:
        out.append((start, len(text)))
    return out


def extend_to_words(text: str, offsets: Iterable[int]) -> list[int]:
    """Grow a set of offsets to cover every word it touches."""
    s = set(offsets)
    out = set(s)
    for a, b in word_bounds(text):
        if any(i in s for i in range(a, b)):
            out.update(range(a, b))
    return sorted(out)


def spans_to_tags(text: str, spans: Iterable[int], offset_mapping: Sequence[tuple[int, int]],
                  scheme: str = "io", word_level: bool = False,
                  special_mask: Sequence[int] | None = None) -> list[int]:
    """Token tags from char offsets. `offset_mapping` from a fast tokenizer (return_offsets_mapping)."""
    if scheme not in ("io", "bio"):
        raise ValueError(f"scheme must be 'io' or 'bio', got {scheme!r}")
    gold = set(check_spans(text, spans))
    if word_level:
        gold = set(extend_to_words(text, gold))
    tags, prev_toxic, prev_end = [], False, None
    for k, (a, b) in enumerate(offset_mapping):
        special = (special_mask is not None and special_mask[k]) or a == b
        if special:
            tags.append(IGNORE)
            prev_toxic = False
            continue
        toxic = any(i in gold for i in range(a, b))
        if not toxic:
            tags.append(0)
        elif scheme == "io":
            tags.append(1)
        else:
            # continuation when previous token toxic and the gap between them is all toxic/space-free
            contiguous = prev_toxic and prev_end is not None and all(
                i in gold for i in range(prev_end, a))
            tags.append(2 if contiguous else 1)
        prev_toxic, prev_end = toxic, b
    return tags


def tags_to_spans(text: str, tags: Sequence[int], offset_mapping: Sequence[tuple[int, int]],
                  extend_words: bool = False, fill_gaps: bool = True) -> list[int]:
    """Char offsets from token tags (any tag > 0 is toxic): union of token char ranges.

    `fill_gaps` also marks the characters between two consecutive toxic tokens when the second one
    is a continuation in BIO (tag 2) or when IO tokens are adjacent within a word; `extend_words`
    grows the result to whole words.
    """
    out: set[int] = set()
    prev_end = None
    for t, (a, b) in zip(tags, offset_mapping, strict=False):
        if a == b or t is None or t <= 0:
            prev_end = None
            continue
        out.update(range(a, b))
        if fill_gaps and prev_end is not None and t == 2:
            out.update(range(prev_end, a))
        prev_end = b
    res = sorted(o for o in out if 0 <= o < len(text))
    return extend_to_words(text, res) if extend_words else res
