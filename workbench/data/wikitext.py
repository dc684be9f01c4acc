"""WikiText-2 (raw) for perplexity evaluation, laid out like HF's `wikitext-2-raw-v1`.

Rows follow the HF builder script: one row per line of `wiki.<split>.raw`, a non-blank line
keeps its trailing "\\n", a blank line becomes "". `wikitext2_text()` is the standard
pruning-paper evaluation string, `"\\n\\n".join(rows)`.

Sources: `wikitext2/wiki.{test,valid,train}.raw` via `path=` / `$WORKBENCH_DATA` /
`../shared/data`; for online users, the HF parquet
`Salesforce/wikitext/wikitext-2-raw-v1/<split>-00000-of-00001.parquet` (no pinned sha256: the
parquet is a different file from the raw text whose sha256 shared/data/README.md records, so
the download only logs a warning).

Caveat: the copy in `shared/data` has CRLF line endings and no blank lines, so it gives 2,891
rows, not the 4,358 of HF's test split (which includes 1,467 empty rows), and `wikitext2_text()`
on it is not byte-identical to the string the papers tokenize. Perplexities on it are close
to, but not exactly, the published ones. A warning is logged when such a copy is loaded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from datasets import Dataset, Features, Value

from workbench.data._resolve import resolve_file

log = logging.getLogger(__name__)

SPLITS = {"test": "test", "validation": "valid", "train": "train"}
HF_ROWS = {"test": 4358, "validation": 3760, "train": 36718}
PARQUET_URL = ("https://huggingface.co/datasets/Salesforce/wikitext/resolve/main/"
               "wikitext-2-raw-v1/{split}-00000-of-00001.parquet")
FEATURES = Features({"text": Value("string")})
_warned: set[str] = set()


def read_raw_lines(path: str | os.PathLike) -> list[str]:
    """Rows of a `wiki.*.raw` file, exactly as HF's wikitext builder yields them."""
    with open(path, encoding="utf-8", newline=None) as fh:  # universal newlines: CRLF -> LF
        return [line if line.strip() else "" for line in fh]


def _wikitext_file(split: str, path: str | os.PathLike | None) -> Path:
    if split not in SPLITS:
        raise ValueError(f"unknown WikiText-2 split {split!r}; expected one of {tuple(SPLITS)}")
    return resolve_file(f"wikitext2/wiki.{SPLITS[split]}.raw", path=path,
                        url=PARQUET_URL.format(split=split), sha256=None,
                        cache_relpath=f"wikitext2/{split}-00000-of-00001.parquet")


def load_wikitext2(split: str = "test", path: str | os.PathLike | None = None) -> Dataset:
    """WikiText-2 raw as a `Dataset` with one `text` column (one row per line)."""
    f = _wikitext_file(split, path)
    if f.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(f, columns=["text"]).column("text").to_pylist()
    else:
        rows = read_raw_lines(f)
        if rows and "" not in rows and str(f) not in _warned:
            _warned.add(str(f))
            log.warning("%s has no blank lines (%d rows; HF's %s split has %d): "
                        "wikitext2_text() will not be byte-identical to the standard "
                        "evaluation string", f, len(rows), split, HF_ROWS[split])
    log.info("wikitext-2 %s: %d rows from %s", split, len(rows), f)
    return Dataset.from_dict({"text": rows}, features=FEATURES)


def wikitext2_text(path: str | os.PathLike | None = None) -> str:
    """The test split joined as `"\\n\\n".join(rows)` (the standard pruning-eval string)."""
    return "\n\n".join(load_wikitext2("test", path=path)["text"])
