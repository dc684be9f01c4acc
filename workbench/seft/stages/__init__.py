"""SEFT stages, each a module of its own and each runnable alone (``workbench seft stage NAME``,
also under ``accelerate launch``): :mod:`.data` (preference pairs, prompt pool), :mod:`.reviser`,
:mod:`.baselines` (SFT / DPO / ORPO), :mod:`.evolve` (one self-evolution round) and
:mod:`.evaluate` (answers, judging, re-judging). :func:`workbench.seft.run.run_seft` chains them.

A training stage leaves ``checkpoints/<stage>_final/`` with ``stage.json`` written last (the
stage is done); under a multi-process launch only the main process writes, the other ranks wait.
"""

STAGES = ("reviser", "sft", "dpo", "orpo", "round")
