"""FuseChatConfig: one config for the whole FuseChat pipeline (papers.md §1.a, §1.b).

Part 1 (representations -> vocab maps -> aligned representations) and part 2 (pairwise fusion
training -> merging -> evaluation) read the same frozen config; presets live in
`workbench/presets/fusechat.yaml` (`smoke`, `quick`, `cpu`, `paper`).

>>> cfg = FuseChatConfig.from_preset("quick", data_size=16)        # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from workbench.common.config import RunConfig
from workbench.common.config import option as _f
from workbench.eval.judges import JUDGE_MODES

VOCAB_MAPS = ("em", "mined", "ms")
FUSE_LOSSES = ("ce", "kl")
# choices of the alignment quirk switches (the values workbench.fusion.align accepts)
ALIGN_CHOICES = {"dtw_tie_order": ("diag_left_up", "diag_up_left"),
                 "dtw_text": ("decode", "normalized"), "vocab_text": ("raw", "normalized"),
                 "align_unit": ("byte", "char"), "ms_count_rule": ("multiply", "divide"),
                 "ms_group_repeats": ("once", "each"),
                 "ms_no_candidate": ("unk", "drop"), "empty_row": ("keep", "one_hot")}
MINCE_DTYPES = ("bfloat16", "float32")
# the fields the ms counts depend on (the cooccurrence stage re-runs when one changes)
COUNT_FIELDS = ("dtw_tie_order", "dtw_empty_fallback", "dtw_substring_weight", "align_unit",
                "dtw_text", "ms_group_repeats", "ms_count_dialogues")
# every config field the token alignment depends on (run.py passes them to workbench.fusion.align)
ALIGN_FIELDS = ("dtw_tie_order", "dtw_empty_fallback", "dtw_substring_weight", "align_unit",
                "ms_count_rule", "ms_no_candidate", "empty_row", "empty_suffix_matches",
                "dtw_text", "vocab_text", "ms_group_repeats", "ms_count_dialogues")


@dataclass(frozen=True, kw_only=True)
class FuseChatConfig(RunConfig):
    PRESETS: ClassVar[str] = "fusechat"

    # ---- part 1: representations ------------------------------------------------------------
    pivot: str = _f("smollm2-135m-instruct", "pivot model (its chat template renders all data)")
    sources: tuple[str, ...] = _f(
        ("gemma3-270m", "qwen2.5-coder-0.5b-instruct"), "source models fused into the pivot")
    data: str = _f("sharegpt", "chat data: sharegpt (offline) or a .json/.jsonl file of "
                               "{id, messages: [{role, content}]} rows")
    data_size: int = _f(32, "dialogues scored (after dropping ones with no assistant turn)")
    max_length: int = _f(512, "tokens per dialogue, each model's tokenizer (paper: 2048)")
    top_k: int = _f(10, "top-K logits and ids kept per position (paper: 10)")
    repr_batch_size: int = _f(8, "max dialogues per forward pass (batched by length)")
    token_budget: int = _f(4096, "max padded tokens per forward pass (batch x longest)")
    shard_size: int = _f(16, "dialogues per on-disk shard (the unit of resume)")
    chat_template: str | None = _f(
        None, "jinja chat template (text or a .jinja file) overriding the pivot's; required when "
              "the pivot has none")
    vocab_map: str = _f("ms", "vocab map used for the fusion targets: em | mined | ms")
    compare_vocab_maps: tuple[str, ...] = _f(
        VOCAB_MAPS, "vocab maps aligned and compared in the stats table (must include vocab_map)")
    # official-code quirks of the token alignment (workbench.fusion.align); default = official
    dtw_text: str = _f(
        "decode", "token texts of the DTW and the 1->1 / 1->n checks: decode (newest official "
                  "code: tokenizer.decode([id]), spaces kept) | normalized (canonical texts with "
                  "the spaces stripped as the marker, as an older official upload)")
    vocab_text: str = _f(
        "raw", "texts of the vocab maps and the candidates: raw (official: vocabulary strings "
               "with a per-class marker table that gives GemmaTokenizer the byte-level 'Ġ', so "
               "Gemma's '▁' words never match) | normalized (canonical texts of every tokenizer)")
    ms_group_repeats: str = _f(
        "once", "ms counts: a source token repeated within one pivot position's DTW group counts "
                "once (official numpy fancy-index add) | each")
    ms_count_dialogues: int = _f(
        0, "dialogues whose DTW alignments feed the ms counts (tokenised only, no model): 0 = "
           "the scored dialogues; more adds dialogues read after those any held-out or "
           "development split may use (the official counts cover the whole training corpus)")
    dtw_tie_order: str = _f(
        "diag_left_up", "DTW backtracking order on equal costs: diag_left_up (newest official "
        "FuseChat code) | diag_up_left (FuseLLM and the first FuseChat release)")
    dtw_empty_fallback: bool = _f(
        True, "DTW cost: when a text is empty after stripping the word-boundary marker, compare "
              "the unstripped texts (newest official code); false: compare the empty text (first "
              "release)")
    dtw_substring_weight: bool = _f(
        False, "DTW cost x0.1 when one stripped text contains the other (first release only; "
                "off in the newest official code)")
    align_unit: str = _f(
        "byte", "edit-distance unit for DTW, mined and ms: byte (ours: UTF-8 bytes, so a split "
                "character still lines up) | char (canonical text characters; the official code "
                "compares raw vocabulary strings)")
    ms_count_rule: str = _f(
        "multiply", "ms map score ED * w * sigmoid(count): multiply (official: among equal "
                    "distances the LESS frequent pair wins) | divide (ED * w / sigmoid: the more "
                    "frequent pair wins)")
    ms_no_candidate: str = _f(
        "unk", "ms map for a source token with no co-occurring pivot token: unk (official: the "
               "pivot's unk, else eos) | drop (no mapping: its top-K entries are dropped)")
    empty_row: str = _f(
        "keep", "aligned row whose match is partial or loses every candidate in the vocab map: "
                "keep it empty (official; training uses the pivot's own distribution there) | "
                "one_hot (one-hot on the pivot's gold next token)")
    empty_suffix_matches: bool = _f(
        True, "1->n groups: a whitespace-only source token (empty after stripping) suffix-matches "
              "any pivot text, as in the official code (s.endswith('')); false skips it")

    # ---- part 2: fusion training (used by workbench.fusion.train) ---------------------------
    lam: float = _f(0.9, "lambda: L = lam * SFT + (1 - lam) * fusion loss (paper: 0.9)")
    mince_dtype: str = _f(
        "bfloat16", "dtype of the MinCE rewards exp(-metric_ce) (official: bfloat16, so CEs "
                    "within ~0.4 % tie and the pivot wins) | float32")
    fuse_loss: str = _f("ce", "fusion loss: ce | kl")
    fuse_temperature: float = _f(1.0, "softmax temperature on the top-K target logits")
    lr: float = _f(5e-6, "learning rate (paper: 5e-6)")
    epochs: float = _f(3.0, "training epochs per target (paper: 3)")
    max_steps: int = _f(-1, "cap on optimizer steps per target (-1 = epochs)")
    batch_size: int = _f(4, "per-device training batch size")
    grad_accum: int = _f(1, "gradient accumulation steps")
    training_args: dict[str, Any] = field(default_factory=dict, metadata={"help": (
        "any TrainingArguments field passed to every fusion training (targets, baselines) over "
        "the values above (warmup_steps, save_steps, fsdp, deepspeed, ...); "
        "resume_from_checkpoint: unset/true = the last checkpoint, false = start over, a path")})
    lora: bool = _f(False, "train LoRA adapters (PEFT) instead of full fine-tuning")
    baselines: tuple[str, ...] = _f(("sft", "multi"), "baselines: sft (lam=1) and/or multi")
    merge_methods: tuple[str, ...] = _f(
        ("sce", "linear", "task_arithmetic", "ties", "dare_linear"), "merge methods compared")
    tau: float = _f(0.1, "SCE select_topk (paper: 0.1)")
    eval_size: int = _f(16, "held-out dialogues for response CE/PPL")
    mtbench_limit: int = _f(4, "MT-Bench questions generated and judged")
    zeroshot_limit: int = _f(20, "examples per zero-shot task")
    eval_batch_size: int = _f(8, "batch size of the zero-shot requests and MT-Bench answers")
    judge: str = _f("auto", "auto | hf | openai (env WORKBENCH_JUDGE_*)")
    judge_model: str | None = _f(None, "local judge model; None = the largest offline chat model")
    max_new_tokens: int = _f(128, "tokens generated per MT-Bench answer turn (greedy)")
    judge_max_new_tokens: int = _f(256, "tokens a local judge writes per judgment")
    judge_mode: str = _f("expected", "local judge: expected (probability-weighted rating from one "
                         "forward pass, no explanation) | generate (MT-Bench's written judgment); "
                         "an endpoint judge always generates")
    eval_sources: bool = _f(True, "also evaluate the source models (Table 1's upper rows)")

    def __post_init__(self) -> None:
        super().__post_init__()
        from workbench.common.trainargs import check_training_args

        check_training_args(self.training_args, "FuseChatConfig.training_args")
        if not self.sources:
            raise ValueError("FuseChatConfig.sources is empty: name at least one source model")
        for name, value in (("data_size", self.data_size), ("max_length", self.max_length),
                            ("top_k", self.top_k), ("repr_batch_size", self.repr_batch_size),
                            ("token_budget", self.token_budget), ("shard_size", self.shard_size),
                            ("batch_size", self.batch_size), ("grad_accum", self.grad_accum),
                            ("max_new_tokens", self.max_new_tokens),
                            ("eval_batch_size", self.eval_batch_size),
                            ("judge_max_new_tokens", self.judge_max_new_tokens)):
            if value < 1:
                raise ValueError(f"FuseChatConfig.{name} must be >= 1, got {value}")
        if self.judge_mode not in JUDGE_MODES:
            raise ValueError(f"FuseChatConfig.judge_mode must be one of {', '.join(JUDGE_MODES)}, "
                             f"got {self.judge_mode!r}")
        if self.max_length < 8:
            raise ValueError(f"FuseChatConfig.max_length must be >= 8, got {self.max_length}")
        for m in (self.vocab_map, *self.compare_vocab_maps):
            if m not in VOCAB_MAPS:
                raise ValueError(f"vocab map {m!r} unknown; choose from {', '.join(VOCAB_MAPS)}")
        if self.vocab_map not in self.compare_vocab_maps:
            raise ValueError(f"vocab_map {self.vocab_map!r} must be one of compare_vocab_maps "
                             f"{self.compare_vocab_maps}")
        for name, allowed in ALIGN_CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"FuseChatConfig.{name} must be one of {', '.join(allowed)}, "
                                 f"got {getattr(self, name)!r}")
        if self.mince_dtype not in MINCE_DTYPES:
            raise ValueError(f"FuseChatConfig.mince_dtype must be one of "
                             f"{', '.join(MINCE_DTYPES)}, got {self.mince_dtype!r}")
        if self.ms_count_dialogues < 0:
            raise ValueError(f"FuseChatConfig.ms_count_dialogues must be >= 0, got "
                             f"{self.ms_count_dialogues}")
        if self.fuse_loss not in FUSE_LOSSES:
            raise ValueError(f"fuse_loss must be ce|kl, got {self.fuse_loss!r}")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {self.lam}")
        if self.fuse_temperature <= 0:
            raise ValueError(f"fuse_temperature must be > 0, got {self.fuse_temperature}")
        if self.tau <= 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")

    @property
    def models(self) -> tuple[str, ...]:
        """Pivot first, then the sources: the order representations are computed in."""
        return (self.pivot, *self.sources)
