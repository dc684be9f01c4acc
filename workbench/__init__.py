"""Workbench: reproduce FuseChat, BlockPruner, SEFT and YNU-HPCC toxic spans at any scale.

Subpackages: `common` (registry, configs, run directories, models), `data` (offline corpora),
`eval` (perplexity, zero-shot tasks, chat judging), `viz` (plotly figures), and one per paper:
`fusion`, `pruning`, `seft`, `spans`.
"""

__version__ = "0.1.0"

import warnings as _warnings

# tqdm.auto inside a Jupyter kernel without ipywidgets (datasets, transformers and lm-eval import
# it) warns into every executed notebook; its text bars work, and `track` decides about bars
_warnings.filterwarnings("ignore", message="IProgress not found")
