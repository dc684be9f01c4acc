"""Token-alignment explorer (FuseChat tab).

1. Any text, two tokenizers (the offline ones, the models of finished runs, or any local folder /
   hub id): both tokenizations, the DTW alignment matrix with the path, the 1->1 / 1->n / n->1
   groups, and every source token's pivot token under `em`, `mined` and `ms` side by side, with
   disagreements flagged. `ms` uses the co-occurrence counts of a finished run with the same pivot
   and source when there is one, else counts from the typed text alone (said in the message).
2. A finished FuseChat run: pick a source, a mapping, a sample and a pivot position; see the
   pivot's own top-K, the source's top-K at the aligned source position (before alignment) and the
   aligned top-K in the pivot vocabulary (after).

Nothing heavy runs here: tokenizers load once (cached) and the alignment of a capped text is
milliseconds; representations are read from disk.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import gradio as gr

from workbench.appkit import MAX_NAME, keep_choice, md_code, one_line, too_long
from workbench.common.io import read_yaml
from workbench.common.rundir import list_runs, runs_root

KIND = "fusechat"
MAX_CHARS = 2000
OFFLINE_TOKENIZERS = ("smollm2-135m-instruct", "gemma3-270m", "qwen2.5-coder-0.5b-instruct")
MAKE_RUN = ".venv/bin/python -c \"from workbench.fusion.config import FuseChatConfig; " \
           "from workbench.fusion.run import run_fusechat; " \
           "run_fusechat(FuseChatConfig.from_preset('smoke'))\""
EXAMPLE = "Fusion 🙂 of chat LLMs: def f(x):\n    return x**2  # naïve café"
MAP_KINDS = ("em", "mined", "ms")


# ------------------------------------------------------------------------------------------
# runs
# ------------------------------------------------------------------------------------------
def run_choices(root: str | Path | None) -> list[str]:
    base = runs_root(root)
    return [str(p.relative_to(base)) for p in list_runs(KIND, base)
            if (p / "artifacts" / "representations").exists()]


def run_config(root: str | Path | None, rel: str) -> dict[str, Any]:
    return read_yaml(runs_root(root) / rel / "config.yaml")


def tokenizer_choices(root: str | Path | None) -> list[str]:
    names = list(OFFLINE_TOKENIZERS)
    for rel in run_choices(root):
        cfg = run_config(root, rel)
        names += [m for m in [cfg["pivot"], *cfg["sources"]] if m not in names]
    return names


def _tokenizer(name: str):
    from workbench.fusion.context import cached_tokenizer

    return cached_tokenizer(name)


def find_counts(root: str | Path | None, pivot: str, source: str) -> Path | None:
    """The `ms` counts of the newest finished run with this pivot and source, if any."""
    from workbench.fusion.context import model_slug

    for rel in run_choices(root):
        cfg = run_config(root, rel)
        if cfg["pivot"] == pivot and source in cfg["sources"]:
            p = runs_root(root) / rel / "artifacts" / "ms_counts" / f"{model_slug(source)}.npz"
            if p.exists():
                return p
    return None


# ------------------------------------------------------------------------------------------
# 1. any text
# ------------------------------------------------------------------------------------------
def _highlight(tokens: list[str]) -> list[tuple[str, str | None]]:
    from workbench.fusion.align import display_text

    return [(display_text(t, visible_whitespace=True), str(i)) for i, t in enumerate(tokens)]


def explore_text(text: str, pivot: str, source: str, root: str | Path | None = None):
    """(message, pivot tokens, source tokens, matrix figure, groups table, vocab-map table)."""
    from workbench.fusion import align as A
    from workbench.viz.fusion import alignment_matrix_figure

    empty = ("", [], [], None, None, None)
    if not text:
        return ("Type some text.",) + empty[1:]
    if len(text) > MAX_CHARS:
        return (f"Text is {len(text)} characters; the explorer is capped at {MAX_CHARS} "
                "(the matrix would be unreadable). Shorten it.",) + empty[1:]
    for name, what in ((pivot, "Pivot tokenizer name"), (source, "Source tokenizer name")):
        if not name:
            return (f"{what} is empty: pick one.",) + empty[1:]
        if too_long(name, MAX_NAME, what):
            return (too_long(name, MAX_NAME, what),) + empty[1:]
    try:
        ptok, stok = _tokenizer(pivot), _tokenizer(source)
    except Exception as e:  # transformers errors run to many lines: the first names the problem
        return (f"Cannot load a tokenizer: {md_code(one_line(e))}",) + empty[1:]
    ta = A.align_text(text, ptok, stok)
    piv, src = A.token_texts(ptok), A.token_texts(stok)
    counts_path = find_counts(root, pivot, source)
    if counts_path is not None:
        counts, where = A.load_counts(counts_path), f"corpus counts of run {md_code(counts_path.parents[2].name)}"
    else:
        counts = A.cooccurrence_counts([(ta.pivot_ids, ta.source_ids, ta.groups)], len(piv), len(src))
        where = "counts from this text only (no finished run with this pivot and source)"
    needed = sorted(set(ta.source_ids))
    maps = {k: A.build_vocab_map(k, src, piv, needed=needed, counts=counts) for k in MAP_KINDS}
    table = A.compare_vocab_maps(ta.source_ids, maps)
    table.insert(0, "source_pos", range(len(ta.source_ids)))
    rel = {r: ta.relations.count(r) for r in ("1→1", "1→n", "n→1", "none")}
    disagree = int((~table["agree"]).sum())
    msg = (f"**{len(ta.pivot_ids)}** pivot tokens, **{len(ta.source_ids)}** source tokens. "
           f"Pivot positions: " + ", ".join(f"{k} {v}" for k, v in rel.items()) + ". "
           f"Vocab maps disagree on **{disagree}** of {len(table)} source tokens. `ms`: {where}.")
    return (msg, _highlight(ta.pivot_texts), _highlight(ta.source_texts),
            alignment_matrix_figure(ta), ta.table(), table)


# ------------------------------------------------------------------------------------------
# 2. a finished run: top-K before / after alignment
# ------------------------------------------------------------------------------------------
def run_view(root: str | Path | None, rel: str | None):
    """(message, source choices, sample choices) for a run."""
    if not rel:
        return f"No finished FuseChat run. Make one with:\n\n`{MAKE_RUN}`", [], []
    from workbench.fusion import represent as R
    from workbench.fusion.context import model_slug

    cfg = run_config(root, rel)
    reps = runs_root(root) / rel / "artifacts" / "representations"
    ids = R.load_representations(reps / model_slug(cfg["pivot"]))["id"]
    return (f"pivot {md_code(cfg['pivot'])}, sources " + ", ".join(md_code(s) for s in cfg["sources"])
            + f"; {len(ids)} samples, top-{cfg['top_k']}", list(cfg["sources"]), list(ids))


def sample_length(root: str | Path | None, rel: str | None, sample: str | None) -> int:
    """Pivot tokens of one sample of a run (0 when nothing is picked)."""
    if not (rel and sample):
        return 0
    from workbench.fusion.context import model_slug

    cfg = run_config(root, rel)
    ds = _dataset(str(runs_root(root) / rel / "artifacts" / "representations"
                      / model_slug(cfg["pivot"])))
    ids = ds["id"]
    return len(ds[ids.index(sample)]["input_ids"]) if sample in ids else 0


@functools.lru_cache(maxsize=16)
def _dataset(folder: str):
    from datasets import load_from_disk

    from workbench.fusion import represent as R

    p = Path(folder)
    return R.load_representations(p) if (p / R.META).exists() else load_from_disk(folder)


def _rows(texts, ids, logits) -> list[tuple[str, float | None]]:
    """(token, logit) per rank; `texts` is a `TokenTexts` (canonical token strings)."""
    from workbench.fusion.align import display_text
    from workbench.fusion.formats import PAD_ID

    out = []
    for i, v in zip(ids, logits, strict=True):
        if i == PAD_ID:
            out.append(("", None))
        else:
            text = display_text(texts.texts[int(i)], visible_whitespace=True)
            out.append((text, None if v is None or math.isinf(v) else round(float(v), 3)))
    return out


def compare_topk(root: str | Path | None, rel: str | None, source: str | None, kind: str,
                 sample: str | None, position: int):
    """(message, table) of the pivot's own top-K, the source's before and after alignment."""
    from workbench.fusion import align as A
    from workbench.fusion.context import model_slug
    from workbench.fusion.formats import ALIGN_KINDS

    if not (rel and source and sample is not None):
        return "Pick a run, a source and a sample.", None
    base = runs_root(root) / rel / "artifacts"
    cfg = run_config(root, rel)
    aligned_dir = base / "aligned" / model_slug(source) / kind
    if not aligned_dir.exists():
        return f"This run has no {md_code(kind)} alignment for {md_code(source)}.", None
    pivot_ds = _dataset(str(base / "representations" / model_slug(cfg["pivot"])))
    source_ds = _dataset(str(base / "representations" / model_slug(source)))
    aligned = _dataset(str(aligned_dir))
    ids = pivot_ds["id"]
    if sample not in ids:
        return f"sample {md_code(sample)} is not in this run", None
    row = ids.index(sample)
    p, s, a = pivot_ds[row], source_ds[row], aligned[row]
    n = len(p["input_ids"])
    pos = max(0, min(int(position), n - 1))
    ptok, stok = _tokenizer(cfg["pivot"]), _tokenizer(source)
    piv, src = A.token_texts(ptok), A.token_texts(stok)
    _, _, groups = next(A.corpus_alignments([(p["input_ids"], s["input_ids"])], piv, src))
    group = groups[pos]
    before = (s["topk_ids"][group[-1]], s["topk_logits"][group[-1]]) if group else ([], [])
    cols = {"pivot own": _rows(piv, p["topk_ids"][pos], p["topk_logits"][pos]),
            "source before": _rows(src, *before),
            f"source after ({kind})": _rows(piv, a["topk_ids"][pos], a["topk_logits"][pos])}
    k = max(len(c) for c in cols.values())
    table = [{"rank": r + 1, **{f"{name} token": (c[r][0] if r < len(c) else "")
                                 for name, c in cols.items()},
              **{f"{name} logit": (c[r][1] if r < len(c) else None) for name, c in cols.items()}}
             for r in range(k)]
    from workbench.fusion.align import display_text

    nxt = display_text(piv.texts[p["input_ids"][pos + 1]], visible_whitespace=True) \
        if pos + 1 < n else "(end)"
    here = display_text(piv.texts[p["input_ids"][pos]], visible_whitespace=True)
    msg = (f"Pivot position {pos}/{n - 1}: token {md_code(here)}"
           f", gold next {md_code(nxt)}; aligned source positions {group} "
           f"(" + " | ".join(md_code(display_text(src.texts[s["input_ids"][j]], visible_whitespace=True))
                             for j in group) + "); "
           f"align kind **{ALIGN_KINDS[a['align_kind'][pos]]}**. The source's top-K 'before' is "
           "taken at the last aligned source position (the one whose distribution predicts the "
           "same next text).")
    import pandas as pd

    return msg, pd.DataFrame(table)


# ------------------------------------------------------------------------------------------
# the tab
# ------------------------------------------------------------------------------------------
def build_app(runs_root: Path | None = None) -> gr.Blocks:
    root = runs_root
    runs = run_choices(root)
    toks = tokenizer_choices(root)
    with gr.Blocks(title="FuseChat: token-alignment explorer") as app:
        gr.Markdown("## FuseChat — token-alignment explorer\nHow a source model's tokens and "
                    "top-K distributions are carried into the pivot's vocabulary (FuseChat, "
                    "arXiv 2408.07990: token alignment before fusion). Texts are capped at "
                    f"{MAX_CHARS} characters; a tokenizer is a name from the list, a local "
                    "folder or a hub id.")
        with gr.Row():
            pivot = gr.Dropdown(toks, value=toks[0], label="pivot tokenizer",
                                allow_custom_value=True, elem_id="fc-pivot")
            source = gr.Dropdown(toks, value=toks[1], label="source tokenizer",
                                 allow_custom_value=True, elem_id="fc-source")
        text = gr.Textbox(EXAMPLE, lines=3, label="text", elem_id="fc-text", max_length=MAX_CHARS)
        go_btn = gr.Button("Align", variant="primary", elem_id="fc-align")
        msg = gr.Markdown(elem_id="fc-msg")
        with gr.Row():
            ptoks = gr.HighlightedText(label="pivot tokens", show_legend=False)
            stoks = gr.HighlightedText(label="source tokens", show_legend=False)
        matrix = gr.Plot(label="DTW alignment (pivot x source; the path's points coloured by "
                         "the pivot position's group, legend above the matrix)", elem_id="fc-matrix")
        with gr.Row():
            groups = gr.Dataframe(label="groups per pivot position", interactive=False)
            maps = gr.Dataframe(label="vocab maps per source token (agree = all three match)",
                                interactive=False, elem_id="fc-maps")
        go_btn.click(lambda t, p, s: explore_text(t, p, s, root), [text, pivot, source],
                     [msg, ptoks, stoks, matrix, groups, maps], api_name="explore_text")

        gr.Markdown("### A finished run: top-K before and after alignment")
        if not runs:
            gr.Markdown(f"No finished FuseChat runs yet. Make one with `{MAKE_RUN}`")
        with gr.Row():
            pick = gr.Dropdown(runs, value=runs[0] if runs else None, label="run", elem_id="fc-run")
            refresh = gr.Button("Refresh", elem_id="fc-refresh", scale=0)
            src_pick = gr.Dropdown([], label="source")
            kind = gr.Dropdown(list(MAP_KINDS), value="ms", label="vocab map")
        with gr.Row():
            sample = gr.Dropdown([], label="sample id")
            position = gr.Slider(0, 2048, value=0, step=1, label="pivot position")
        run_msg = gr.Markdown(elem_id="fc-run-msg")
        topk_msg = gr.Markdown(elem_id="fc-topk-msg")
        topk = gr.Dataframe(label="top-K", interactive=False, elem_id="fc-topk")

        def _pick(rel):
            m, sources, samples = run_view(root, rel)
            return (m, gr.update(choices=sources, value=sources[0] if sources else None),
                    gr.update(choices=samples, value=samples[0] if samples else None))

        def _cmp(rel, s, k, smp, pos):
            return compare_topk(root, rel, s, k, smp, pos)

        def _len(rel, smp):
            n = sample_length(root, rel, smp)
            return gr.update(maximum=max(n - 1, 1), value=min(20, max(n - 1, 0)))

        def relist(current, piv, src):
            now, names = run_choices(root), tokenizer_choices(root)
            return (gr.update(choices=now, value=keep_choice(now, current)),
                    gr.update(choices=names, value=piv), gr.update(choices=names, value=src))

        refresh.click(relist, [pick, pivot, source], [pick, pivot, source])
        app.refresh_runs = (relist, [pick, pivot, source], [pick, pivot, source])
        pick.change(_pick, pick, [run_msg, src_pick, sample])
        app.load(_pick, pick, [run_msg, src_pick, sample])
        sample.change(_len, [pick, sample], position)
        for c in (src_pick, kind, sample, position):
            c.change(_cmp, [pick, src_pick, kind, sample, position], [topk_msg, topk])
    return app
