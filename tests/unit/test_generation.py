"""The generation helper: batched left-padded HF generation, seeds, backends."""

from __future__ import annotations

import pytest
import torch

from workbench.common.models import load_causal_lm
from workbench.eval import generation
from workbench.eval.generation import chat_prompts, generate, generate_chat, pick_backend

PROMPTS = ["hi", "a much longer prompt with many more words in it than the first", "ok then"]


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    torch.manual_seed(0)
    return load_causal_lm("tiny:llama")


def test_batched_greedy_equals_one_by_one(tiny):
    model, tok = tiny
    texts = chat_prompts(tok, PROMPTS)
    tok.padding_side = "right"
    batched = generate(model, tok, texts, max_new_tokens=6, batch_size=3)
    single = [generate(model, tok, [t], max_new_tokens=6, batch_size=1)[0] for t in texts]
    assert batched == single
    assert len(batched) == 3 and all(isinstance(x, str) and x for x in batched)
    assert tok.padding_side == "right"  # restored


def test_sampling_repeats_with_a_seed_and_greedy_ignores_it(tiny):
    model, tok = tiny
    a = generate_chat(model, tok, PROMPTS, max_new_tokens=8, temperature=1.0, seed=3)
    b = generate_chat(model, tok, PROMPTS, max_new_tokens=8, temperature=1.0, seed=3)
    c = generate_chat(model, tok, PROMPTS, max_new_tokens=8, temperature=1.0, seed=4)
    assert a == b and a != c
    g1 = generate_chat(model, tok, PROMPTS, max_new_tokens=8, seed=1)
    g2 = generate_chat(model, tok, PROMPTS, max_new_tokens=8, seed=2)
    assert g1 == g2


def test_assistant_prefix_and_conversations(tiny):
    _, tok = tiny
    conv = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"},
            {"role": "user", "content": "q2"}]
    one, two = chat_prompts(tok, ["q1", conv], assistant_prefix="Rating: [[")
    assert one.endswith("Rating: [[") and "q1" in one
    assert two.index("a1") < two.index("q2") and two.endswith("Rating: [[")


def test_strip_and_empty_inputs(tiny):
    model, tok = tiny
    assert generate(model, tok, [], max_new_tokens=3) == []
    out = generate_chat(model, tok, PROMPTS[:1], max_new_tokens=4, strip=True)
    assert out[0] == out[0].strip()


def test_backend_choice(monkeypatch):
    monkeypatch.setattr(generation, "vllm_available", lambda: False)
    assert pick_backend("auto", "some/model") == "hf"
    assert pick_backend("hf") == "hf"
    with pytest.raises(ImportError, match="needs the vllm package and CUDA"):
        pick_backend("vllm", "some/model")
    with pytest.raises(ValueError, match="needs model_path"):
        pick_backend("vllm")
    with pytest.raises(ValueError, match="must be one of hf, vllm, auto, got 'tgi'"):
        pick_backend("tgi")
    monkeypatch.setattr(generation, "vllm_available", lambda: True)
    assert pick_backend("auto", "some/model") == "vllm"
    assert pick_backend("auto", None) == "hf"  # vLLM loads its own copy: it needs a path


