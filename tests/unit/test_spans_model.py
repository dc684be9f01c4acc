import pytest
import torch

from workbench.spans.model import LOSSES, LayerAttention
from workbench.spans.train import (
    SpansConfig,
    _eval_points,
    build_tagger,
    encode_train,
    linear_schedule,
    make_batches,
    make_optimizer,
    member_names,
    train_step,
)


def test_layer_attention_weights_sum_to_one():
    att = LayerAttention(8)
    hs = tuple(torch.randn(2, 5, 8) for _ in range(4))
    out = att(hs)
    assert out.shape == (2, 5, 8)
    assert torch.allclose(att.last_weights.sum(-1), torch.ones(2, 5))


@pytest.mark.parametrize("name", ["ce", "dice", "focal"])
def test_losses_finite(name):
    logits = torch.randn(2, 4, 2, requires_grad=True)
    tags = torch.tensor([[-100, 0, 1, -100], [-100, 1, 1, 0]])
    loss = LOSSES.get(name)(logits, tags)
    loss.backward()
    assert torch.isfinite(loss) and logits.grad is not None


def test_cls_vector_position():
    from types import SimpleNamespace

    from workbench.spans.model import _cls_vector
    h = torch.arange(2 * 3 * 2, dtype=torch.float).view(2, 3, 2)
    out = SimpleNamespace(hidden_states=(h,))
    ident = torch.nn.Identity()
    assert torch.equal(_cls_vector(out, ident), h[:, 0])  # BERT-style: first token
    assert torch.equal(_cls_vector(out, ident, torch.tensor([2, 1])), torch.stack([h[0, 2], h[1, 1]]))  # XLNet


def test_member_names():
    cfg = SpansConfig(encoders=("tiny:bert", "/x/minilm-l6"), heads=("cls",), crf=(False, True), seeds=(1, 2))
    names = [n for n, *_ in member_names(cfg)]
    assert names[:2] == ["tiny_bert-cls-s1", "tiny_bert-cls-s2"] and names[-1] == "minilm-l6-cls-crf-s2"
    assert len(names) == 8 and len(set(names)) == 8
    assert [n for n, *_ in member_names(SpansConfig(heads=("cls",), crf=(True,)))] == ["cls-crf"]
    with pytest.raises(ValueError, match="ensemble_members"):
        SpansConfig(heads=("cls",), crf=(True,), ensemble_members=("cls",))


def test_config_unknown_head():
    with pytest.raises(ValueError, match="unknown"):
        SpansConfig(heads=("clss",))


def test_weight_decay_groups():
    model, _ = build_tagger("tiny:bert", "cls", True)
    opt = make_optimizer(model, 1e-3, 0.01, head_lr=1e-2)
    got = [(g["weight_decay"], g["lr"]) for g in opt.param_groups]
    assert got == [(0.01, 1e-3), (0.0, 1e-3), (0.01, 1e-2), (0.0, 1e-2)]
    assert all(p.ndim >= 2 for g in opt.param_groups if g["weight_decay"] for p in g["params"])
    head = {id(p) for n, p in model.named_parameters() if not n.startswith("encoder.")}
    assert {id(p) for g in opt.param_groups[2:] for p in g["params"]} == head  # CRF + head at head_lr


def test_weight_decay_really_applied():
    """With zero gradients AdamW's update is pure decay: w <- w (1 - lr wd); no-decay params stay."""
    model, _ = build_tagger("tiny:bert", "cls", False)
    lr, wd = 0.1, 0.5
    opt = make_optimizer(model, lr, wd)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    w = dict(model.named_parameters())
    name = "encoder.encoder.layer.0.attention.self.query.weight"
    assert torch.allclose(w[name], before[name] * (1 - lr * wd))
    assert torch.equal(w["encoder.encoder.layer.0.attention.self.query.bias"],
                       before["encoder.encoder.layer.0.attention.self.query.bias"])


def test_clip_before_step(monkeypatch):
    """The optimiser sees gradients already clipped (the released code clipped after the step)."""
    torch.manual_seed(0)
    cfg = SpansConfig(max_length=32, batch_size=2)
    model, tok = build_tagger("tiny:bert", "cls", False)
    opt = make_optimizer(model, 1e-3, 0.0)
    seen = []
    real_step = opt.step

    def spy(*a, **k):
        norms = [p.grad.norm() for p in model.parameters() if p.grad is not None]
        seen.append(float(torch.stack(norms).norm()))
        return real_step(*a, **k)

    monkeypatch.setattr(opt, "step", spy)
    batch = next(make_batches(tok, ["you are an idiot", "nice"], [list(range(11, 16)), []], cfg))
    model.loss_fn = lambda em, tags: 1e4 * em.pow(2).mean()  # huge gradient
    train_step(model, opt, batch, grad_clip=0.5)
    assert seen and seen[0] <= 0.5 + 1e-4


def test_linear_schedule():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = linear_schedule(opt, total_steps=10, warmup_ratio=0.2)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert lrs[-1] == pytest.approx(1 / 8) and lrs == sorted(lrs[:2]) + sorted(lrs[2:], reverse=True)


