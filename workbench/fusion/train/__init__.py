"""FuseChat fusion training: MinCE targets, sparse fusion loss, HF-Trainer training of targets.

>>> from workbench.fusion.train import TrainArgs, train_target
>>> train_target(TrainArgs(model="tiny:llama"), pivot_ds, [aligned_ds], "out/target")  # doctest: +SKIP
"""

from workbench.fusion.train.data import (
    FusionCollator,
    FusionDataset,
    batch_nbytes,
    synthetic_representations,
)
from workbench.fusion.train.kernels import (
    dense_fusion_loss,
    dense_target_bytes,
    dense_targets,
    fusion_objective,
    mince_select,
    next_token_mask,
    sft_loss,
    sparse_fusion_loss,
    sparse_target_bytes,
    topk_distribution,
)

_TRAINER = ("FuseTrainer", "TrainArgs", "is_trained", "train_info", "train_target")


def __getattr__(name: str):
    """The trainer imports transformers' Trainer (seconds): loaded on first use only."""
    if name in _TRAINER:
        from workbench.fusion.train import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FuseTrainer", "FusionCollator", "FusionDataset", "TrainArgs", "batch_nbytes",
    "dense_fusion_loss", "dense_target_bytes", "dense_targets", "fusion_objective", "is_trained",
    "mince_select", "next_token_mask", "sft_loss", "sparse_fusion_loss", "sparse_target_bytes",
    "synthetic_representations", "topk_distribution", "train_info", "train_target",
]
