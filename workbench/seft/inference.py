"""SEFT inference: chat generation, the reviser's decisions and revisions, a round's sampling.

No training code (no TRL import): the reviser playground and the evaluation stage import this
module only; :mod:`workbench.seft.training` re-exports it.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from workbench.seft.reviser_data import (
    KEEP,
    REVISE,
    ParsedRevision,
    format_reviser_prompt,
    parse_reviser_output,
    summarize_revisions,
    usable_revision,
)

DECISIONS = ("constrained", "free")

log = logging.getLogger(__name__)

@torch.no_grad()
def generate_chat(model, tokenizer, user_texts: list[str] | list[list[dict[str, str]]], *,
                  max_new_tokens: int = 64, do_sample: bool = True, temperature: float = 0.7,
                  top_p: float = 0.9, batch_size: int = 8, assistant_prefix: str = "",
                  backend: str = "hf", model_path: str | None = None) -> list[str]:
    """Greedy/sampled chat generation through the model's chat template
    (:func:`workbench.eval.generation.generate`: left-padded HF batches, or vLLM on
    ``model_path`` with ``backend="vllm"`` / ``"auto"``).
    Each item is a user text (single turn) or a whole conversation (list of messages ending with
    a user turn, e.g. MT-Bench's second turn after the model's own first answer).
    ``assistant_prefix`` is written at the start of the assistant turn and the model continues it
    (the prefix itself is not part of the returned text). The model is left in eval mode and the
    tokenizer padding on the left, as SEFT's stages have always found them after sampling."""
    from workbench.eval.generation import chat_prompts, generate

    if model is not None:
        model.eval()
    tokenizer.padding_side = "left"
    texts = chat_prompts(tokenizer, user_texts, assistant_prefix=assistant_prefix)
    return generate(model, tokenizer, texts, max_new_tokens=max_new_tokens,
                    temperature=temperature if do_sample else 0.0,
                    top_p=top_p if do_sample else 1.0, batch_size=batch_size,
                    add_special_tokens=False, strip=True, backend=backend, model_path=model_path)


def _n_tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def _chat_prompt(tokenizer, user_text: str) -> str:
    return tokenizer.apply_chat_template([{"role": "user", "content": user_text}], tokenize=False,
                                         add_generation_prompt=True)


