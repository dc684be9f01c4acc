"""FuseChat evaluation: held-out response CE (assistant tokens, dialogues disjoint from
training), MT-Bench (two turns, ``workbench.eval.chat``; a small local judge is weak evidence) and
the zero-shot average per model, and :func:`fusechat_table` (rows in the layout of the paper's
Table 1). Inference only."""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from workbench.common.io import read_json, write_json
from workbench.common.runtime import track
from workbench.fusion.train.targets import short_name

GROUPS = ("pivot", "source", "baseline", "target", "merge")


def placement(cfg: Any) -> dict[str, Any]:
    """``load_causal_lm`` keyword arguments of an evaluated model: ``cfg.device`` (this rank's
    GPU under a multi-process launch) and ``cfg.dtype`` (auto: bf16 on CUDA >= sm80, float32 on
    the CPU, as before)."""
    from workbench.common.rundir import local_device
    from workbench.common.runtime import resolve_device, resolve_dtype

    device = resolve_device(local_device(cfg.device))
    return {"device": device, "dtype": resolve_dtype(cfg.dtype, device)}


def heldout_dialogues(cfg: Any, exclude_ids: set[str], tokenizers: Sequence[Any]) -> list[Any]:
    """``cfg.eval_size`` dialogues of ``cfg.data`` that are not training dialogues, rendered
    with the pivot's template and cut so every tokenizer fits ``cfg.max_length``."""
    from workbench.fusion.represent import load_chat_rows, prepare_dialogues

    limit = 4 * (cfg.data_size + cfg.eval_size) + 64
    rows = [r for r in load_chat_rows(cfg.data, limit) if str(r["id"]) not in exclude_ids]
    dialogues = prepare_dialogues(rows, tokenizers[0], tokenizers, max_length=cfg.max_length,
                                  limit=cfg.eval_size, chat_template=cfg.chat_template)
    if not dialogues:
        raise ValueError(f"no held-out dialogues left in {cfg.data!r} after the "
                         f"{len(exclude_ids)} training dialogues")
    return dialogues


def heldout_ce(model, tokenizer, dialogues: Sequence[Any], max_length: int) -> dict[str, Any]:
    """Response CE of ``model`` on ``dialogues`` tokenised with its own ``tokenizer``; each
    ``per_dialogue`` entry also holds the dialogue's assistant ``chars``."""
    from workbench.eval.heldout import response_ce
    from workbench.fusion.represent import tokenize_dialogue

    examples = []
    for d in dialogues:
        ids, labels = tokenize_dialogue(d, tokenizer, max_length)
        examples.append({"input_ids": ids, "labels": labels})
    chars = [sum(b - a for a, b in d.spans) for d in dialogues]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = response_ce(model, examples, pad_token_id=pad, chars=sum(chars))
    for p, c in zip(out["per_dialogue"], chars, strict=True):
        p["chars"] = c  # assistant characters: per-dialogue NLL per char (a CI of nll_per_char)
    return out


def chat_generator(model, tokenizer, chat_template: str, max_new_tokens: int,
                   batch_size: int = 4) -> Callable[[list[list[dict[str, str]]]], list[str]]:
    """``generate_many(conversations) -> answers``: greedy, left-padded batches
    (:func:`workbench.eval.generation.generate`), the pivot's chat template (also for sources
    without one, as FuseChat renders all data with it); BOS added unless the template wrote it."""
    from workbench.eval.generation import chat_prompts, generate

    def generate_many(convs: list[list[dict[str, str]]]) -> list[str]:
        tokenizer.padding_side = "left"  # and left so afterwards, as before the helper
        texts = chat_prompts(tokenizer, convs, chat_template=chat_template)
        return generate(model, tokenizer, texts, max_new_tokens=max_new_tokens,
                        batch_size=batch_size, add_special_tokens="auto", strip=True)
    return generate_many


