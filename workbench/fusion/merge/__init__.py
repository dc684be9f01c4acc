"""Model merging for FuseChat: SCE (both variants), VaRM, linear, task arithmetic, TIES, DARE.

>>> from workbench.fusion.merge import MergeConfig, run_merge
>>> run_merge(MergeConfig(models=("a", "b"), base_model="p", out_dir="out"))  # doctest: +SKIP
"""

from workbench.fusion.merge.registry import MERGE_METHODS  # isort: skip
from workbench.fusion.merge import dare_linear as _dare_linear  # noqa: F401  (registers)
from workbench.fusion.merge import linear as _linear  # noqa: F401
from workbench.fusion.merge import sce as _sce  # noqa: F401
from workbench.fusion.merge import task_arithmetic as _task_arithmetic  # noqa: F401
from workbench.fusion.merge import ties as _ties  # noqa: F401
from workbench.fusion.merge import varm as _varm  # noqa: F401
from workbench.fusion.merge.checkpoint import Checkpoint, ShardWriter
from workbench.fusion.merge.config import MergeConfig, load_merge_yaml
from workbench.fusion.merge.dare_linear import dare, dare_linear
from workbench.fusion.merge.linear import linear
from workbench.fusion.merge.run import MergeResult, bind_params, run_merge
from workbench.fusion.merge.sce import sce, sce_coefficients, sce_erase_mask, sce_select_mask
from workbench.fusion.merge.task_arithmetic import task_arithmetic
from workbench.fusion.merge.ties import magnitude_mask, ties
from workbench.fusion.merge.varm import varm

__all__ = [
    "MERGE_METHODS", "Checkpoint", "MergeConfig", "MergeResult", "ShardWriter", "bind_params",
    "dare", "dare_linear", "linear", "load_merge_yaml", "magnitude_mask", "run_merge", "sce",
    "sce_coefficients", "sce_erase_mask", "sce_select_mask", "task_arithmetic", "ties", "varm",
]
