"""Token strings -> comparable text (papers.md §1.a step 2.1: "edit distance after stripping the
word-boundary marker").

The official code compares the raw vocabulary strings after ``.replace(marker, "")`` with one
marker per tokenizer class (``▁`` for SentencePiece, ``Ġ`` for byte-level BPE) plus six hand-made
replacements (``âĢĻ`` -> ``’``, ``Ċ`` -> ``<0x0A>``, ...). We generalise this to a canonical text per
token, measured on the real offline tokenizers (SmolLM2 and Qwen2.5 are byte-level BPE, Gemma-3 is
SentencePiece with byte fallback):

- byte-level BPE (``Ġworld``, ``ĊĠĠĠ``, ``ĠðŁĺ`` + ``Ģ`` for one emoji): undo the GPT-2
  byte-to-unicode table to get the token's bytes;
- SentencePiece (``▁world``, ``▁▁``, literal ``\\n``/``\\t``, byte fallback ``<0xF0>``): ``▁`` is a
  space, ``<0xNN>`` is the byte NN;
- added/special tokens (``<|im_start|>``, ``<bos>``) are their literal content;
- anything else (WordPiece, char vocabularies) is kept as is.

The bytes are decoded as UTF-8 with ``surrogateescape``: complete characters become text
(``" café"``, ``" 😀"``), an incomplete UTF-8 piece becomes one lone surrogate per byte
(``"\\udcf0\\udc9f\\udc98"``), so the map is injective and ``text.encode("utf-8",
"surrogateescape")`` gives the exact bytes back (suffix and concatenation checks use those bytes,
so a byte-split emoji on one side still lines up with the whole emoji on the other).

The word-boundary marker is the space: ``strip`` removes every space (the official
``.replace(marker, "")`` removes every marker, not only a leading one).

Edit distances (DTW cost, ``mined``, ``ms``) are taken on the *bytes* by default (``unit="byte"``:
the canonical text's UTF-8 bytes as a latin-1 string, one character per byte, identical to the
text for ASCII): a byte-level token holding two of the three bytes of ``你`` is then at distance 1
from ``你``, where a character-level distance would see no overlap at all. The official code
compares the raw vocabulary strings (byte-level for GPT-2 style, characters for SentencePiece);
``unit="char"`` compares canonical texts character by character.

Text modes (:data:`TEXT_MODES`, ``token_texts(tokenizer, mode)``): ``"normalized"`` is the
canonical text above; the two others reproduce the official script's strings exactly:

- ``"decode"``: ``tokenizer.decode([id])`` per id, as the newest official
  ``align_token_and_vocab.py`` feeds its DTW and its 1->1 / 1->n checks (spaces kept, nothing
  stripped; a byte-fallback or byte-level piece of a split character decodes to ``"\ufffd"``).
- ``"raw"``: the vocabulary string (``convert_ids_to_tokens``) with the tokenizer's marker from
  the official per-class table (:func:`official_marker`) turned into a space, so that "source
  string with its marker replaced by the pivot's marker" == pivot string (the official exact
  match) becomes equality of our texts, and "marker removed" becomes "spaces removed". The table
  gives ``GemmaTokenizer`` ``Ġ`` although Gemma's SentencePiece vocabulary uses ``▁`` (an official
  bug kept on purpose: Gemma's ``▁world`` then never matches a byte-level ``Ġworld``); classes
  missing from the table (the official code raises ``KeyError``) get their kind's marker.

Both official modes compare their strings character by character (``byte_texts`` is ``texts``),
as ``editdistance.eval`` does: ``unit`` only applies to ``"normalized"`` texts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

__all__ = ["TEXT_MODES", "UNITS", "TokenTexts", "byte_text", "official_marker", "bytes_to_unicode", "display_text", "normalize_token", "strip_marker",
           "to_bytes", "token_texts", "tokenizer_kind"]

SP_MARKER = "\u2581"  # ▁
UNITS = ("byte", "char")
TEXT_MODES = ("normalized", "decode", "raw")
# the official script's TOKENIZER_TO_SPECIAL_TOKEN, by class name (it looks up the exact class)
OFFICIAL_MARKERS = {"LlamaTokenizer": SP_MARKER, "PreTrainedTokenizerFast": "Ġ",
                    "TokenizersBackend": "Ġ",  # = PreTrainedTokenizerFast in transformers 5
                    "GPTNeoXTokenizerFast": "Ġ", "CodeGenTokenizer": "Ġ", "GPT2Tokenizer": "Ġ",
                    "GemmaTokenizer": "Ġ",  # official bug: Gemma's vocabulary uses ▁
                    "Qwen2Tokenizer": "Ġ"}
_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable unicode table (byte-level BPE vocabularies)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


@lru_cache(maxsize=1)
def _unicode_to_bytes() -> dict[str, int]:
    return {c: b for b, c in bytes_to_unicode().items()}


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def byte_text(text: str) -> str:
    """The canonical text's bytes as a latin-1 string (one character per byte)."""
    return text.encode("utf-8", "surrogateescape").decode("latin-1")


