"""Hugging Face hub ids -> local folders: the one resolver every loader, merge and export uses.

``local_model_dir(name)`` turns any model name into a folder on disk:

- registry names (``smollm2-135m-instruct``, ``tiny:llama``, ...): their prepared cache folder;
- an existing local folder: itself;
- a hub id (``owner/name``, optionally ``owner/name@revision``): a ``huggingface_hub``
  snapshot. Offline (``HF_HUB_OFFLINE=1``, the CLI's default) it is looked up in the local hub
  cache only (``local_files_only=True``); online the missing files are downloaded. Either way
  only safetensors weights, JSON configs and tokenizer files are fetched (``allow_patterns``):
  ``.bin`` / ``.pt`` pickles never are, nor other runtimes' copies (``consolidated*``,
  ``original/``). A model that is not cached offline fails with one
  line naming the id, the cache folder and the download command.

The cache folder is read from the environment at call time: ``HF_HUB_CACHE``, else
``HF_HOME/hub``, else huggingface_hub's default (``~/.cache/huggingface/hub``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

WEIGHT_PATTERNS = ("*.safetensors", "*.safetensors.index.json", "*.json", "*.jinja",
                   "tokenizer.model", "spiece.model", "*.tiktoken", "vocab.txt", "merges.txt")
CONFIG_PATTERNS = ("config.json",)
# other runtimes' copies of the weights (Mistral's `consolidated`, Llama 3's `original/`)
IGNORE_PATTERNS = ("consolidated*.safetensors", "original/*")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*(@[\w./-]+)?$")
_TRUE = ("1", "true", "yes", "on")
# the hub's canonical models from before owners (still served, e.g. the toxic spans encoders)
LEGACY_IDS = re.compile(r"^(bert|roberta|albert|xlnet|distilbert|distilroberta|xlm-roberta|gpt2|"
                        r"t5|bart|electra|deberta)(-[A-Za-z0-9_.]+)*$")


def hub_offline() -> bool:
    """``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set, read now (not at import)."""
    return any(os.environ.get(v, "").strip().lower() in _TRUE
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_cache_dir() -> Path:
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.environ["HUGGINGFACE_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def is_hub_id(name: str | os.PathLike) -> bool:
    """``owner/name`` (one slash, no leading ``.``/``/``), or a legacy id without an owner
    (``bert-large-cased``, ``roberta-large``, ...: ``LEGACY_IDS``), that is not an existing
    local path."""
    s = str(name)
    return bool(_HUB_ID.match(s) or LEGACY_IDS.match(s)) and not Path(s).expanduser().exists()


def _split(name: str) -> tuple[str, str | None]:
    repo, _, rev = name.partition("@")
    return repo, rev or None


def snapshot(name: str, *, config_only: bool = False) -> Path:
    """The local snapshot folder of a hub id (see the module docstring); one-line errors."""
    from huggingface_hub import snapshot_download

    repo, revision = _split(str(name))
    patterns = list(CONFIG_PATTERNS if config_only else WEIGHT_PATTERNS)
    cache = hub_cache_dir()
    offline = hub_offline()
    what = "config.json" if config_only else "weights"
    try:
        folder = Path(snapshot_download(repo, revision=revision, cache_dir=str(cache),
                                        allow_patterns=patterns,
                                        ignore_patterns=list(IGNORE_PATTERNS),
                                        local_files_only=offline))
    except Exception as e:  # huggingface_hub raises several kinds; the user needs one line
        if type(e).__name__ == "IncompleteSnapshotError":
            raise ValueError(f"model {name!r}: its snapshot in {cache} is incomplete (an "
                             f"interrupted download?); download its {what} again") from None
        if offline or type(e).__name__ in ("LocalEntryNotFoundError", "OfflineModeIsEnabled"):
            include = " ".join(f"'{p}'" for p in patterns[:3])
            raise ValueError(
                f"model {name!r}: not in the Hugging Face cache {cache} and the hub is offline "
                f"(HF_HUB_OFFLINE=1); download its {what} once online (`hf download {repo} "
                f"--include {include}`), or pass a local folder") from None
        first = (str(e).strip().splitlines() or [""])[0]
        raise ValueError(f"model {name!r}: hub download failed: {type(e).__name__}: {first}") from None
    if not (folder / "config.json").exists():
        raise ValueError(f"model {name!r}: the hub snapshot {folder} has no config.json")
    if not config_only and not any(folder.glob("*.safetensors")):
        raise ValueError(f"model {name!r}: the hub snapshot {folder} has no safetensors weights "
                         "(only safetensors are loaded; .bin pickles never are)")
    return folder


def local_model_dir(name: str | os.PathLike, *, config_only: bool = False) -> Path:
    """Any model name -> a local folder (registry name, local folder, or hub snapshot; the same
    as ``workbench.common.models.resolve_model``). ``config_only``: a hub snapshot needs only
    its config.json (no weights are fetched or required)."""
    from workbench.common.models import resolve_model

    s = str(name)
    if config_only and is_hub_id(s):
        return snapshot(s, config_only=True)
    return Path(resolve_model(s))


def model_config_path(name: str | os.PathLike) -> Path:
    """``config.json`` of a model name without fetching weights (for ``workbench plan``)."""
    s = str(name)
    if is_hub_id(s):
        return snapshot(s, config_only=True) / "config.json"
    p = Path(s).expanduser()
    if p.is_file() and p.suffix == ".json":
        return p
    return local_model_dir(s) / "config.json"
