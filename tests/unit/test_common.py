"""Registry, configs with presets, atomic IO and run directories."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import pytest

from workbench.common.config import RunConfig
from workbench.common.io import atomic_write_text, write_json
from workbench.common.registry import Registry
from workbench.common.rundir import RunDir, list_runs


def test_registry_register_get_and_did_you_mean():
    reg = Registry("merge method")

    @reg.register("sce", paper="arXiv:2408.07990")
    def sce():
        return 1

    assert reg.get("sce") is sce
    assert reg.meta("sce") == {"paper": "arXiv:2408.07990"}
    assert "sce" in reg and reg.names() == ["sce"]
    with pytest.raises(ValueError, match=r"unknown merge method 'sec'\. Did you mean: sce\?"):
        reg.get("sec")
    with pytest.raises(ValueError, match="already registered"):
        reg.add("sce", sce)


@dataclass(frozen=True, kw_only=True)
class _Cfg(RunConfig):
    PRESETS: ClassVar[str] = ""
    model: str = field(default="tiny:llama", metadata={"help": "model"})
    num_blocks: int = 2
    lr: float = 1e-3
    kind: Literal["mix", "mha", "mlp"] = "mix"
    layers: tuple[int, ...] = ()

    @classmethod
    def presets(cls):
        return {"smoke": {"num_blocks": 1}, "paper": {"num_blocks": 12, "model": "x/y"}}


def test_config_presets_overrides_and_none():
    cfg = _Cfg.from_preset("paper", num_blocks=None, lr=1)  # None keeps preset; int -> float
    assert (cfg.num_blocks, cfg.model, cfg.preset, cfg.lr) == (12, "x/y", "paper", 1.0)
    assert isinstance(cfg.lr, float)
    assert _Cfg.from_dict({"layers": [1, 2]}).layers == (1, 2)


def test_config_errors_are_one_line_and_helpful():
    with pytest.raises(ValueError, match=r"unknown config key 'num_block'.*Did you mean: num_blocks"):
        _Cfg.from_preset("smoke", num_block=3)
    with pytest.raises(ValueError, match=r"unknown preset 'smok'.*Did you mean: smoke"):
        _Cfg.from_preset("smok")
    with pytest.raises(TypeError, match="num_blocks"):
        _Cfg(num_blocks="three")
    with pytest.raises(ValueError, match=r"kind.*must be one of"):
        _Cfg(kind="mxi")
    with pytest.raises(ValueError, match="dtype"):
        _Cfg(dtype="fp8")


def test_config_yaml_roundtrip(tmp_path):
    cfg = _Cfg(num_blocks=5, layers=(1, 2))
    path = tmp_path / "c.yaml"
    import yaml

    path.write_text(yaml.safe_dump(cfg.to_dict()))
    assert _Cfg.from_yaml(path) == cfg


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "m.json"
    with pytest.raises(TypeError):
        write_json(target, {"x": object()})
    assert list(tmp_path.iterdir()) == []
    atomic_write_text(target, "ok")
    assert target.read_text() == "ok" and len(list(tmp_path.iterdir())) == 1


def test_rundir_complete_only_after_finish(tmp_path):
    cfg = _Cfg(output_dir=str(tmp_path), run_name="r1", seed=7)
    run = RunDir.create(cfg, kind="demo")
    assert (run.path / "config.yaml").exists() and (run.path / "env.json").exists()
    env = json.loads((run.path / "env.json").read_text())
    assert env["seed"] == 7 and env["versions"]["torch"]
    run.write_artifact_json("order.json", [1, 2])
    assert not run.is_complete() and list_runs("demo", tmp_path) == []
    run.finish({"ppl": 1.5})
    assert run.is_complete() and list_runs("demo", tmp_path) == [run.path]
    assert run.metrics() == {"ppl": 1.5} and run.config()["num_blocks"] == 2


def test_killed_run_never_looks_complete(tmp_path):
    """A process killed mid-run leaves config/artifacts but no metrics.json."""
    code = (
        "import os\n"
        "from workbench.common.rundir import RunDir\n"
        f"run = RunDir.create({{'output_dir': {str(tmp_path)!r}, 'run_name': 'k', 'seed': 0}}, 'demo')\n"
        "run.write_artifact_json('partial.json', [1])\n"
        "os._exit(9)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=os.environ.copy())
    assert proc.returncode == 9
    assert (tmp_path / "demo" / "k" / "artifacts" / "partial.json").exists()
    assert list_runs("demo", tmp_path) == []
    assert not [p for p in (tmp_path / "demo" / "k").rglob("*.tmp")]


def test_write_json_is_strict(tmp_path):
    write_json(tmp_path / "m.json", {"score": float("nan"), "rows": [{"x": float("inf")}, 1.5]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"score": None, "rows": [{"x": None}, 1.5]}


def test_optional_import_missing_module_is_none_but_broken_dependency_raises(tmp_path, monkeypatch):
    from workbench.common.papers import optional_import

    assert optional_import("workbench.no_such_paper_module") is None
    assert optional_import("workbench.common.io").__name__ == "workbench.common.io"
    (tmp_path / "wb_broken_mod.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        optional_import("wb_broken_mod")
