"""`workbench models` and `workbench data`: what a user sees after set-up."""

from __future__ import annotations

import pytest

from workbench.cli import main


def test_models_lists_every_name_and_readiness(capsys, tiny_llama_dir):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in ("smollm2-135m-instruct", "gemma3-270m", "qwen2.5-coder-0.5b-instruct",
                 "minilm-l6", "tiny:llama", "tiny:bert"):
        assert name in out
    row = next(line for line in out.splitlines() if line.startswith("tiny:llama "))
    assert "True" in row and "49152" in row


def test_models_prepare_tiny(capsys):
    assert main(["models", "prepare", "tiny:llama"]) == 0
    assert "tiny:llama: ready at" in capsys.readouterr().out


def test_data_lists_every_corpus(capsys):
    code = main(["data"])
    out = capsys.readouterr().out
    for name in ("toxic_spans", "wikitext2", "hh_rlhf", "sharegpt", "mtbench", "piqa",
                 "hellaswag", "winogrande", "arc_easy", "arc_challenge"):
        assert name in out
    if code != 0:
        pytest.fail(f"some corpus is not available here:\n{out}")


# ---- fast, one-line refusals before any kernel starts ------------------------------------
def _cli(*args: str, env: dict | None = None):
    """Run `workbench ...` in a fresh interpreter (start-up included): (rc, stdout, stderr, s)."""
    import os
    import subprocess
    import sys
    import time

    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "workbench.cli", *args], capture_output=True,
                       text=True, timeout=120, env={**os.environ, **(env or {})})
    return p.returncode, p.stdout, p.stderr, time.perf_counter() - t0


@pytest.mark.parametrize("args, needle", [
    (["toxic_spans", "-p", "foo=1"], "unknown parameter 'foo' for notebook toxic_spans"),
    (["blockpruner", "-p", "num_block=8"], "Did you mean: num_blocks"),
    (["toxic_spans", "-p", "epochs=abc"], "parameter 'epochs': expected int, got 'abc'"),
    (["toxic_spans", "-p", "heads=[cls, 1]"], "expected a list of str"),
    (["blockpruner", "-p", "target_ratio=[1]"], "parameter 'target_ratio'"),
    (["blockpruner", "-p", "model=smollm2-135m-instruc"], "unknown model"),
    (["all", "-p", "seed=x"], "parameter 'seed': expected int"),
    (["seft", "-p", "preset=cpu"], "use --profile"),
    (["toxic_spans", "--profile", "quik"], "Did you mean: quick"),
    (["toxic_spanz"], "Did you mean: toxic_spans"),
])
def test_reproduce_bad_params_one_line_rc2_fast(tmp_path, args, needle):
    rc, out, err, seconds = _cli("reproduce", *args, "--results", str(tmp_path / "res"))
    assert rc == 2, (out, err)
    assert needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "res").exists()  # refused before anything was written or started
    assert seconds < 2.0, f"{seconds:.2f} s"


def test_reproduce_results_that_is_a_file(tmp_path):
    f = tmp_path / "results.txt"
    f.write_text("not a folder")
    rc, _, err, seconds = _cli("reproduce", "toxic_spans", "--results", str(f))
    assert rc == 2 and err.strip() == f"workbench: error: --results {f}: is a file, not a folder"
    rc, _, err, _ = _cli("reproduce", "toxic_spans", "--results", str(f / "sub"))
    assert rc == 2 and "is a file, not a folder" in err and len(err.strip().splitlines()) == 1


def test_params_valid_for_some_notebooks_go_only_to_those():
    from workbench.nbparams import check_params, params_for

    check_params("all", "smoke", {"num_blocks": 2, "seed": 3, "sources": ["tiny:qwen2"]})
    assert params_for("toxic_spans", {"num_blocks": 2, "seed": 3}) == {"seed": 3}
    assert params_for("blockpruner", {"num_blocks": 2, "seed": 3}) == {"num_blocks": 2}


def test_help_is_fast_and_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys, workbench.cli as c; c.build_parser()\n"
            "print(sorted(m for m in ('torch', 'transformers', 'gradio', 'datasets', 'pandas') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    best = min(_cli("--help")[3] for _ in range(3))
    assert best < 1.0, f"workbench --help took {best:.2f} s"


def test_seft_stage_names_match_the_stages_package():
    from workbench.seft.cli import STAGES as listed
    from workbench.seft.stages import STAGES

    assert tuple(listed) == tuple(STAGES)


def test_app_warns_on_a_public_host_and_checks_auth(monkeypatch, capsys):
    import workbench.apphub as hub

    launched = {}

    class FakeHub:
        def queue(self, **kw):
            return self

        def launch(self, **kw):
            launched.update(kw)

    monkeypatch.setattr(hub, "build_hub", lambda runs: FakeHub())
    assert main(["app", "--host", "0.0.0.0", "--port", "7999"]) == 0
    err = capsys.readouterr().err
    assert "not a loopback address" in err and "--auth" in err
    assert launched["server_name"] == "0.0.0.0" and launched["auth"] is None
    assert main(["app", "--host", "0.0.0.0", "--auth", "me:pw"]) == 0
    assert launched["auth"] == ("me", "pw") and "after logging in" in capsys.readouterr().err
    assert main(["app"]) == 0 and capsys.readouterr().err == ""
    assert main(["app", "--auth", "nopassword"]) == 2
    assert "user:password" in capsys.readouterr().err
