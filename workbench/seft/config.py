"""SEFTConfig: every UNVERIFIED choice of the spec (papers.md §3.b) is a documented field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from workbench.common.config import RunConfig
from workbench.common.config import option as _f
from workbench.eval.judges import JUDGE_MODES


@dataclass(frozen=True, kw_only=True)
class SEFTConfig(RunConfig):
    PRESETS: ClassVar[str] = "seft"

    policy: str = _f("smollm2-135m-instruct", "policy model (start of self-evolution)")
    reviser_base: str = _f("smollm2-135m-instruct", "base model the reviser is SFT-trained from")
    pref_data: str = _f("hh_rlhf", "preference data: hh_rlhf (offline); nectar | ultrafeedback | "
                        "any datasets name (online); or a .json/.jsonl file of pairs, "
                        "UltraFeedback-binarized rows or Nectar rows")
    pref_split: str | None = _f(None, "split of a datasets name (None: train_prefs for "
                                "ultrafeedback, train otherwise)")
    ranked_pairs: str = _f("worst", "ranked data (Nectar): best vs worst | each lower answer "
                           "(UNVERIFIED)")
    pref_size: int = _f(64, "preference pairs used for the reviser and the baselines")
    reviser_eval_pairs: int = _f(16, "held-out preference pairs (not trained on) on which the "
                                 "reviser's REVISE share on rejected vs chosen is measured, "
                                 "before and after its training (0 = skip)")
    prompt_source: str = _f("hh_rlhf", "unlabelled prompt pool: hh_rlhf | sharegpt | a file "
                            "(.txt one prompt a line, or .jsonl with a 'prompt' field)")
    prompts_per_round: int = _f(32, "fresh prompts per evolution round (UNVERIFIED)")
    rounds: int = _f(1, "self-evolution rounds R (UNVERIFIED)")
    evolution: str = _f("internal", "internal (policy's own responses) | external (UNVERIFIED)")
    external_model: str | None = _f(None, "model that writes responses for external evolution")
    include_keep: bool = _f(True, "reviser data: KEEP branch (chosen -> KEEP + itself)")
    decision: str = _f("constrained", "reviser decision: constrained (the more likely of the "
                       "KEEP / REVISE lines under the reviser, then the revision is generated) | "
                       "free (generate, then parse; malformed -> KEEP, counted)")
    reviser_epochs: float | None = _f(None, "epochs of reviser training (None = epochs)")
    reviser_max_steps: int | None = _f(None, "cap on reviser optimizer steps (None = max_steps)")
    lora: bool = _f(True, "LoRA (PEFT) instead of full fine-tuning, for reviser/policy/baselines")
    lr: float = _f(2e-4, "learning rate (SFT, reviser and policy rounds)")
    pref_lr: float = _f(5e-5, "learning rate for DPO/ORPO baselines")
    beta: float = _f(0.1, "DPO beta (sigmoid) / ORPO lambda (UNVERIFIED: TRL defaults)")
    epochs: float = _f(1.0, "epochs per training stage")
    max_steps: int = _f(-1, "cap on optimizer steps per stage (-1 = epochs)")
    batch_size: int = _f(4, "per-device batch size")
    bf16: bool = _f(False, "bf16 mixed precision in training (TRL's default is on; off = fp32)")
    gradient_checkpointing: bool = _f(False, "recompute activations (TRL's default is on; off is "
                                      "faster when memory allows)")
    max_length: int = _f(384, "max tokens per training example")
    max_new_tokens: int = _f(96, "policy sampling length")
    reviser_max_new_tokens: int = _f(160, "reviser generation length")
    eval_prompts: int = _f(8, "held-out prompts for the pairwise win rate vs SFT")
    mtbench_limit: int = _f(4, "MT-Bench questions (both turns), taken round-robin over the 8 "
                            "categories (8 = one per category)")
    mtbench_pairwise: bool = _f(False, "also judge MT-Bench pairwise (both turns) vs SFT")
    judge: str = _f("auto", "auto | hf | openai (env WORKBENCH_JUDGE_*)")
    judge_model: str | None = _f(None, "judge model; None = qwen2.5-coder-0.5b-instruct (weak)")
    judge_max_new_tokens: int = _f(128, "local judge generation length (explanation; a rating "
                                   "cut off by it is read by forced continuation, counted)")
    judge_batch_size: int = _f(4, "local judge batch size")
    judge_mode: str = _f("expected", "local judge: expected (probability-weighted rating / verdict "
                         "from one forward pass, no explanation) | generate (MT-Bench's written "
                         "judgment); an endpoint judge always generates")
    baselines: tuple[str, ...] = _f(("sft", "dpo", "orpo"), "baselines to train")
    training_args: dict[str, Any] = field(default_factory=dict, metadata={"help": (
        "any TrainingArguments field passed to every training stage (reviser, baselines, rounds),"
        " over the values above: gradient_accumulation_steps, warmup_ratio, save_strategy / "
        "save_steps (checkpoints: a killed stage resumes from its last one), fsdp, deepspeed, "
        "...; resume_from_checkpoint: unset/true = the last checkpoint, false = start over, a "
        "path")})
    generation_backend: str = _f("hf", "answers of the evaluated models: hf (batched "
                                 "generate) | vllm (needs vllm + CUDA) | auto (vllm when "
                                 "usable, else hf); greedy either way")
    num_threads: int | None = _f(None, "torch CPU threads (None = torch's default). 1 is much "
                                 "faster when another job shares the cores (measured 4x for an "
                                 "SFT step on 2 busy cores)")

    def __post_init__(self) -> None:
        super().__post_init__()
        from workbench.common.trainargs import check_training_args
        check_training_args(self.training_args, "SEFTConfig.training_args")
        if self.judge_mode not in JUDGE_MODES:
            raise ValueError(f"SEFTConfig.judge_mode must be one of {', '.join(JUDGE_MODES)}, "
                             f"got {self.judge_mode!r}")
        from workbench.eval.generation import BACKENDS
        if self.generation_backend not in BACKENDS:
            raise ValueError(f"SEFTConfig.generation_backend must be one of "
                             f"{', '.join(BACKENDS)}, got {self.generation_backend!r}")
        if self.decision not in ("constrained", "free"):
            raise ValueError(f"decision must be constrained|free, got {self.decision!r}")
        if self.ranked_pairs not in ("worst", "each"):
            raise ValueError(f"ranked_pairs must be worst|each, got {self.ranked_pairs!r}")
        if self.reviser_eval_pairs < 0:
            raise ValueError("reviser_eval_pairs must be >= 0")
        if self.evolution not in ("internal", "external"):
            raise ValueError(f"evolution must be internal|external, got {self.evolution!r}")
        if self.evolution == "external" and not self.external_model:
            raise ValueError("external evolution needs external_model")
        if self.mtbench_limit < 0 or self.eval_prompts < 1:
            raise ValueError("mtbench_limit must be >= 0 and eval_prompts >= 1")
        if self.rounds < 1 or self.prompts_per_round < 1:
            raise ValueError("rounds and prompts_per_round must be >= 1")
