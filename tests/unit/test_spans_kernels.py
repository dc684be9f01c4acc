import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.spans.crf import CRF
from workbench.spans.metric import post_f1, span_f1
from workbench.spans.offsets import check_spans, extend_to_words, spans_to_tags, tags_to_spans
from workbench.spans.voting import vote, vote_posts


@pytest.mark.parametrize(("pred", "gold", "want"), [
    ([], [], 1.0), ([1], [], 0.0), ([], [1], 0.0),
    ([1, 2], [1, 2], 1.0), ([1, 2], [2, 3], 0.5), ([1], [2], 0.0), ([1, 2, 3, 4], [1, 2], 2 * 2 / 6),
])
def test_post_f1(pred, gold, want):
    assert post_f1(pred, gold) == pytest.approx(want)


def test_span_f1_mean_and_errors():
    assert span_f1([[], [1]], [[], []]) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        span_f1([[]], [[], []])


def test_vote():
    assert vote([[1, 2, 3], [2, 3], [3, 9]]) == [2, 3]
    assert vote([[1], [2]]) == []
    assert vote([[1], [2]], min_votes=1) == [1, 2]
    assert vote_posts([[[1], []], [[1], [5]], [[], [5]]]) == [[1], [5]]
    with pytest.raises(ValueError):
        vote_posts([[[1]], [[1], [2]]])


def test_check_spans_outside_text():
    with pytest.raises(ValueError, match="outside"):
        check_spans("abc", [0, 3])


def test_extend_to_words():
    assert extend_to_words("you idiot ok", [5]) == [4, 5, 6, 7, 8]


TOKS: dict = {}


def tok(name: str = "tiny:bert"):
    if name not in TOKS:
        from workbench.common.models import load_tokenizer
        TOKS[name] = load_tokenizer(name)
    return TOKS[name]


@settings(max_examples=60, deadline=None)
@given(text=st.text(max_size=60), data=st.data())
def test_roundtrip_token_aligned(text, data):
    enc = tok()(text, return_offsets_mapping=True, add_special_tokens=True)
    om = [tuple(x) for x in enc["offset_mapping"]]
    real = [i for i, (a, b) in enumerate(om) if a < b]
    chosen = data.draw(st.lists(st.sampled_from(real), unique=True) if real else st.just([]))
    gold = sorted({c for i in chosen for c in range(*om[i])})
    for scheme in ("io", "bio"):
        tags = spans_to_tags(text, gold, om, scheme=scheme)
        assert len(tags) == len(om)
        back = tags_to_spans(text, tags, om, fill_gaps=False)
        assert back == gold
    # arbitrary char offsets: round trip recovers every gold char covered by a token
    raw = data.draw(st.lists(st.integers(0, max(len(text) - 1, 0)), max_size=10)) if text else []
    covered = {c for a, b in om for c in range(a, b)}
    back = tags_to_spans(text, spans_to_tags(text, raw, om, scheme="io"), om)
    assert set(raw) & covered <= set(back)
    # word level: extend gold to words, tags -> words gives back the extended gold (covered part)
    wl = tags_to_spans(text, spans_to_tags(text, raw, om, word_level=True), om, extend_words=True)
    assert set(extend_to_words(text, raw)) & covered <= set(wl) <= set(extend_to_words(text, raw))


@settings(max_examples=40, deadline=None)
@given(text=st.text(max_size=40), data=st.data())
def test_roundtrip_byte_level_bpe(text, data):
    """A byte-level BPE tokenizer (Qwen2): offsets may include the leading space and several byte
    tokens may share one character; every gold character a token covers comes back, nothing else
    outside the toxic tokens' ranges does."""
    enc = tok("tiny:qwen2")(text, return_offsets_mapping=True)
    om = [tuple(x) for x in enc["offset_mapping"]]
    raw = data.draw(st.lists(st.integers(0, max(len(text) - 1, 0)), max_size=10)) if text else []
    for scheme in ("io", "bio"):
        tags = spans_to_tags(text, raw, om, scheme=scheme)
        back = set(tags_to_spans(text, tags, om, fill_gaps=False))
        covered = {c for a, b in om for c in range(a, b)}
        toxic_chars = {c for t, (a, b) in zip(tags, om, strict=True) if t > 0 for c in range(a, b)}
        assert set(raw) & covered <= back == toxic_chars


