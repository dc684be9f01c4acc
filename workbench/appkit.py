"""What every app tab shares: safe text in Markdown/HTML, readable tables, run pickers, input caps.

Rules the tabs follow (the hub's injection test checks them in a browser):
- user or model text goes into `gr.Markdown` only through :func:`md_text` / :func:`md_code`, and
  into `gr.HTML` only through `html.escape`; Textboxes and tables show text as text;
- every free-text input has a `max_length` and its callback checks the same cap
  (:func:`too_long`), so a request sent without the browser is refused too;
- tables go through :func:`table`: floats rounded, `x`/`x_lo`/`x_hi` shown as one "x [lo, hi]"
  cell (the `workbench.eval.stats.columns` convention), `n` kept;
- run dropdowns show run names relative to the runs root, never filesystem paths.
"""

from __future__ import annotations

import html
import math
import re
from pathlib import Path
from typing import Any

MAX_TEXT = 2000   # characters of a free-text input (a post, a prompt, a response)
MAX_NAME = 200    # characters of a typed name (tokenizer, member)
SIG_DIGITS = 4

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~>])")


def md_text(text: Any) -> str:
    """`text` shown literally inside `gr.Markdown` (HTML escaped, Markdown syntax neutralised)."""
    return _MD_SPECIAL.sub(r"\\\1", html.escape(str(text), quote=False)).replace("\n", " ")


def md_code(text: Any) -> str:
    """`text` as an inline code span (a fence longer than any backtick run inside it)."""
    s = str(text).replace("\n", " ")
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s.strip() else ""
    return f"{fence}{pad}{s}{pad}{fence}"


def html_text(text: Any) -> str:
    """`text` escaped for `gr.HTML` (quotes too: safe inside attributes)."""
    return html.escape(str(text), quote=True)


def too_long(text: str | None, cap: int = MAX_TEXT, what: str = "Input") -> str | None:
    """The one-line refusal for an over-long input, or None when it fits."""
    n = len(text or "")
    return f"{what} is {n} characters; the cap is {cap}. Shorten it." if n > cap else None


def one_line(err: BaseException | str, limit: int = 300) -> str:
    """The first non-empty line of an error message, clipped (library errors run to pages)."""
    text = str(err).strip()
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(err).__name__
                 if isinstance(err, BaseException) else "")
    return first if len(first) <= limit else first[: limit - 1] + "…"


# ---- numbers and tables -----------------------------------------------------------------
def num(v: Any, digits: int = SIG_DIGITS) -> Any:
    """Floats rounded to `digits` significant digits (never "-0"); other values unchanged."""
    if isinstance(v, bool) or not isinstance(v, float):
        return v
    if not math.isfinite(v):
        return None
    if v == 0:
        return 0.0
    r = round(v, max(0, digits - 1 - int(math.floor(math.log10(abs(v))))))
    return 0.0 if r == 0 else r


def rounded(obj: Any) -> Any:
    """`num` applied through dicts and lists (for `gr.JSON` views of metrics)."""
    if isinstance(obj, dict):
        return {k: rounded(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [rounded(v) for v in obj]
    return num(obj)


def _fmt(v: Any) -> str:
    v = num(v)
    return "–" if v is None else f"{v:g}" if isinstance(v, float) else str(v)


def table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """(headers, values) of row dicts for a `gr.Dataframe`: columns in first-seen order, floats
    rounded, an estimate's `x_lo`/`x_hi` folded into its `x` cell as "x [lo, hi]" (or `x_stderr`
    as "x ± se"), lists and dicts shown as short text."""
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    folded = {c for c in cols if f"{c}_lo" in cols and f"{c}_hi" in cols}
    se_only = {c for c in cols if f"{c}_stderr" in cols and c not in folded}
    hidden = {f"{c}{s}" for c in folded for s in ("_lo", "_hi", "_stderr")} | \
             {f"{c}_stderr" for c in se_only}
    heads = [c for c in cols if c not in hidden]

    def cell(r: dict[str, Any], c: str) -> Any:
        v = r.get(c)
        if c in folded and r.get(f"{c}_lo") is not None and r.get(f"{c}_hi") is not None:
            return f"{_fmt(v)} [{_fmt(r[f'{c}_lo'])}, {_fmt(r[f'{c}_hi'])}]"
        if c in se_only and r.get(f"{c}_stderr") is not None:
            return f"{_fmt(v)} ± {_fmt(r[f'{c}_stderr'])}"
        if isinstance(v, dict) and {"value", "lo", "hi"} <= set(v):  # an Estimate.to_dict()
            n = f" (n={v['n']})" if v.get("n") is not None else ""
            if v.get("lo") is None or v.get("hi") is None:
                return f"{_fmt(v['value'])}{n}"
            return f"{_fmt(v['value'])} [{_fmt(v['lo'])}, {_fmt(v['hi'])}]{n}"
        if isinstance(v, list | dict):
            return str(rounded(v))[:200]
        v = num(v)
        return "" if v is None else v

    return ([f"{c} [95% CI]" if c in folded else f"{c} ± se" if c in se_only else c
             for c in heads],
            [[cell(r, c) for c in heads] for r in rows])


# ---- run pickers ------------------------------------------------------------------------
def run_label(path: str | Path, root: str | Path | None = None) -> str:
    """`<kind>/<run name>` of a run folder (never the absolute path)."""
    p = Path(path)
    if root is not None:
        try:
            return str(p.relative_to(Path(root)))
        except ValueError:
            pass
    return f"{p.parent.name}/{p.name}"


def keep_choice(choices: list, current: Any) -> Any:
    """The dropdown value after a refresh: the current one when still listed, else the first."""
    values = [c[1] if isinstance(c, tuple) else c for c in choices]
    return current if current in values else (values[0] if values else None)
