import pytest
import torch

from workbench.spans.model import LOSSES, LayerAttention
from workbench.spans.train import (
    SpansConfig,
    build_tagger,
    make_batches,
    make_optimizer,
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


def test_config_unknown_head():
    with pytest.raises(ValueError, match="unknown"):
        SpansConfig(heads=("clss",))


def test_weight_decay_groups():
    model, _ = build_tagger("tiny:bert", "cls", False)
    opt = make_optimizer(model, 1e-3, 0.01)
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    assert all(p.ndim >= 2 for p in opt.param_groups[0]["params"])


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
