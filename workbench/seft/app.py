"""Reviser playground: pick a finished SEFT run's reviser, enter prompt + response -> decision,
revised response and a diff. Never launches, never trains."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import gradio as gr

from workbench.common import list_runs

_CACHE: dict[str, Any] = {}


def reviser_dirs(runs_root: Path | None = None) -> list[str]:
    return [str(p / "checkpoints" / "reviser_final") for p in list_runs("seft", runs_root)
            if (p / "checkpoints" / "reviser_final").exists()]


def diff_html(a: str, b: str) -> str:
    """Word-level diff as HTML (deletions red/struck, insertions green)."""
    aw, bw = a.split(), b.split()
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=aw, b=bw).get_opcodes():
        if op == "equal":
            out.append(" ".join(aw[i1:i2]))
        if op in ("delete", "replace"):
            out.append(f"<del style='color:#b00'>{' '.join(aw[i1:i2])}</del>")
        if op in ("insert", "replace"):
            out.append(f"<ins style='color:#070'>{' '.join(bw[j1:j2])}</ins>")
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
    """-> (decision, final response, diff html). ``model``/``tokenizer`` bypass loading (tests)."""
    from workbench.seft.inference import revise
    if model is None:
        if reviser_path not in _CACHE:
            from workbench.common import load_causal_lm
            _CACHE[reviser_path] = load_causal_lm(reviser_path)
        model, tokenizer = _CACHE[reviser_path]
    p = revise(model, tokenizer, [prompt], [response], max_new_tokens=max_new_tokens,
               decision=decision, max_input_tokens=_input_limit(reviser_path))[0]
    label = p.decision + (" (malformed output, treated as KEEP)" if p.malformed else "")
    if p.margin is not None:
        label += f"  [log p(REVISE) - log p(KEEP) = {p.margin:+.2f}]"
    return label, p.response, diff_html(response, p.response)


def run_table(reviser_path: str | None) -> tuple[list[dict[str, Any]], str]:
    """The finished run's table in the paper's layout, and its judge note + warnings."""
    if not reviser_path:
        return [], ""
    f = Path(reviser_path).parents[1] / "metrics.json"
    if not f.exists():
        return [], ""
    from workbench.common.io import read_json
    from workbench.viz.seft import paper_rows
    m = read_json(f)
    notes = [f"judge: {m.get('judge')}. {m.get('judge_note', '')}"] + list(m.get("warnings", []))
    return paper_rows(m.get("table", [])), "\n".join(f"- {n}" for n in notes)


def _values(rows: list[dict[str, Any]]) -> list[list[Any]] | None:
    return [list(r.values()) for r in rows] or None


def _table_view(reviser_path: str | None) -> tuple[list[list[Any]] | None, str]:
    rows, notes = run_table(reviser_path)
    return _values(rows), notes


def build_app(runs_root: Path | None = None) -> gr.Blocks:
    dirs = reviser_dirs(runs_root)
    with gr.Blocks(title="SEFT reviser") as app:
        gr.Markdown("## SEFT reviser playground")
        if not dirs:
            gr.Markdown("No finished SEFT run yet. Make one with: `python -c \"from workbench.seft "
                        "import SEFTConfig, run_seft; run_seft(SEFTConfig.from_preset('smoke'))\"`")
        run = gr.Dropdown(choices=dirs, value=dirs[0] if dirs else None, label="reviser")
        prompt = gr.Textbox(label="prompt")
        response = gr.Textbox(label="response", lines=4)
        mode = gr.Radio(["constrained", "free"], value="constrained", label="decision",
                        info="constrained: the more likely of KEEP / REVISE; free: generate, "
                        "then parse")
        btn = gr.Button("Revise")
        decision = gr.Textbox(label="decision")
        revised = gr.Textbox(label="revised response", lines=4)
        diff = gr.HTML(label="diff")
        btn.click(revise_one, [run, prompt, response, mode], [decision, revised, diff])
        rows, notes = run_table(dirs[0] if dirs else None)
        gr.Markdown("### This run's table (SFT, DPO, ORPO, SEFT per round)")
        table = gr.Dataframe(value=_values(rows), headers=list(rows[0]) if rows else None,
                             interactive=False)
        note = gr.Markdown(notes)
        run.change(_table_view, [run], [table, note])
    return app
