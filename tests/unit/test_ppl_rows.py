"""WikiText-style rows: a cap keeps the first rows, or rows spread over the whole text."""

import pytest
import torch

from workbench.eval.ppl import rows_from_text


class _CharTok:
    """One token per character (its code point)."""

    def __call__(self, text, return_tensors=None, add_special_tokens=False):
        class _Out:
            input_ids = torch.tensor([[ord(c) for c in text]])
        return _Out()


TEXT = "".join(chr(65 + i // 4) for i in range(40))  # 10 rows of 4: AAAA BBBB ... JJJJ


def test_cap_keeps_prefix_or_spreads():
    tok = _CharTok()
    assert rows_from_text(tok, TEXT, 4).shape == (10, 4)
    first = rows_from_text(tok, TEXT, 4, max_rows=3)
    assert [chr(r[0]) for r in first.tolist()] == ["A", "B", "C"]
    spread = rows_from_text(tok, TEXT, 4, max_rows=4, spread=True)
    assert [chr(r[0]) for r in spread.tolist()] == ["A", "D", "G", "J"]
    assert rows_from_text(tok, TEXT, 4, max_rows=20, spread=True).shape == (10, 4)
    with pytest.raises(ValueError, match="max_rows"):
        rows_from_text(tok, TEXT, 4, max_rows=0, spread=True)
