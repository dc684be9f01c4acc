"""Reviser playground: pick a finished SEFT run's reviser, enter prompt + response -> decision,
revised response and a diff. Never launches, never trains.

Prompt, response and the reviser's output are untrusted text: the diff escapes every word, the
other outputs are plain Textboxes."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import gradio as gr

from workbench.appkit import MAX_TEXT, html_text, keep_choice, md_text, run_label, table, too_long
from workbench.common.rundir import list_runs

_CACHE: dict[str, Any] = {}
MAKE_RUN = ("python -c \"from workbench.seft import SEFTConfig, run_seft; "
            "run_seft(SEFTConfig.from_preset('smoke'))\"")


def reviser_dirs(runs_root: Path | None = None) -> list[str]:
    return [str(p / "checkpoints" / "reviser_final") for p in list_runs("seft", runs_root)
            if (p / "checkpoints" / "reviser_final").exists()]


def reviser_choices(runs_root: Path | None = None) -> list[tuple[str, str]]:
    """(run name, reviser folder) pairs: the dropdown shows `seft/<run>`, never the path."""
    return [(run_label(Path(d).parents[1]), d) for d in reviser_dirs(runs_root)]


def diff_html(a: str, b: str) -> str:
    """Word-level diff as HTML (deletions red/struck, insertions green); every word is escaped
    (the response and the reviser's output are untrusted text)."""
    aw, bw = a.split(), b.split()
    out = []

    def words(ws: list[str]) -> str:
        return html_text(" ".join(ws))

    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=aw, b=bw).get_opcodes():
        if op == "equal":
            out.append(words(aw[i1:i2]))
        if op in ("delete", "replace"):
            out.append(f"<del style='color:#b00'>{words(aw[i1:i2])}</del>")
        if op in ("insert", "replace"):
            out.append(f"<ins style='color:#070'>{words(bw[j1:j2])}</ins>")
    return "<div>" + " ".join(out) + "</div>"


def _input_limit(reviser_path: str) -> int | None:
    """The run's reviser input budget (from its config.yaml), so the playground asks the reviser
    in the format it was trained on; None when unknown."""
    f = Path(reviser_path).parents[1] / "config.yaml" if reviser_path else None
    if f is None or not f.exists():
        return None
    from workbench.common.io import read_yaml
    from workbench.seft.inference import reviser_input_limit
    cfg = read_yaml(f) or {}
    return reviser_input_limit(int(cfg["max_length"])) if "max_length" in cfg else None


def revise_one(reviser_path: str, prompt: str, response: str, decision: str = "constrained",
               max_new_tokens: int = 128, model=None, tokenizer=None) -> tuple[str, str, str]:
    """-> (decision, final response, diff html). ``model``/``tokenizer`` bypass loading (tests).
    Bad input (over the cap, empty response, no reviser) -> (message, "", "")."""
    from workbench.seft.inference import revise
    for text, what in ((prompt, "Prompt"), (response, "Response")):
        if too_long(text, MAX_TEXT, what):
            return too_long(text, MAX_TEXT, what), "", ""
    if not (response or "").strip():
        return "Empty response: type the response the reviser should judge.", "", ""
    if model is None and not (reviser_path and Path(reviser_path).is_dir()):
        return "No reviser selected: pick a finished SEFT run (or make one, see above).", "", ""
    if model is None:
        if reviser_path not in _CACHE:
            from workbench.common.models import load_causal_lm
            _CACHE[reviser_path] = load_causal_lm(reviser_path)
        model, tokenizer = _CACHE[reviser_path]
    p = revise(model, tokenizer, [prompt or ""], [response], max_new_tokens=max_new_tokens,
               decision=decision, max_input_tokens=_input_limit(reviser_path))[0]
    label = p.decision + (" (malformed output, treated as KEEP)" if p.malformed else "")
    if p.margin is not None:
        label += f"  [log p(REVISE) - log p(KEEP) = {p.margin:+.2f}]"
    return label, p.response, diff_html(response, p.response)


