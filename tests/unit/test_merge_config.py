"""MergeConfig, the mergekit-style YAML reader and parameter binding."""

import pytest
import yaml

from workbench.fusion.merge import MergeConfig, bind_params, load_merge_yaml

FUSECHAT_YAML = """
models:
  - model: pivot
  - model: target_a
    parameters: {weight: 0.3}
  - model: target_b
merge_method: sce
base_model: pivot
parameters: {select_topk: 0.1}
dtype: bfloat16
"""


def _write(tmp_path, text):
    p = tmp_path / "merge.yml"
    p.write_text(text)
    return p


def test_fusechat_yaml_maps_to_config(tmp_path):
    cfg = load_merge_yaml(_write(tmp_path, FUSECHAT_YAML), out_dir="x")
    assert cfg.models == ("pivot", "target_a", "target_b")
    assert cfg.base_model == "pivot" and cfg.merge_method == "sce"
    assert cfg.parameters == {"select_topk": 0.1} and cfg.merge_dtype == "bfloat16"
    assert cfg.model_parameters == ({}, {"weight": 0.3}, {})
    assert cfg.out_dir == "x"


def test_config_dict_round_trip(tmp_path):
    cfg = load_merge_yaml(_write(tmp_path, FUSECHAT_YAML))
    p = tmp_path / "resolved.yaml"
    p.write_text(yaml.safe_dump(cfg.to_dict()))
    assert load_merge_yaml(p) == cfg
    assert MergeConfig.from_yaml(p) == cfg


@pytest.mark.parametrize("text, match", [
    (FUSECHAT_YAML + "merge_methd: sce\n", r"unknown key 'merge_methd'.*Did you mean: merge_method"),
    (FUSECHAT_YAML.replace("merge_method: sce", "merge_method: sec"),
     r"unknown merge_method 'sec'.*Did you mean: sce"),
    (FUSECHAT_YAML.replace("parameters: {weight", "paramters: {weight"),
     r"unknown key 'paramters' in models entry.*Did you mean: parameters"),
    ("slices: []\nmerge_method: sce\n", "slices"),
    (FUSECHAT_YAML.replace("dtype: bfloat16", "dtype: bfloat61"), "merge_dtype must be one of"),
])
def test_bad_yaml_one_line_errors(tmp_path, text, match):
    with pytest.raises(ValueError, match=match) as e:
        load_merge_yaml(_write(tmp_path, text))
    assert "\n" not in str(e.value)


def test_config_validation():
    with pytest.raises(ValueError, match="needs base_model"):
        MergeConfig(models=("a",), merge_method="sce")
    MergeConfig(models=("a", "b"), merge_method="linear")  # linear needs no base
    with pytest.raises(ValueError, match="models is empty"):
        MergeConfig(models=(), base_model="p")
    with pytest.raises(ValueError, match="per-model parameter 'select_topk'"):
        MergeConfig(models=("a",), base_model="p", model_parameters=({"select_topk": 1},))


def test_bind_params_checks_names_and_aliases():
    assert bind_params("sce", {"select_topk": 0.5, "select_scope": "weights_and_deltas"}, [{}],
                       None) == {"select_topk": 0.5, "variant": "masked"}
    assert bind_params("ties", {"lambda": 2.0, "int8_mask": True}, [{"density": 0.6}, {}],
                       None) == {"lambda_": 2.0, "density": [0.6, None]}
    with pytest.raises(ValueError, match=r"no parameter 'select_top'.*Did you mean: select_topk"):
        bind_params("sce", {"select_top": 0.1}, [{}], None)
    with pytest.raises(ValueError, match="takes no per-model 'weight'"):
        bind_params("sce", {}, [{"weight": 1.0}], None)
    assert "generator" in bind_params("dare_linear", {}, [{}], None)
