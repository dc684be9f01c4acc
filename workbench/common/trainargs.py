"""``training_args``: any ``transformers.TrainingArguments`` field passed through a run config
into the Trainer / TRL config of every training stage (gradient accumulation, warm-up,
checkpointing, FSDP / DeepSpeed, ...), plus ``resume_from_checkpoint``.

    SEFTConfig.from_preset("paper", training_args={"gradient_accumulation_steps": 8,
                                                    "save_strategy": "steps", "save_steps": 200})

Keys are checked against the dataclass fields (did-you-mean on a typo) when the config is built;
``output_dir`` is the run folder's and cannot be set. ``resume_from_checkpoint``: unset = resume
from the last checkpoint of the stage's folder when there is one (only with a ``save_strategy``
that writes checkpoints), ``True`` / ``"last"`` the same, ``False`` = start over, a path = that
checkpoint.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RESERVED = ("output_dir",)


@functools.lru_cache(maxsize=1)
def training_arg_fields() -> frozenset[str]:
    from transformers import TrainingArguments

    return frozenset(f.name for f in dataclasses.fields(TrainingArguments) if f.init)


def check_training_args(values: Any, owner: str = "training_args") -> None:
    """Raise a one-line ValueError unless ``values`` is a mapping of TrainingArguments fields."""
    if not isinstance(values, dict):
        raise ValueError(f"{owner} must be a mapping of TrainingArguments fields, got "
                         f"{type(values).__name__}")
    if not values:
        return  # nothing to check: transformers is not imported
    from workbench.common.registry import did_you_mean

    fields = training_arg_fields()
    for key in values:
        if key in RESERVED:
            raise ValueError(f"{owner}: {key!r} is set by the workbench (the run folder)")
        if key not in fields:
            raise ValueError(f"{owner}: {key!r} is not a TrainingArguments field."
                             f"{did_you_mean(str(key), sorted(fields))}")


def split_resume(values: dict[str, Any] | None) -> tuple[dict[str, Any], Any]:
    """``(TrainingArguments keyword arguments, the resume_from_checkpoint request)``."""
    values = dict(values or {})
    return values, values.pop("resume_from_checkpoint", None)


def resume_checkpoint(request: Any, out_dir: str | Path) -> str | None:
    """The checkpoint ``trainer.train`` resumes from (see the module docstring), or None."""
    from transformers.trainer_utils import get_last_checkpoint

    if request is False:
        return None
    if request not in (None, True, "last", "auto"):
        path = Path(str(request))
        if not path.is_dir():
            raise ValueError(f"resume_from_checkpoint {request!r}: no such checkpoint folder")
        return str(path)
    last = get_last_checkpoint(str(out_dir)) if Path(out_dir).is_dir() else None
    if last:
        log.info("resuming from %s", last)
    return last
