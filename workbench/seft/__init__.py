"""SEFT: self-evolution fine-tuning for policy optimization (Findings EMNLP 2024).

No official code; the paper's specifics could not be retrieved (papers.md §3). Choices made here,
all UNVERIFIED against the paper and each a parameter (``SEFTConfig`` field or function argument):

1. Reviser decisions are binary ``KEEP`` / ``REVISE`` (the paper may use graded levels).
2. Reviser prompt = ``REVISER_TEMPLATE`` as one user turn through the base model's chat template;
   target = decision line first, then the response; loss on the assistant turn only. Instruction
   and response are clipped by tokens to ``max_length - max(16, max_length // 4)`` (the instruction
   keeps at least a third), identically for training and inference, so an example is never
   truncated before its decision and the reviser is asked exactly as it was trained.
3. Reviser data from pairs: REVISE (rejected -> chosen) and KEEP (chosen -> chosen) per pair
   (``include_keep``); ranked data (Nectar, rank 1 = best): best vs worst (``ranked_pairs``;
   ``each`` = best vs every lower answer).
4. Decision (``decision``), default ``constrained``: KEEP or REVISE is the decision line
   ("KEEP\\n" vs "REVISE\\n") with the higher log-probability under the reviser right after the
   prompt; only for REVISE is the revision generated (greedy, after "REVISE\\n"). Why default:
   it is always a valid decision, and it is the reviser's own preference between the two lines it
   was trained on, so a small, briefly trained reviser still decides. Measured on SmolLM2-135M
   (HH-RLHF, LoRA): after 6 steps at lr 2e-4, free decoding gave 12 of 12 malformed outputs (the
   model answers the instruction) while constrained gave valid decisions; after 36 steps at lr
   5e-4 free decoding was well formed (0 of 12 malformed) and agreed with constrained on 10 of 12.
   ``free``: generate and parse; malformed -> KEEP + the original response (counted); KEEP returns
   the original (the repeated text is not trusted); REVISE with an empty body, or one that
   echoes the reviser's prompt format ("### Instruction:" ...), is malformed (in both modes;
   measured: a reviser trained 6 steps copied its prompt in 3 of 3 revisions). The log-prob
   margin is saved per response.
5. A round: the policy samples (temperature 0.7, top-p 0.9) one response per fresh prompt, the
   reviser decides, and the policy is SFT-ed (assistant-only loss) on every kept or revised
   response; LoRA is merged after each stage; round r+1 starts from round r's policy.
6. Prompts: single-turn HH-RLHF harmless-base prompts not used as preference data (or ShareGPT /
   a file), disjoint between rounds and from the held-out evaluation prompts.
7. External evolution: the external model's responses are revised instead of the policy's.
8. Baselines on the same pairs with TRL: SFT on chosen; DPO (sigmoid, beta 0.1); ORPO (beta 0.1);
   preference learning rate ``pref_lr``; bf16 and gradient checkpointing off by default (TRL 1.x
   turns them on).
9. Evaluation: MT-Bench two turns (questions round-robin over categories), greedy answers,
   graded 1-10 by the judge with FastChat's prompts; pairwise win rate against SFT on held-out
   prompts (pair-v2, both orders). Offline judge = qwen2.5-coder-0.5b-instruct (weak). Judge mode
   (``judge_mode``), default ``expected``: the judge writes no explanation; its next-token
   probabilities after "Rating: [[" give the probability-weighted rating, and after
   "Final verdict: [[" a pair's P(win) + P(tie)/2 (``workbench.eval.chat``). Why default:
   measured on the cpu profile (two seeds), the generating 0.5B judge wrote the prompt's own
   example "[5]" for nearly every answer and gave all five models the identical 5.375, so it
   could not rank anything. ``generate``: MT-Bench's written judgment; a rating the judge did
   not write in the format is read by forced continuation and counted.
10. Reviser check (not in the paper): on ``reviser_eval_pairs`` held-out preference pairs, the
   share of REVISE (constrained) on the rejected vs the chosen responses, before and after the
   reviser's training (``metrics["reviser_heldout"]``); no difference -> a warning.

Preference data: HH-RLHF offline; ``nectar`` / ``ultrafeedback`` (or any ``datasets`` name, with
``pref_split``) online; local .json/.jsonl files of pairs, UltraFeedback-binarized or Nectar rows
(:mod:`workbench.seft.pref_sources`).
"""

from workbench.seft.config import SEFTConfig
from workbench.seft.reviser_data import (
    KEEP,
    REVISE,
    ParsedRevision,
    build_reviser_examples,
    build_reviser_examples_ranked,
    format_reviser_prompt,
    parse_reviser_output,
    summarize_revisions,
)
from workbench.seft.run import SEFTResult, rejudge, run_seft

__all__ = ["KEEP", "REVISE", "ParsedRevision", "SEFTConfig", "SEFTResult",
           "build_reviser_examples", "build_reviser_examples_ranked", "format_reviser_prompt",
           "parse_reviser_output", "rejudge", "run_seft", "summarize_revisions"]
