"""Devices, dtypes, placement, seeds, logging and progress bars: resolved once per run.

Placement is decided here and nowhere else: ``resolve_placement(device, dtype, device_map,
max_memory)`` (or ``placement_from(cfg)`` for a ``RunConfig``) gives the keyword arguments of
``workbench.common.models.load_causal_lm``. The rules:

- device ``auto``: CUDA when available, else CPU (MPS only when named);
- dtype ``auto``: bfloat16 on CUDA with compute capability >= 8, float32 elsewhere (so CPU
  profiles keep float32);
- ``device_map`` (``"auto"``, ``"balanced"``, ... or a module -> device dict) and ``max_memory``
  (``{0: "70GiB", "cpu": "200GiB"}``, or one string for every GPU) shard a model that exceeds
  one device with accelerate's big-model loading; without them the model goes to ``device``.
  On CUDA the environment can set both for a whole process (``WORKBENCH_DEVICE_MAP=auto``,
  ``WORKBENCH_MAX_MEMORY``), as the launch lines of ``workbench plan`` do.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch

with warnings.catch_warnings():  # tqdm.auto in a kernel without ipywidgets warns on import
    warnings.simplefilter("ignore")
    from tqdm.auto import tqdm

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` picks CUDA when available, else CPU (MPS is opt-in by naming it)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return dev


def resolve_dtype(dtype: str = "auto", device: torch.device | None = None) -> torch.dtype:
    """`auto` is bf16 on CUDA with compute capability >= 8, float32 elsewhere."""
    if dtype == "auto":
        dev = device or resolve_device()
        if dev.type == "cuda" and torch.cuda.get_device_capability(dev)[0] >= 8:
            return torch.bfloat16
        return torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; valid: auto, {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


def _as_device(device: Any) -> torch.device:
    if device is None:
        return torch.device("cpu")
    return device if isinstance(device, torch.device) else resolve_device(str(device))


def _as_dtype(dtype: Any, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    return resolve_dtype("auto" if dtype is None else str(dtype).removeprefix("torch."), device)


def parse_max_memory(max_memory: Any) -> dict[int | str, str] | None:
    """``"70GiB"`` -> that much on every visible GPU; a mapping keeps its values, with digit
    keys as GPU indices (YAML gives ``"0"``); None -> None."""
    if max_memory is None or max_memory == {}:
        return None
    if isinstance(max_memory, str | int | float):
        n = torch.cuda.device_count()
        if n == 0:
            raise ValueError(f"max_memory {max_memory!r} for every GPU, but no GPU is visible; "
                             "give a mapping such as {'cpu': '64GiB'}")
        return dict.fromkeys(range(n), max_memory)
    if not isinstance(max_memory, dict):
        raise ValueError(f"max_memory must be a size string or a mapping, got {max_memory!r}")
    return {int(k) if str(k).isdigit() else str(k): v for k, v in max_memory.items()}


@dataclass(frozen=True)
class Placement:
    """Where and in which dtype a model is loaded (see the module docstring)."""

    device: torch.device
    dtype: torch.dtype
    device_map: str | dict | None = None
    max_memory: dict | None = None

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments of ``load_causal_lm`` (``device_map``/``max_memory`` only when set)."""
        out: dict[str, Any] = {"device": self.device, "dtype": self.dtype}
        if self.device_map is not None:
            out["device_map"] = self.device_map
        if self.max_memory is not None:
            out["max_memory"] = self.max_memory
        return out


def resolve_placement(device: Any = "auto", dtype: Any = "auto", device_map: Any = None,
                      max_memory: Any = None) -> Placement:
    """Resolve a placement once (``None`` device = CPU, ``None`` dtype = ``auto``). On CUDA,
    without an explicit ``device_map`` / ``max_memory``, the environment's
    ``WORKBENCH_DEVICE_MAP`` (e.g. ``auto``) and ``WORKBENCH_MAX_MEMORY`` (e.g. ``70GiB`` or
    ``{"0": "70GiB", "cpu": "200GiB"}`` as JSON) apply: ``workbench plan`` prints them for a
    model that exceeds one GPU, and no config (nor its run-folder hash) changes."""
    dev = _as_device(device)
    if dev.type == "cuda" and device_map is None and max_memory is None:
        device_map = os.environ.get("WORKBENCH_DEVICE_MAP") or None
        env_mem = os.environ.get("WORKBENCH_MAX_MEMORY") or None
        if env_mem is not None:
            max_memory = json.loads(env_mem) if env_mem.lstrip().startswith("{") else env_mem
    if max_memory is not None and device_map is None:
        device_map = "auto"  # a memory cap means accelerate places the model
    return Placement(device=dev, dtype=_as_dtype(dtype, dev), device_map=device_map or None,
                     max_memory=parse_max_memory(max_memory))


