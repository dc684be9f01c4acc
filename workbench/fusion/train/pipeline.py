"""FuseChat part 2 stages: pairwise targets -> baselines -> merges -> evaluation table.

Each stage is a function of the config, the previous stages' outputs and a folder; each one
resumes (a finished target / merge / model evaluation is kept, an interrupted target resumes
from its Trainer checkpoint). ``workbench.fusion.run.run_fusechat`` calls them after part 1.

- :func:`train_pairwise_targets`: one target per source (pivot + that source, MinCE).
- :func:`train_baselines`: ``sft`` (lam=1, no sources) and ``multi`` (all sources at once).
- :func:`merge_targets`: every method of ``cfg.merge_methods`` through
  ``workbench.fusion.merge.run_merge`` with the parameters of the FuseChat configs (§1.b).
- :func:`evaluate_models`: held-out response CE (assistant tokens, disjoint dialogues), MT-Bench
  (two turns, ``workbench.eval.chat``; a small local judge is weak evidence), zero-shot average.
- :func:`fusechat_table`: rows in the layout of the paper's Table 1.

Reading finished run folders (paired CE differences, tables over seeds, re-grading saved
answers) is in :mod:`workbench.fusion.train.report`.
"""

from __future__ import annotations

import gc
import logging
import math
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from workbench.common.io import read_json, write_json
from workbench.common.runtime import track

log = logging.getLogger(__name__)

# FuseChat's mergekit configs (papers.md §1.b): global parameters, per-model weight / density
MERGE_PARAMS: dict[str, tuple[dict[str, Any], dict[str, float]]] = {
    "sce": ({}, {}),  # select_topk = cfg.tau
    "varm": ({}, {}),
    "linear": ({"normalize": True}, {"weight": 0.2}),
    "task_arithmetic": ({"normalize": False}, {"weight": 0.3}),
    "ties": ({"normalize": True}, {"weight": 0.2, "density": 0.6}),
    "dare_linear": ({"normalize": True}, {"weight": 0.2, "density": 0.6}),
}
GROUPS = ("pivot", "source", "baseline", "target", "merge")


def short_name(model: str) -> str:
    """``tiny:llama`` -> ``tiny-llama``, ``openchat/openchat_3.5`` -> ``openchat_3.5``."""
    return Path(str(model).rstrip("/")).name.replace(":", "-")


# ---- training ---------------------------------------------------------------------------------
def _args(cfg: Any, **kw: Any):
    from workbench.fusion.train.trainer import TrainArgs

    return TrainArgs.from_config(cfg, **kw)


def train_target(*args: Any, **kw: Any) -> Path:
    """``workbench.fusion.train.trainer.train_target`` (imported on first use)."""
    from workbench.fusion.train.trainer import train_target as _train

    return _train(*args, **kw)


def train_pairwise_targets(cfg: Any, pivot_ds, aligned: dict[str, Any], root: Path
                           ) -> dict[str, Path]:
    """``{"<pivot>-<source>": model folder}``, one target per aligned source."""
    out = {}
    for source, ds in aligned.items():
        name = f"{short_name(cfg.pivot)}-{short_name(source)}"
        out[name] = train_target(_args(cfg), pivot_ds, ds, Path(root) / name)
    return out


def train_baselines(cfg: Any, pivot_ds, aligned: dict[str, Any], root: Path) -> dict[str, Path]:
    """``sft`` (λ=1: plain SFT on the same dialogues) and ``multi`` (MinCE over all sources)."""
    out = {}
    for kind in cfg.baselines:
        if kind == "sft":
            out["SFT"] = train_target(_args(cfg, lam=1.0), pivot_ds, None, Path(root) / "sft")
        elif kind == "multi":
            out["Multi"] = train_target(_args(cfg), pivot_ds, list(aligned.values()),
                                        Path(root) / "multi")
        else:
            raise ValueError(f"unknown baseline {kind!r} (sft, multi)")
    return out