def evaluate_model(cfg: Any, label: str, path: str, dialogues: Sequence[Any], judge,
                   chat_template: str, questions: Sequence[dict]) -> dict[str, Any]:
    """Held-out CE, MT-Bench answers + single grading, zero-shot average for one model."""
    from workbench.common.models import load_causal_lm
    from workbench.eval.chat import mtbench_answers_batch, mtbench_score
    from workbench.eval.zeroshot import TASKS, evaluate

    t0 = time.perf_counter()
    model, tok = load_causal_lm(path, **placement(cfg))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    res: dict[str, Any] = {"model": label, "path": str(path),
                           "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
    timing: dict[str, float] = {"load": time.perf_counter() - t0}

    def lap(key: str, t: float) -> None:
        timing[key] = time.perf_counter() - t

    t = time.perf_counter()
    res["heldout"] = heldout_ce(model, tok, dialogues, cfg.max_length)
    lap("heldout", t)
    if cfg.mtbench_limit > 0:
        t = time.perf_counter()
        gen = chat_generator(model, tok, chat_template, cfg.max_new_tokens,
                             batch_size=cfg.eval_batch_size)
        answers = mtbench_answers_batch(gen, questions, cfg.mtbench_limit)
        res["mtbench_answers"] = answers
        lap("answers", t)
        t = time.perf_counter()
        res["mtbench"] = mtbench_score(judge, answers)
        lap("judge", t)
    if cfg.zeroshot_limit > 0:
        t = time.perf_counter()
        res["zeroshot"] = evaluate(model, tok, TASKS, cfg.zeroshot_limit,
                                   batch_size=cfg.eval_batch_size)
        lap("zeroshot", t)
    res["seconds"] = time.perf_counter() - t0
    res["timing"] = timing
    del model
    gc.collect()
    return res


def evaluate_models(cfg: Any, models: dict[str, tuple[str, str]], dialogues: Sequence[Any],
                    root: Path) -> dict[str, dict[str, Any]]:
    """``models``: ``{label: (group, path)}``; each result is written to ``<root>/<label>.json``
    and reused on a re-run. Returns ``{label: result}`` (with ``group``)."""
    from workbench.common.models import load_tokenizer
    from workbench.data import load_mtbench_questions
    from workbench.eval.chat import make_judge
    from workbench.fusion.represent import resolve_chat_template

    template = resolve_chat_template(load_tokenizer(cfg.pivot), cfg.chat_template)
    questions = list(load_mtbench_questions()) if cfg.mtbench_limit > 0 else []
    judge = None
    if cfg.mtbench_limit > 0:
        judge = make_judge(cfg.judge, cfg.judge_model, cfg.judge_mode,
                           max_new_tokens=cfg.judge_max_new_tokens)
        if isinstance(getattr(judge, "placement", None), dict):  # a local judge: cfg's placement
            from workbench.common.rundir import local_device
            judge.placement.update(device=local_device(cfg.device), dtype=cfg.dtype)
    out = {}
    for label, (group, path) in track(list(models.items()), desc="evaluate models"):
        f = Path(root) / f"{short_name(label)}.json"
        if f.exists():
            out[label] = read_json(f)
            continue
        res = {"group": group, **evaluate_model(cfg, label, path, dialogues, judge, template,
                                                questions)}
        write_json(f, res)
        out[label] = res
    return out


def _num(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def fusechat_table(results: dict[str, dict[str, Any]], reference: str = "SFT"
                   ) -> list[dict[str, Any]]:
    """Rows in the layout of the paper's Table 1 (sources, baselines, targets, merges), with the
    held-out CE / judge score / zero-shot average and the change relative to ``reference``."""
    order = {g: i for i, g in enumerate(GROUPS)}
    ref = results.get(reference, {})
    ref_ce = _num(ref.get("heldout", {}).get("ce"))
    ref_judge = _num(ref.get("mtbench", {}).get("score"))
    rows = []
    for label, r in sorted(results.items(), key=lambda kv: order.get(kv[1]["group"], 9)):
        ce = _num(r.get("heldout", {}).get("ce"))
        judge = _num(r.get("mtbench", {}).get("score"))
        rows.append({
            "model": label, "group": r["group"], "params_m": round(r["params_m"], 1),
            "heldout_ce": ce, "heldout_ppl": _num(r.get("heldout", {}).get("ppl")),
            "nll_per_char": _num(r.get("heldout", {}).get("nll_per_char")),
            "judge_t1": _num(r.get("mtbench", {}).get("turn1")),
            "judge_t2": _num(r.get("mtbench", {}).get("turn2")), "judge_avg": judge,
            "zeroshot_avg": _num(r.get("zeroshot", {}).get("avg")),
            # lm-eval's stderr of the task mean; n = examples over all tasks
            "zeroshot_avg_stderr": _num(r.get("zeroshot", {}).get("avg_stderr")),
            "zeroshot_n": r.get("zeroshot", {}).get("n"),
            f"ce_vs_{reference.lower()}_pct": (None if ce is None or not ref_ce or
                                               r["group"] in ("pivot", "source")
                                               else round(100 * (ce - ref_ce) / ref_ce, 2)),
            f"judge_vs_{reference.lower()}_pct": (None if judge is None or not ref_judge or
                                                  r["group"] in ("pivot", "source")
                                                  else round(100 * (judge - ref_judge) / ref_judge,
                                                             2)),
        })
    return rows
