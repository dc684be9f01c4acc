"""FuseChat step 1 kernels: rendering + masking, batching, top-K/CE scoring, shards and resume."""

from __future__ import annotations

import math

import pytest
import torch

from workbench.common import load_causal_lm, load_tokenizer
from workbench.fusion import represent as R

CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + "
          "'<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\n' }}{% endif %}")
DIALOGUE = [
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "It is 4."},
    {"role": "user", "content": "And 3+3?"},
    {"role": "assistant", "content": "6, naturally."},
]


@pytest.fixture(scope="module")
def smol_tok():
    return load_tokenizer("smollm2-135m-instruct")


@pytest.fixture(scope="module")
def gemma_tok():
    return load_tokenizer("gemma3-270m")


@pytest.fixture(scope="module")
def tiny_llama():
    return load_causal_lm("tiny:llama")


def test_render_spans_cover_exactly_the_assistant_turns(smol_tok):
    text, spans = R.render_dialogue(DIALOGUE, smol_tok, CHATML)
    assert text == ("<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\nIt is 4."
                    "<|im_end|>\n<|im_start|>user\nAnd 3+3?<|im_end|>\n<|im_start|>assistant\n"
                    "6, naturally.<|im_end|>\n")
    assert [text[a:b] for a, b in spans] == ["It is 4.<|im_end|>\n", "6, naturally.<|im_end|>\n"]


def test_assistant_masking_keeps_only_assistant_tokens(smol_tok):
    text, spans = R.render_dialogue(DIALOGUE, smol_tok, CHATML)
    d = R.Dialogue("x", text, tuple(spans))
    ids, labels = R.tokenize_dialogue(d, smol_tok, max_length=512)
    assert len(ids) == len(labels)
    kept = [t for t in labels if t != -100]
    assert smol_tok.decode(kept) == "It is 4.<|im_end|>\n6, naturally.<|im_end|>\n"
    # the user turns and the assistant headers are masked
    first = labels.index(next(t for t in labels if t != -100))
    assert smol_tok.decode(ids[:first]).endswith("<|im_start|>assistant\n")


def test_leading_assistant_turns_are_dropped_like_fastchat(smol_tok):
    sys_ = {"role": "system", "content": "Be brief."}
    bot = {"role": "assistant", "content": "Hi! I am a bot."}
    assert R.drop_leading_assistant([sys_, bot, *DIALOGUE]) == [sys_, *DIALOGUE]
    assert R.drop_leading_assistant([bot, bot, *DIALOGUE]) == DIALOGUE
    assert R.drop_leading_assistant(DIALOGUE) == DIALOGUE
    with pytest.raises(ValueError, match="starts with an assistant turn"):
        R.render_dialogue([bot, *DIALOGUE], smol_tok, CHATML)
    (d,) = R.prepare_dialogues([{"id": "x", "messages": [bot, *DIALOGUE]}], smol_tok, [smol_tok],
                               max_length=512, chat_template=CHATML)
    assert "I am a bot" not in d.text and len(d.spans) == 2


def test_assistant_labels_overlap_rule_and_zero_width_tokens():
    ids = [1, 10, 11, 12, 13]
    offsets = [(0, 0), (0, 3), (3, 6), (6, 9), (9, 12)]
    # span 4..7 overlaps tokens (3,6) and (6,9); BOS (0,0) is never an assistant token
    assert R.assistant_labels(ids, offsets, [(4, 7)]) == [-100, -100, 11, 12, -100]
    assert R.assistant_labels(ids, offsets, []) == [-100] * 5


def test_pivot_without_chat_template_needs_an_explicit_one(gemma_tok):
    gemma = gemma_tok
    assert not gemma.chat_template
    with pytest.raises(ValueError, match="no chat template"):
        R.resolve_chat_template(gemma, None)
    assert R.resolve_chat_template(gemma, CHATML) == CHATML
    with pytest.raises(ValueError, match="neither jinja text nor an existing file"):
        R.resolve_chat_template(gemma, "no_such_template.jinja")


