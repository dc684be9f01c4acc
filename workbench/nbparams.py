"""`workbench reproduce -p key=value` checked before any kernel starts.

A key must be a name in the notebook's `parameters` cell (papermill would inject an unknown one
and the notebook would silently run its default), and its value must fit the type of the paper
config field of the same name. A model name must be one the workbench can load here. All of it
reads files (the notebook JSON, the config class's source) and imports neither torch nor the
paper: a typo costs well under 2 s.
"""

from __future__ import annotations

import ast
import json
import os
import typing
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from workbench.common.config import _coerce, _origin_types
from workbench.common.papers import PAPERS
from workbench.common.registry import did_you_mean

# set by `workbench reproduce` itself (--profile, --results), never by -p
RESERVED = {"preset": "--profile", "output_dir": "--results"}
# config fields that name a model (a registry name, a tiny model, a folder or a hub id)
MODEL_KEYS = ("model", "pivot", "sources", "policy", "reviser_base", "external_model",
              "judge_model", "encoder", "encoders")
_PKG = Path(__file__).parent
_TYPE_NAMES = {"int": int, "float": float, "str": str, "bool": bool, "tuple": tuple,
               "list": list, "dict": dict, "Literal": Literal, "Optional": typing.Optional,
               "Any": Any, "None": None}


def notebooks_dir() -> Path:
    return Path(os.environ.get("WORKBENCH_NOTEBOOKS") or _PKG.parent / "notebooks")


def notebook_parameters(kind: str) -> tuple[str, ...]:
    """Names assigned in the notebook's cell tagged `parameters` (empty when no notebook)."""
    path = notebooks_dir() / f"{kind}.ipynb"
    return _parameters_of(str(path), path.stat().st_mtime_ns) if path.exists() else ()


@lru_cache(maxsize=32)
def _parameters_of(path: str, _mtime: int) -> tuple[str, ...]:
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            body = ast.parse("".join(cell.get("source", []))).body
            return tuple(t.id for node in body if isinstance(node, ast.Assign | ast.AnnAssign)
                         for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
                         if isinstance(t, ast.Name))
    return ()


def _class_fields(tree: ast.Module, name: str) -> dict[str, str]:
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            out: dict[str, str] = {}
            for base in node.bases:  # a base defined in the same file first
                if isinstance(base, ast.Name):
                    out.update(_class_fields(tree, base.id))
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    ann = ast.unparse(item.annotation)
                    if not ann.startswith("ClassVar"):
                        out[item.target.id] = ann
            return out
    return {}


