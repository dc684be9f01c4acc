"""Batched inference: texts -> char offsets, with sliding windows for long texts.

Long texts are NOT truncated: the tokenizer's overflow windows (`max_length`, `stride`) cover the
whole post and a character is toxic when any window marks a token covering it toxic.
Empty text (or whitespace only) gives an empty prediction `[]`. Characters UTF-8 cannot encode
(lone surrogates, e.g. from `surrogateescape` decoding) are read as U+FFFD, one character for one,
so the offsets still index the original text. A text that is not a `str` is a `TypeError` naming it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from workbench.spans.offsets import extend_to_words, tags_to_spans


def clean_texts(texts) -> list[str]:
    """`texts` as a list of encodable strings: one-line TypeError for a non-string (None, a number),
    each lone surrogate replaced by U+FFFD (same length, so char offsets are unchanged)."""
    if isinstance(texts, str):
        raise TypeError("predict expects a list of texts, not a single string")
    out = []
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"text {i} is {type(t).__name__} ({str(t)[:40]!r}), expected str")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            t = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in t)
        out.append(t)
    return out


def trim(text: str, a: int, b: int) -> tuple[int, int]:
    """A token's char range without surrounding whitespace (byte-level BPE tokens such as " idiot"
    carry their leading space; WordPiece ranges are unchanged)."""
    while a < b and text[a].isspace():
        a += 1
    while b > a and text[b - 1].isspace():
        b -= 1
    return a, b


def encode_windows(tokenizer, texts: Sequence[str], max_length: int, stride: int = 32):
    """Tokenize with overflow windows; returns the BatchEncoding (with `overflow_to_sample_mapping`)."""
    if max_length < 8:
        raise ValueError(f"max_length must be >= 8, got {max_length}")
    return tokenizer(list(texts), truncation=True, max_length=max_length, stride=min(stride, max_length // 4),
                     return_overflowing_tokens=True, return_offsets_mapping=True, padding=True,
                     padding_side="right", return_tensors="pt")  # right: the CRF mask must be a prefix


def predict_batch(tagger, tokenizer, texts: Sequence[str], max_length: int = 256, batch_size: int = 16,
                  extend_words: bool = False, return_probs: bool = False):
    """Predict char offsets for each text; with `return_probs` also per-token (start, end, prob) lists.

    Posts are batched in length order (less padding) and run under `torch.inference_mode`; the
    tagger is put in eval mode only when it is in training mode (no per-call module walk).
    """
    texts = clean_texts(texts)
    if tagger.training:
        tagger.eval()
    device = next(tagger.parameters()).device
    spans: list[set[int]] = [set() for _ in texts]
    probs: list[list[tuple[int, int, float]]] = [[] for _ in texts]
    idx = sorted((i for i, t in enumerate(texts) if t.strip()), key=lambda i: len(texts[i]))
    with torch.inference_mode():
        for s in range(0, len(idx), batch_size):
            chunk = idx[s:s + batch_size]
            enc = encode_windows(tokenizer, [texts[i] for i in chunk], max_length)
            paths, p = tagger.predict_tags(enc["input_ids"].to(device), enc["attention_mask"].to(device))
            oms = enc["offset_mapping"].tolist()
            p = p.tolist() if return_probs else None
            for w, sample in enumerate(enc["overflow_to_sample_mapping"].tolist()):
                i, path = chunk[sample], paths[w]
                om = [trim(texts[i], a, b) for a, b in oms[w][:len(path)]]
                spans[i].update(tags_to_spans(texts[i], path, om))
                if return_probs:
                    probs[i].extend((a, b, p[w][k]) for k, (a, b) in enumerate(om) if a < b)
    out = [sorted(x) for x in spans]
    if extend_words:
        out = [extend_to_words(t, o) for t, o in zip(texts, out, strict=True)]
    return (out, probs) if return_probs else out
