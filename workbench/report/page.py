"""`results/report.html`: per paper a claims table with verdicts, our table beside the paper's,
the scale of the run, and plotly figures -- one self-contained page (plotly.js inlined once),
readable offline. Also `results/claims.json` and `results/claims.md` (the claims tables as data
and as Markdown)."""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from workbench.common.io import atomic_write_text, read_json, read_yaml, write_json
from workbench.eval import stats
from workbench.report.anchors import load_anchors
from workbench.report.claims import NOT_EVALUATED, ClaimResult, run_claims
from workbench.report.tables import display_rows, fmt_value, html_table, uncertainty_gaps

PROFILE_NOTES = {
    "smoke": "smoke: tiny random models on a few items. It tests the plumbing; its numbers mean "
             "nothing about the papers.",
    "quick": "quick: a workflow demo. Small pretrained models on a handful of items show that "
             "every stage runs end to end; they cannot confirm or refute the papers' claims, and "
             "most verdicts at this scale are 'inconclusive'.",
    "cpu": "cpu: a fuller offline run on small models and data. Verdicts hold for these models "
           "at this scale, not for the papers' 7B-scale settings.",
    "paper": "paper: the papers' models and hyper-parameters (judged by the judge named below).",
}

_CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:2000px;color:#222}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;
font-size:13px;vertical-align:top}th{background:#f3f3f3;text-align:left}
.ok{color:#070}.failed{color:#b00}.missing{color:#888}
.banner{background:#fff4e0;border-left:5px solid #e0a000;padding:.6em 1em;margin:1em 0}
.split{background:#e8f1fb;border-left:5px solid #3b78c2;padding:.5em 1em;margin:.5em 0}
.gap{color:#b00}.scale{color:#444}.side{display:flex;flex-wrap:wrap;gap:2em;align-items:flex-start}
.side>div{flex:1 1 0;min-width:420px;overflow-x:auto}
.v-reproduced{color:#1a7f37;font-weight:600}.v-not{color:#c62828;font-weight:600}
.v-inconclusive{color:#b26a00;font-weight:600}.v-none{color:#888}"""

_VERDICT_CLASS = {stats.REPRODUCED: "v-reproduced", stats.NOT_REPRODUCED: "v-not",
                  stats.INCONCLUSIVE: "v-inconclusive", NOT_EVALUATED: "v-none"}


def _e(x: Any) -> str:
    return html.escape(str(x))


# --- scale -----------------------------------------------------------------------------------
def _lookup(path: str, cfg: dict[str, Any], metrics: dict[str, Any]) -> Any:
    where, _, key = str(path).partition(".")
    src = cfg if where == "config" else metrics if where == "metrics" else {}
    return src.get(key)


def scale_items(paper: str, run_dir: Path) -> dict[str, str]:
    """label -> value of the anchors' `scale:` entries for this run (missing ones left out)."""
    anchors = load_anchors(paper) or {}
    cfg = read_yaml(run_dir / "config.yaml") if (run_dir / "config.yaml").exists() else {}
    metrics = read_json(run_dir / "metrics.json")
    out = {"profile": str(cfg.get("preset", "?"))}
    for label, path in (anchors.get("scale") or {}).items():
        vals = [_lookup(p, cfg or {}, metrics) for p in (path if isinstance(path, list) else [path])]
        if any(v is None or v == [] or v == () for v in vals):
            continue
        out[label] = " x ".join(fmt_value(v) for v in vals)
    return out


# --- claims ----------------------------------------------------------------------------------
def claim_rows(results: Sequence[ClaimResult]) -> list[dict[str, str]]:
    rows = []
    for r in results:
        est = r.estimate
        rows.append({
            "claim": r.text, "verdict": r.verdict,
            "estimate [95 % CI]": _estimate_text(est),
            "n": str(est.n) if est and est.n else "–",
            "compared": r.what or "–",
            "threshold": (f"{stats.direction_op(r.direction)} {float(r.margin):g}"
                          if r.direction else "–"),
            "how": r.method or "–", "note": r.note or ""})
    return rows


def _digits(est: stats.Estimate) -> int:
    """Decimals by magnitude, more when a narrow interval would print as [x, x]."""
    a = max(abs(est.value), abs(est.hi) if est.has_ci else 0.0)
    d = 1 if a >= 100 else 2 if a >= 1 else 3
    def blurred(d: int) -> bool:  # [x, x], or a bound that is not 0 printed as 0
        if not est.has_ci or est.hi <= est.lo:
            return False
        lo, hi = stats.fmt_num(est.lo, d), stats.fmt_num(est.hi, d)
        zero = stats.fmt_num(0.0, d)
        return lo == hi or (lo == zero and est.lo != 0) or (hi == zero and est.hi != 0)

    while d < 6 and blurred(d):
        d += 1
    return d


def _estimate_text(est: stats.Estimate | None) -> str:
    if est is None:
        return "–"
    if not est.has_ci:
        return f"{stats.fmt_num(est.value, _digits(est))} (no CI)"
    return stats.fmt_ci(est, _digits(est)).rsplit(" (n=", 1)[0]


def claims_html(results: Sequence[ClaimResult]) -> str:
    rows = claim_rows(results)
    if not rows:
        return "<p><em>No claims declared for this paper.</em></p>"
    head = "".join(f"<th>{_e(c)}</th>" for c in rows[0])
    body = ""
    for r in rows:
        cells = []
        for c, v in r.items():
            cls = f" class='{_VERDICT_CLASS.get(v, '')}'" if c == "verdict" else ""
            cells.append(f"<td{cls}>{_e(v)}</td>")
        body += "<tr>" + "".join(cells) + "</tr>"
    return f"<table class='claims'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def claims_markdown(paper: str, run: str, results: Sequence[ClaimResult]) -> str:
    lines = [f"**{paper}** (`{run}`)", "", "| claim | verdict | estimate [95 % CI] | n |",
             "|---|---|---|---|"]
    for r in claim_rows(results):
        lines.append(f"| {r['claim']} | {r['verdict']} | {r['estimate [95 % CI]']} | {r['n']} |")
    return "\n".join(lines) + "\n"


# --- figures ---------------------------------------------------------------------------------
def _figure_html(fig) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False,
                       config={"displaylogo": False, "responsive": True})


def run_figures(paper: str, table: list[dict[str, Any]], results: Sequence[ClaimResult]
                ) -> list[str]:
    from workbench.report.figures import claims_figure, metric_figure

    anchors = load_anchors(paper) or {}
    pct = set(anchors.get("percent") or [])
    out = []
    fig = claims_figure(results)
    if fig is not None:
        out.append(_figure_html(fig))
    seen: list[tuple[str, str | None]] = []
    for c in anchors.get("claims") or []:
        k = (c["metric"], c.get("key"))
        if k in seen:
            continue
        seen.append(k)
        fig = metric_figure(table, c["metric"], c.get("key"), 100.0 if c["metric"] in pct else 1.0)
        if fig is not None:
            out.append(_figure_html(fig))
    return out


# --- sections --------------------------------------------------------------------------------
def run_section(paper: str, run_dir: Path, claims_out: list[dict[str, Any]],
                md_out: list[str]) -> tuple[str, list[str]]:
    """-> (html of one run, uncertainty gaps of its table)."""
    metrics = read_json(run_dir / "metrics.json")
    anchors = load_anchors(paper) or {}
    table = metrics.get("table") if isinstance(metrics.get("table"), list) else []
    parts = [f"<h3>run <code>{_e(run_dir.name)}</code></h3>"]
    scale = scale_items(paper, run_dir)
    parts.append("<p class='scale'><b>Scale:</b> " +
                 "; ".join(f"{_e(k)} {_e(v)}" for k, v in scale.items()) + "</p>")
    profile = scale.get("profile", "")
    if profile in PROFILE_NOTES and profile != "paper":
        parts.append(f"<p class='banner'>{_e(PROFILE_NOTES[profile])}</p>")
    if anchors.get("our_split") or anchors.get("comparison_note"):
        label = (f"<b>Ours: {_e(anchors['our_split'])}. The paper's: "
                 f"{_e(anchors.get('paper_split', '?'))}.</b> ") if anchors.get("our_split") else ""
        parts.append(f"<p class='split'>{label}{_e(anchors.get('comparison_note', ''))}</p>")
    try:
        results = run_claims(paper, run_dir)
    except ValueError as e:  # a malformed claim spec: say so, keep the rest of the report
        results = []
        parts.append(f"<p class='gap'>claims not computed: {_e(e)}</p>")
    claims_out.append({"paper": paper, "run": str(run_dir), "profile": profile, "scale": scale,
                       "claims": [r.to_dict() for r in results]})
    md_out.append(claims_markdown(paper, run_dir.name, results))
    parts.append("<h4>Claims</h4>" + claims_html(results))
    # our table beside the paper's
    metric_names = [c["metric"] for c in anchors.get("claims") or []]
    gaps = uncertainty_gaps(table, metric_names)
    ours = html_table(display_rows(table, anchors.get("percent") or [],
                                   anchors.get("percent_already") or []))
    if gaps:
        ours += f"<p class='gap'>This table lacks: {_e('; '.join(gaps))}.</p>"
    theirs = anchor_html(anchors)
    parts.append("<div class='side'><div><h4>This run</h4>" + ours + "</div>" +
                 (f"<div><h4>The paper</h4>{theirs}</div>" if theirs else "") + "</div>")
    for fig in run_figures(paper, table, results):
        parts.append(f"<div class='fig'>{fig}</div>")
    cfg_path = run_dir / "config.yaml"
    if cfg_path.exists():
        cfg = read_yaml(cfg_path) or {}
        keep = [{"field": k, "value": fmt_value(v)} for k, v in cfg.items()]
        parts.append(f"<details><summary>config</summary>{html_table(keep)}</details>")
    scalars = scalar_rows(metrics, anchors)
    if scalars:
        parts.append(f"<details><summary>other metrics</summary>{html_table(scalars)}</details>")
    return "\n".join(parts), gaps


def scalar_rows(metrics: dict[str, Any], anchors: dict[str, Any] | None = None
                ) -> list[dict[str, str]]:
    """The run's scalar metrics as key/value rows; a scalar's ``<k>_lo``/``_hi``/``_stderr``
    fold into its cell as in the tables ("63.1 [59.2, 67.0]"), its ``<k>_n`` stays a row."""
    anchors = anchors or {}
    scal = {k: v for k, v in metrics.items() if k != "table" and not isinstance(v, dict | list)}
    if not scal:
        return []
    shown = display_rows([scal], anchors.get("percent") or [],
                         anchors.get("percent_already") or [])[0]
    return [{"key": k, "value": v} for k, v in shown.items()]


def anchor_html(anchors: dict[str, Any]) -> str:
    rows = anchors.get("table") or []
    if not rows:
        return ""
    shown = [{k: (f"{v:g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
    out = (f"<p>{_e(anchors.get('title', ''))}<br><small>source: "
           f"{_e(anchors.get('source', ''))}</small></p>" + html_table(shown))
    if anchors.get("table_note"):
        out += f"<p><small>n / CI: {_e(anchors['table_note'])}</small></p>"
    return out


def write_report(results: Path, outcomes: Sequence[Any], profile: str,
                 titles: dict[str, str] | None = None) -> Path:
    """The report of one `workbench reproduce` call (outcomes: name, status, seconds, output,
    error, runs). Written atomically, mode 0644."""
    from plotly.offline import get_plotlyjs

    results = Path(results)
    titles = titles or {}
    claims_out: list[dict[str, Any]] = []
    md_out: list[str] = []
    body = [f"<h1>Workbench reproduction report — profile <code>{_e(profile)}</code></h1>"]
    if profile in PROFILE_NOTES:
        body.append(f"<p class='banner'><b>{_e(PROFILE_NOTES[profile])}</b></p>")
    body.append(
        "<p>Each paper's key claims are checked on each finished run: <b>reproduced</b> when the "
        "95 % interval of the estimate excludes the opposite of the claim, <b>not reproduced</b> "
        "when it excludes the claim, <b>inconclusive at this scale</b> when it spans both. "
        "Intervals come from a paired bootstrap over the items both rows were scored on when "
        "the run saved per-item scores, else from the rows' own CIs in the table. Numbers are "
        "ours unless a table is headed 'The paper'.</p>")
    body.append(html_table([{"notebook": o.name, "status": o.status,
                             "seconds": fmt_value(round(o.seconds, 1), 1), "runs": len(o.runs),
                             "note": o.error or ""} for o in outcomes]))
    all_gaps: dict[str, list[str]] = {}
    for o in outcomes:
        body.append(f"<h2>{_e(titles.get(o.name, o.name))}</h2>")
        body.append(f"<p class='{_e(o.status)}'>status: {_e(o.status)}" +
                    (f" — executed notebook: <a href='{_e(o.name)}.ipynb'>{_e(o.name)}.ipynb</a>"
                     if o.output else "") + "</p>")
        if o.error:
            body.append(f"<pre>{_e(o.error)}</pre>")
        for run in o.runs:
            section, gaps = run_section(o.name, Path(run), claims_out, md_out)
            body.append(section)
            if gaps:
                all_gaps[f"{o.name}/{Path(run).name}"] = gaps
        if not o.runs:
            anchors = load_anchors(o.name) or {}
            theirs = anchor_html(anchors)
            if theirs:
                body.append(f"<h4>The paper</h4>{theirs}")
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'>"
            f"<title>Workbench report ({_e(profile)})</title><style>{_CSS}</style>"
            f"<script>{get_plotlyjs()}</script></head><body>" + "\n".join(body) +
            "</body></html>")
    write_json(results / "claims.json", {"profile": profile, "runs": claims_out,
                                         "uncertainty_gaps": all_gaps})
    _write_public(results / "claims.md", f"# Claims ({profile})\n\n" + "\n".join(md_out))
    return _write_public(results / "report.html", page)


def _write_public(path: Path, text: str) -> Path:
    """Atomic write, then mode 0644 (the temp file's 0600 would hide the report from a web
    server or another user)."""
    atomic_write_text(path, text)
    os.chmod(path, 0o644)
    return path
