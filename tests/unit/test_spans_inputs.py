"""Bad input to the toxic-spans reader and predictor: one-line errors or sane answers."""

import csv
import logging

import pytest

from workbench.data.toxic_spans import read_toxic_spans_csv
from workbench.spans.predict import clean_texts, predict_batch
from workbench.spans.train import build_tagger


@pytest.fixture(scope="module")
def tiny():
    return build_tagger("tiny:bert", "cls", False)


def test_csv_cell_longer_than_csv_field_limit(tmp_path):
    f = tmp_path / "long.csv"
    f.write_text('spans,text\n"[0, 1]",' + "x" * 200_000 + "\n[],short\n")
    before = csv.field_size_limit()
    cols = read_toxic_spans_csv(f)
    assert [len(t) for t in cols["text"]] == [200_000, 5] and cols["spans"][0] == [0, 1]
    assert csv.field_size_limit() == before  # the process-wide limit is restored


def test_csv_not_utf8_names_file_and_row(tmp_path):
    f = tmp_path / "latin.csv"
    f.write_bytes(b"spans,text\n[0],a\n[],ok\n[],h\xe9llo\n")
    with pytest.raises(ValueError) as exc:
        read_toxic_spans_csv(f)
    msg = str(exc.value)
    assert msg.startswith("latin.csv row 4: not UTF-8") and "\n" not in msg


def test_csv_blank_lines_are_skipped_and_reported(tmp_path, caplog):
    f = tmp_path / "blank.csv"
    f.write_text("spans,text\n[0],a\n\n[],hello\n  \n[1],ab\n")
    with caplog.at_level(logging.WARNING):
        cols = read_toxic_spans_csv(f)
    assert cols["text"] == ["a", "hello", "ab"] and cols["spans"] == [[0], [], [1]]
    assert "skipped 2 blank line(s) (rows 3, 5)" in caplog.text


def test_csv_bad_row_after_blank_line_keeps_line_number(tmp_path):
    f = tmp_path / "bad.csv"
    f.write_text("spans,text\n\n[9],a\n")
    with pytest.raises(ValueError, match="bad.csv row 3: 1 span offsets outside"):
        read_toxic_spans_csv(f)


def test_clean_texts():
    assert clean_texts(["ok \ud800 x", "fine"]) == ["ok \ufffd x", "fine"]
    with pytest.raises(TypeError, match="text 1 is NoneType"):
        clean_texts(["a", None])
    with pytest.raises(TypeError, match="text 0 is int"):
        clean_texts([5])
    with pytest.raises(TypeError, match="single string"):
        clean_texts("abc")


def test_predict_lone_surrogate_keeps_offsets(tiny):
    model, tok = tiny
    text = "you \udcff idiot"
    spans, probs = predict_batch(model, tok, [text, "fine"], max_length=32, return_probs=True)
    assert all(0 <= o < len(text) for o in spans[0])
    assert max(b for _, b, _ in probs[0]) == len(text)  # the last word is still seen, offsets unchanged


@pytest.mark.parametrize("bad", [None, 3, 2.5])
def test_predict_non_string_is_one_line_type_error(tiny, bad):
    model, tok = tiny
    with pytest.raises(TypeError) as exc:
        predict_batch(model, tok, ["ok", bad])
    assert "text 1 is" in str(exc.value) and "\n" not in str(exc.value)
