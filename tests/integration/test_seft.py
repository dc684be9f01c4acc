import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from workbench.common import load_causal_lm  # noqa: E402
from workbench.seft.reviser_data import build_reviser_examples  # noqa: E402
from workbench.seft.training import evolution_round, train_preference, train_sft  # noqa: E402

ROWS = [{"prompt": f"Question {i}?", "chosen_response": f"A helpful answer {i}.",
         "rejected_response": f"no {i}"} for i in range(4)]


def _params(m):
    return torch.cat([p.detach().flatten().clone() for p in m.parameters()])


def test_reviser_sft_and_round(tmp_path):
    torch.manual_seed(0)
    rev, tok = load_causal_lm("tiny:llama")
    ex, _ = build_reviser_examples(ROWS)
    rev, loss = train_sft(rev, tok, [e["messages"] for e in ex], tmp_path / "rev", max_steps=1,
                          max_length=128)
    assert loss == loss
    pol, ptok = load_causal_lm("tiny:llama")
    before = _params(pol)
    pol, stats, rows = evolution_round(pol, ptok, rev, tok, [r["prompt"] for r in ROWS],
                                       tmp_path / "r1", max_steps=1, lr=1e-2, max_new_tokens=8,
                                       reviser_max_new_tokens=8, max_length=128)
    assert not torch.equal(before, _params(pol))
    assert len(rows) == 4 and stats["n"] == 4 and "share_revised" in stats


def test_round_empty_pool(tmp_path):
    m, t = load_causal_lm("tiny:llama")
    with pytest.raises(ValueError, match="empty"):
        evolution_round(m, t, m, t, [], tmp_path)


@pytest.mark.parametrize("kind", ["dpo", "orpo"])
def test_baselines_one_step(tmp_path, kind):
    m, t = load_causal_lm("tiny:llama")
    _, loss = train_preference(kind, m, t, ROWS, tmp_path, max_steps=1, max_length=128)
    assert loss == loss


# ---- run_seft: bad input, round data on disk, resume ---------------------------------------
import json  # noqa: E402

import workbench.seft.stages.baselines as seft_baselines  # noqa: E402
import workbench.seft.stages.evolve as seft_evolve  # noqa: E402
import workbench.seft.stages.reviser as seft_reviser  # noqa: E402
from workbench.common.io import read_json  # noqa: E402
from workbench.seft import SEFTConfig, rejudge, run_seft  # noqa: E402

BAD_ROWS = [{"prompt": "P1", "chosen": "x"},                                  # missing rejected
            {"prompt": "P2", "chosen": "same", "rejected": "same"}]           # identical


def _files(tmp_path, good=6, prompts=8):
    pref = tmp_path / "pref.jsonl"
    rows = [{"prompt": f"Question {i}?", "chosen": f"A helpful answer {i}.", "rejected": f"no {i}"}
            for i in range(good)] + BAD_ROWS
    pref.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pool = tmp_path / "prompts.txt"
    pool.write_text("\n".join(f"Tell me about topic {i}." for i in range(prompts)) + "\n")
    return str(pref), str(pool)


def _cfg(tmp_path, out, **kw):
    pref, pool = _files(tmp_path)
    base = dict(output_dir=str(out), pref_data=pref, prompt_source=pool, baselines=("sft",),
                rounds=2, prompts_per_round=2, eval_prompts=1, pref_size=4, reviser_eval_pairs=2,
                mtbench_limit=1,
                max_new_tokens=4, reviser_max_new_tokens=4, judge_max_new_tokens=4)
    return SEFTConfig.from_preset("smoke", **{**base, **kw})


def test_bad_preference_file_and_empty_pool(tmp_path):
    only_bad = tmp_path / "bad.jsonl"
    only_bad.write_text("\n".join(json.dumps(r) for r in BAD_ROWS))
    with pytest.raises(ValueError, match="no usable preference rows.*1 missing.*1 with identical"):
        run_seft(_cfg(tmp_path, tmp_path / "o1", pref_data=str(only_bad)))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    with pytest.raises(ValueError, match="prompt_source.*0 usable prompts, need 5"):
        run_seft(_cfg(tmp_path, tmp_path / "o2", prompt_source=str(empty)))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "a"}\nnot json\n')
    with pytest.raises(ValueError, match="pref_data broken.jsonl line 2: bad JSON"):
        run_seft(_cfg(tmp_path, tmp_path / "o3", pref_data=str(broken)))


def _strip_seconds(x):
    if isinstance(x, dict):
        return {k: _strip_seconds(v) for k, v in x.items() if "seconds" not in k}
    if isinstance(x, list):
        return [_strip_seconds(v) for v in x]
    return x


