"""Find a data file: explicit path, `$WORKBENCH_DATA`, `../shared/data`, the cache, or a download.

Resolution order for `resolve_file(relpath, ...)`:

1. `path=` given by the caller (a file, or a folder holding `relpath` or its basename). When a
   path is given, nothing else is tried: a wrong explicit path is an error, not a fallback.
2. `$WORKBENCH_DATA/<relpath>` (a data root laid out like `shared/data`).
3. `<project root>/../shared/data/<relpath>`, then `<cwd>/../shared/data/<relpath>`.
4. `<cache>/data/<relpath>` (a previous download; cache = `$WORKBENCH_CACHE` or
   `~/.cache/workbench`).
5. Download `url` into the cache, checked against `sha256` (temp file, verify, rename).
   Allowed when `WORKBENCH_ALLOW_DOWNLOAD=1`; forbidden when it is `0`; otherwise allowed
   unless `HF_HUB_OFFLINE=1` (the test suite sets it, so tests never touch the network).

If all fail, one `FileNotFoundError` lists every place that was tried.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
import urllib.request
from pathlib import Path

log = logging.getLogger(__name__)

ENV_DATA = "WORKBENCH_DATA"
ENV_CACHE = "WORKBENCH_CACHE"
ENV_ALLOW = "WORKBENCH_ALLOW_DOWNLOAD"
DOWNLOAD_TIMEOUT_S = 30.0
_CHUNK = 1 << 20


def project_root() -> Path:
    """The repository root (the folder that holds the `workbench` package)."""
    import workbench

    return Path(workbench.__file__).resolve().parents[1]


def _shared_candidates() -> list[Path]:
    out: list[Path] = []
    for base in (project_root(), Path.cwd()):
        cand = (base / ".." / "shared" / "data").resolve()
        if cand not in out:
            out.append(cand)
    return out


def shared_data_dir() -> Path:
    """`<root>/../shared/data` (or `<cwd>/../shared/data`), the first that exists.

    Returns the project-relative candidate even when neither exists.
    """
    cands = _shared_candidates()
    return next((c for c in cands if c.is_dir()), cands[0])


def cache_dir() -> Path:
    """`$WORKBENCH_CACHE` or `~/.cache/workbench`; downloads go to its `data/` subfolder."""
    env = os.environ.get(ENV_CACHE)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "workbench"


def download_allowed() -> bool:
    """True if `WORKBENCH_ALLOW_DOWNLOAD=1`, or it is unset and `HF_HUB_OFFLINE` is not 1."""
    flag = os.environ.get(ENV_ALLOW, "").strip()
    if flag:
        return flag == "1"
    return os.environ.get("HF_HUB_OFFLINE", "").strip() != "1"


def package_dir(package: str) -> Path | None:
    """Folder of an installed package, found without importing it (None if not installed)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def download_verified(url: str, dest: str | os.PathLike, sha256: str | None) -> Path:
    """Download `url` (any urllib scheme, file:// included) to `dest`, atomically.

    Streams into a temp file next to `dest`, checks its sha256, then renames it into place.
    On a mismatch (or any error) the temp file is deleted; a mismatch raises `ValueError`.
    `sha256=None` skips the check with a logged warning.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp:
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                h.update(chunk)
                out.write(chunk)
        got = h.hexdigest()
        if sha256 is None:
            log.warning("downloaded %s without a pinned sha256 (got %s)", url, got)
        elif got.lower() != sha256.lower():
            raise ValueError(f"sha256 mismatch for {url}: expected {sha256}, got {got}")
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("downloaded %s -> %s", url, dest)
    return dest


def resolve_file(relpath: str, *, path: str | os.PathLike | None = None, url: str | None = None,
                 sha256: str | None = None, cache_relpath: str | None = None) -> Path:
    """Return an existing file for `relpath` (see the module docstring for the order).

    `cache_relpath` names the downloaded file inside `<cache>/data` when it differs from
    `relpath` (e.g. a parquet download standing in for a raw text file).
    """
    looked: list[str] = []
    if path is not None:
        p = Path(path).expanduser()
        cands = [p, p / relpath, p / Path(relpath).name] if p.is_dir() else [p]
        for c in cands:
            if c.is_file():
                return c
        raise FileNotFoundError(f"{relpath}: explicit path {p} does not exist"
                                + (" (or holds no such file)" if p.is_dir() else ""))
    env = os.environ.get(ENV_DATA)
    if env:
        cands = [Path(env).expanduser() / relpath]
    else:
        cands = []
        looked.append(f"${ENV_DATA}/{relpath} (${ENV_DATA} not set)")
    cands += [d / relpath for d in _shared_candidates()]
    cache_root = cache_dir() / "data"
    dl_dest = cache_root / (cache_relpath or relpath)
    cands += list(dict.fromkeys([cache_root / relpath, dl_dest]))
    for c in cands:
        if c.is_file():
            log.debug("resolved %s -> %s", relpath, c)
            return c
        looked.append(str(c))
    if url is None:
        looked.append("(no download source for this file)")
    elif not download_allowed():
        looked.append(f"{url} (download disabled: HF_HUB_OFFLINE=1 or {ENV_ALLOW}=0; "
                      f"set {ENV_ALLOW}=1 to allow)")
    else:
        try:
            return download_verified(url, dl_dest, sha256)
        except (OSError, ValueError) as exc:  # URLError is an OSError
            looked.append(f"{url} (download failed: {exc})")
    places = "\n".join(f"  - {x}" for x in looked)
    raise FileNotFoundError(
        f"{relpath} not found. Looked in:\n{places}\n"
        f"Pass path=..., set {ENV_DATA} to a data root, or put the file under ../shared/data.")
