"""The papers' own numbers, claims and report settings: ``workbench/anchors/<paper>.yaml``.

Keys: ``title``, ``source``, ``table`` (the paper's rows), ``table_note`` (its n / CI / split),
``claims`` (see ``workbench.report.claims``), ``comparison_note`` (what differs between our
numbers and the paper's: split, scale), ``scale`` (label -> ``config.<field>`` or
``metrics.<key>``: what the report states about a run's scale), ``percent`` (table columns in
0..1 that the report shows x100) and ``percent_already`` (columns already in percent).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workbench.common.io import read_yaml

ANCHORS_DIR = Path(__file__).resolve().parents[1] / "anchors"


def load_anchors(name: str) -> dict[str, Any] | None:
    path = ANCHORS_DIR / f"{name}.yaml"
    return read_yaml(path) if path.exists() else None