@pytest.mark.slow
def test_run_writes_rounds_reports_and_resumes_identically(tmp_path, monkeypatch):
    full = run_seft(_cfg(tmp_path, tmp_path / "full"))
    m = full.metrics
    assert [r["model"] for r in m["table"]] == ["SFT", "SEFT round 1", "SEFT round 2"]
    assert {"mtbench_turn1", "mtbench_turn2", "judge_score", "win_rate_vs_sft",
            "n_unparsed", "n_forced"} <= set(m["table"][0])
    assert m["reviser_data"]["rows_skipped_missing"] == 1
    assert m["reviser_data"]["rows_skipped_identical"] == 1
    assert any("skipped 1 rows missing" in w for w in m["warnings"])
    assert m["judge_note"]  # the tiny local judge is flagged as weak
    # the round's data is on disk; a reviser that never revises is reported, not hidden
    for r in (1, 2):
        rows = read_json(full.run_dir / "artifacts" / f"round{r}_data.json")["rows"]
        assert len(rows) == 2 and {"prompt", "response", "decision", "revised",
                                    "reviser_output"} <= set(rows[0])
    # the reviser's decisions on the 2 held-out pairs (not trained on), before and after training
    for when in ("before_training", "after_training"):
        h = m["reviser_heldout"][when]
        assert h["n_pairs"] == 2 and {h["share_revise_rejected"], h["share_revise_chosen"]} <= {
            0.0, 0.5, 1.0}
    assert m["decision"] == "constrained"
    for s in m["rounds"]:  # constrained decisions: counts add up, margins saved per response
        assert s["n"] == 2 and s["n_revised"] == sum(r["decision"] == "REVISE" for r in read_json(
            full.run_dir / "artifacts" / f"round{s['round']}_data.json")["rows"])
        assert s["share_revised"] == s["n_revised"] / 2 and s["decision"] == "constrained"
        rows = read_json(full.run_dir / "artifacts" / f"round{s['round']}_data.json")["rows"]
        assert [r["decision"] == "REVISE" for r in rows] == [
            r["margin"] > 0 and not r["malformed"] for r in rows]
    never = m["never_revised_rounds"]
    assert all(any(f"round {r}: the reviser revised none" in w for w in m["warnings"])
               for r in never)
    ans = read_json(full.run_dir / "artifacts" / "answers" / "sft.json")
    assert len(ans["mtbench"][0]["answers"]) == 2  # both MT-Bench turns answered
    # the saved answers can be graded again by another judge, without touching metrics.json
    t2 = rejudge(full.run_dir, judge="hf", judge_model="tiny:qwen2", max_new_tokens=2)
    assert sorted(r["model"] for r in t2) == sorted(r["model"] for r in m["table"])
    assert (full.run_dir / "artifacts" / "table-tiny_qwen2-expected.json").exists()
    assert all(1 <= r["judge_score"] <= 10 for r in t2)  # expected ratings: always a number
    t3 = rejudge(full.run_dir, judge="hf", judge_model="tiny:qwen2", max_new_tokens=2,
                 mode="generate")
    assert (full.run_dir / "artifacts" / "table-tiny_qwen2.json").exists() and len(t3) == len(t2)
    assert read_json(full.run_dir / "metrics.json")["judge"] == m["judge"]
    with pytest.raises(ValueError, match="no saved answers"):
        rejudge(tmp_path)

    # kill a second run while training round 2 ...
    real = seft_evolve.train_on_revised

    def dies_in_round2(policy, tok, rows, out_dir, **kw):
        if Path(out_dir).name == "round2":
            raise RuntimeError("killed")
        return real(policy, tok, rows, out_dir, **kw)
    monkeypatch.setattr(seft_evolve, "train_on_revised", dies_in_round2)
    with pytest.raises(RuntimeError, match="killed"):
        run_seft(_cfg(tmp_path, tmp_path / "resumed"))
    run_dir = next((tmp_path / "resumed" / "seft").iterdir())
    assert (run_dir / "artifacts" / "round2_data.json").exists()
    assert not (run_dir / "checkpoints" / "round2_final" / "stage.json").exists()
    # ... and restart it: nothing finished is retrained, the result is the same
    calls = {"sft": 0, "round": 0}

    def count_sft(*a, **kw):
        calls["sft"] += 1
        return train_sft(*a, **kw)

    def count_round(*a, **kw):
        calls["round"] += 1
        return real(*a, **kw)
    monkeypatch.setattr(seft_reviser, "train_sft", count_sft)
    monkeypatch.setattr(seft_baselines, "train_sft", count_sft)
    monkeypatch.setattr(seft_evolve, "train_on_revised", count_round)
    res = run_seft(_cfg(tmp_path, tmp_path / "resumed"))
    assert calls == {"sft": 0, "round": 1}
    assert _strip_seconds(res.metrics["table"]) == _strip_seconds(m["table"])
    assert _strip_seconds(res.metrics["rounds"]) == _strip_seconds(m["rounds"])
    for r in (1, 2):
        a = read_json(full.run_dir / "artifacts" / f"round{r}_data.json")["rows"]
        b = read_json(run_dir / "artifacts" / f"round{r}_data.json")["rows"]
        assert a == b


def test_external_evolution_revises_the_given_responses(tmp_path):
    from workbench.seft.training import sample_and_revise
    m, t = load_causal_lm("tiny:llama")
    ext = ["External answer one.", "External answer two."]
    rows, stats = sample_and_revise(m, t, m, t, ["Q1?", "Q2?"], external_responses=ext,
                                    reviser_max_new_tokens=4)
    assert [r["response"] for r in rows] == ext and stats["n"] == 2
    # KEEP (or malformed -> KEEP) keeps the external response itself
    assert all(r["revised"] == r["response"] for r in rows if r["decision"] == "KEEP")
    with pytest.raises(ValueError, match="match prompts"):
        sample_and_revise(m, t, m, t, ["Q1?"], external_responses=ext)
