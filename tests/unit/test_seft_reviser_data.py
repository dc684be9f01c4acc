import math

from workbench.seft.reviser_data import (
    KEEP,
    REVISE,
    build_reviser_examples,
    build_reviser_examples_ranked,
    format_reviser_prompt,
    parse_reviser_output,
    summarize_revisions,
)

ROWS = [
    {"prompt": "Hi?", "chosen_response": "Hello! How can I help?", "rejected_response": "go away"},
    {"prompt": "Q", "chosen_response": "same", "rejected_response": " same "},   # identical
    {"prompt": "Q", "chosen_response": None, "rejected_response": "x"},          # missing
    {"chosen_response": "a", "rejected_response": "b"},                          # missing prompt
    {"prompt": "  ", "chosen_response": "a", "rejected_response": "b"},           # blank prompt
]


def test_both_branches_and_skips():
    ex, st = build_reviser_examples(ROWS)
    assert st.n_input == 5 and st.n_pairs_used == 1
    assert st.skipped_identical == 1 and st.skipped_missing == 3
    assert st.skipped_rows == [1, 2, 3, 4]
    assert [e["decision"] for e in ex] == [REVISE, KEEP]
    rev, keep = ex
    assert rev["response"] == "go away" and rev["target"] == "REVISE\nHello! How can I help?"
    assert keep["response"] == "Hello! How can I help?"
    assert keep["target"] == "KEEP\nHello! How can I help?"
    assert rev["messages"][0]["content"] == format_reviser_prompt("Hi?", "go away")
    assert "### Instruction:\nHi?" in rev["messages"][0]["content"]
    assert rev["messages"][1] == {"role": "assistant", "content": rev["target"]}
    assert st.n_keep == 1 and st.n_revise == 1


def test_branch_switches():
    ex, st = build_reviser_examples(ROWS[:1], include_keep=False)
    assert [e["decision"] for e in ex] == [REVISE] and st.n_keep == 0


def test_ranked():
    rows = [{"prompt": "p", "responses": ["bad", "best", "ok"], "scores": [1, 9, 5]},
            {"prompt": "p", "responses": ["only"], "scores": [1]}]
    ex, st = build_reviser_examples_ranked(rows)
    assert st.n_pairs_used == 2 and st.skipped_missing == 1
    revs = [e for e in ex if e["decision"] == REVISE]
    assert {e["response"] for e in revs} == {"bad", "ok"}
    assert all(e["target"] == "REVISE\nbest" for e in revs)


def test_parse_well_formed():
    p = parse_reviser_output("REVISE\nA better answer.", "orig")
    assert (p.decision, p.response, p.malformed) == (REVISE, "A better answer.", False)
    p = parse_reviser_output("KEEP\norig", "orig")
    assert (p.decision, p.response, p.malformed) == (KEEP, "orig", False)
    p = parse_reviser_output("REVISE: inline answer", "orig")
    assert (p.decision, p.response) == (REVISE, "inline answer")
    p = parse_reviser_output("**Keep**", "orig")
    assert (p.decision, p.malformed) == (KEEP, False)


def test_parse_malformed_and_empty():
    for text in ["", None, "   \n ", "Sure, here is something", "REVISE\n   ",
                 "REVISE\n### Instruction:\nHi?\n\n### Response:\nx",  # echoes its prompt
                 "REVISE\nA better one.\n\n### Response:\nx"]:
        p = parse_reviser_output(text, "orig")
        assert (p.decision, p.response, p.malformed) == (KEEP, "orig", True), text


def test_summary_never_revised():
    ps = [parse_reviser_output("KEEP\nx", "ab"), parse_reviser_output("junk", "abcd")]
    s = summarize_revisions(ps)
    assert s["n"] == 2 and s["n_revised"] == 0 and s["n_malformed"] == 1
    assert s["never_revised"] is True and s["share_revised"] == 0.0 and s["mean_length"] == 3.0
    assert math.isnan(summarize_revisions([])["share_revised"])