def test_prepare_dialogues_cuts_one_text_that_fits_every_tokenizer(smol_tok, gemma_tok):
    qwen, gemma = load_tokenizer("qwen2.5-coder-0.5b-instruct"), gemma_tok
    long = [{"role": "user", "content": "Tell me about tokens. " * 40},
            {"role": "assistant", "content": "Tokens are pieces of text, 🙂 emoji included. " * 40}]
    rows = [{"id": "a", "messages": long},
            {"id": "b", "messages": [{"role": "user", "content": "hi"}]},  # no assistant turn
            {"id": "c", "messages": DIALOGUE}]
    out = R.prepare_dialogues(rows, smol_tok, [smol_tok, qwen, gemma], max_length=300,
                              chat_template=CHATML)
    assert [d.id for d in out] == ["a", "c"]
    for tok in (smol_tok, qwen, gemma):
        ids, labels = R.tokenize_dialogue(out[0], tok, max_length=10_000)
        assert len(ids) <= 300
        assert any(t != -100 for t in labels)
    assert max(len(R.tokenize_dialogue(out[0], t, 10_000)[0]) for t in (smol_tok, qwen, gemma)) \
        >= 290  # cut at a real token boundary of the tightest tokenizer, not far below
    with pytest.raises(ValueError, match="twice"):
        R.prepare_dialogues([rows[2], rows[2]], smol_tok, [smol_tok], max_length=64,
                            chat_template=CHATML)


def test_length_batches_hand_computed():
    # lengths 5, 9, 3, 9, 1 -> longest first: idx 1 (9), 3 (9), 0 (5), 2 (3), 4 (1)
    assert R.length_batches([5, 9, 3, 9, 1], max_batch=2, token_budget=100) == [[1, 3], [0, 2], [4]]
    # budget 18 allows two 9s but not three rows of 5 (3*5=15 ok, a fourth row: 4*5=20 > 18)
    assert R.length_batches([5, 9, 3, 9, 1], max_batch=8, token_budget=18) == [[1, 3], [0, 2, 4]]
    assert R.length_batches([50], max_batch=4, token_budget=10) == [[0]]  # never empty
    with pytest.raises(ValueError):
        R.length_batches([1], max_batch=0, token_budget=10)


def test_sequence_metric_ce_is_the_masked_mean():
    gold = [1.0, 2.0, 3.0, 4.0, float("nan")]
    labels = [-100, -100, 7, 8, -100]  # next token is assistant at t = 1, 2
    assert R.sequence_metric_ce(gold, labels) == pytest.approx(2.5)
    assert math.isnan(R.sequence_metric_ce(gold, [-100] * 5))


def test_score_batch_matches_direct_topk_and_cross_entropy(tiny_llama):
    model, _ = tiny_llama
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(5, 1000, (n,), generator=g).tolist() for n in (12, 7)]
    out = R.score_batch(model, seqs, top_k=10, chunk_positions=5)  # chunks cut the sequence
    for s, o in zip(seqs, out, strict=True):
        with torch.no_grad():
            logits = model(torch.tensor([s])).logits[0].float()
        v, i = logits.topk(10, dim=-1)
        assert o["topk_ids"].dtype.name == "int32" and o["topk_logits"].dtype.name == "float16"
        assert (torch.from_numpy(o["topk_ids"]).long() == i).all()
        assert torch.allclose(torch.from_numpy(o["topk_logits"]).float(), v, atol=2e-3, rtol=1e-3)
        ce = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(s[1:]), reduction="none")
        assert torch.allclose(torch.from_numpy(o["gold_ce"][:-1]), ce, atol=1e-4)
        assert math.isnan(o["gold_ce"][-1])


def test_chunked_head_equals_model_forward():
    model, _ = load_causal_lm("tiny:qwen2")  # untied head; gemma3 is covered by the smoke run
    seq = list(range(3, 40))
    assert R.check_head_path(model, seq, top_k=10) == "chunked"


def test_top_k_larger_than_vocab_is_an_error(tiny_llama):
    model, _ = tiny_llama
    with pytest.raises(ValueError, match="top_k=60000 is larger than the model's vocabulary"):
        R.score_batch(model, [[1, 2, 3]], top_k=60000)


def test_check_same_ids_names_the_first_difference():
    R.check_same_ids(["a", "b"], ["a", "b"])
    with pytest.raises(ValueError, match="row 1 is id 'b' in pivot but 'c' in src"):
        R.check_same_ids(["a", "b"], ["a", "c"], ("pivot", "src"))
    with pytest.raises(ValueError, match="3 rows"):
        R.check_same_ids(["a", "b", "c"], ["a"])


def _dialogues(smol_tok, n=5):
    rows = [{"id": f"d{i}", "messages": [{"role": "user", "content": f"Count to {i}."},
                                          {"role": "assistant", "content": " ".join(
                                              str(k) for k in range(i + 3))}]} for i in range(n)]
    return R.prepare_dialogues(rows, smol_tok, [smol_tok], max_length=64, chat_template=CHATML)