def run_table(reviser_path: str | None) -> tuple[list[dict[str, Any]], str]:
    """The finished run's table in the paper's layout, and its judge note + warnings (escaped
    Markdown: warnings quote model output)."""
    if not reviser_path:
        return [], ""
    f = Path(reviser_path).parents[1] / "metrics.json"
    if not f.exists():
        return [], ""
    from workbench.common.io import read_json
    from workbench.viz.seft import PAPER_COLUMNS, paper_rows
    m = read_json(f)
    notes = [f"judge: {m.get('judge')}. {m.get('judge_note', '')}"] + list(m.get("warnings", []))
    raw = {r.get("model"): r for r in m.get("table", [])}
    rows = paper_rows(m.get("table", []))
    for row in rows:  # the run's CIs (`<metric>_lo/_hi`) and item counts, next to the paper layout
        r = raw.get(row["Model"], {})
        for k, label in PAPER_COLUMNS.items():
            if f"{k}_lo" in r and f"{k}_hi" in r:
                row[f"{label}_lo"], row[f"{label}_hi"] = r[f"{k}_lo"], r[f"{k}_hi"]
        if r.get("same_answers_as_sft_lo") is not None:  # Wilson CI over the answers
            row["same answers as SFT_lo"] = r["same_answers_as_sft_lo"]
            row["same answers as SFT_hi"] = r["same_answers_as_sft_hi"]
        for k in ("n_questions", "n_prompts", "n", "same_answers_as_sft_n"):
            if k in r:
                row[k.replace("_", " ")] = r[k]
    return rows, "\n".join(f"- {md_text(n)}" for n in notes)


def _table_view(reviser_path: str | None):
    rows, notes = run_table(reviser_path)
    if not rows:
        return gr.update(value=None, headers=None), notes
    heads, values = table(rows)
    return gr.update(value=values, headers=heads), notes


def build_app(runs_root: Path | None = None) -> gr.Blocks:
    choices = reviser_choices(runs_root)
    first = choices[0][1] if choices else None
    with gr.Blocks(title="SEFT reviser") as app:
        gr.Markdown("## SEFT reviser playground\nA finished run's reviser judges a response "
                    "(KEEP / REVISE) and revises it. Prompt and response are capped at "
                    f"{MAX_TEXT} characters.")
        if not choices:
            gr.Markdown(f"No finished SEFT run yet. Make one with: `{MAKE_RUN}`")
        with gr.Row():
            run = gr.Dropdown(choices=choices, value=first, label="reviser (run)", scale=4,
                              elem_id="seft-run")
            refresh = gr.Button("Refresh", scale=1, elem_id="seft-refresh")
        prompt = gr.Textbox(label="prompt", max_length=MAX_TEXT, elem_id="seft-prompt")
        response = gr.Textbox(label="response", lines=4, max_length=MAX_TEXT,
                              elem_id="seft-response")
        mode = gr.Radio(["constrained", "free"], value="constrained", label="decision",
                        info="constrained: the more likely of KEEP / REVISE; free: generate, "
                        "then parse")
        btn = gr.Button("Revise", variant="primary", elem_id="seft-revise")
        decision = gr.Textbox(label="decision", interactive=False, elem_id="seft-decision")
        revised = gr.Textbox(label="revised response", lines=4, interactive=False,
                             elem_id="seft-revised")
        diff = gr.HTML(label="diff", elem_id="seft-diff")
        btn.click(revise_one, [run, prompt, response, mode], [decision, revised, diff])
        gr.Markdown("### This run's table (SFT, DPO, ORPO, SEFT per round)")
        first_table, first_notes = _table_view(first)
        tbl = gr.Dataframe(value=first_table.get("value"), headers=first_table.get("headers"),
                           interactive=False, elem_id="seft-table")
        note = gr.Markdown(first_notes, elem_id="seft-notes")
        run.change(_table_view, [run], [tbl, note])

        def relist(current):
            now = reviser_choices(runs_root)
            return gr.update(choices=now, value=keep_choice(now, current))

        refresh.click(relist, run, run)
        app.refresh_runs = (relist, [run], [run])
    return app
