"""Compare the official text switches on a finished FuseChat run's representations:
``dtw_text=decode, vocab_text=raw`` (newest official script) vs ``normalized, normalized`` (ours).

Per source: samples whose DTW groups are identical, pivot positions whose group differs, the
``ms`` statistics under each setting (source ids with co-occurring candidates, exact / via-map /
dropped candidates, softmax mass sent to the fallback token, align kinds) and the share of pivot
positions whose aligned top-K row is identical. Counts come from the run's scored dialogues plus
its extra ``ms_count_dialogues`` (as the cooccurrence stage), per setting.

    python benchmarks/fusechat_align_switches.py RUN_DIR [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    import numpy as np
    import yaml

    from workbench.fusion import align as A
    from workbench.fusion import represent as R
    from workbench.fusion.config import FuseChatConfig
    from workbench.fusion.context import FuseChatContext
    from workbench.fusion.run import align_rules, dtw_options, vocab_map_kwargs

    run_dir = Path(a.run_dir)
    raw_cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    fields = FuseChatConfig.__dataclass_fields__
    cfg = FuseChatConfig(**{k: (tuple(v) if isinstance(v, list) else v)
                            for k, v in raw_cfg.items() if k in fields})

    class _Run:
        path = run_dir
        artifacts = run_dir / "artifacts"

    ctx = FuseChatContext(cfg, _Run())
    settings = {"official (decode, raw)": cfg.replace(dtw_text="decode", vocab_text="raw"),
                "ours (normalized, normalized)": cfg.replace(dtw_text="normalized",
                                                             vocab_text="normalized")}
    ptok = ctx.tokenizer(cfg.pivot)
    pivot_ds = ctx.representations(cfg.pivot)
    extra = R.extra_count_dialogues(cfg, [ctx.tokenizer(m) for m in cfg.models])
    report: dict = {"run": str(run_dir), "samples": len(pivot_ds), "extra_count_dialogues":
                    len(extra), "sources": {}}
    for src in cfg.sources:
        stok = ctx.tokenizer(src)
        source_ds = ctx.representations(src)
        groups, aligned, stats = {}, {}, {}
        for name, c in settings.items():
            t0 = time.time()
            opts = dtw_options(c)
            groups[name] = A.dtw_groups(pivot_ds, source_ds, ptok, stok, opts)
            counts = A.ms_counts(pivot_ds, source_ds, ptok, stok, options=opts,
                                 group_repeats=c.ms_group_repeats,
                                 extra_pairs=R.id_pairs(extra, ptok, stok, c.max_length))
            ds, st = A.align_representations(
                pivot_ds, source_ds, ptok, stok, "ms", counts=counts, rules=align_rules(c, "ms"),
                options=opts, map_kwargs=vocab_map_kwargs(c, "ms"), groups=groups[name],
                vocab_text=c.vocab_text, group_repeats=c.ms_group_repeats)
            aligned[name] = ds
            stats[name] = {k: st.get(k) for k in (
                "one_to_one", "one_to_many", "fallback", "empty_rows", "candidates_exact",
                "candidates_via_map", "candidates_dropped", "fallback_mass", "fallback_top1",
                "top1_is_gold")}
            stats[name].update(with_candidates_share=st["map_info"]["with_candidates_share"],
                               with_candidates=st["map_info"]["with_candidates"],
                               computed=st["map_info"]["computed"], seconds=time.time() - t0)
        n1, n2 = settings
        same_samples = sum(groups[n1][i] == groups[n2][i] for i in groups[n1])
        pos = diff_pos = 0
        for i in groups[n1]:
            for g1, g2 in zip(groups[n1][i], groups[n2][i], strict=True):
                pos += 1
                diff_pos += g1 != g2
        rows = same_rows = 0
        for r1, r2 in zip(aligned[n1], aligned[n2], strict=True):
            x1, x2 = np.asarray(r1["topk_ids"]), np.asarray(r2["topk_ids"])
            rows += len(x1)
            same_rows += int((x1 == x2).all(axis=1).sum())
        report["sources"][src] = {
            "dtw_identical_samples": same_samples, "samples": len(groups[n1]),
            "dtw_positions_differ": diff_pos / pos if pos else 0.0,
            "ms_identical_topk_rows": same_rows / rows if rows else 0.0, "settings": stats}
        print(json.dumps({src: report["sources"][src]}, indent=1), flush=True)
    if a.out:
        Path(a.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
