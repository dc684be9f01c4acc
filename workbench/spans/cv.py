"""Selection by k-fold cross-validation on train, then final members on all train posts.

`run_cv` (called by `run_spans` when `cfg.cv_folds >= 2`):
1. CV set: `cfg.cv_limit` posts drawn at random from train (all when None), split into k folds.
   Each member type (head x CRF) is trained k times on k-1 folds with the `cfg.epochs` schedule;
   after every epoch the held-out fold is predicted (offsets + token probabilities).
2. Per member, by mean per-fold char F1 of those out-of-fold predictions: the epoch, the token
   threshold (members without CRF) and the post-level gate (empty prediction when the post's
   highest token probability is below `tau_post`). Then the vote size and the ensemble's gate.
3. Final members train on all train posts for the chosen number of epochs (same schedule, so the
   checkpoint matches the one CV scored); trial is scored once, as a final check.
With `cfg.workers > 1` the CV folds and the final members train in parallel processes (one torch
thread each): on 2 cores, two single-thread members beat one two-thread member. Writes
`artifacts/ensemble.json` (used by `SpanPredictor`), `artifacts/cv/*` (fold outputs, so an
interrupted run resumes) and `artifacts/per_item/{char_f1,cv_char_f1}.json` (per-post char F1).
"""

from __future__ import annotations

import logging
import os
import random
import time
from pathlib import Path

from workbench.common.io import read_json, write_json
from workbench.common.runtime import resolve_device, seed_everything
from workbench.spans.metric import post_f1, span_f1
from workbench.spans.predict import predict_batch
from workbench.spans.report import ci_columns, f1_columns, post_f1s, vote_claim, write_per_item
from workbench.spans.select import (
    TAU_POST,
    count_empty,
    ensemble_posts,
    kfold,
    post_score,
    select_ensemble,
    select_member,
    summary,
)

log = logging.getLogger(__name__)


def cv_subset(n_train: int, limit: int | None, seed: int) -> list[int]:
    """Indices of the CV posts: all, or `limit` drawn at random (sorted)."""
    if limit is None or limit >= n_train:
        return list(range(n_train))
    return sorted(random.Random(seed).sample(range(n_train), limit))