def _shard_bytes(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*.arrow"))}


def test_resume_after_a_kill_gives_identical_shards(tmp_path, smol_tok, tiny_llama, monkeypatch):
    model, tok = tiny_llama
    dialogues = _dialogues(smol_tok)
    kw = dict(top_k=4, max_length=64, batch_size=2, token_budget=80, shard_size=2,
              model=model, tokenizer=tok)
    clean = R.compute_representations("tiny:llama", dialogues, tmp_path / "clean", **kw)
    assert clean.shards_computed == 3 and clean.dialogues == 5

    real_write, calls = R.write_shard, []

    def dying_write(rows, folder, top_k):
        if len(calls) == 1:
            raise KeyboardInterrupt("killed")
        calls.append(folder)
        return real_write(rows, folder, top_k)

    monkeypatch.setattr(R, "write_shard", dying_write)
    with pytest.raises(KeyboardInterrupt):
        R.compute_representations("tiny:llama", dialogues, tmp_path / "resumed", **kw)
    monkeypatch.setattr(R, "write_shard", real_write)
    assert len(R.shard_folders(tmp_path / "resumed")) == 1
    with pytest.raises(ValueError, match="unfinished run"):
        R.load_representations(tmp_path / "resumed")
    again = R.compute_representations("tiny:llama", dialogues, tmp_path / "resumed", **kw)
    assert (again.shards_reused, again.shards_computed) == (1, 2)
    assert _shard_bytes(tmp_path / "clean") == _shard_bytes(tmp_path / "resumed")
    a = R.load_representations(tmp_path / "clean")
    assert a["id"] == [d.id for d in dialogues]
    row = a[0]
    assert len(row["topk_ids"]) == len(row["input_ids"]) == len(row["gold_ce"])
    assert row["metric_ce"] == pytest.approx(R.sequence_metric_ce(row["gold_ce"], row["labels"]),
                                             rel=1e-5)


def test_workers_split_the_shards_and_match_a_single_process(tmp_path, smol_tok, tiny_llama):
    model, tok = tiny_llama
    dialogues = _dialogues(smol_tok)
    kw = dict(top_k=4, max_length=64, shard_size=2, model=model, tokenizer=tok)
    single = R.compute_representations("tiny:llama", dialogues, tmp_path / "one", **kw)
    first = R.compute_representations("tiny:llama", dialogues, tmp_path / "two", worker=(0, 2), **kw)
    assert first is None  # shard 1 belongs to the other worker
    assert [p.name for p in R.shard_folders(tmp_path / "two")] == ["shard-00000", "shard-00002"]
    second = R.compute_representations("tiny:llama", dialogues, tmp_path / "two", worker=(1, 2),
                                       **kw)
    assert second.shards_computed == 1 and second.tokens == single.tokens
    assert _shard_bytes(tmp_path / "one") == _shard_bytes(tmp_path / "two")
    with pytest.raises(ValueError, match="worker must be"):
        R.compute_representations("tiny:llama", dialogues, tmp_path / "x", worker=(2, 2), **kw)


def test_changed_data_or_settings_are_refused_on_resume(tmp_path, smol_tok, tiny_llama):
    model, tok = tiny_llama
    dialogues = _dialogues(smol_tok, n=3)
    kw = dict(top_k=4, max_length=64, shard_size=2, model=model, tokenizer=tok)
    R.compute_representations("tiny:llama", dialogues, tmp_path / "r", **kw)
    with pytest.raises(ValueError, match="other settings \\(top_k"):
        R.compute_representations("tiny:llama", dialogues, tmp_path / "r", **{**kw, "top_k": 5})
    (tmp_path / "r" / R.META).unlink()  # an old folder without its meta: shard ids still checked
    with pytest.raises(ValueError, match="mismatched data"):
        R.compute_representations("tiny:llama", dialogues[::-1], tmp_path / "r", **kw)


def test_chat_rows_from_files(tmp_path):
    import json

    share = [{"id": "s1", "conversations": [{"from": "human", "value": "hi"},
                                             {"from": "gpt", "value": "hello"}]}]
    (tmp_path / "mix.json").write_text(json.dumps(share))
    assert R.load_chat_rows(str(tmp_path / "mix.json"), 5) == [
        {"id": "s1", "messages": [{"role": "user", "content": "hi"},
                                  {"role": "assistant", "content": "hello"}]}]
    (tmp_path / "rows.jsonl").write_text(json.dumps({"messages": DIALOGUE}) + "\n\n")
    assert R.load_chat_rows(str(tmp_path / "rows.jsonl"), 5) == [{"id": "0", "messages": DIALOGUE}]
    (tmp_path / "bad.jsonl").write_text(json.dumps({"text": "x"}) + "\n")
    with pytest.raises(ValueError, match="row 0 has neither 'messages' nor 'conversations'"):
        R.load_chat_rows(str(tmp_path / "bad.jsonl"), 5)
    with pytest.raises(ValueError, match="neither 'sharegpt' nor an existing"):
        R.load_chat_rows(str(tmp_path / "missing.json"), 5)