# ---- merging ------------------------------------------------------------------------------
def merge_config(cfg: Any, method: str, targets: Sequence[Path], out_dir: Path):
    """The ``MergeConfig`` FuseChat uses for ``method`` (base = the pivot)."""
    from workbench.fusion.merge import MergeConfig

    if method not in MERGE_PARAMS:
        raise ValueError(f"no FuseChat parameters for merge method {method!r}; "
                         f"known: {', '.join(MERGE_PARAMS)}")
    params, per_model = MERGE_PARAMS[method]
    params = dict(params)
    if method == "sce":
        params["select_topk"] = cfg.tau
    return MergeConfig(models=tuple(str(t) for t in targets), base_model=cfg.pivot,
                       merge_method=method, parameters=params,
                       model_parameters=tuple(dict(per_model) for _ in targets) if per_model
                       else (), out_dir=str(out_dir), seed=cfg.seed, overwrite=True,
                       chat_template=cfg.chat_template, device="cpu")


def merge_targets(cfg: Any, targets: dict[str, Path], root: Path) -> dict[str, dict[str, Any]]:
    """Merge the pairwise targets with every ``cfg.merge_methods``; ``{label: info}``."""
    from workbench.fusion.merge import run_merge

    out = {}
    for method in cfg.merge_methods:
        folder = Path(root) / method
        info_path = Path(root) / f"{method}.json"
        if (folder / "checksums.sha256").exists() and info_path.exists():
            out[method] = read_json(info_path)
            continue
        res = run_merge(merge_config(cfg, method, list(targets.values()), folder))
        info = {"path": str(res.out_dir), "method": res.merge_method, "params": res.params,
                "seconds": res.seconds, "num_tensors": res.num_tensors,
                "vocab_cropped": res.vocab_cropped, "kept_base": res.kept_base}
        write_json(info_path, info)
        out[method] = info
    return out


def sce_matrix_weights(base_model: str, targets: dict[str, Path], tau: float = 0.1,
                       variant: str = "official") -> list[dict[str, Any]]:
    """Per parameter matrix, the SCE coefficient η_j of every target (Select with ``tau``, then
    Calculate), streamed one tensor at a time: ``[{tensor, target, eta, delta_rms}]``."""
    from workbench.common.models import resolve_model
    from workbench.fusion.merge import Checkpoint, sce_coefficients, sce_select_mask
    from workbench.fusion.merge.registry import stack_deltas

    base = Checkpoint(resolve_model(base_model), base_model)
    cks = {k: Checkpoint(Path(v), k) for k, v in targets.items()}
    rows = []
    for name in track(base.names, desc="SCE weights"):
        b = base.load(name)
        ts = [ck.load(name) for ck in cks.values()]
        if not b.is_floating_point() or b.ndim < 2 or any(t.shape != b.shape for t in ts):
            continue
        deltas = stack_deltas(b, ts)
        mask = sce_select_mask(deltas, tau)
        eta = sce_coefficients(deltas * mask)
        rms = deltas.pow(2).flatten(1).mean(1).sqrt()
        for j, label in enumerate(cks):
            rows.append({"tensor": name, "target": label, "eta": float(eta[j]),
                         "delta_rms": float(rms[j])})
    return rows


# ---- evaluation -------------------------------------------------------------------------------
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
    """Response CE of ``model`` on ``dialogues`` tokenised with its own ``tokenizer``."""
    from workbench.eval.heldout import response_ce
    from workbench.fusion.represent import tokenize_dialogue

    examples = []
    for d in dialogues:
        ids, labels = tokenize_dialogue(d, tokenizer, max_length)
        examples.append({"input_ids": ids, "labels": labels})
    chars = sum(b - a for d in dialogues for a, b in d.spans)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    return response_ce(model, examples, pad_token_id=pad, chars=chars)


