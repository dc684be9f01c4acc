"""Anthropic HH-RLHF, harmless-base test split (2,312 chosen/rejected dialogue pairs).

Each JSON line holds `chosen` and `rejected` transcripts in the form
`"\\n\\nHuman: ...\\n\\nAssistant: ...\\n\\nHuman: ...\\n\\nAssistant: ..."`. Derived columns:

- `prompt`: the dialogue up to and including the last "\\n\\nAssistant:" of `chosen`. In 5 of
  the 2,312 test pairs `rejected` does not start with that prefix (the transcripts diverge at an
  earlier turn, or one has an empty last turn); there the prompt is the longest common prefix of
  the two, cut after its last "\\n\\nAssistant:" (as TRL's prompt extraction does).
- `chosen_response` / `rejected_response`: the text after the prompt, minus one leading space.
- `messages_chosen` / `messages_rejected`: `[{"role": "user"|"assistant", "content": ...}]`,
  split on "\\n\\nHuman:" / "\\n\\nAssistant:". Consecutive turns with the same role (8 test
  transcripts have them) are merged with "\\n\\n" so that chat templates see alternating roles.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
from pathlib import Path

from datasets import Dataset, Features, List, Value

from workbench.data._resolve import resolve_file

log = logging.getLogger(__name__)

RELPATH = "hh_rlhf/harmless-base-test.jsonl.gz"
UPSTREAM = "https://raw.githubusercontent.com/anthropics/hh-rlhf/master/harmless-base/test.jsonl.gz"
SHA256 = "ebfaaed21162a4de120ae85366075b34425e2a6303fac59b99555002f7016f03"
MARKER = "\n\nAssistant:"
_TURN = re.compile(r"\n\n(Human|Assistant): ?")
_ROLE = {"Human": "user", "Assistant": "assistant"}
_MSG = List({"role": Value("string"), "content": Value("string")})
FEATURES = Features({
    "chosen": Value("string"), "rejected": Value("string"), "prompt": Value("string"),
    "chosen_response": Value("string"), "rejected_response": Value("string"),
    "messages_chosen": _MSG, "messages_rejected": _MSG,
})


def split_prompt(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Return `(prompt, chosen_response, rejected_response)` for one pair."""
    cut = chosen.rfind(MARKER)
    prompt = chosen[: cut + len(MARKER)] if cut >= 0 else ""
    if not rejected.startswith(prompt):
        n = len(os.path.commonprefix([chosen, rejected]))
        cut = chosen.rfind(MARKER, 0, n)
        prompt = chosen[: cut + len(MARKER)] if cut >= 0 else ""

    def response(text: str) -> str:
        rest = text[len(prompt):]
        return rest[1:] if rest.startswith(" ") else rest

    return prompt, response(chosen), response(rejected)


def to_messages(dialogue: str) -> list[dict[str, str]]:
    """Split an HH transcript into role/content messages (same-role runs merged)."""
    parts = _TURN.split(dialogue)
    msgs: list[dict[str, str]] = []
    if parts[0].strip():  # text before the first marker: treat as a user turn
        msgs.append({"role": "user", "content": parts[0].strip("\n")})
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        role = _ROLE[speaker]
        if msgs and msgs[-1]["role"] == role:
            msgs[-1]["content"] += "\n\n" + content
        else:
            msgs.append({"role": role, "content": content})
    return msgs


def read_hh_jsonl(path: str | os.PathLike) -> list[dict[str, str]]:
    """Read a (gzipped) HH jsonl file; a bad line raises `ValueError` with file and line."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    rows: list[dict[str, str]] = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path.name} line {lineno}: bad JSON: {exc}") from None
            if not isinstance(rec, dict) or not all(
                    isinstance(rec.get(k), str) for k in ("chosen", "rejected")):
                raise ValueError(f"{path.name} line {lineno}: expected an object with string "
                                 f"'chosen' and 'rejected'")
            rows.append({"chosen": rec["chosen"], "rejected": rec["rejected"]})
    return rows


def load_hh_rlhf(path: str | os.PathLike | None = None) -> Dataset:
    """HH-RLHF harmless-base test as a `Dataset` with raw and derived columns."""
    f = resolve_file(RELPATH, path=path, url=UPSTREAM, sha256=SHA256)
    rows = read_hh_jsonl(f)
    cols: dict[str, list] = {k: [] for k in FEATURES}
    for r in rows:
        prompt, cr, rr = split_prompt(r["chosen"], r["rejected"])
        for k, v in (("chosen", r["chosen"]), ("rejected", r["rejected"]), ("prompt", prompt),
                     ("chosen_response", cr), ("rejected_response", rr),
                     ("messages_chosen", to_messages(r["chosen"])),
                     ("messages_rejected", to_messages(r["rejected"]))):
            cols[k].append(v)
    log.info("hh-rlhf harmless-base test: %d pairs from %s", len(rows), f)
    return Dataset.from_dict(cols, features=FEATURES)