def cv_fold(cfg, head: str, crf: bool, encoder: str, seed: int, texts: list[str], spans: list[list[int]],
            folds: list[list[int]], f: int, cache: Path) -> Path:
    """Train fold `f`'s model on the other folds; write the held-out outputs after each epoch to `cache`."""
    if cache.exists():
        return cache
    from workbench.spans.train import build_tagger, encode_train, fit
    held = folds[f]
    held_set = set(held)
    tr = [i for i in range(len(texts)) if i not in held_set]
    gen = seed_everything(seed + 1000 * (f + 1))
    model, tok = build_tagger(encoder, head, crf, cfg.loss, cfg.scheme, cfg.lora_r)
    device = resolve_device(cfg.device)
    model.to(device)
    windows = encode_train(tok, [texts[i] for i in tr], [spans[i] for i in tr], cfg)
    n_batches = -(-len(windows) // cfg.batch_size)
    saved = []

    def on_eval(ep, b, losses):
        if b != n_batches - 1:
            return
        s, p = predict_batch(model, tok, [texts[i] for i in held], cfg.max_length, 2 * cfg.batch_size,
                             return_probs=True)
        saved.append({"spans": s, "probs": [[(a, b_, round(q, 4)) for a, b_, q in x] for x in p]})
        log.info("CV %s%s fold %d epoch %d: held-out char F1 %.4f", head, "+crf" if crf else "", f, ep + 1,
                 span_f1(s, [spans[i] for i in held]))

    fit(cfg, model, tok, windows, gen, device, None, on_eval, f"cv{f} {head}{'+crf' if crf else ''}")
    write_json(cache, saved)
    return cache


def cv_outputs(cfg, n: int, folds: list[list[int]], out_dir: Path) -> list[tuple[list, list]]:
    """Out-of-fold (offsets, token probs) of every CV post after each epoch: `[epoch] -> (spans, probs)`,
    read from the fold caches `out_dir/fold<f>.json` that `cv_fold` wrote."""
    outs = [([[] for _ in range(n)], [[] for _ in range(n)]) for _ in range(cfg.epochs)]
    for f, held in enumerate(folds):
        for e, rec in enumerate(read_json(out_dir / f"fold{f}.json")):
            for k, i in enumerate(held):
                outs[e][0][i], outs[e][1][i] = rec["spans"][k], [tuple(x) for x in rec["probs"][k]]
    return outs


def _init_worker(threads: int) -> None:
    import torch
    torch.set_num_threads(threads)


def run_jobs(cfg, fn, jobs: list[tuple]) -> list:
    """`fn(*job)` for each job: in this process, or in `cfg.workers` spawned processes (one torch thread
    each unless `cfg.num_threads` says otherwise); results in job order."""
    if cfg.workers <= 1 or len(jobs) <= 1:
        return [fn(*j) for j in jobs]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(min(cfg.workers, len(jobs)), mp_context=mp.get_context("spawn"),
                             initializer=_init_worker, initargs=(cfg.num_threads or 1,)) as pool:
        return [f.result() for f in [pool.submit(fn, *j) for j in jobs]]


def _cpu_s() -> float:
    """CPU seconds of this process and of its finished child processes (the workers)."""
    import resource
    return time.process_time() + sum(getattr(resource.getrusage(resource.RUSAGE_CHILDREN), k)
                                     for k in ("ru_utime", "ru_stime"))


def run_cv(cfg, run, train: dict, trial: dict, test: dict | None):
    from workbench.spans.inference import SpanPredictor
    from workbench.spans.train import member_names, train_member
    t0, c0, load0 = time.time(), _cpu_s(), os.getloadavg()[0]
    sub = cv_subset(len(train["text"]), cfg.cv_limit, cfg.seed)
    texts, golds = [train["text"][i] for i in sub], [train["spans"][i] for i in sub]
    folds = kfold(len(sub), cfg.cv_folds, cfg.seed)
    posts = cfg.gate and TAU_POST or (0.0,)
    members = member_names(cfg)
    sel: dict[str, dict] = {}
    run_jobs(cfg, cv_fold, [(cfg, head, crf, encoder, seed, texts, golds, folds, f,
                             run.artifacts / "cv" / name / f"fold{f}.json")
                            for name, encoder, head, crf, seed in members for f in range(len(folds))])
    for name, _, _, crf, _ in members:
        outs = cv_outputs(cfg, len(texts), folds, run.artifacts / "cv" / name)[:cfg.max_final_epochs]
        best = select_member(outs, golds, folds, crf, tau_posts=posts)
        best["scores"] = [post_score(p) for p in outs[best["epoch"] - 1][1]]
        default = select_member(outs[-1:], golds, folds, crf, (0.5,), (0.0,))
        best["default"], best["default_items"] = summary(default["folds"]), post_f1s(default["preds"], golds)
        sel[name] = best
        log.info("CV %s: epoch %d tau_token %s tau_post %.2f: char F1 %.4f +- %.4f", name, best["epoch"],
                 best["tau_token"], best["tau_post"], best["cv_f1"], best["cv_sd"])
    voters = list(cfg.ensemble_members or sel)
    ens = None
    if cfg.ensemble and len(voters) > 1:
        ens = select_ensemble([sel[n]["ungated"] for n in voters], [sel[n]["scores"] for n in voters], golds,
                              folds, tau_posts=posts)
        ens["ungated"] = ensemble_posts([sel[n]["ungated"] for n in voters], [sel[n]["scores"] for n in voters],
                                        ens["min_votes"], 0.0)
    cv_s, cv_cpu = time.time() - t0, _cpu_s() - c0
    write_json(run.artifacts / "ensemble.json",
               {"voters": voters, "min_votes": ens["min_votes"] if ens else None,
                "tau_post": ens["tau_post"] if ens else 0.0, "selected_by": f"{cfg.cv_folds}-fold CV on train"})

    rows, trial_preds, cv_items, trial_items = [], {}, {}, {}
    decs = {n: {"epoch": sel[n]["epoch"], "tau_token": sel[n]["tau_token"], "tau_post": sel[n]["tau_post"]}
            for n in sel}
    finals = run_jobs(cfg, train_member, [(cfg, head, crf, train, trial, run.artifacts / "members" / name, seed,
                                           encoder, sel[name]["epoch"], decs[name])
                                          for name, encoder, head, crf, seed in members])
    for (name, encoder, head, crf, seed), m in zip(members, finals, strict=True):
        s, dec = sel[name], decs[name]
        trial_preds[name] = m["trial_pred"]
        trial_items[name] = [post_f1(p, g) for p, g in zip(m["trial_pred"], trial["spans"], strict=True)]
        cv_items[name] = [post_f1(p, g) for p, g in zip(s["preds"], golds, strict=True)]
        rows.append({"member": name, "encoder": encoder, "head": head, "crf": crf, "seed": seed, **dec,
                     "cv_f1": round(100 * s["cv_f1"], 2), "cv_sd": round(100 * s["cv_sd"], 2),
                     "cv_f1_default": round(100 * s["default"]["cv_f1"], 2),
                     **ci_columns("cv_f1_default", s["default_items"]),
                     "trial_f1": round(100 * m["trial_f1"], 2),
                     **ci_columns("trial_f1", trial_items[name]),
                     "empty_before": count_empty(s["ungated"], golds)["empty_pred"],
                     "empty_after": count_empty(s["preds"], golds)["empty_pred"],
                     "train_s": round(m["train_s"], 1), "train_cpu_s": round(m.get("train_cpu_s", 0.0), 1)})
    if ens is not None:
        # the predictor's default (ensemble.json), from the members' trial outputs (no second pass)
        by_name = dict(zip([x[0] for x in members], finals, strict=True))
        voted = ensemble_posts([by_name[n]["ungated"] for n in voters], [by_name[n]["scores"] for n in voters],
                               ens["min_votes"], ens["tau_post"])
        trial_items["ensemble"] = [post_f1(p, g) for p, g in zip(voted, trial["spans"], strict=True)]
        cv_items["ensemble"] = [post_f1(p, g) for p, g in zip(ens["preds"], golds, strict=True)]
        rows.append({"member": "ensemble", "encoder": None, "head": "vote of " + ", ".join(voters), "crf": None,
                     "seed": None, "epoch": None, "tau_token": None, "min_votes": ens["min_votes"],
                     "tau_post": ens["tau_post"], "cv_f1": round(100 * ens["cv_f1"], 2),
                     "cv_sd": round(100 * ens["cv_sd"], 2), "trial_f1": round(100 * span_f1(voted, trial["spans"]), 2),
                     **ci_columns("trial_f1", trial_items["ensemble"]),
                     "empty_before": count_empty(ens["ungated"], golds)["empty_pred"],
                     "empty_after": count_empty(ens["preds"], golds)["empty_pred"],
                     "train_s": round(sum(r["train_s"] for r in rows if r["member"] in voters), 1)})
        trial_preds["ensemble"] = voted
    for r in rows:
        r.update(ci_columns("cv_f1", cv_items[r["member"]]))
    if test is not None:
        test_items = {}
        for r in rows:
            who = None if r["member"] == "ensemble" else [r["member"]]
            pred = SpanPredictor(run.path, who).predict_spans(test["text"])
            cols, per = f1_columns(pred, test["spans"], "test_f1")
            r.update(cols)
            test_items[r["member"]] = per["test_f1"]
        write_per_item(run.artifacts, "test_char_f1", [f"test:{i}" for i in range(len(test["text"]))], test_items)
    write_per_item(run.artifacts, "char_f1", [f"trial:{i}" for i in range(len(trial["text"]))], trial_items)
    write_per_item(run.artifacts, "cv_char_f1", [f"train:{i}" for i in sub], cv_items)
    single = [r["member"] for r in rows if r["member"] != "ensemble"]
    best_cv = max(single, key=lambda n: sel[n]["cv_f1"])
    claims = ([{"on": "trial", **vote_claim(trial_items, "ensemble", best_cv)},
               {"on": "cv", **vote_claim(cv_items, "ensemble", best_cv)}] if "ensemble" in trial_items else [])
    run.write_artifact_json("trial_predictions.json", {"members": single, "voters": voters,
                                                       "preds": [trial_preds[n] for n in single],
                                                       "ensemble": trial_preds.get("ensemble")})
    best = max(rows, key=lambda r: r["cv_f1"])
    free = count_empty(golds, golds)["span_free"]
    run.finish({"table": rows, "best_member": best["member"], "best_trial_f1": best["trial_f1"],
                **{f"best_{k}": best.get(k) for k in ("trial_f1_lo", "trial_f1_hi", "trial_f1_n")},
                "best_cv_member": best_cv, "voters": voters,
                "min_votes": ens["min_votes"] if ens else None, "tau_post": ens["tau_post"] if ens else 0.0,
                "selection": f"{cfg.cv_folds}-fold CV on {len(sub)} train posts; trial = final check",
                "cv_span_free_posts": free, "claims": claims,
                "n_train": len(train["text"]), "n_trial": len(trial["text"]), "n_cv": len(sub),
                "cv_s": round(cv_s, 1), "cv_cpu_s": round(cv_cpu, 1), "total_s": round(time.time() - t0, 1),
                "total_cpu_s": round(_cpu_s() - c0, 1),
                "load_avg": [round(load0, 2), round(os.getloadavg()[0], 2)], "cpu_count": os.cpu_count()})
    return run
