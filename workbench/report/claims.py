"""A verdict per paper claim, computed from a finished run folder.

Each paper declares its key claims as data, in ``workbench/anchors/<paper>.yaml``::

    claims:
      - text: "BlockPruner's WikiText-2 PPL is lower than ShortGPT's at about the same ratio"
        metric: ppl                 # a column of metrics.json "table"
        per_item: [wikitext2_nll]   # artifacts/per_item/<name>.json files to try (optional)
        key: method                 # the column naming rows (default: the table's first column)
        row: BlockPruner            # the claimed row: a name, "re:<regex>", or {where: {col: v}}
        vs: ShortGPT                # the other row(s), same forms; or `value: 0.5` (a threshold)
        against: all                # several `vs` rows: `all` must hold, or the `best` of them
        direction: less             # greater | less | greater_equal | less_equal (or > < >= <=)
        scale: 1                    # table value = scale x per-item value (100 for percent)
        pick: last                  # several claimed rows: `last`, `first` or `all` (default)
        n_column: judge_n           # the table's n for this metric, when not <metric>_n / n

The estimate is the difference ``row - vs`` (or the row's value for a threshold):

1. a **paired bootstrap** over items when a per-item file (the per-item convention:
   ``artifacts/per_item/<metric>.json``) holds both rows on the same ids -- token-weighted when
   the file has ``weights``; under 20 items (unweighted) the t interval of the per-item
   differences instead (``stats.paired_item_ci``: a bootstrap over a handful undercovers);
   a per-item metric rises with the table's metric (NLL with PPL), so the sign carries over;
2. else the rows' own **CIs in the table** (``<metric>_lo``/``_hi`` or ``<metric>_stderr``, with
   ``n``), combined as independent estimates;
3. else no interval: "inconclusive at this scale", with the reason.

``verdict`` (``workbench.eval.stats``): **reproduced** when the interval excludes the opposite
of the claim, **not reproduced** when it excludes the claim, **inconclusive at this scale**
when it spans both. A claim whose rows or metric the run does not have is "not evaluated".
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.common.io import read_json
from workbench.eval import stats
from workbench.eval.stats import Estimate

NOT_EVALUATED = "not evaluated"
# when several comparisons make one claim: the worst verdict wins
_RANK = {stats.NOT_REPRODUCED: 0, stats.INCONCLUSIVE: 1, stats.REPRODUCED: 2}
_KEYS = ("text", "metric", "per_item", "key", "row", "vs", "value", "against", "direction",
         "margin", "scale", "pick", "note", "id", "n_column")


@dataclass
class ClaimResult:
    text: str
    verdict: str
    estimate: Estimate | None = None
    what: str = ""          # "BlockPruner − ShortGPT, ppl" / "SEFT round 2, win_rate_vs_sft"
    method: str = ""        # "paired bootstrap over items (wikitext2_nll)" / "table CIs" / ...
    note: str = ""
    direction: str = ""
    margin: float = 0.0
    parts: list[ClaimResult] = field(default_factory=list)

    @property
    def n(self) -> int:
        return self.estimate.n if self.estimate else 0

    def to_dict(self) -> dict[str, Any]:
        return {"claim": self.text, "verdict": self.verdict,
                "estimate": self.estimate.to_dict() if self.estimate else None,
                "what": self.what, "method": self.method, "note": self.note,
                "direction": self.direction, "margin": self.margin,
                "parts": [p.to_dict() for p in self.parts]}


# --- claim specs ------------------------------------------------------------------------------
def check_claim(spec: dict[str, Any]) -> dict[str, Any]:
    """Validate one claim spec (unknown key, missing field, bad direction: ValueError naming it)."""
    if not isinstance(spec, dict):
        raise ValueError(f"claim {spec!r}: expected a mapping")
    unknown = sorted(set(spec) - set(_KEYS))
    if unknown:
        raise ValueError(f"claim {spec.get('text', spec)!r}: unknown key(s) {unknown}")
    for k in ("text", "metric", "row", "direction"):
        if k not in spec:
            raise ValueError(f"claim {spec.get('text', spec)!r}: missing {k!r}")
    if ("vs" in spec) == ("value" in spec):
        raise ValueError(f"claim {spec['text']!r}: give exactly one of 'vs' (rows) or 'value'")
    try:
        stats.direction_op(spec["direction"])
    except ValueError as e:
        raise ValueError(f"claim {spec['text']!r}: {e}") from None
    if spec.get("against", "all") not in ("all", "best"):
        raise ValueError(f"claim {spec['text']!r}: against must be all|best")
    if spec.get("pick", "all") not in ("all", "first", "last"):
        raise ValueError(f"claim {spec['text']!r}: pick must be all|first|last")
    return spec


def paper_claims(paper: str) -> list[dict[str, Any]]:
    from workbench.report.anchors import load_anchors
    return [check_claim(c) for c in (load_anchors(paper) or {}).get("claims") or []]


# --- rows, values and intervals ---------------------------------------------------------------
def _key(table: list[dict[str, Any]], spec: dict[str, Any]) -> str:
    return spec.get("key") or next(iter(table[0]))


def select_rows(table: list[dict[str, Any]], key: str, sel: Any) -> list[dict[str, Any]]:
    """Rows named ``sel`` (exact), matching ``re:<regex>``, or ``{where: {...}}`` /
    ``{where_not: {...}}`` (all columns equal / not all equal); a list: the union, in order."""
    if isinstance(sel, list):
        out: list[dict[str, Any]] = []
        for s in sel:
            out += [r for r in select_rows(table, key, s) if r not in out]
        return out
    if isinstance(sel, dict):
        where, neg = (sel.get("where"), False) if "where" in sel else (sel.get("where_not"), True)
        if not isinstance(where, dict):
            raise ValueError(f"row selector {sel!r}: expected {{where: {{col: value}}}}")
        return [r for r in table
                if all(str(r.get(c)) == str(v) for c, v in where.items()) != neg]
    s = str(sel)
    if s.startswith("re:"):
        rx = re.compile(s[3:])
        return [r for r in table if rx.search(str(r.get(key, "")))]
    return [r for r in table if str(r.get(key)) == s]


def _num(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def row_estimate(row: dict[str, Any], metric: str, n_column: str | None = None
                 ) -> Estimate | None:
    """The row's value of ``metric`` with its interval from the table's columns
    (``<m>_lo``/``<m>_hi``, ``<m>_stderr``) and n (``n_column``, ``<m>_n``, ``n_<m>``, ``n``)."""
    value = _num(row.get(metric))
    if not math.isfinite(value):
        return None
    keys = ([n_column] if n_column else []) + [f"{metric}_n", f"n_{metric}", "n"]
    n = next((int(row[k]) for k in keys
              if isinstance(row.get(k), int | float) and math.isfinite(row[k])), 0)
    lo, hi, se = (_num(row.get(f"{metric}_{s}")) for s in ("lo", "hi", "stderr"))
    if math.isfinite(lo) and math.isfinite(hi):
        return Estimate(value, lo, hi, n, se, "table CI")
    if math.isfinite(se):
        return stats.from_stderr(value, se, n, method="table stderr")
    return Estimate(value, math.nan, math.nan, n, math.nan, "no CI")


def load_per_item(run_dir: Path, names: list[str]) -> list[dict[str, Any]]:
    out = []
    for name in names:
        f = Path(run_dir) / "artifacts" / "per_item" / f"{name}.json"
        if f.exists():
            d = read_json(f)
            d.setdefault("metric", name)
            d["_file"] = name
            out.append(d)
    return out


def _per_item_values(files: list[dict[str, Any]], *names: str):
    """The first per-item file holding every row in ``names`` with one value per id."""
    for d in files:
        vals = d.get("values") or {}
        ids = d.get("ids") or []
        if all(n in vals and len(vals[n]) == len(ids) for n in names):
            return d, [vals[n] for n in names]
    return None, None


def _difference(run_dir: Path, files, spec, a: dict, b: dict, key: str) -> ClaimResult:
    metric, scale = spec["metric"], float(spec.get("scale", 1.0))
    na, nb = str(a.get(key)), str(b.get(key))
    what = f"{na} − {nb}, {metric}"
    d, vals = _per_item_values(files, na, nb)
    if d is not None:
        w = d.get("weights")
        est = stats.paired_item_ci(vals[0], vals[1], weights=w).scaled(scale)
        if scale == 1.0 and d["metric"] != metric:  # e.g. mean NLL for a PPL claim: same sign
            what = f"{na} − {nb}, {d['metric']}"
        unit = d.get("unit") or d["metric"]
        kind = "paired t interval" if est.method == "paired t" else "paired bootstrap"
        how = f"{kind} over {est.n} items ({d['_file']}: {unit}" + \
              (", token-weighted)" if w else ")")
        return _judged(spec, est, what, how)
    ea, eb = (row_estimate(a, metric, spec.get("n_column")),
              row_estimate(b, metric, spec.get("n_column")))
    if ea is None or eb is None:
        missing = na if ea is None else nb
        return ClaimResult(spec["text"], NOT_EVALUATED, what=what,
                           note=f"{missing} has no {metric} in this run")
    est = stats.difference(ea, eb)
    if not est.has_ci:
        return _judged(spec, est, what, "no interval",
                       note=f"no per-item file and no CI for {metric} in the table")
    return _judged(spec, est, what, "difference of the rows' table CIs (independent)")


def _threshold(files, spec, a: dict, key: str) -> ClaimResult:
    metric, scale = spec["metric"], float(spec.get("scale", 1.0))
    na = str(a.get(key))
    what = f"{na}, {metric}"
    d, vals = _per_item_values(files, na)
    if d is not None:
        est = stats.item_ci(vals[0]).scaled(scale)
        kind = "t interval" if est.method == "t" else "bootstrap"
        return _judged(spec, est, what, f"{kind} over {est.n} items ({d['_file']})")
    est = row_estimate(a, metric, spec.get("n_column"))
    if est is None:
        return ClaimResult(spec["text"], NOT_EVALUATED, what=what,
                           note=f"{na} has no {metric} in this run")
    if not est.has_ci:
        return _judged(spec, est, what, "no interval",
                       note=f"no per-item file and no CI for {metric} in the table")
    return _judged(spec, est, what, est.method)


def _judged(spec, est: Estimate, what: str, how: str, note: str = "") -> ClaimResult:
    margin = float(spec.get("value", spec.get("margin", 0.0)))
    return ClaimResult(spec["text"], stats.verdict(est, spec["direction"], margin), est, what,
                       how, note, spec["direction"], margin)


def _worst(spec, parts: list[ClaimResult]) -> ClaimResult:
    """Several comparisons: the worst verdict; its numbers are the least favourable ones."""
    done = [p for p in parts if p.verdict != NOT_EVALUATED]
    if not done:
        return ClaimResult(spec["text"], NOT_EVALUATED, note="; ".join(p.note for p in parts),
                           parts=parts)
    sign = 1 if stats.direction_op(spec["direction"]).startswith(">") else -1

    def order(p: ClaimResult):
        return (_RANK[p.verdict], sign * p.estimate.value)
    w = min(done, key=order)
    note = (f"worst of {len(done)} comparisons" if len(done) > 1 else "") + \
           (f"; {len(parts) - len(done)} not evaluated" if len(done) < len(parts) else "")
    return ClaimResult(spec["text"], w.verdict, w.estimate, w.what, w.method,
                       "; ".join(x for x in (note.strip("; "), w.note) if x), w.direction,
                       w.margin, parts if len(parts) > 1 else [])


def evaluate_claim(spec: dict[str, Any], table: list[dict[str, Any]],
                   run_dir: str | Path | None = None) -> ClaimResult:
    """One claim on one run's table (and its per-item files when ``run_dir`` is given)."""
    check_claim(spec)
    if not table:
        return ClaimResult(spec["text"], NOT_EVALUATED, note="the run has no table")
    key = _key(table, spec)
    names = spec.get("per_item") or [spec["metric"]]
    files = load_per_item(Path(run_dir), [names] if isinstance(names, str) else list(names)) \
        if run_dir is not None else []
    rows = select_rows(table, key, spec["row"])
    if not rows:
        return ClaimResult(spec["text"], NOT_EVALUATED, note=f"no row {spec['row']!r} in this run")
    pick = spec.get("pick", "all")
    rows = rows[-1:] if pick == "last" else rows[:1] if pick == "first" else rows
    parts: list[ClaimResult] = []
    for a in rows:
        if "value" in spec:
            parts.append(_threshold(files, spec, a, key))
            continue
        others = [b for b in select_rows(table, key, spec["vs"]) if b is not a]
        if not others:
            parts.append(ClaimResult(spec["text"], NOT_EVALUATED,
                                     note=f"no row {spec['vs']!r} in this run"))
            continue
        if spec.get("against", "all") == "best":
            valued = [b for b in others if math.isfinite(_num(b.get(spec["metric"])))]
            if valued:  # the strongest competitor in the claim's direction
                up = stats.direction_op(spec["direction"]).startswith(">")
                others = [max(valued, key=lambda b: (1 if up else -1) * _num(b[spec["metric"]]))]
        parts += [_difference(run_dir, files, spec, a, b, key) for b in others]
    return _worst(spec, parts)


def run_claims(paper: str, run_dir: str | Path,
               specs: list[dict[str, Any]] | None = None) -> list[ClaimResult]:
    """Every claim of ``paper`` on a finished run folder (its metrics.json table)."""
    run_dir = Path(run_dir)
    f = run_dir / "metrics.json"
    if not f.exists():
        raise ValueError(f"{run_dir}: no metrics.json (an unfinished run)")
    table = read_json(f).get("table") or []
    if not isinstance(table, list):
        table = []
    return [evaluate_claim(s, table, run_dir) for s in (specs if specs is not None
                                                        else paper_claims(paper))]
