"""FuseChat chat data: load dialogues, render them once with the pivot's chat template, cut them to
fit every tokenizer, and mark assistant tokens by character spans (papers.md §1.a step 1).

The representation step (`workbench.fusion.represent`) scores these dialogues with every model.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from workbench.common.io import read_json, write_json

log = logging.getLogger(__name__)

PRECUT_CHARS_PER_TOKEN = 64  # text beyond max_length * this is never needed (only shortens)


# ------------------------------------------------------------------------------------------
# data
# ------------------------------------------------------------------------------------------
def load_chat_rows(data: str, limit: int) -> list[dict[str, Any]]:
    """Rows `{id, messages}`: `sharegpt` (offline package) or a .json/.jsonl file.

    A file holds `{id, messages: [{role, content}]}` rows or ShareGPT `{id, conversations}` rows.
    `limit` bounds how many rows are read (callers over-read, dropping unusable dialogues later).
    """
    if data == "sharegpt":
        from workbench.data import load_sharegpt

        ds = load_sharegpt(limit=limit)
        return [{"id": i, "messages": m} for i, m in zip(ds["id"], ds["messages"], strict=True)]
    path = Path(data).expanduser()
    if not path.is_file():
        raise ValueError(f"data {data!r} is neither 'sharegpt' nor an existing .json/.jsonl file")
    from collections import Counter

    from workbench.data.sharegpt import to_messages

    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        raw = [json.loads(line) for line in text.splitlines() if line.strip()]
    else:
        raw = json.loads(text)
        if not isinstance(raw, list):
            raise ValueError(f"data file {path}: expected a JSON list of dialogues")
    rows = []
    for i, r in enumerate(raw[:limit]):
        if "messages" in r:
            msgs = [{"role": str(m["role"]), "content": str(m["content"])} for m in r["messages"]]
        elif "conversations" in r:
            msgs = to_messages(r["conversations"], Counter())
        else:
            raise ValueError(f"data file {path}: row {i} has neither 'messages' nor 'conversations'")
        rows.append({"id": str(r.get("id", i)), "messages": msgs})
    return rows


# ------------------------------------------------------------------------------------------
# rendering with the pivot's template, assistant character spans
# ------------------------------------------------------------------------------------------
def resolve_chat_template(tokenizer: Any, override: str | None = None, name: str = "pivot") -> str:
    """The pivot's chat template, or `override` (jinja text or a path to a .jinja file)."""
    if override:
        p = Path(override).expanduser()
        if len(override) < 4096 and "{" not in override and p.is_file():
            return p.read_text(encoding="utf-8")
        if "{" not in override:
            raise ValueError(f"chat_template {override!r} is neither jinja text nor an existing file")
        return override
    tmpl = getattr(tokenizer, "chat_template", None)
    if not tmpl:
        raise ValueError(
            f"{name} tokenizer has no chat template: pass chat_template= (jinja text or a .jinja "
            "file), or pick a chat model as pivot")
    return tmpl


def render_dialogue(messages: Sequence[dict[str, str]], tokenizer: Any, chat_template: str
                    ) -> tuple[str, list[tuple[int, int]]]:
    """Render with the template; return the text and the assistant turns' character spans.

    An assistant span runs from the end of the rendered prefix with the generation prompt (the
    assistant header) to the end of the prefix that includes the turn (so it covers the content and
    the template's end-of-turn text, which the model must learn to emit).
    """
    def render(msgs, gen=False):
        return tokenizer.apply_chat_template(list(msgs), chat_template=chat_template, tokenize=False,
                                             add_generation_prompt=gen)

    full = render(messages)
    spans: list[tuple[int, int]] = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        if i == 0:
            raise ValueError("dialogue starts with an assistant turn: there is no header to mask "
                             "before it; drop it first (drop_leading_assistant)")
        head = render(messages[:i], gen=True)
        upto = render(messages[: i + 1])
        if not (full.startswith(upto) and upto.startswith(head)):
            raise ValueError("chat template is not prefix-stable (rendering a prefix of the "
                             "dialogue does not give a prefix of the text): assistant spans cannot "
                             "be located; pass a simpler chat_template")
        if len(upto) > len(head):
            spans.append((len(head), len(upto)))
    return full, spans


