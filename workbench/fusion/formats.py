"""The on-disk formats shared by the FuseChat steps (representations -> alignment -> fusion training).

Every step reads and writes Hugging Face ``datasets`` (Arrow), one folder per model, rows keyed by
``id`` so that the pivot's and every source's rows join one to one.

Representations (step 1, one dataset per model, all scored on the SAME dialogues rendered with the
PIVOT's chat template, each model with its own tokenizer):

- ``id``: str -- sample id, identical across models.
- ``input_ids``: list[int] -- this model's token ids (length L).
- ``labels``: list[int] -- ``input_ids`` with every non-assistant token set to -100.
- ``topk_ids``: list[list[int]] -- L x K, the model's own vocabulary. Row t is the distribution
  predicting token t+1 (the logits at position t, not shifted).
- ``topk_logits``: list[list[float]] -- L x K, stored as float16, sorted descending per row.
- ``gold_ce``: list[float] -- L, CE of the gold next token ``input_ids[t+1]`` from row t
  (the last position has no next token: NaN).
- ``metric_ce``: float -- mean of ``gold_ce`` over positions whose next token is an assistant token
  (``labels[t+1] != -100``); NaN when there are none.

Aligned source representations (step 2, one dataset per source, in the PIVOT's positions and
vocabulary):

- ``id``, ``input_ids``, ``labels``: copied from the pivot's representation.
- ``topk_ids``: list[list[int]] -- L_pivot x K, PIVOT vocabulary ids, padded with ``PAD_ID``.
- ``topk_logits``: list[list[float]] -- L_pivot x K, padded with ``PAD_LOGIT``.
- ``align_kind``: list[int] -- L_pivot, one of ``ALIGN_KINDS`` per pivot position.
- ``metric_ce``: float -- the SOURCE's sequence CE (its own tokenisation), used by MinCE.
"""

from __future__ import annotations

REPR_COLUMNS = ("id", "input_ids", "labels", "topk_ids", "topk_logits", "gold_ce", "metric_ce")
ALIGNED_COLUMNS = ("id", "input_ids", "labels", "topk_ids", "topk_logits", "align_kind", "metric_ce")

PAD_ID = -1
PAD_LOGIT = float("-inf")

# align_kind codes per pivot position.
ALIGN_KINDS = {0: "same_vocab", 1: "one_to_one", 2: "one_to_many", 3: "fallback"}
SAME_VOCAB, ONE_TO_ONE, ONE_TO_MANY, FALLBACK = 0, 1, 2, 3
