"""`workbench spans compare`: rows per member, CIs, paired differences to a baseline on shared posts."""

import json

import pytest
import yaml

from workbench.spans import cli
from workbench.spans.compare import compare_runs, seed_spread, to_markdown


def _run(root, name, encoder, rows, cv, trial):
    """A finished run folder as run_spans writes it (config, metrics table, per-post F1 lists)."""
    p = root / name
    (p / "artifacts" / "per_item").mkdir(parents=True)
    (p / "config.yaml").write_text(yaml.safe_dump({"encoder": encoder, "lora_r": 0, "max_length": 128,
                                                   "cv_limit": 4, "cv_folds": 2}))
    (p / "metrics.json").write_text(json.dumps({"table": rows}))
    for fname, ids, values in (("cv_char_f1", ["train:0", "train:1", "train:2", "train:3"], cv),
                               ("char_f1", ["trial:0", "trial:1", "trial:2"], trial)):
        (p / "artifacts" / "per_item" / f"{fname}.json").write_text(json.dumps(
            {"metric": fname, "ids": ids, "values": values}))
    return p


def _row(member, cv_f1):
    return {"member": member, "head": "cls", "crf": True, "epoch": 1, "cv_f1": cv_f1, "cv_sd": 1.0,
            "cv_f1_lo": cv_f1 - 5, "cv_f1_hi": cv_f1 + 5, "cv_f1_n": 4, "trial_f1": 50.0,
            "trial_f1_lo": 40.0, "trial_f1_hi": 60.0, "trial_f1_n": 3}


def test_compare_pairs_each_row_with_the_first_runs_best_member(tmp_path):
    a = _run(tmp_path, "a", "minilm-l6", [_row("x", 40.0), _row("y", 60.0)],
             {"x": [0, 0, 1, 1], "y": [0.5, 0.5, 1, 1]}, {"x": [0, 1, 1], "y": [1, 1, 1]})
    b = _run(tmp_path, "b", "smollm2", [_row("z", 70.0)],
             {"z": [0.75, 0.75, 1, 1]}, {"z": [1, 1, 1]})
    rows = compare_runs([a, b])
    by = {(r["run"], r["member"]): r for r in rows}
    assert by[("a", "y")]["baseline"] and not by[("a", "x")]["baseline"]
    # hand computed: z - y on the 4 CV posts = +0.25, +0.25, 0, 0 -> mean 12.5 points
    z = by[("b", "z")]
    assert z["encoder"] == "smollm2" and z["cv_vs_base_diff"] == 12.5 and z["cv_vs_base_n"] == 4
    assert z["trial_vs_base_verdict"] == "same" and z["trial_vs_base_diff"] == 0.0
    x = by[("a", "x")]
    assert x["cv_vs_base_diff"] == -25.0  # (-0.5 - 0.5 + 0 + 0) / 4
    md = to_markdown(rows)
    assert md.count("\n") == 5 and "| baseline |" in md and "+12.50" in md


def test_compare_baseline_option_and_bad_inputs(tmp_path, capsys):
    a = _run(tmp_path, "a", "minilm-l6", [_row("x", 40.0), _row("y", 60.0)],
             {"x": [0, 0, 1, 1], "y": [0.5, 0.5, 1, 1]}, {"x": [0, 1, 1], "y": [1, 1, 1]})
    rows = compare_runs([a], baseline="a:x")
    assert [r["baseline"] for r in rows] == [True, False]
    with pytest.raises(ValueError, match="a:nope"):
        compare_runs([a], baseline="a:nope")
    assert cli.main(["spans", "compare", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    out = tmp_path / "cmp.md"
    assert cli.main(["spans", "compare", str(a), "--out", str(out)]) == 0
    assert out.read_text().startswith("| run |") and json.loads((tmp_path / "cmp.json").read_text())[0]["run"] == "a"


def test_train_rejects_an_unknown_key_in_one_line(capsys):
    assert cli.main(["spans", "train", "--preset", "smoke", "-p", "num_head=2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "num_head" in err and "\n" not in err


def test_seed_spread_groups_one_variant_trained_with_several_seeds(tmp_path):
    a = _run(tmp_path, "a", "minilm-l6", [_row("x", 40.0), _row("y", 60.0)],
             {"x": [0, 0, 1, 1], "y": [0.5, 0.5, 1, 1]}, {"x": [0, 1, 1], "y": [1, 1, 1]})
    b = _run(tmp_path, "b", "minilm-l6", [_row("x-s1", 44.0)], {"x-s1": [0, 0, 1, 1]}, {"x-s1": [0, 1, 1]})
    rows = compare_runs([a, b])
    # x, y and x-s1 share encoder/head/crf/config here, so they form one group of 3 "seeds"
    (g,) = seed_spread(rows)
    assert g["n_seeds"] == 3 and g["cv_f1_mean"] == 48.0 and g["cv_f1_range"] == 20.0
    assert g["cv_f1_sd"] == 10.58  # stdev(40, 60, 44)
    c = _run(tmp_path, "c", "smollm2", [_row("z", 70.0)], {"z": [1, 1, 1, 1]}, {"z": [1, 1, 1]})
    assert len(seed_spread(compare_runs([a, c]))) == 1  # z (another encoder) is alone: no spread


@pytest.mark.slow
def test_train_runs_a_preset_with_list_overrides_and_prints_its_table(tmp_path, capsys):
    assert cli.main(["spans", "train", "--preset", "smoke", "--output-dir", str(tmp_path), "-p", "cv_folds=2",
                     "-p", "heads=[cls]", "-p", "crf=[true]"]) == 0
    out = capsys.readouterr().out
    assert "| cls-crf | tiny:bert |" in out and (tmp_path / "toxic_spans").is_dir()