def _encode(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids and character offsets; BOS added unless the rendered text already starts with it."""
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError(f"{type(tokenizer).__name__} is not a fast tokenizer: offsets are needed "
                         "to mask user turns")
    bos = getattr(tokenizer, "bos_token", None)
    add = not (bos and text.startswith(bos))
    enc = tokenizer(text, add_special_tokens=add, return_offsets_mapping=True)
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def assistant_labels(input_ids: Sequence[int], offsets: Sequence[tuple[int, int]],
                     spans: Sequence[tuple[int, int]]) -> list[int]:
    """`input_ids` with every token outside the assistant spans set to -100 (overlap rule).

    Zero-width tokens (special tokens the tokenizer adds, such as BOS) are never assistant tokens.
    """
    out = []
    for tid, (s, e) in zip(input_ids, offsets, strict=True):
        hit = e > s and any(s < b and e > a for a, b in spans)
        out.append(int(tid) if hit else -100)
    return out


def drop_leading_assistant(messages: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """Drop assistant turns before the first user turn (system turns kept), as FastChat's
    preprocessing in the official code does ("skip the first one if it is not from human")."""
    msgs = list(messages)
    n = 0
    while n < len(msgs) and msgs[n]["role"] == "system":
        n += 1
    i = n
    while i < len(msgs) and msgs[i]["role"] == "assistant":
        i += 1
    return msgs[:n] + msgs[i:]


@dataclass(frozen=True)
class Dialogue:
    """One dialogue as every model sees it: the same text and assistant character spans."""

    id: str
    text: str
    spans: tuple[tuple[int, int], ...]


def prepare_dialogues(rows: Sequence[dict[str, Any]], pivot_tokenizer: Any,
                      tokenizers: Sequence[Any], *, max_length: int, limit: int | None = None,
                      chat_template: str | None = None) -> list[Dialogue]:
    """Render rows with the pivot's template; cut each text so EVERY tokenizer fits `max_length`.

    Dialogues with no assistant text left after the cut (or none at all) are dropped; at most
    `limit` dialogues are returned, in data order.
    """
    tmpl = resolve_chat_template(pivot_tokenizer, chat_template)
    out: list[Dialogue] = []
    seen: set[str] = set()
    for r in rows:
        if limit is not None and len(out) >= limit:
            break
        if str(r["id"]) in seen:
            raise ValueError(f"data has the id {r['id']!r} twice: ids must be unique")
        seen.add(str(r["id"]))
        msgs = drop_leading_assistant(r["messages"])
        if not any(m["role"] == "assistant" and m["content"].strip() for m in msgs):
            continue
        text, spans = render_dialogue(msgs, pivot_tokenizer, tmpl)
        text = text[: max_length * PRECUT_CHARS_PER_TOKEN]
        for _ in range(8):  # shrink the cut until every tokenizer fits
            cut = len(text)
            for tok in tokenizers:
                ids, offs = _encode(tok, text)
                if len(ids) > max_length:
                    cut = min(cut, offs[max_length - 1][1])
            if cut == len(text):
                break
            text = text[:cut]
        else:
            raise ValueError(f"dialogue {r['id']!r}: could not cut it to {max_length} tokens")
        spans = [(a, min(b, len(text))) for a, b in spans if a < len(text)]
        spans = [(a, b) for a, b in spans if text[a:b].strip()]
        if not spans:
            continue
        out.append(Dialogue(str(r["id"]), text, tuple(spans)))
    return out


def dialogues_fingerprint(dialogues: Sequence[Dialogue]) -> str:
    h = hashlib.sha256()
    for d in dialogues:
        h.update(json.dumps(asdict(d), ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def save_dialogues(path: Path, dialogues: Sequence[Dialogue]) -> Path:
    return write_json(path, [asdict(d) for d in dialogues])


def load_dialogues(path: Path) -> list[Dialogue]:
    return [Dialogue(d["id"], d["text"], tuple(tuple(s) for s in d["spans"]))
            for d in read_json(path)]


def tokenize_dialogue(dialogue: Dialogue, tokenizer: Any, max_length: int
                      ) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one dialogue under one tokenizer."""
    ids, offs = _encode(tokenizer, dialogue.text)
    ids, offs = ids[:max_length], offs[:max_length]
    return ids, assistant_labels(ids, offs, dialogue.spans)


# ------------------------------------------------------------------------------------------
# held-out / development splits and the extra dialogues of the ms counts
# ------------------------------------------------------------------------------------------
def heldout_row_limit(data_size: int, eval_size: int, dev_size: int = 0) -> int:
    """Rows of the data the held-out and development splits may read (over-read 4x + 64)."""
    return 4 * (data_size + eval_size + dev_size) + 64


def split_dialogues(cfg: Any, exclude_ids: set[str], tokenizers: Sequence[Any], dev_size: int
                    ) -> tuple[list[Dialogue], list[Dialogue]]:
    """(held-out, development) dialogues: the first ``cfg.eval_size`` non-training dialogues of
    ``cfg.data`` (the reported held-out set, as the evaluation stage takes them) and the
    ``dev_size`` after them (for choosing steps / learning rate without touching the held-out
    set), rendered with the pivot's template and cut so every tokenizer fits."""
    limit = heldout_row_limit(cfg.data_size, cfg.eval_size, dev_size)
    rows = [r for r in load_chat_rows(cfg.data, limit) if str(r["id"]) not in exclude_ids]
    out = prepare_dialogues(rows, tokenizers[0], tokenizers, max_length=cfg.max_length,
                            limit=cfg.eval_size + dev_size, chat_template=cfg.chat_template)
    return out[:cfg.eval_size], out[cfg.eval_size:]


def count_offset(cfg: Any) -> int:
    """First data row of the extra ``ms`` count dialogues: past every row the training,
    held-out and development splits read (development up to ``data_size + eval_size``)."""
    return heldout_row_limit(cfg.data_size, cfg.eval_size, cfg.data_size + cfg.eval_size)


def extra_count_dialogues(cfg: Any, tokenizers: Sequence[Any]) -> list[Dialogue]:
    """``cfg.ms_count_dialogues - cfg.data_size`` more dialogues (none when that is <= 0) for the
    ``ms`` co-occurrence counts: text only (each tokenizer's ids; no model runs on them), read
    from row :func:`count_offset` on, so none is a held-out or development dialogue."""
    n = cfg.ms_count_dialogues - cfg.data_size
    if n <= 0:
        return []
    start = count_offset(cfg)
    rows = load_chat_rows(cfg.data, start + 4 * n + 64)[start:]
    out = prepare_dialogues(rows, tokenizers[0], tokenizers, max_length=cfg.max_length, limit=n,
                            chat_template=cfg.chat_template)
    if len(out) < n:
        log.warning("ms counts: only %d extra dialogues in %r past row %d (asked for %d)",
                    len(out), cfg.data, start, n)
    return out


def id_pairs(dialogues: Sequence[Dialogue], pivot_tokenizer: Any, source_tokenizer: Any,
             max_length: int) -> list[tuple[list[int], list[int]]]:
    """(pivot input_ids, source input_ids) of each dialogue (``ms_counts(extra_pairs=...)``)."""
    return [(tokenize_dialogue(d, pivot_tokenizer, max_length)[0],
             tokenize_dialogue(d, source_tokenizer, max_length)[0]) for d in dialogues]