def test_sub_token_vs_word_level_labels():
    text = "you idiotically dumb"
    om = [(0, 0), (0, 3), (4, 9), (9, 15), (16, 20), (0, 0)]  # [CLS] you idiot ##ically dumb [SEP]
    gold = list(range(4, 9))  # only "idiot"
    assert spans_to_tags(text, gold, om) == [-100, 0, 1, 0, 0, -100]  # sub-token labels
    assert spans_to_tags(text, gold, om, word_level=True) == [-100, 0, 1, 1, 0, -100]  # whole word
    assert spans_to_tags(text, gold, om, scheme="bio", word_level=True) == [-100, 0, 1, 2, 0, -100]
    tags = [-100, 0, 1, 0, 0, -100]
    assert tags_to_spans(text, tags, om) == gold
    assert tags_to_spans(text, tags, om, extend_words=True) == list(range(4, 15))


def test_bio_gap_filled_only_for_continuations():
    text = "you  idiot"  # two spaces: "you" and "idiot" are separate spans unless I continues
    om = [(0, 3), (5, 10)]
    assert tags_to_spans(text, [1, 1], om) == [0, 1, 2, 5, 6, 7, 8, 9]
    assert tags_to_spans(text, [1, 2], om) == list(range(10))


def test_spans_to_tags_rejects_bad_input():
    with pytest.raises(ValueError, match="outside text of length 3"):
        spans_to_tags("abc", [5], [(0, 3)])
    with pytest.raises(ValueError, match="scheme"):
        spans_to_tags("abc", [], [(0, 3)], scheme="bioes")
    assert spans_to_tags("", [], [(0, 0), (0, 0)]) == [-100, -100]  # empty text: only specials


def test_bio_continuation():
    text = "you stupid idiot"
    om = [(0, 0), (0, 3), (4, 10), (11, 16), (0, 0)]
    gold = list(range(4, 16))
    tags = spans_to_tags(text, gold, om, scheme="bio")
    assert tags == [-100, 0, 1, 2, -100]
    assert tags_to_spans(text, tags, om) == gold
    assert spans_to_tags(text, gold, om, scheme="io") == [-100, 0, 1, 1, -100]


def _brute(crf, em):
    T, K = em.shape
    scores = {}
    for path in itertools.product(range(K), repeat=T):
        s = crf.start[path[0]] + em[0, path[0]] + crf.end[path[-1]]
        for t in range(1, T):
            s = s + crf.trans[path[t - 1], path[t]] + em[t, path[t]]
        scores[path] = float(s.detach())
    return scores


def test_crf_vs_brute_force():
    torch.manual_seed(0)
    crf = CRF(3)
    em = torch.randn(2, 4, 3)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.bool)
    tags = torch.tensor([[0, 2, 1, 1], [2, 2, 0, 0]])
    nll = crf.nll(em, tags, mask, reduction="none")
    paths = crf.decode(em, mask)
    for b, n in enumerate([4, 3]):
        sc = _brute(crf, em[b, :n])
        logz = math.log(sum(math.exp(v) for v in sc.values()))
        want = logz - sc[tuple(tags[b, :n].tolist())]
        assert float(nll[b].detach()) == pytest.approx(want, abs=1e-4)
        assert tuple(paths[b]) == max(sc, key=sc.get)


def test_viterbi_lengths_one_and_mixed():
    torch.manual_seed(1)
    crf = CRF(2)
    em = torch.randn(3, 5, 2)
    mask = torch.tensor([[1, 0, 0, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.bool)
    paths = crf.decode(em, mask)
    assert [len(p) for p in paths] == [1, 5, 2]
    for b, n in enumerate([1, 5, 2]):
        sc = _brute(crf, em[b, :n])
        assert tuple(paths[b]) == max(sc, key=sc.get)
    assert crf.decode(em[:, :1]) == [[int((crf.start + em[b, 0] + crf.end).argmax())] for b in range(3)]


def test_crf_bad_mask():
    with pytest.raises(ValueError):
        CRF(2).nll(torch.zeros(1, 2, 2), torch.zeros(1, 2, dtype=torch.long), torch.tensor([[0, 1]]))


def test_control_characters_do_not_split_words_like_the_tokenizer():
    # BERT deletes \x1f instead of splitting on it: "0\x1f0" is one token over chars 0..2, so
    # word-level decoding must treat it as one word (Python's isspace() says \x1f is a space).
    text = "0\x1f0"
    om = [tuple(x) for x in tok()(text, return_offsets_mapping=True)["offset_mapping"]]
    assert extend_to_words(text, [0]) == [0, 1, 2]
    wl = tags_to_spans(text, spans_to_tags(text, [0], om, word_level=True), om, extend_words=True)
    assert wl == [0, 1, 2]
    assert extend_to_words("a b\u00a0c\td", [0, 4]) == [0, 4]  # NBSP (Zs) and tab split words
