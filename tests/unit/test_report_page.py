"""The HTML report: claims table, our table with n and CIs beside the paper's, scale and labels,
plotly.js once, clean cells, mode 0644."""

import json
import os
import re
from types import SimpleNamespace

from workbench.report.page import write_report
from workbench.report.tables import display_rows, fmt_value


def _run(root, kind, name, table, config, extra=None, per_item=None):
    d = root / "runs" / kind / name
    (d / "artifacts" / "per_item").mkdir(parents=True)
    (d / "config.yaml").write_text("\n".join(f"{k}: {v}" for k, v in config.items()) + "\n")
    (d / "metrics.json").write_text(json.dumps({"table": table, **(extra or {})}))
    for f, body in (per_item or {}).items():
        (d / "artifacts" / "per_item" / f"{f}.json").write_text(json.dumps(body))
    return d


def test_display_rows_fold_cis_and_label_percent():
    rows = [{"model": "SFT", "win": 0.5, "judge": 5.123456789012345, "x": None, "d": -0.0001},
            {"model": "SEFT", "win": 0.62, "win_lo": 0.55, "win_hi": 0.7, "n": 40,
             "judge": 6.0, "judge_stderr": 0.25, "x": 3, "d": 0.25}]
    out = display_rows(rows, percent=["win"])
    assert list(out[1]) == ["model", "win (%)", "judge", "x", "d", "n"]
    assert out[1]["win (%)"] == "62.00 [55.00, 70.00]" and out[0]["win (%)"] == "50.00"
    assert out[1]["judge"] == "6.00 ± 0.25" and out[0]["judge"] == "5.12"  # no 16-digit floats
    assert out[0]["x"] == "–" and out[0]["d"] == "0.000"  # no None, no -0
    assert out[1]["x"] == "3" and out[1]["n"] == "40"  # counts stay integers
    assert fmt_value(-0.0) == "0.000" and fmt_value(float("nan")) == "–"


def test_report_page(tmp_path):
    table = [{"member": "m1", "trial_f1": 60.0, "trial_f1_lo": 55.0, "trial_f1_hi": 65.0,
              "trial_f1_n": 50, "cv_f1": 61.0, "encoder": None},
             {"member": "ensemble", "trial_f1": 62.0, "trial_f1_lo": 57.0, "trial_f1_hi": 67.0,
              "trial_f1_n": 50, "cv_f1": 63.0, "encoder": None}]
    per = {"char_f1": {"metric": "char_f1", "ids": list(range(5)),
                       "values": {"m1": [0.5, 0.6, 0.7, 0.4, 0.5],
                                  "ensemble": [0.6, 0.7, 0.8, 0.5, 0.6]}}}
    run = _run(tmp_path, "toxic_spans", "quick-abc", table,
               {"preset": "quick", "encoder": "minilm-l6", "epochs": 2},
               {"n_train": 300, "n_trial": 5, "note": None}, per)
    outcomes = [SimpleNamespace(name="toxic_spans", status="ok", seconds=12.34, output="x",
                                error=None, runs=[str(run)]),
                SimpleNamespace(name="seft", status="missing", seconds=0.0, output=None,
                                error="notebooks/seft.ipynb does not exist yet", runs=[])]
    path = write_report(tmp_path, outcomes, "quick", {"toxic_spans": "Toxic spans"})
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    mask = os.umask(0)
    os.umask(mask)  # every atomic write follows the umask, not mkstemp's 0600
    assert os.stat(tmp_path / "claims.json").st_mode & 0o777 == 0o666 & ~mask
    page = path.read_text()
    assert page.count("<script>") == 1 + page.count("Plotly.newPlot")  # plotly.js inlined once
    assert "<script src" not in page and len(page) > 3_000_000  # the bundle itself, no CDN
    assert page.count("Plotly.newPlot") >= 2  # claims forest plot + a metric bar chart
    text = re.sub(r"<script.*?</script>", "", page, flags=re.S)
    assert "workflow demo" in text
    assert "Ours: trial / CV on train. The paper's: test." in text
    assert "Scale:</b> profile quick; encoder minilm-l6; epochs 2; train posts 300" in text
    assert "reproduced" in text and "paired t interval over 5 items" in text
    assert "60.00 [55.00, 65.00]" in text and "trial_f1_n" in text  # value + CI, n kept
    assert "The paper" in text and "69.22-69.85" in text
    assert ">None<" not in text and ">-0" not in text and "nan" not in text.lower().split("<")[0]
    claims = json.loads((tmp_path / "claims.json").read_text())
    verdicts = [c["verdict"] for r in claims["runs"] for c in r["claims"]]
    assert verdicts[0] == "reproduced"  # the vote beats m1 on every post, by 0.1
    assert "| claim | verdict |" in (tmp_path / "claims.md").read_text()
