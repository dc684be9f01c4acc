"""Preference data converters (Nectar, UltraFeedback binarized, plain pairs) and their loading
from local files and from a ``datasets`` name (load_dataset replaced: no network)."""

import json

import pytest

from workbench.seft.pref_sources import load_pref_pairs, nectar_pairs, to_pairs, ultrafeedback_pair
from workbench.seft.reviser_data import build_reviser_examples

NECTAR = {  # Nectar's schema: Anthropic-format prompt, answers with rank (1 = best)
    "prompt": "\n\nHuman: How do I boil an egg?\n\nAssistant: ",
    "answers": [{"answer": "Boil it.", "model": "m2", "rank": 2.0},
                {"answer": "Put it in boiling water for 9 minutes.", "model": "gpt-4", "rank": 1.0},
                {"answer": "Eggs are birds.", "model": "m3", "rank": 3.0}],
    "turns": 1, "num_responses": 3, "source": ["hh"], "good_natured": True}
NECTAR_MULTI = {**NECTAR, "prompt": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: egg?\n\n"
                "Assistant: ", "turns": 2}
NECTAR_TIED = {**NECTAR, "answers": [{"answer": "a", "model": "x", "rank": 1},
                                     {"answer": "b", "model": "y", "rank": 1}]}
UF = {  # HuggingFaceH4/ultrafeedback_binarized: chosen/rejected are message lists
    "prompt": "Name a prime.", "prompt_id": "p1",
    "chosen": [{"role": "user", "content": "Name a prime."},
               {"role": "assistant", "content": "7 is prime."}],
    "rejected": [{"role": "user", "content": "Name a prime."},
                 {"role": "assistant", "content": "9."}],
    "messages": [], "score_chosen": 8.0, "score_rejected": 3.0}
PLAIN = {"prompt": "Q?", "chosen": "good", "rejected": "bad"}


def test_nectar_best_vs_worst_and_each():
    assert nectar_pairs(NECTAR) == [{"prompt": "How do I boil an egg?",
                                     "chosen_response": "Put it in boiling water for 9 minutes.",
                                     "rejected_response": "Eggs are birds."}]
    each = nectar_pairs(NECTAR, ranked="each")
    assert [p["rejected_response"] for p in each] == ["Boil it.", "Eggs are birds."]
    assert {p["chosen_response"] for p in each} == {"Put it in boiling water for 9 minutes."}
    with pytest.raises(ValueError, match="ranked must be one of"):
        nectar_pairs(NECTAR, ranked="best")


def test_nectar_unusable_rows_are_skipped_and_counted():
    rows = to_pairs([NECTAR, NECTAR_MULTI, NECTAR_TIED, {"prompt": "x", "answers": []}])
    ex, st = build_reviser_examples(rows)
    assert st.n_input == 4 and st.n_pairs_used == 1 and st.skipped_missing == 3
    assert [e["decision"] for e in ex] == ["REVISE", "KEEP"]


def test_ultrafeedback_last_assistant_message():
    assert ultrafeedback_pair(UF) == {"prompt": "Name a prime.", "chosen_response": "7 is prime.",
                                      "rejected_response": "9."}
    no_prompt = {k: v for k, v in UF.items() if k != "prompt"}
    assert ultrafeedback_pair(no_prompt)["prompt"] == "Name a prime."
    broken = {**UF, "rejected": [{"role": "user", "content": "Name a prime."}]}
    assert ultrafeedback_pair(broken)["rejected_response"] is None


def test_shapes_detected_per_row():
    out = to_pairs([PLAIN, UF, NECTAR, "not a dict",
                    {"prompt": "\n\nHuman: hh style?\n\nAssistant:", "chosen": "c",
                     "rejected": "r"}])
    assert [o["chosen_response"] for o in out] == ["good", "7 is prime.",
                                                   "Put it in boiling water for 9 minutes.",
                                                   None, "c"]
    assert out[-1]["prompt"] == "hh style?"


def test_local_files_json_and_jsonl(tmp_path):
    jl = tmp_path / "nectar.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in [NECTAR, NECTAR_MULTI]) + "\n")
    assert [p["chosen_response"] for p in load_pref_pairs(str(jl))] == [
        "Put it in boiling water for 9 minutes.", None]
    js = tmp_path / "uf.json"
    js.write_text(json.dumps([UF, PLAIN]))
    assert [p["rejected_response"] for p in load_pref_pairs(str(js))] == ["9.", "bad"]
    assert len(load_pref_pairs(str(js), limit=1)) == 1
    bad = tmp_path / "bad.json"
    bad.write_text('{"prompt": "a"}')
    with pytest.raises(ValueError, match="bad.json: a .json file must hold a list"):
        load_pref_pairs(str(bad))
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="bad.json: record 1 is not a JSON object"):
        load_pref_pairs(str(bad))
    txt = tmp_path / "pairs.txt"
    txt.write_text("x")
    with pytest.raises(ValueError, match="must be .json or .jsonl"):
        load_pref_pairs(str(txt))
    with pytest.raises(ValueError, match="no such file"):
        load_pref_pairs(str(tmp_path / "missing.jsonl"))


def test_datasets_names_and_splits(monkeypatch):
    import datasets
    calls = []

    def fake_load(name, split=None):
        calls.append((name, split))
        if name == "nobody/none":
            raise FileNotFoundError("Dataset 'nobody/none' doesn't exist on the Hub")
        rows = {"HuggingFaceH4/ultrafeedback_binarized": [UF] * 5,
                "berkeley-nest/Nectar": [NECTAR, NECTAR_MULTI]}[name]
        return datasets.Dataset.from_list(rows)
    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    uf = load_pref_pairs("ultrafeedback", limit=3)
    assert calls[-1] == ("HuggingFaceH4/ultrafeedback_binarized", "train_prefs")
    assert len(uf) == 3 and uf[0]["chosen_response"] == "7 is prime."
    ne = load_pref_pairs("nectar", ranked="each")
    assert calls[-1] == ("berkeley-nest/Nectar", "train") and len(ne) == 3
    load_pref_pairs("HuggingFaceH4/ultrafeedback_binarized", split="test_prefs")
    assert calls[-1] == ("HuggingFaceH4/ultrafeedback_binarized", "test_prefs")
    with pytest.raises(ValueError, match="pref_data 'nobody/none': could not load dataset"):
        load_pref_pairs("nobody/none")