def clip_reviser_input(tokenizer, prompt: str, response: str,
                       max_tokens: int | None) -> tuple[str, str]:
    """Shorten (instruction, response) so the reviser's chat prompt has at most ``max_tokens``
    tokens (None = no limit). The response keeps what the instruction does not need, and the
    instruction at least a third of the room. Used identically for training and inference, so
    the reviser is asked in exactly the format it was trained on, and a training example is never
    truncated before its decision token."""
    if max_tokens is None:
        return prompt, response
    room = max_tokens - _n_tokens(tokenizer, _chat_prompt(tokenizer, format_reviser_prompt("", "")))
    if room < 8:
        raise ValueError(f"reviser input limit {max_tokens} tokens leaves no room for the "
                         "instruction and response (raise max_length)")
    p_ids, r_ids = (tokenizer(t.strip(), add_special_tokens=False)["input_ids"]
                    for t in (prompt, response))
    p_keep = min(len(p_ids), max(room // 3, room - len(r_ids)))
    r_keep = min(len(r_ids), room - p_keep)
    while True:  # decoded pieces can re-tokenize a little longer in context: shrink until it fits
        p = prompt if p_keep == len(p_ids) else tokenizer.decode(p_ids[:p_keep])
        r = response if r_keep == len(r_ids) else tokenizer.decode(r_ids[:r_keep])
        over = _n_tokens(tokenizer, _chat_prompt(tokenizer, format_reviser_prompt(p, r))) \
            - max_tokens
        if over <= 0 or (p_keep == 0 and r_keep == 0):
            return p, r
        if r_keep > 0:
            r_keep = max(0, r_keep - over)
        else:
            p_keep = max(0, p_keep - over)


def reviser_input_limit(max_length: int) -> int:
    """Reviser prompt budget inside ``max_length``: a quarter (at least 16 tokens) is left for the
    decision line and the start of the response."""
    return max_length - max(16, max_length // 4)


def reviser_messages(tokenizer, examples: list[dict[str, Any]],
                     max_tokens: int | None) -> list[list[dict[str, str]]]:
    """Reviser SFT conversations (user = clipped reviser prompt, assistant = decision + response)
    from :func:`~workbench.seft.reviser_data.build_reviser_examples` rows."""
    out = []
    for e in examples:
        p, r = clip_reviser_input(tokenizer, e["prompt"], e["response"], max_tokens)
        out.append([{"role": "user", "content": format_reviser_prompt(p, r)},
                    {"role": "assistant", "content": e["target"]}])
    return out


@torch.no_grad()
def continuation_logprobs(model, tokenizer, user_texts: list[str], continuations: list[str], *,
                          batch_size: int = 8) -> list[list[float]]:
    """log p(continuation | chat prompt) summed over its tokens, for every user text x
    continuation, where the continuation is written right at the start of the assistant turn.
    The prompt is run once (KV cache) and each continuation scored on top of it.
    Returns one list per user text (in ``continuations`` order)."""
    import copy
    model.eval()
    dev = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else \
        tokenizer.eos_token_id
    out: list[list[float]] = []
    for i in range(0, len(user_texts), batch_size):
        prompts = [_chat_prompt(tokenizer, t) for t in user_texts[i:i + batch_size]]
        p_ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        conts: list[list[list[int]]] = []   # [continuation][text] -> token ids after the prompt
        for c in continuations:
            row = []
            for p, ids in zip(prompts, p_ids, strict=True):
                full = tokenizer(p + c, add_special_tokens=False)["input_ids"]
                # the continuation merged into the prompt's last token: tokenize it on its own
                row.append(full[len(ids):] if full[:len(ids)] == ids and len(full) > len(ids)
                           else tokenizer(c, add_special_tokens=False)["input_ids"])
            conts.append(row)
        width = max(len(x) for x in p_ids)
        ids = torch.tensor([[pad] * (width - len(x)) + x for x in p_ids], device=dev)
        att = torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in p_ids], device=dev)
        pos = (att.cumsum(-1) - 1).clamp(min=0)
        res = model(input_ids=ids, attention_mask=att, position_ids=pos, use_cache=True,
                    logits_to_keep=1)
        first = torch.log_softmax(res.logits[:, -1].float(), dim=-1)
        scores = []
        for j, row in enumerate(conts):
            k = max(len(x) for x in row)
            c_ids = torch.tensor([x + [pad] * (k - len(x)) for x in row], device=dev)
            c_mask = torch.tensor([[1] * len(x) + [0] * (k - len(x)) for x in row], device=dev)
            lp = first.gather(-1, c_ids[:, :1]).squeeze(-1)
            if k > 1:  # feed tokens 0..k-2 on top of the prompt's cache, score tokens 1..k-1
                cache = res.past_key_values if j == len(conts) - 1 else \
                    copy.deepcopy(res.past_key_values)
                step = model(input_ids=c_ids[:, :-1],
                             attention_mask=torch.cat([att, torch.ones_like(c_ids[:, :-1])], 1),
                             position_ids=pos[:, -1:] + torch.arange(1, k, device=dev),
                             past_key_values=cache, use_cache=True)
                tok_lp = torch.log_softmax(step.logits.float(), -1).gather(
                    -1, c_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
                lp = lp + (tok_lp * c_mask[:, 1:]).sum(-1)
            scores.append(lp)
        out += torch.stack(scores, 1).tolist()
    return out


def decision_margins(reviser, tokenizer, prompts: list[str], responses: list[str], *,
                     max_input_tokens: int | None = None, batch_size: int = 8) -> list[float]:
    """log p("REVISE" line) - log p("KEEP" line) right after the reviser prompt, per pair
    (> 0: the reviser prefers to revise)."""
    inputs = [format_reviser_prompt(*clip_reviser_input(tokenizer, p, r, max_input_tokens))
              for p, r in zip(prompts, responses, strict=True)]
    lp = continuation_logprobs(reviser, tokenizer, inputs, [KEEP + "\n", REVISE + "\n"],
                               batch_size=batch_size)
    return [b - a for a, b in lp]


def revise(reviser, tokenizer, prompts: list[str], responses: list[str], *,
           max_new_tokens: int = 128, batch_size: int = 8, return_raw: bool = False,
           decision: str = "constrained", max_input_tokens: int | None = None):
    """Run the reviser on (prompt, response) pairs.

    ``decision="constrained"``: KEEP or REVISE is whichever decision line the reviser gives the
    higher log-probability right after the prompt (always a valid decision; the margin is kept);
    only for REVISE is the revision generated (greedy), continuing after "REVISE\\n". An empty
    revision, or one echoing the prompt format, is malformed (-> KEEP, counted).
    ``decision="free"``: the reviser generates freely (greedy) and :func:`parse_reviser_output`
    reads the decision (malformed -> KEEP, counted).
    Returns the parsed revisions, or (parsed, raw outputs) with ``return_raw``."""
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
    clipped = [clip_reviser_input(tokenizer, p, r, max_input_tokens)
               for p, r in zip(prompts, responses, strict=True)]
    inputs = [format_reviser_prompt(p, r) for p, r in clipped]
    if decision == "free":
        raw = generate_chat(reviser, tokenizer, inputs, max_new_tokens=max_new_tokens,
                            do_sample=False, batch_size=batch_size)
        parsed: list[ParsedRevision] = [parse_reviser_output(t, r)
                                        for t, r in zip(raw, responses, strict=True)]
        return (parsed, raw) if return_raw else parsed
    margins = decision_margins(reviser, tokenizer, prompts, responses,
                               max_input_tokens=max_input_tokens, batch_size=batch_size)
    todo = [i for i, mg in enumerate(margins) if mg > 0]
    bodies = dict(zip(todo, generate_chat(
        reviser, tokenizer, [inputs[i] for i in todo], max_new_tokens=max_new_tokens,
        do_sample=False, batch_size=batch_size, assistant_prefix=REVISE + "\n"), strict=True))
    parsed, raw = [], []
    for i, (resp, mg) in enumerate(zip(responses, margins, strict=True)):
        if i not in bodies:
            parsed.append(ParsedRevision(KEEP, resp, False, mg))
            raw.append(KEEP)
        else:
            body = bodies[i].strip()
            parsed.append(ParsedRevision(REVISE, body, False, mg) if usable_revision(body)
                          else ParsedRevision(KEEP, resp, True, mg))
            raw.append(f"{REVISE}\n{bodies[i]}")
    return (parsed, raw) if return_raw else parsed


def reviser_discrimination(reviser, tokenizer, pairs: list[dict[str, str]], *,
                           max_input_tokens: int | None = None,
                           batch_size: int = 8) -> dict[str, Any]:
    """Does the reviser tell rejected from chosen responses? On held-out preference pairs
    (prompt, chosen_response, rejected_response): the share of REVISE decisions (constrained:
    log-prob margin > 0) on the rejected and on the chosen responses, the accuracy of
    "rejected -> REVISE, chosen -> KEEP", and how often the margin is larger on the rejected one
    of a pair (pairwise accuracy; 0.5 = no discrimination)."""
    if not pairs:
        return {"n_pairs": 0}
    prompts = [p["prompt"] for p in pairs]
    rej = decision_margins(reviser, tokenizer, prompts, [p["rejected_response"] for p in pairs],
                           max_input_tokens=max_input_tokens, batch_size=batch_size)
    cho = decision_margins(reviser, tokenizer, prompts, [p["chosen_response"] for p in pairs],
                           max_input_tokens=max_input_tokens, batch_size=batch_size)
    n = len(pairs)
    out = {"n_pairs": n,
           "share_revise_rejected": sum(m > 0 for m in rej) / n,
           "share_revise_chosen": sum(m > 0 for m in cho) / n,
           "decision_accuracy": (sum(m > 0 for m in rej) + sum(m <= 0 for m in cho)) / (2 * n),
           "pairwise_accuracy": sum(a > b for a, b in zip(rej, cho, strict=True)) / n,
           "mean_margin_rejected": sum(rej) / n, "mean_margin_chosen": sum(cho) / n}
    return {**out, **_discrimination_cis(rej, cho)}


def _discrimination_cis(rej: list[float], cho: list[float]) -> dict[str, float]:
    """95 % CIs over the pairs: Wilson for the shares, t / bootstrap (``stats.item_ci``) for the
    per-pair decision accuracy and the mean margins."""
    from workbench.eval.stats import item_ci, proportion_ci

    n = len(rej)
    est = {"share_revise_rejected": proportion_ci(sum(m > 0 for m in rej), n),
           "share_revise_chosen": proportion_ci(sum(m > 0 for m in cho), n),
           "decision_accuracy": item_ci([((a > 0) + (b <= 0)) / 2 for a, b in zip(rej, cho, strict=True)]),
           "pairwise_accuracy": proportion_ci(sum(a > b for a, b in zip(rej, cho, strict=True)), n),
           "mean_margin_rejected": item_ci(rej), "mean_margin_chosen": item_ci(cho)}
    return {f"{k}_{p}": getattr(e, p) for k, e in est.items() for p in ("lo", "hi")}


def sample_and_revise(policy, policy_tok, reviser, reviser_tok, prompts: list[str], *,
                      external_responses: list[str] | None = None, max_new_tokens: int = 64,
                      reviser_max_new_tokens: int = 128, decision: str = "constrained",
                      max_input_tokens: int | None = None
                      ) -> tuple[list[dict[str, Any]], dict]:
    """First half of a SEFT round: the policy's sampled responses (internal evolution) or the given
    external ones, revised by the reviser. Returns (rows, stats); rows are the round's data
    (prompt, response, decision, revised, malformed, reviser_output), stats from
    :func:`summarize_revisions`."""
    if not prompts:
        raise ValueError("SEFT round: the prompt pool is empty (no unlabelled prompts left)")
    if external_responses is not None:
        if len(external_responses) != len(prompts):
            raise ValueError("external_responses must match prompts in length")
        responses = list(external_responses)
    else:
        responses = generate_chat(policy, policy_tok, prompts, max_new_tokens=max_new_tokens)
    parsed, raw = revise(reviser, reviser_tok, prompts, responses,
                         max_new_tokens=reviser_max_new_tokens, return_raw=True,
                         decision=decision, max_input_tokens=max_input_tokens)
    stats = {**summarize_revisions(parsed), "decision": decision}
    if stats["never_revised"]:
        log.warning("SEFT round: the reviser revised none of %d responses (%d malformed)",
                    stats["n"], stats["n_malformed"])
    rows = [{"prompt": p, "response": r, "decision": q.decision, "revised": q.response,
             "malformed": q.malformed, "margin": q.margin, "reviser_output": o}
            for p, r, q, o in zip(prompts, responses, parsed, raw, strict=True)]
    return rows, stats
