"""The one table of the four papers: notebook kind, package, title and app tab.

`workbench reproduce` (notebooks), the app hub (tabs), the CLI (paper subcommands) and the notebook
tests all read it, so adding a paper is one row here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class Paper:
    kind: str       # notebook name and RunDir kind: notebooks/<kind>.ipynb
    package: str    # workbench.<pkg>: app.py (build_app) and, optionally, cli.py (register)
    title: str      # paper title in reports
    tab: str        # app hub tab title
    config: str = ""  # "<module file under workbench/>:<class>": the notebook's config class


PAPERS: tuple[Paper, ...] = (
    Paper("blockpruner", "workbench.pruning",
          "BlockPruner: fine-grained pruning for LLMs (Findings ACL 2025)", "BlockPruner: block importance",
          "pruning/run.py:PruningConfig"),
    Paper("fusechat", "workbench.fusion",
          "FuseChat: knowledge fusion of chat models (EMNLP 2025)", "FuseChat: token alignment",
          "fusion/config.py:FuseChatConfig"),
    Paper("seft", "workbench.seft",
          "SEFT: self-evolution fine-tuning (Findings EMNLP 2024)", "SEFT: reviser playground",
          "seft/config.py:SEFTConfig"),
    Paper("toxic_spans", "workbench.spans",
          "YNU-HPCC at SemEval-2021 Task 5: toxic span detection", "Toxic spans",
          "spans/train.py:SpansConfig"),
)


def optional_import(module: str) -> ModuleType | None:
    """Import `module`, or None when that module itself does not exist (a paper part not written
    yet). Errors inside an existing module, or a missing dependency of it, still raise."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        return None