@lru_cache(maxsize=16)
def config_fields(kind: str) -> dict[str, Any]:
    """field name -> type of the paper's config class (and `RunConfig`), read from source; a type
    that cannot be read from source alone is `Any` (not checked)."""
    paper = next((p for p in PAPERS if p.kind == kind), None)
    if paper is None or not paper.config:
        return {}
    file, cls = paper.config.split(":")
    fields = _class_fields(ast.parse((_PKG / "common" / "config.py").read_text()), "RunConfig")
    fields.update(_class_fields(ast.parse((_PKG / file).read_text()), cls))
    out = {}
    for k, ann in fields.items():
        try:
            out[k] = eval(ann, {"__builtins__": {}}, dict(_TYPE_NAMES))  # noqa: S307 (type names only)
        except Exception:
            out[k] = Any
    return out


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def type_error(key: str, value: Any, tp: Any) -> str | None:
    """Why `value` does not fit `tp` (None when it does, or when `tp` is unknown)."""
    if value is None or tp is Any:
        return None  # None keeps the preset value
    value = _coerce(value, tp)
    kinds = [k for k in _origin_types(tp) if isinstance(k, type)]
    if not kinds:
        return None
    bad = (isinstance(value, bool) and bool not in kinds and int in kinds) or \
        not isinstance(value, tuple(kinds))
    if bad:
        return f"parameter {key!r}: expected {_type_name(tp)}, got {value!r}"
    for arg in [tp, *typing.get_args(tp)]:
        if typing.get_origin(arg) is Literal and type(value) in {type(a) for a in typing.get_args(arg)} \
                and value not in typing.get_args(arg):
            return f"parameter {key!r}: must be one of {', '.join(map(str, typing.get_args(arg)))}, got {value!r}"
    inner = next((typing.get_args(a) for a in [tp, *typing.get_args(tp)]
                  if typing.get_origin(a) is tuple), ())
    if len(inner) == 2 and inner[1] is Ellipsis and isinstance(inner[0], type) \
            and isinstance(value, tuple):  # tuple[str, ...]: every element
        wrong = [v for v in value if not isinstance(v, inner[0])
                 or (isinstance(v, bool) and inner[0] is not bool)]
        if wrong:
            return f"parameter {key!r}: expected a list of {inner[0].__name__}, got {wrong[0]!r} in it"
    return None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _hub_cached(name: str) -> bool:
    hub = os.environ.get("HF_HUB_CACHE") or Path(
        os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface") / "hub"
    return (Path(hub) / f"models--{name.replace('/', '--')}").exists()


def model_error(key: str, name: Any) -> str | None:
    """Why `name` cannot be loaded here (None when it can, or might: online hub ids)."""
    if not isinstance(name, str):
        return None
    from workbench.common.models import all_model_names

    known = all_model_names()
    if name in known or name.startswith("tiny:") or Path(name).expanduser().exists():
        return None
    if not _offline() or _hub_cached(name):
        return None
    return (f"parameter {key!r}: unknown model {name!r} (not a workbench model name, a local "
            f"folder, or a hub id cached here; offline).{did_you_mean(name, known)}")


def check_params(name: str, profile: str, params: dict[str, Any]) -> None:
    """Raise ValueError (one line, with did-you-mean) for a key no selected notebook declares, a
    value of the wrong type, an unloadable model name, or an unknown profile / notebook."""
    from workbench.common.config import PROFILES

    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}.{did_you_mean(profile, PROFILES)} "
                         f"Available: {', '.join(PROFILES)}")
    kinds = [p.kind for p in PAPERS]
    if name != "all" and name not in kinds:
        raise ValueError(f"unknown notebook {name!r}.{did_you_mean(name, kinds)} "
                         f"Available: all, {', '.join(kinds)}")
    selected = [k for k in kinds if name in ("all", k) and notebook_parameters(k)]
    for key, value in params.items():
        if key in RESERVED:
            raise ValueError(f"parameter {key!r} is set by `workbench reproduce` itself; use "
                             f"{RESERVED[key]} instead")
        having = [k for k in selected if key in notebook_parameters(k)]
        if not having:
            valid = sorted({p for k in selected for p in notebook_parameters(k)} - set(RESERVED))
            where = f"notebook {name}" if name != "all" else "any notebook"
            raise ValueError(f"unknown parameter {key!r} for {where}.{did_you_mean(key, valid)} "
                             f"Valid: {', '.join(valid)}")
        for kind in having:
            err = type_error(key, value, config_fields(kind).get(key, Any))
            if err:
                raise ValueError(f"{err} ({kind})")
        if key in MODEL_KEYS:
            for v in value if isinstance(value, list | tuple) else [value]:
                err = model_error(key, v)
                if err:
                    raise ValueError(err)


def params_for(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """The overrides this notebook declares (with `all`, a key may belong to one paper only)."""
    declared = notebook_parameters(kind)
    return {k: v for k, v in params.items() if not declared or k in declared}


def check_results_dir(results: str | Path) -> None:
    p = Path(results)
    if p.exists() and not p.is_dir():
        raise NotADirectoryError(f"--results {results}: is a file, not a folder")
    parent = next((q for q in [p, *p.parents] if q.exists()), None)
    if parent is not None and not parent.is_dir():
        raise NotADirectoryError(f"--results {results}: {parent} is a file, not a folder")
