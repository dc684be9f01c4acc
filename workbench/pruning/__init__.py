"""BlockPruner: fine-grained block pruning of LLMs (Findings ACL 2025, arXiv 2406.10594).

    from workbench.pruning import PruningConfig, run_blockpruner
    res = run_blockpruner(PruningConfig.from_preset("quick"))
"""

from workbench.pruning.blocks import SUPPORTED, Block, BlockModel, parse_block
from workbench.pruning.export import export_pruned, prune_model
from workbench.pruning.run import (
    PruningConfig,
    PruningResult,
    evaluate_set,
    run_block_search,
    run_blockpruner,
)
from workbench.pruning.search import METRICS, SEARCHES, del_order_list, greedy, steps_table

__all__ = [
    "METRICS", "SEARCHES", "SUPPORTED", "Block", "BlockModel", "PruningConfig", "PruningResult",
    "del_order_list", "evaluate_set", "export_pruned", "greedy", "parse_block", "prune_model",
    "run_block_search", "run_blockpruner", "steps_table",
]
