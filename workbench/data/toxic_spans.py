"""SemEval-2021 Task 5 (Toxic Spans Detection): `tsd_{train,trial,test}.csv`.

Each CSV has columns `spans` (a Python list literal of character offsets into `text`) and
`text`. Train (7,939 posts) and trial (690, used as dev) live in `shared/data/toxic_spans/`;
the test split (2,000 posts) is read from `path=`, `$WORKBENCH_DATA`, or downloaded for online
users without a pinned sha256 (a warning is logged).

Validation is strict: a malformed `spans` cell, a missing column, a non-integer offset, or an
offset outside `[0, len(text))` raises `ValueError` naming the file and the row, where the row
is the 1-based line number (header = line 1) on which the record starts. The real train and
trial files contain no out-of-range offsets, so nothing is clipped. A file that is not UTF-8 is a
`ValueError` naming the file and the row of the first bad byte. Blank lines are skipped (a warning
says which rows). Cells of any length are read (the csv module's 131,072-character default field
limit is lifted while reading).
"""

from __future__ import annotations

import ast
import csv
import io
import logging
import os
import sys
from pathlib import Path

from datasets import Dataset, Features, List, Value

from workbench.data._resolve import resolve_file

log = logging.getLogger(__name__)

SPLITS = ("train", "trial", "test")
UPSTREAM = ("https://raw.githubusercontent.com/ipavlopoulos/toxic_spans/master/"
            "SemEval2021/data/tsd_{split}.csv")
SHA256 = {
    "train": "b538ea2d64ed7c306ff8f010a25a5286bef6ce61d469042482ba64efc1ddd6cd",
    "trial": "6bb8e9a16470c0269ac8727fd8bb77df68d8fb27955d9f5ff29ad724505622e8",
    "test": None,  # not pinned in shared/data/README.md
}
FEATURES = Features({"text": Value("string"), "spans": List(Value("int64")),
                     "post_id": Value("int64")})


def _parse_spans(cell: str, text: str, where: str) -> list[int]:
    try:
        spans = ast.literal_eval(cell)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise ValueError(f"{where}: malformed spans cell {cell!r}: {exc}") from None
    if not isinstance(spans, (list, tuple)):
        raise ValueError(f"{where}: spans cell {cell!r} is not a list")
    bad = [s for s in spans if not isinstance(s, int) or isinstance(s, bool)]
    if bad:
        raise ValueError(f"{where}: non-integer span offsets {bad[:5]!r}")
    out = sorted(set(spans))
    if out and (out[0] < 0 or out[-1] >= len(text)):
        oob = [s for s in out if s < 0 or s >= len(text)]
        raise ValueError(f"{where}: {len(oob)} span offsets outside the text "
                         f"(len {len(text)}): {oob[:5]!r}")
    return out


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        row = data[:exc.start].count(b"\n") + 1
        raise ValueError(f"{path.name} row {row}: not UTF-8 (byte 0x{data[exc.start]:02x} at offset "
                         f"{exc.start}); re-save the file as UTF-8") from None


def read_toxic_spans_csv(path: str | os.PathLike) -> dict[str, list]:
    """Parse and validate one `tsd_*.csv` into column lists (`text`, `spans`, `post_id`)."""
    path = Path(path)
    cols: dict[str, list] = {"text": [], "spans": [], "post_id": []}
    blank: list[int] = []
    old_limit = csv.field_size_limit()
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # long posts: no 131,072-character cap
    try:
        reader = csv.reader(io.StringIO(_decode(path), newline=""))
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path.name} row 1: empty file, expected a header 'spans,text'")
        header = [h.strip().lstrip("\ufeff") for h in header]
        missing = [c for c in ("spans", "text") if c not in header]
        if missing:
            raise ValueError(f"{path.name} row 1: missing column(s) {missing} in header {header}")
        i_spans, i_text = header.index("spans"), header.index("text")
        start = reader.line_num + 1
        for rec in reader:
            where = f"{path.name} row {start}"
            if not rec or (len(rec) == 1 and not rec[0].strip() and len(header) > 1):
                blank.append(start)
                start = reader.line_num + 1
                continue
            if len(rec) != len(header):
                raise ValueError(f"{where}: expected {len(header)} columns {header}, got {len(rec)}")
            text = rec[i_text]
            cols["spans"].append(_parse_spans(rec[i_spans], text, where))
            cols["text"].append(text)
            cols["post_id"].append(len(cols["post_id"]))
            start = reader.line_num + 1
    finally:
        csv.field_size_limit(old_limit)
    if blank:
        log.warning("%s: skipped %d blank line(s) (rows %s)", path.name, len(blank),
                    ", ".join(map(str, blank[:10])) + (" ..." if len(blank) > 10 else ""))
    return cols


def load_toxic_spans(split: str = "train", path: str | os.PathLike | None = None) -> Dataset:
    """Load a split as a `Dataset` with `text`, `spans` (sorted unique offsets), `post_id`.

    `post_id` is the 0-based row index in the file. The test split is not in shared/data:
    pass `path=`, set `$WORKBENCH_DATA`, or allow a download.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown toxic-spans split {split!r}; expected one of {SPLITS}")
    f = resolve_file(f"toxic_spans/tsd_{split}.csv", path=path,
                     url=UPSTREAM.format(split=split), sha256=SHA256[split])
    cols = read_toxic_spans_csv(f)
    n_empty = sum(1 for s in cols["spans"] if not s)
    log.info("toxic spans %s: %d posts (%d with no span) from %s",
             split, len(cols["text"]), n_empty, f)
    return Dataset.from_dict(cols, features=FEATURES)
