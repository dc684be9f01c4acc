"""SEFT data: preference pairs (reviser + baselines), held-out pairs, the unlabelled prompt pool
(rounds + evaluation). Deterministic: every stage and every rank rebuilds the same split."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.seft.config import SEFTConfig
from workbench.seft.pref_sources import hh_user_turn, load_pref_pairs
from workbench.seft.reviser_data import build_reviser_examples


def _read_jsonl(path: Path, what: str) -> list[dict[str, Any]]:
    """JSON lines of ``what`` (pref_data / prompt_source); a bad line -> ValueError naming both."""
    from workbench.data.mtbench import _read_jsonl as read_lines
    try:
        rows = read_lines(path)
    except ValueError as e:
        raise ValueError(f"{what} {e}") from None
    for i, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            raise ValueError(f"{what} {path.name}: record {i} is not a JSON object")
    return rows


def pref_rows(cfg: SEFTConfig) -> list[dict[str, Any]]:
    """Preference pairs (prompt / chosen_response / rejected_response; unusable rows kept, with
    None fields, so they are skipped and counted): enough for ``pref_size`` training pairs and
    ``reviser_eval_pairs`` held-out ones."""
    need = cfg.pref_size + cfg.reviser_eval_pairs
    if cfg.pref_data == "hh_rlhf":
        from workbench.data import load_hh_rlhf
        ds = load_hh_rlhf()
        out = []
        for i in range(len(ds)):  # single-turn HH rows only; prompt = the user's text
            r = ds[i]
            if r["prompt"].count("Human:") == 1:
                out.append({**r, "prompt": hh_user_turn(r["prompt"])})
            if len(out) >= need * 2:
                break
        return out
    return load_pref_pairs(cfg.pref_data, split=cfg.pref_split, ranked=cfg.ranked_pairs,
                           limit=None if Path(cfg.pref_data).is_file() else need * 4 + 64)


def _prompt_candidates(cfg: SEFTConfig, n: int) -> list[str]:
    if cfg.prompt_source == "sharegpt":
        from workbench.data import load_sharegpt
        ds = load_sharegpt(limit=n * 4 + 16)
        return [m[0]["content"] for m in ds["messages"] if m and m[0]["role"] == "user"]
    if cfg.prompt_source == "hh_rlhf":
        from workbench.data import load_hh_rlhf
        ds = load_hh_rlhf()
        return [hh_user_turn(ds[i]["prompt"]) for i in range(len(ds) - 1, -1, -1)
                if ds[i]["prompt"].count("Human:") == 1][: n * 4 + 64]
    path = Path(cfg.prompt_source)
    if not path.is_file():
        raise ValueError(f"prompt_source {cfg.prompt_source!r}: not hh_rlhf|sharegpt and not a file")
    if path.suffix == ".jsonl":
        return [str(r.get("prompt") or "") for r in _read_jsonl(path, "prompt_source")]
    return path.read_text(encoding="utf-8").splitlines()


def prompt_pool(cfg: SEFTConfig, exclude: set[str], n: int) -> list[str]:
    """Up to ``n`` distinct non-empty prompts (< 1500 chars) not in ``exclude``."""
    out, seen = [], set(exclude)
    for p in _prompt_candidates(cfg, n):
        p = p.strip()
        if p and p not in seen and len(p) < 1500:
            seen.add(p)
            out.append(p)
        if len(out) >= n:
            break
    return out


def mtbench_subset(questions: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
    """``n`` MT-Bench questions round-robin over categories (first of each category, then the
    second, ...), so small ``n`` still covers writing .. humanities."""
    by_cat: dict[str, list[dict[str, Any]]] = {}
    for q in questions:
        by_cat.setdefault(q["category"], []).append(q)
    out: list[dict[str, Any]] = []
    depth = 0
    while len(out) < n and any(depth < len(v) for v in by_cat.values()):
        out += [v[depth] for v in by_cat.values() if depth < len(v)]
        depth += 1
    return out[:n]


@dataclass
class SEFTData:
    """The run's data split: ``used`` pairs (reviser + baselines) and their reviser
    ``examples``, ``heldout`` pairs, ``eval_prompts`` and the rounds' prompt ``pool``."""

    used: list[dict[str, Any]]
    heldout: list[dict[str, Any]]
    examples: list[dict[str, Any]]
    info: dict[str, Any]
    eval_prompts: list[str]
    pool: list[str]
    warnings: list[str] = field(default_factory=list)

    def round_prompts(self, cfg: SEFTConfig, r: int) -> list[str]:
        return self.pool[(r - 1) * cfg.prompts_per_round: r * cfg.prompts_per_round]


def prepare_data(cfg: SEFTConfig) -> SEFTData:
    """Read and split the data (bad input -> ValueError naming it)."""
    warnings: list[str] = []
    raw = pref_rows(cfg)
    _, all_stats = build_reviser_examples(raw, include_keep=cfg.include_keep)
    skipped = set(all_stats.skipped_rows)
    usable = [r for i, r in enumerate(raw) if i not in skipped]
    used = usable[: cfg.pref_size]
    heldout = usable[cfg.pref_size: cfg.pref_size + cfg.reviser_eval_pairs]
    if not used:
        raise ValueError(f"pref_data {cfg.pref_data!r}: no usable preference rows "
                         f"({all_stats.skipped_missing} missing a field, "
                         f"{all_stats.skipped_identical} with identical chosen/rejected)")
    examples, dstats = build_reviser_examples(used, include_keep=cfg.include_keep)
    info = {**dstats.as_dict(), "rows_read": all_stats.n_input,
            "rows_skipped_missing": all_stats.skipped_missing,
            "rows_skipped_identical": all_stats.skipped_identical}
    if all_stats.skipped_missing or all_stats.skipped_identical:
        warnings.append(f"preference data: skipped {all_stats.skipped_missing} rows missing a "
                        f"field and {all_stats.skipped_identical} with identical chosen/rejected")
    n_pool = cfg.rounds * cfg.prompts_per_round + cfg.eval_prompts
    pool = prompt_pool(cfg, {r["prompt"].strip() for r in used + heldout}, n_pool)
    if len(pool) < n_pool:
        raise ValueError(f"prompt_source {cfg.prompt_source!r}: the prompt pool has {len(pool)} "
                         f"usable prompts, need {n_pool} (rounds * prompts_per_round + "
                         "eval_prompts)")
    return SEFTData(used=used, heldout=heldout, examples=examples, info=info,
                    eval_prompts=pool[: cfg.eval_prompts], pool=pool[cfg.eval_prompts:],
                    warnings=warnings)