def placement_from(cfg: Any, **overrides: Any) -> dict[str, Any]:
    """``load_causal_lm`` keyword arguments from a config's ``device``, ``dtype`` and (when the
    config has them) ``device_map`` / ``max_memory``; ``overrides`` win over the config:
    ``load_causal_lm(name, **placement_from(cfg))``."""
    fields = {k: getattr(cfg, k, None) for k in ("device", "dtype", "device_map", "max_memory")}
    fields.update(overrides)
    return resolve_placement(fields["device"] or "auto", fields["dtype"] or "auto",
                             fields["device_map"], fields["max_memory"]).kwargs()


def model_device(model: Any) -> torch.device:
    """The device a model's inputs go to: its first parameter's (HF's ``model.device``, which
    is also right for a model spread by ``device_map``)."""
    dev = getattr(model, "device", None)
    if isinstance(dev, torch.device):
        return dev
    return next(model.parameters()).device


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch once per run; return a torch generator for kernels."""
    random.seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover
        pass
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def setup_logging(level: int | str = logging.INFO) -> None:
    """For notebooks and the CLI only: the library itself installs no handlers."""
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "gradio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def progress_mode() -> str:
    """How `track` reports, from ``WORKBENCH_PROGRESS``:

    - ``bar`` (or ``1``): tqdm bars (widgets in Jupyter, text on a terminal);
    - ``summary``: no bar; one line per finished loop ("desc: N in X s") on stderr, so an
      executed notebook (papermill: ``workbench reproduce`` sets it) keeps a few lines, not
      hundreds of bar updates;
    - ``0`` / ``off``: nothing;
    - unset / ``auto``: bars in a Jupyter kernel or on a terminal, else ``summary``.
    """
    v = os.environ.get("WORKBENCH_PROGRESS", "auto").strip().lower()
    if v in ("0", "off", "false", "no", "none"):
        return "off"
    if v in ("1", "bar", "bars", "true", "yes"):
        return "bar"
    if v == "summary":
        return "summary"
    interactive = "ipykernel" in sys.modules or (hasattr(sys.stderr, "isatty")
                                                 and sys.stderr.isatty())
    return "bar" if interactive else "summary"


class _Summary:
    """`track` in ``summary`` mode: iterates like tqdm, prints one line when the loop ends."""

    def __init__(self, iterable, desc: str | None, total: int | None):
        self.iterable, self.desc, self.total, self.n = iterable, desc or "progress", total, 0
        self._t0 = time.perf_counter()
        self._done = False

    def __iter__(self):
        for x in self.iterable:
            self.n += 1
            yield x
        self.close()

    def __len__(self):
        return self.total if self.total is not None else len(self.iterable)

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, *a, **k) -> None:
        pass

    set_description = set_postfix_str = refresh = set_postfix

    def close(self) -> None:
        if not self._done:
            self._done = True
            of = f"/{self.total}" if self.total is not None and self.total != self.n else ""
            print(f"{self.desc}: {self.n}{of} in {time.perf_counter() - self._t0:.1f} s",
                  file=sys.stderr, flush=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def quiet_library_progress() -> None:
    """Switch off the progress bars of transformers (and so Trainer's), datasets, the hub
    client and lm-eval's loglikelihood bars: used with ``summary``/``off`` progress."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    for mod, fn in (("transformers.utils.logging", "disable_progress_bar"),
                    ("datasets.utils.logging", "disable_progress_bar"),
                    ("huggingface_hub.utils", "disable_progress_bars")):
        with contextlib.suppress(ImportError, AttributeError):  # optional libraries
            getattr(__import__(mod, fromlist=[fn]), fn)()


def quiet_trainer(trainer, desc: str = "train") -> None:
    """A transformers/TRL Trainer under ``summary``/``off`` progress: no bar and no printed log
    dict per step (Trainer's ProgressCallback / PrinterCallback); ``summary`` prints one line
    when training ends (steps, seconds, last loss)."""
    mode = progress_mode()
    if mode == "bar":
        return
    from transformers.trainer_callback import PrinterCallback, ProgressCallback, TrainerCallback

    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    with contextlib.suppress(ImportError):  # the HTML table Trainer shows inside Jupyter
        from transformers.utils.notebook import NotebookProgressCallback

        trainer.remove_callback(NotebookProgressCallback)
    if mode != "summary":
        return

    class _TrainSummary(TrainerCallback):
        t0, loss = 0.0, None

        def on_train_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                self.loss = logs["loss"]

        def on_train_end(self, args, state, control, **kw):
            loss = f", last loss {self.loss:.4g}" if isinstance(self.loss, int | float) else ""
            print(f"{desc}: {state.global_step} steps in {time.perf_counter() - self.t0:.1f} s"
                  f"{loss}", file=sys.stderr, flush=True)

    trainer.add_callback(_TrainSummary())


def track(iterable=None, desc: str | None = None, total: int | None = None, **kw):
    """The one progress wrapper (see `progress_mode`): tqdm bars on stderr, one summary line
    per loop, or nothing."""
    mode = progress_mode()
    if mode == "summary":
        return _Summary(iterable, desc, total)
    return tqdm(iterable, desc=desc, total=total, disable=mode == "off", dynamic_ncols=True,
                **kw)