def chat_generator(model, tokenizer, chat_template: str, max_new_tokens: int,
                   batch_size: int = 4) -> Callable[[list[list[dict[str, str]]]], list[str]]:
    """``generate_many(conversations) -> answers``: greedy, left-padded batches, the pivot's
    chat template (also for sources without one, as FuseChat renders all data with it)."""
    def generate_many(convs: list[list[dict[str, str]]]) -> list[str]:
        tokenizer.padding_side = "left"
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        dev = next(model.parameters()).device
        outs: list[str] = []
        for i in range(0, len(convs), batch_size):
            texts = [tokenizer.apply_chat_template(c, chat_template=chat_template, tokenize=False,
                                                   add_generation_prompt=True)
                     for c in convs[i:i + batch_size]]
            bos = tokenizer.bos_token
            add = not (bos and texts[0].startswith(bos))
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=add)
            with torch.no_grad():
                gen = model.generate(**enc.to(dev), do_sample=False, max_new_tokens=max_new_tokens,
                                     pad_token_id=pad)
            outs += [t.strip() for t in tokenizer.batch_decode(
                gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)]
        return outs
    return generate_many


def evaluate_model(cfg: Any, label: str, path: str, dialogues: Sequence[Any], judge,
                   chat_template: str, questions: Sequence[dict]) -> dict[str, Any]:
    """Held-out CE, MT-Bench answers + single grading, zero-shot average for one model."""
    from workbench.common.models import load_causal_lm
    from workbench.eval.chat import mtbench_answers_batch, mtbench_score
    from workbench.eval.zeroshot import TASKS, evaluate

    t0 = time.perf_counter()
    model, tok = load_causal_lm(path)
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
            f"ce_vs_{reference.lower()}_pct": (None if ce is None or not ref_ce or
                                               r["group"] in ("pivot", "source")
                                               else round(100 * (ce - ref_ce) / ref_ce, 2)),
            f"judge_vs_{reference.lower()}_pct": (None if judge is None or not ref_judge or
                                                  r["group"] in ("pivot", "source")
                                                  else round(100 * (judge - ref_judge) / ref_judge,
                                                             2)),
        })
    return rows


# ---- stages for workbench.fusion.run (fn(ctx) -> summary with "metrics") ---------------------
def _models_dir(ctx) -> Path:
    return ctx.run.artifacts / "models"


def _discard_if_redone(ctx, stage: str, folders: Sequence[Path]) -> None:
    """A stage re-run because settings it depends on changed (``ctx.redo``) must not pick up the
    models, merges or evaluations its earlier run left behind: delete them first."""
    if stage not in ctx.redo:
        return
    for f in folders:
        if f.is_dir():
            log.warning("stage %s is re-run with new settings: discarding %s", stage, f)
            shutil.rmtree(f)


def _aligned(ctx) -> dict[str, Any]:
    from datasets import load_from_disk

    cfg = ctx.cfg
    out = {}
    for src in cfg.sources:
        folder = ctx.aligned_dir(src, cfg.vocab_map)
        if not folder.exists():
            raise ValueError(f"aligned representations of {src!r} ({cfg.vocab_map}) missing at "
                             f"{folder}: run the alignment stage first")
        out[src] = load_from_disk(str(folder))
    return out


def _train_summary(paths: dict[str, Path]) -> dict[str, Any]:
    from workbench.fusion.train.trainer import train_info

    out = {}
    for name, path in paths.items():
        info = train_info(path)
        hist = [h for h in info["log_history"] if "loss" in h]
        out[name] = {"path": str(path), "steps": info["global_step"],
                     "samples": info["num_samples"], "sources": info["num_sources"],
                     "train_loss": info["train_loss"], "seconds": info["seconds"],
                     "first_loss": hist[0]["loss"] if hist else None,
                     "last_loss": hist[-1]["loss"] if hist else None,
                     "source_chosen": _mean_key(hist, "source_chosen")}
    return out


def _mean_key(hist: list[dict[str, Any]], key: str) -> float | None:
    vals = [h[key] for h in hist if key in h]
    return sum(vals) / len(vals) if vals else None