def test_bad_arguments_fail_naming_them(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        generate(model, tok, ["x"], max_new_tokens=0)
    with pytest.raises(ValueError, match="top_p in"):
        generate(model, tok, ["x"], max_new_tokens=2, temperature=1.0, top_p=0.0)


# ---- the endpoint judge: concurrency, retries, cache ---------------------------------------
class _FakeEndpoint:
    """An OpenAI-compatible /chat/completions on 127.0.0.1 that fails the first `fail` calls
    with `status` and answers at most `limit` requests in all."""

    def __init__(self, fail: int = 1, status: int = 503, limit: int = 50):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.calls, self.fail, self.status, self.limit = 0, fail, status, limit
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                import json
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.calls += 1
                    n = outer.calls
                if n > outer.limit:
                    self.send_response(400)
                    self.end_headers()
                    self.wfile.write(b"request limit of the fake server")
                    return
                if n <= outer.fail:
                    self.send_response(outer.status)
                    self.send_header("Retry-After", "0")
                    self.end_headers()
                    self.wfile.write(b"try again")
                    return
                text = "echo " + body["messages"][-1]["content"]
                out = json.dumps({"choices": [{"message": {"content": text}}]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *a):
        self.server.shutdown()
        self.server.server_close()


def test_endpoint_judge_retries_runs_concurrently_and_caches(tmp_path):
    from workbench.eval.judges import OpenAIJudge

    reqs = [("sys", f"question {i}") for i in range(6)]
    cache = tmp_path / "judgments.jsonl"
    with _FakeEndpoint(fail=1, status=503) as srv:
        j = OpenAIJudge(base_url=srv.url, model="m", workers=3, backoff=0.01, cache=cache)
        out = j.complete_many(reqs)
        assert out == [f"echo question {i}" for i in range(6)]  # in order
        assert srv.calls == 7 and j.requests_sent == 7  # one failed call, retried
        again = OpenAIJudge(base_url=srv.url, model="m", cache=cache)
        assert again.complete_many(reqs[::-1]) == out[::-1]
        assert again.complete("sys", "question 2") == "echo question 2"
        assert srv.calls == 7 and again.requests_sent == 0  # the re-run paid nothing
        other = OpenAIJudge(base_url=srv.url, model="another-model", cache=cache)
        other.complete("sys", "question 0")  # a different judge model is a different key
        assert srv.calls == 8
    assert len(cache.read_text().splitlines()) == 7


def test_endpoint_judge_gives_up_in_one_line(tmp_path):
    from workbench.eval.judges import OpenAIJudge

    with _FakeEndpoint(fail=10, status=429) as srv:
        j = OpenAIJudge(base_url=srv.url, model="m", max_retries=2, backoff=0.01, cache=False)
        with pytest.raises(ValueError, match=r"HTTP 429 after 3 attempts") as e:
            j.complete("s", "u")
        assert "\n" not in str(e.value) and srv.calls == 3
    with _FakeEndpoint(fail=10, status=401) as srv:
        j = OpenAIJudge(base_url=srv.url, model="m", backoff=0.01, cache=False)
        with pytest.raises(ValueError, match=r"HTTP 401"):
            j.complete("s", "u")
        assert srv.calls == 1  # an auth error is not retried


def test_vllm_path_against_a_stand_in_engine(tiny, tiny_llama_dir, monkeypatch):
    """The vLLM branch with a stand-in ``vllm`` module (the real one needs CUDA; tests/gpu runs
    it): token ids from our tokenizer, sampling parameters, order, one cached engine."""
    import sys
    import types

    model, tok = tiny
    made, calls = [], []

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw

    class LLM:
        def __init__(self, **kw):
            made.append(kw)

        def generate(self, prompts, params, use_tqdm=True):
            calls.append((prompts, params.kw))
            out = types.SimpleNamespace
            return [out(outputs=[out(text=f"<{len(p['prompt_token_ids'])}>")]) for p in prompts]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM,
                                                                   SamplingParams=SamplingParams))
    monkeypatch.setattr(generation, "vllm_available", lambda: True)
    monkeypatch.setattr(generation, "_VLLM_ENGINES", {})
    texts = chat_prompts(tok, PROMPTS)
    out = generate(model, tok, texts, max_new_tokens=5, backend="auto",
                   model_path=str(tiny_llama_dir))
    lengths = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert out == [f"<{n}>" for n in lengths]
    assert calls[0][1] == {"temperature": 0.0, "top_p": 1.0, "top_k": -1, "max_tokens": 5,
                           "seed": None, "skip_special_tokens": True}
    generate(model, tok, texts, max_new_tokens=5, temperature=0.7, top_p=0.9, seed=3,
             backend="vllm", model_path=str(tiny_llama_dir))
    assert calls[1][1]["temperature"] == 0.7 and calls[1][1]["seed"] == 3
    assert calls[1][1]["top_k"] == (model.generation_config.top_k or 50)
    assert len(made) == 1 and made[0]["dtype"] == "float32"  # one engine, the model's dtype
    assert made[0]["trust_remote_code"] is False
