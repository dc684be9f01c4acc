"""SEFT reviser kernels: training data from preference pairs, the fixed prompt format, output parsing.

Spec: ../shared/specs/papers.md §3.b (UNVERIFIED reconstruction). Choices made here, each a parameter:
- decision tokens ``KEEP`` / ``REVISE`` (the paper may use graded levels) -> ``keep_token``/``revise_token``;
- both branches per pair by default (``include_keep=True``, ``include_revise=True``);
- the fixed prompt format ``REVISER_TEMPLATE`` below (plain text, wrapped as one user turn by callers).

Reviser prompt (user turn)::

    Review the response to the instruction. If it is already good, answer "KEEP" and repeat it;
    otherwise answer "REVISE" and write a better response.

    ### Instruction:
    {prompt}

    ### Response:
    {response}

Reviser target (assistant turn)::

    {DECISION}
    {response}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

KEEP = "KEEP"
REVISE = "REVISE"

REVISER_TEMPLATE = (
    "Review the response to the instruction. If it is already good, answer \"{keep}\" and repeat it; "
    "otherwise answer \"{revise}\" and write a better response.\n\n"
    "### Instruction:\n{prompt}\n\n### Response:\n{response}"
)


def format_reviser_prompt(prompt: str, response: str, keep_token: str = KEEP,
                          revise_token: str = REVISE) -> str:
    """The reviser's input text for (prompt, candidate response)."""
    return REVISER_TEMPLATE.format(keep=keep_token, revise=revise_token,
                                   prompt=prompt.strip(), response=response.strip())


def format_reviser_target(decision: str, response: str) -> str:
    """The reviser's target: decision token on the first line, then the (kept or revised) response."""
    return f"{decision}\n{response.strip()}"


@dataclass
class ReviserDataStats:
    """Counts from building reviser data (bad rows are skipped and counted, never hidden)."""

    n_input: int = 0
    n_pairs_used: int = 0
    n_keep: int = 0
    n_revise: int = 0
    skipped_missing: int = 0
    skipped_identical: int = 0
    skipped_rows: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "skipped_rows"}


def _get_text(row: Mapping[str, Any], key: str) -> str | None:
    v = row.get(key)
    if v is None or not isinstance(v, str) or not v.strip():
        return None
    return v


def build_reviser_examples(
    rows: Iterable[Mapping[str, Any]],
    *,
    prompt_key: str = "prompt",
    chosen_key: str = "chosen_response",
    rejected_key: str = "rejected_response",
    include_keep: bool = True,
    include_revise: bool = True,
    keep_token: str = KEEP,
    revise_token: str = REVISE,
) -> tuple[list[dict[str, Any]], ReviserDataStats]:
    """Reviser SFT examples from paired preference rows.

    Each usable row (prompt, chosen, rejected) gives:
    - REVISE branch: (prompt, rejected) -> ``REVISE`` + chosen (low quality elevated);
    - KEEP branch:   (prompt, chosen)   -> ``KEEP`` + chosen   (high quality maintained).
    Rows missing a field or with chosen == rejected (after strip) are skipped and counted.
    Returns (examples, stats); each example has ``messages`` (user/assistant, for TRL's SFTTrainer),
    ``decision``, ``prompt``, ``response``, ``target``.
    """
    stats = ReviserDataStats()
    out: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        stats.n_input += 1
        p, c, r = (_get_text(row, k) for k in (prompt_key, chosen_key, rejected_key))
        if p is None or c is None or r is None:
            stats.skipped_missing += 1
            stats.skipped_rows.append(i)
            continue
        if c.strip() == r.strip():
            stats.skipped_identical += 1
            stats.skipped_rows.append(i)
            continue
        stats.n_pairs_used += 1
        branches = []
        if include_revise:
            branches.append((r, revise_token, c))
        if include_keep:
            branches.append((c, keep_token, c))
        for resp, decision, target_resp in branches:
            user = format_reviser_prompt(p, resp, keep_token, revise_token)
            target = format_reviser_target(decision, target_resp)
            out.append({
                "prompt": p, "response": resp, "decision": decision, "target": target,
                "messages": [{"role": "user", "content": user},
                             {"role": "assistant", "content": target}],
            })
            if decision == keep_token:
                stats.n_keep += 1
            else:
                stats.n_revise += 1
    return out, stats