def test_eval_points():
    assert _eval_points(10, 1) == {9}
    assert _eval_points(10, 2) == {4, 9}
    assert _eval_points(3, 5) == {0, 1, 2}


def test_batches_dynamic_padding_and_shuffle():
    cfg = SpansConfig(max_length=32, batch_size=2)
    _, tok = build_tagger("tiny:bert", "cls", False)
    texts = ["a", "you are a complete idiot", "b c", "nice day today", "ok"]
    spans = [[], list(range(19, 24)), [], [], []]
    windows = encode_train(tok, texts, spans, cfg)
    gen = torch.Generator().manual_seed(1)
    batches = list(make_batches(tok, texts, spans, cfg, gen, windows))
    seen = []
    for ids, mask, tags in batches:
        lens = mask.sum(1)
        assert ids.shape[1] == int(lens.max())  # padded to the longest window of the batch only
        assert bool((tags[mask == 0] == -100).all())
        seen += [tuple(r[:n].tolist()) for r, n in zip(ids, lens.tolist(), strict=True)]
    assert sorted(seen) == sorted(tuple(w[0]) for w in windows)
    assert any(t == 1 for w in windows for t in w[1])  # the toxic word got tagged


def test_long_train_post_becomes_windows():
    cfg = SpansConfig(max_length=16, batch_size=4)
    _, tok = build_tagger("tiny:bert", "cls", False)
    text = "idiot " * 40
    windows = encode_train(tok, [text], [list(range(len(text) - 1))], cfg)
    assert len(windows) > 1 and all(len(x) <= 16 for x, _ in windows)


def test_focal_gamma0_is_ce_and_dice_by_hand():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    tags = torch.tensor([[0, 1, -100]])
    assert LOSSES.get("focal")(logits, tags, gamma=0.0) == pytest.approx(float(LOSSES.get("ce")(logits, tags)))
    p0, p1 = torch.softmax(torch.tensor([2.0, 0.0]), 0), torch.softmax(torch.tensor([0.0, 1.0]), 0)
    d_o = (2 * p0[0] + 1) / (p0[0] + p1[0] + 1 + 1)  # class O: one gold token (the first)
    d_i = (2 * p1[1] + 1) / (p0[1] + p1[1] + 1 + 1)
    assert float(LOSSES.get("dice")(logits, tags)) == pytest.approx(float(1 - (d_o + d_i) / 2), abs=1e-6)
    # focal down-weights easy tokens: an easy correct token costs less than under CE
    easy = torch.tensor([[[4.0, 0.0]]])
    assert LOSSES.get("focal")(easy, torch.tensor([[0]])) < LOSSES.get("ce")(easy, torch.tensor([[0]]))


@pytest.mark.parametrize(("head", "crf"), [("cls", True), ("concat_cls", False), ("layer_attention", True)])
def test_two_steps_change_params(head, crf):
    torch.manual_seed(0)
    cfg = SpansConfig(heads=(head,), crf=(crf,), max_length=32, batch_size=2, lr=1e-2)
    model, tok = build_tagger("tiny:bert", head, crf)
    opt = make_optimizer(model, cfg.lr, cfg.weight_decay)
    before = {k: v.clone() for k, v in model.named_parameters()}
    texts, spans = ["you are an idiot", "nice day"], [list(range(11, 16)), []]
    batch = next(make_batches(tok, texts, spans, cfg))
    losses = [train_step(model, opt, batch, cfg.grad_clip) for _ in range(2)]
    assert all(torch.isfinite(torch.tensor(x)) for x in losses)
    changed = sum(not torch.equal(before[k], v) for k, v in model.named_parameters())
    assert changed > len(before) // 2


def test_scalar_mix_is_a_convex_mix_of_layers():
    from workbench.spans.model import ScalarMix
    mix = ScalarMix(8)
    hs = tuple(torch.full((1, 2, 3), float(k)) for k in range(3))
    assert torch.allclose(mix(hs), torch.full((1, 2, 3), 1.0))  # uniform weights over 3 layers: mean 0,1,2
    with torch.no_grad():
        mix.weights[2] = 100.0
    assert torch.allclose(mix(hs), torch.full((1, 2, 3), 2.0), atol=1e-4)


def test_causal_lm_tagger_pools_last_token_and_lora_trains_adapters_only():
    from workbench.spans.train import is_causal
    model, tok = build_tagger("tiny:llama", "scalar_mix", True, lora_r=4)
    assert model.cls_last and is_causal(model.encoder.config)
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"encoder", "head", "crf"}
    assert all("lora_" in n for n, p in model.encoder.named_parameters() if p.requires_grad)
    bert, _ = build_tagger("tiny:bert", "cls", False)
    assert not bert.cls_last


def test_trim_offsets():
    from workbench.spans.predict import trim
    assert trim("a  idiot ", 1, 8) == (3, 8) and trim("a idiot", 2, 7) == (2, 7) and trim("   ", 0, 3)[0] == 3