def to_bytes(text: str) -> bytes:
    """The exact bytes of a canonical token text (inverse of the surrogateescape decoding)."""
    return text.encode("utf-8", "surrogateescape")


_SURROGATE = re.compile("[\udc80-\udcff]")
_VISIBLE = {" ": "␣", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def display_text(text: str, visible_whitespace: bool = False) -> str:
    """A printable form of a canonical text: incomplete UTF-8 bytes as ``<0xNN>`` (they are lone
    surrogates, which JSON, Arrow and browsers reject); optionally ``␣``, ``\\n``, ``\\t``."""
    out = _SURROGATE.sub(lambda m: f"<0x{ord(m.group()) - 0xDC00:02X}>", text)
    if visible_whitespace:
        out = "".join(_VISIBLE.get(c, c) for c in out)
    return out


def strip_marker(text: str) -> str:
    """Remove the word-boundary marker (every space), like the official ``.replace(marker, "")``."""
    return text.replace(" ", "")


def normalize_token(token: str, kind: str) -> str:
    """Canonical text of one vocabulary string for a tokenizer of ``kind``.

    ``kind`` is ``"byte_level"``, ``"sentencepiece"`` or ``"plain"`` (see :func:`tokenizer_kind`).
    A byte-level string with a character outside the GPT-2 table (an added token written
    literally) is kept as is.
    """
    if kind == "byte_level":
        table = _unicode_to_bytes()
        try:
            return _decode(bytes(table[c] for c in token))
        except KeyError:
            return token
    if kind == "sentencepiece":
        m = _BYTE_FALLBACK.match(token)
        if m:
            return _decode(bytes([int(m.group(1), 16)]))
        return token.replace(SP_MARKER, " ")
    if kind == "plain":
        return token
    raise ValueError(f"kind must be byte_level, sentencepiece or plain, got {kind!r}")


def official_marker(tokenizer: Any) -> str:
    """The word-boundary marker the official script assigns to ``tokenizer``'s class (its table;
    ``GemmaTokenizer`` -> ``Ġ`` included); a class missing from the table gets its kind's marker."""
    name = type(tokenizer).__name__
    if name in OFFICIAL_MARKERS:
        return OFFICIAL_MARKERS[name]
    return {"byte_level": "Ġ", "sentencepiece": SP_MARKER}.get(tokenizer_kind(tokenizer), "")


def _backend_json(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return ""
    return f"{backend.pre_tokenizer!r} {backend.decoder!r}"


def tokenizer_kind(tokenizer: Any) -> str:
    """``"byte_level"`` | ``"sentencepiece"`` | ``"plain"``, read from the tokenizer's decoder.

    Falls back to looking at the vocabulary (``Ġ`` or ``▁`` prefixed entries) for slow tokenizers.
    """
    desc = _backend_json(tokenizer)
    if "ByteLevel" in desc:
        return "byte_level"
    if SP_MARKER in desc or "Metaspace" in desc or "ByteFallback" in desc:
        return "sentencepiece"
    vocab = tokenizer.get_vocab()
    sample = list(vocab)[:5000]
    g = sum(t.startswith("Ġ") for t in sample)
    s = sum(t.startswith(SP_MARKER) for t in sample)
    if max(g, s) == 0:
        return "plain"
    return "byte_level" if g > s else "sentencepiece"


@dataclass(frozen=True, eq=False)
class TokenTexts:
    """Canonical texts of a whole vocabulary (index = token id).

    ``texts[i]`` is the canonical text, ``stripped[i]`` the text without markers,
    ``byte_texts[i]`` the text's bytes as a latin-1 string (for byte-unit edit distances; the
    official modes ``decode`` and ``raw`` compare characters, so there it is ``texts``); ``text_to_id`` maps a canonical text to the preferred id (a regular
    token over a byte-fallback one over a special one, then the lowest id). ``special`` holds the
    ids of control tokens (BOS, EOS, ``<|im_start|>``...). Built once per tokenizer (:func:`token_texts` caches it).
    """

    name: str
    kind: str
    texts: list[str]
    stripped: list[str]
    byte_texts: list[str]
    special: frozenset[int]
    text_to_id: dict[str, int] = field(repr=False)
    bos_id: int | None = None
    eos_id: int | None = None
    unk_id: int | None = None
    mode: str = "normalized"  # see TEXT_MODES: which strings ``texts`` holds

    def __len__(self) -> int:
        return len(self.texts)

    def of(self, ids, unit: str = "char") -> list[str]:
        """Canonical texts (``unit="byte"``: byte texts) of a sequence of ids (unknown -> "")."""
        t = self.unit_texts(unit)
        n = len(t)
        return [t[i] if 0 <= i < n else "" for i in ids]

    def unit_texts(self, unit: str) -> list[str]:
        if unit not in UNITS:
            raise ValueError(f"unit must be one of {UNITS}, got {unit!r}")
        return self.byte_texts if unit == "byte" else self.texts

    def stripped_of(self, ids) -> list[str]:
        t, n = self.stripped, len(self.stripped)
        return [t[i] if 0 <= i < n else "" for i in ids]

    def lookup(self, text: str) -> int | None:
        return self.text_to_id.get(text)

    @classmethod
    def from_tokens(cls, tokens: list[str], kind: str = "plain", special=(), literal=(),
                    name: str = "", bos_id: int | None = None, eos_id: int | None = None,
                    unk_id: int | None = None) -> TokenTexts:
        """From raw vocabulary strings (index = id). ``special`` (control tokens such as BOS) and
        ``literal`` (other added tokens, e.g. Gemma's ``"\\n"``) are kept as written; special
        ids come last when several ids share a text."""
        special = frozenset(int(i) for i in special)
        keep = special | {int(i) for i in literal}
        n = len(tokens)
        texts = [tokens[i] if i in keep else normalize_token(tokens[i], kind) for i in range(n)]
        fallback = [i for i in range(n) if kind == "sentencepiece" and i not in keep
                    and _BYTE_FALLBACK.match(tokens[i])]
        text_to_id: dict[str, int] = {}
        regular = sorted(set(range(n)) - special - set(fallback))
        for group in (regular, fallback, sorted(special)):
            for i in group:
                if tokens[i]:
                    text_to_id.setdefault(texts[i], i)
        return cls(name=name, kind=kind, texts=texts, stripped=[strip_marker(t) for t in texts],
                   byte_texts=[byte_text(t) for t in texts], special=special,
                   text_to_id=text_to_id, bos_id=bos_id, eos_id=eos_id, unk_id=unk_id)


    @classmethod
    def from_strings(cls, strings: list[str], mode: str, special=(), name: str = "",
                     bos_id: int | None = None, eos_id: int | None = None,
                     unk_id: int | None = None) -> TokenTexts:
        """From the official strings of ``mode`` (``decode`` or ``raw``, index = id), compared
        as written: ``stripped`` removes spaces, ``byte_texts`` is ``texts`` (characters);
        ``text_to_id`` prefers the lowest regular id, then special ids."""
        if mode not in ("decode", "raw"):
            raise ValueError(f"from_strings: mode must be decode or raw, got {mode!r}")
        special = frozenset(int(i) for i in special)
        text_to_id: dict[str, int] = {}
        n = len(strings)
        for group in (sorted(set(range(n)) - special), sorted(special)):
            for i in group:
                if strings[i]:
                    text_to_id.setdefault(strings[i], i)
        return cls(name=name, kind=mode, texts=list(strings),
                   stripped=[strip_marker(t) for t in strings], byte_texts=list(strings),
                   special=special, text_to_id=text_to_id, bos_id=bos_id, eos_id=eos_id,
                   unk_id=unk_id, mode=mode)


_CACHE: dict[tuple, TokenTexts] = {}
# id(tokenizer) -> (tokenizer, len(tokenizer), vocabulary size): get_vocab() builds a dict of the
# whole vocabulary (~0.1 s for Gemma's 262k entries) and token_texts runs per alignment call
_SIZES: dict[int, tuple[Any, int, int]] = {}


def _vocab_size(tokenizer: Any) -> int:
    hit = _SIZES.get(id(tokenizer))
    if hit is not None and hit[0] is tokenizer and hit[1] == len(tokenizer):
        return hit[2]
    vocab = tokenizer.get_vocab()
    n = max(len(tokenizer), max(vocab.values()) + 1 if vocab else 0)
    _SIZES[id(tokenizer)] = (tokenizer, len(tokenizer), n)
    return n


def token_texts(tokenizer: Any, mode: str = "normalized") -> TokenTexts:
    """The :class:`TokenTexts` of ``tokenizer`` in text ``mode`` (:data:`TEXT_MODES`; cached per
    name, class, vocabulary size and mode)."""
    if mode not in TEXT_MODES:
        raise ValueError(f"text mode must be one of {', '.join(TEXT_MODES)}, got {mode!r}")
    n = _vocab_size(tokenizer)
    key = (getattr(tokenizer, "name_or_path", ""), type(tokenizer).__name__, n, mode)
    if key in _CACHE:
        return _CACHE[key]
    raw = [""] * n
    for tok, i in tokenizer.get_vocab().items():
        raw[i] = tok
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    special = {int(i) for i, t in added.items() if getattr(t, "special", True)}
    special |= {int(i) for i in (tokenizer.all_special_ids or [])}
    ids = dict(name=str(key[0]), bos_id=tokenizer.bos_token_id, eos_id=tokenizer.eos_token_id,
               unk_id=tokenizer.unk_token_id)
    if mode == "normalized":
        out = TokenTexts.from_tokens(raw, tokenizer_kind(tokenizer), special=special,
                                     literal=[int(i) for i in added], **ids)
    elif mode == "raw":
        marker = official_marker(tokenizer)
        keep = special | {int(i) for i in added}
        strings = [t if (i in keep or not marker) else t.replace(marker, " ")
                   for i, t in enumerate(raw)]
        out = TokenTexts.from_strings(strings, "raw", special=special, **ids)
    else:
        size = len(tokenizer)  # ids past the tokenizer (padded vocabularies) decode to ""
        strings = tokenizer.batch_decode([[i] for i in range(min(n, size))])
        strings += [""] * (n - len(strings))
        out = TokenTexts.from_strings(strings, "decode", special=special, **ids)
    _CACHE[key] = out
    return out