def build_reviser_examples_ranked(
    rows: Iterable[Mapping[str, Any]],
    *,
    prompt_key: str = "prompt",
    responses_key: str = "responses",
    scores_key: str = "scores",
    **kw: Any,
) -> tuple[list[dict[str, Any]], ReviserDataStats]:
    """Ranked data (Nectar/UltraFeedback style: several responses with scores, higher = better):
    best vs each lower one is turned into pairs, then :func:`build_reviser_examples` (the KEEP
    branch of the best response appears once per lower response; UNVERIFIED choice)."""
    pairs: list[dict[str, Any]] = []
    for row in rows:
        resps, scores = row.get(responses_key) or [], row.get(scores_key) or []
        if len(resps) < 2 or len(resps) != len(scores):
            pairs.append({"prompt": row.get(prompt_key), "chosen_response": None,
                          "rejected_response": None})
            continue
        order = sorted(range(len(resps)), key=lambda j: -float(scores[j]))
        best = resps[order[0]]
        for j in order[1:]:
            pairs.append({"prompt": row.get(prompt_key), "chosen_response": best,
                          "rejected_response": resps[j]})
    return build_reviser_examples(pairs, **kw)


def usable_revision(body: str) -> bool:
    """A revision is a response: not empty, and not the reviser echoing its own prompt format
    (a briefly trained reviser often copies "### Instruction: ..." from its input)."""
    b = body.strip()
    return bool(b) and not b.startswith("### Instruction:") and "### Response:" not in b


@dataclass(frozen=True)
class ParsedRevision:
    decision: str          # KEEP or REVISE (malformed -> KEEP)
    response: str          # the final response (original when KEEP or malformed)
    malformed: bool
    margin: float | None = None  # log p(REVISE) - log p(KEEP) (constrained decisions only)


def parse_reviser_output(text: str | None, original: str, keep_token: str = KEEP,
                         revise_token: str = REVISE) -> ParsedRevision:
    """Parse the reviser's generation into (decision, response).

    Well formed: first non-empty line starts with the decision token; the rest is the response.
    KEEP -> the original response is returned (the repeated text is not trusted).
    REVISE with an empty body or one that echoes the prompt format (:func:`usable_revision`),
    empty output, or no decision token -> malformed -> KEEP + original.
    """
    if not text or not text.strip():
        return ParsedRevision(keep_token, original, True)
    s = text.strip()
    first, _, rest = s.partition("\n")
    head = first.strip().strip("*#:[]. ").upper()
    if head.startswith(revise_token.upper()):
        tail = first.strip().lstrip("*#[ ")[len(revise_token):].lstrip(" :*].-")
        body = (tail + "\n" + rest).strip()
        if not usable_revision(body):
            return ParsedRevision(keep_token, original, True)
        return ParsedRevision(revise_token, body, False)
    if head.startswith(keep_token.upper()):
        return ParsedRevision(keep_token, original, False)
    return ParsedRevision(keep_token, original, True)


def summarize_revisions(parsed: list[ParsedRevision], revise_token: str = REVISE) -> dict[str, Any]:
    """Per-round stats: share revised, share malformed (Wilson 95 % CIs), counts, mean response
    length (chars; t / bootstrap CI over responses)."""
    n = len(parsed)
    n_rev = sum(p.decision == revise_token for p in parsed)
    n_bad = sum(p.malformed for p in parsed)
    from workbench.eval.stats import item_ci, proportion_ci

    rev, bad = proportion_ci(n_rev, n), proportion_ci(n_bad, n)  # Wilson 95 % CIs
    length = item_ci([len(p.response) for p in parsed])
    return {
        "n": n, "n_revised": n_rev, "n_malformed": n_bad,
        "share_revised": (n_rev / n) if n else float("nan"),
        "share_revised_lo": rev.lo, "share_revised_hi": rev.hi,
        "share_malformed": (n_bad / n) if n else float("nan"),
        "share_malformed_lo": bad.lo, "share_malformed_hi": bad.hi,
        "mean_length": (sum(len(p.response) for p in parsed) / n) if n else float("nan"),
        "mean_length_lo": length.lo, "mean_length_hi": length.hi,
        "never_revised": n > 0 and n_rev == 0,
    }
