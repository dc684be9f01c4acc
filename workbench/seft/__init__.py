"""SEFT: self-evolution fine-tuning for policy optimization (Findings EMNLP 2024)."""

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