def stage_targets(ctx) -> dict[str, Any]:
    """Pairwise fusion: one target per source (pivot + source, MinCE, λ·SFT + (1−λ)·fusion)."""
    _discard_if_redone(ctx, "targets", [_models_dir(ctx) / f"{short_name(ctx.cfg.pivot)}-"
                                        f"{short_name(s)}" for s in ctx.cfg.sources])
    paths = train_pairwise_targets(ctx.cfg, ctx.representations(ctx.cfg.pivot), _aligned(ctx),
                                   _models_dir(ctx))
    info = _train_summary(paths)
    return {"targets": info, "metrics": {"target_train": [
        {"model": k, "steps": v["steps"], "first_loss": v["first_loss"],
         "last_loss": v["last_loss"], "source_chosen": v["source_chosen"],
         "seconds": v["seconds"]} for k, v in info.items()]}}


def stage_baselines(ctx) -> dict[str, Any]:
    """SFT-only (λ=1) and Multi (all sources at once) baselines from the pivot."""
    _discard_if_redone(ctx, "baselines", [_models_dir(ctx) / "sft", _models_dir(ctx) / "multi"])
    paths = train_baselines(ctx.cfg, ctx.representations(ctx.cfg.pivot), _aligned(ctx),
                            _models_dir(ctx))
    return {"baselines": _train_summary(paths), "metrics": {}}


def stage_merges(ctx) -> dict[str, Any]:
    """Merge the pairwise targets into the pivot with every method of ``cfg.merge_methods``."""
    _discard_if_redone(ctx, "merges", [ctx.run.artifacts / "merged"])
    targets = {k: Path(v["path"]) for k, v in ctx.summaries["targets"]["targets"].items()}
    info = merge_targets(ctx.cfg, targets, ctx.run.artifacts / "merged")
    weights = sce_matrix_weights(ctx.cfg.pivot, targets, ctx.cfg.tau)
    path = write_json(ctx.run.artifacts / "merged" / "sce_weights.json", weights)
    return {"merges": info, "sce_weights": str(path.relative_to(ctx.run.path)),
            "metrics": {"merge_seconds": {k: v["seconds"] for k, v in info.items()}}}


def stage_evaluation(ctx) -> dict[str, Any]:
    """Held-out CE, MT-Bench judge score and zero-shot average per model; Table 1 layout."""
    _discard_if_redone(ctx, "evaluation", [ctx.run.checkpoints / "eval"])
    cfg = ctx.cfg
    train_ids = set(ctx.representations(cfg.pivot)["id"])
    toks = [ctx.tokenizer(m) for m in cfg.models]
    dialogues = heldout_dialogues(cfg, train_ids, toks)
    models: dict[str, tuple[str, str]] = {cfg.pivot: ("pivot", cfg.pivot)}
    if cfg.eval_sources:
        models.update({s: ("source", s) for s in cfg.sources})
    models.update({k: ("baseline", v["path"])
                   for k, v in ctx.summaries["baselines"]["baselines"].items()})
    models.update({k: ("target", v["path"])
                   for k, v in ctx.summaries["targets"]["targets"].items()})
    models.update({k.upper() if k == "sce" else k: ("merge", v["path"])
                   for k, v in ctx.summaries["merges"]["merges"].items()})
    results = evaluate_models(cfg, models, dialogues, ctx.run.checkpoints / "eval")
    table = fusechat_table(results)
    judge_note = next((r["mtbench"]["judge_note"] for r in results.values()
                       if r.get("mtbench", {}).get("judge_note")), "")
    return {"heldout_dialogues": [d.id for d in dialogues],
            "metrics": {"table": table, "fusechat_table": table, "judge_note": judge_note,
                        "heldout_dialogues": len(dialogues),
                        "eval_seconds": {k: r["seconds"] for k, r in results.items()}}}


# (name, fn, doc): workbench.fusion.run wraps them as Stage objects after part 1's stages
PART2_STAGES: tuple[tuple[str, Callable[[Any], dict[str, Any]], str], ...] = (
    ("targets", stage_targets, "pairwise fusion training: one target per source"),
    ("baselines", stage_baselines, "SFT-only and Multi baselines"),
    ("merges", stage_merges, "SCE and the other merge methods over the targets"),
    ("evaluation", stage_evaluation, "held-out CE, MT-Bench judge, zero-shot; Table 1"),
)
