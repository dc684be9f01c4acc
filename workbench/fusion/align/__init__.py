"""FuseChat token alignment across tokenizers (papers.md §1.a step 2; official
``FuseChat/train/align_token_and_vocab.py``).

Public API (names are stable; the app tab and the notebook call these):

- Normalisation: :func:`token_texts` (texts of a vocabulary per mode: ``normalized`` canonical,
  or the official ``decode`` / ``raw`` strings with :func:`official_marker`; cached per tokenizer),
  :func:`normalize_token`, :func:`tokenizer_kind`, :func:`strip_marker`.
- Sequence alignment: :func:`dtw_align` (groups per pivot position), :func:`dtw` (with the cost and
  cumulative matrices and the path), :class:`DTWOptions` (official quirks as switches),
  :func:`reference_dtw` (plain-Python reference).
- Vocabulary mappings: ``VOCAB_MAPS`` registry with ``em``, ``mined``, ``ms``;
  :func:`build_vocab_map`, :class:`VocabMap`, :func:`cooccurrence_counts`, :func:`ms_counts`,
  :func:`save_counts` / :func:`load_counts` (sparse ``.npz``).
- Distribution alignment: :func:`align_distributions` (one sample), :class:`AlignRules`,
  :func:`official_rules`.
- Datasets: :func:`align_representations` -> (aligned ``datasets.Dataset`` in
  ``formats.ALIGNED_COLUMNS``, stats), :func:`alignment_stats`.
- Explorer: :func:`align_text` -> :class:`TextAlignment`, :func:`compare_vocab_maps` -> DataFrame.
  Figure: ``workbench.viz.fusion.alignment_matrix_figure``.
"""

from workbench.fusion.align.api import (
    ALIGNED_FEATURES,
    VOCAB_TEXTS,
    TextAlignment,
    align_representations,
    align_text,
    alignment_stats,
    compare_vocab_maps,
    corpus_alignments,
    dtw_groups,
    ms_counts,
    same_vocabulary,
)
from workbench.fusion.align.distribution import (
    AlignedSample,
    AlignRules,
    align_distributions,
    candidate_table,
    decompose,
    official_rules,
)
from workbench.fusion.align.dtw import DTW_TEXTS, DTWOptions, DTWResult, cost_matrix, dtw, dtw_align
from workbench.fusion.align.normalize import (
    TEXT_MODES,
    TokenTexts,
    bytes_to_unicode,
    display_text,
    normalize_token,
    official_marker,
    strip_marker,
    to_bytes,
    token_texts,
    tokenizer_kind,
)
from workbench.fusion.align.reference import reference_dtw
from workbench.fusion.align.vocab import (
    GROUP_REPEATS,
    VOCAB_MAPS,
    VocabMap,
    build_vocab_map,
    cooccurrence_counts,
    exact_ids,
    load_counts,
    save_counts,
)

__all__ = [
    "DTW_TEXTS", "GROUP_REPEATS", "TEXT_MODES", "VOCAB_TEXTS", "official_marker",
    "ALIGNED_FEATURES", "AlignRules", "AlignedSample", "DTWOptions", "DTWResult", "TextAlignment",
    "TokenTexts", "VOCAB_MAPS", "VocabMap", "align_distributions", "align_representations",
    "align_text", "alignment_stats", "build_vocab_map", "bytes_to_unicode", "candidate_table",
    "compare_vocab_maps", "cooccurrence_counts", "corpus_alignments", "cost_matrix", "decompose",
    "display_text", "dtw", "dtw_align", "exact_ids", "load_counts", "ms_counts", "normalize_token",
    "dtw_groups", "official_rules", "reference_dtw", "same_vocabulary", "save_counts", "strip_marker",
    "to_bytes", "token_texts", "tokenizer_kind",
]
