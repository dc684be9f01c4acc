"""Toxic span detection, YNU-HPCC at SemEval-2021 Task 5."""

from workbench.spans.crf import CRF
from workbench.spans.inference import SpanPredictor, load_predictor
from workbench.spans.metric import post_f1, span_f1
from workbench.spans.model import HEADS, LOSSES, SpanTagger
from workbench.spans.offsets import extend_to_words, spans_to_tags, tags_to_spans
from workbench.spans.train import SpansConfig, run_spans
from workbench.spans.voting import vote, vote_posts

__all__ = ["CRF", "HEADS", "LOSSES", "SpanPredictor", "SpanTagger", "SpansConfig", "extend_to_words",
           "load_predictor", "post_f1", "run_spans", "span_f1", "spans_to_tags", "tags_to_spans",
           "vote", "vote_posts"]
