"""The former home of FuseChat part 2, split into :mod:`.targets`, :mod:`.merges`,
:mod:`.evaluate` and :mod:`.stages`; its names are re-exported here for old imports."""

from workbench.fusion.train.evaluate import (
    GROUPS,
    _num,
    chat_generator,
    evaluate_model,
    evaluate_models,
    fusechat_table,
    heldout_ce,
    heldout_dialogues,
)
from workbench.fusion.train.merges import (
    MERGE_PARAMS,
    merge_config,
    merge_targets,
    sce_matrix_weights,
)
from workbench.fusion.train.stages import (
    PART2_STAGES,
    _aligned,
    _discard_if_redone,
    _models_dir,
    stage_baselines,
    stage_evaluation,
    stage_merges,
    stage_targets,
)
from workbench.fusion.train.targets import (
    _train_summary,
    short_name,
    train_baselines,
    train_pairwise_targets,
    train_summary,
    train_target,
)

__all__ = ["GROUPS", "MERGE_PARAMS", "PART2_STAGES", "_aligned", "_discard_if_redone",
           "_models_dir", "_num", "_train_summary", "chat_generator", "evaluate_model",
           "evaluate_models", "fusechat_table", "heldout_ce", "heldout_dialogues", "merge_config",
           "merge_targets", "sce_matrix_weights", "short_name", "stage_baselines",
           "stage_evaluation", "stage_merges", "stage_targets", "train_baselines",
           "train_pairwise_targets", "train_summary", "train_target"]
