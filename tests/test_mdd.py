import urllib.error

import pytest
import torch

from submission.config import make_config
from submission.errors import KitError
from submission.methods.grl import grl_coeff, reverse_gradient
from submission.methods.mdd import mdd_loss
from submission.methods.model import MDDNet


def naive_mdd(y_s, y_s_adv, y_t, y_t_adv, margin):
    """The transfer loss written out sample by sample."""
    src, tgt = 0.0, 0.0
    for i in range(len(y_s)):
        p = int(torch.argmax(y_s[i]))
        src += -torch.log_softmax(y_s_adv[i], 0)[p]
    for i in range(len(y_t)):
        p = int(torch.argmax(y_t[i]))
        q = torch.softmax(y_t_adv[i], 0)[p]
        tgt += -torch.log(torch.clamp(1 - q + 1e-6, max=1.0))
    return margin * src / len(y_s) + tgt / len(y_t)


@pytest.mark.parametrize("seed,n,k,margin,scale", [(0, 4, 11, 4.0, 1.0), (1, 16, 3, 1.0, 5.0), (2, 1, 11, 2.5, 20.0)])
def test_mdd_loss_matches_the_naive_reference(seed, n, k, margin, scale):
    g = torch.Generator().manual_seed(seed)
    ys = [torch.randn(n, k, generator=g, dtype=torch.float64) * scale for _ in range(4)]
    assert torch.allclose(mdd_loss(*ys, margin=margin), naive_mdd(*ys, margin), rtol=1e-9)


def test_mdd_loss_sends_no_gradient_through_the_argmax():
    y_s, y_t = torch.randn(5, 11, requires_grad=True), torch.randn(5, 11, requires_grad=True)
    loss = mdd_loss(y_s, torch.randn(5, 11, requires_grad=True), y_t, torch.randn(5, 11, requires_grad=True))
    loss.backward()
    assert y_s.grad is None and y_t.grad is None


@pytest.mark.parametrize("step,max_iters,lo,hi,alpha,expected", [
    (0, 1000, 0.0, 0.1, 1.0, 0.0),
    (1000, 1000, 0.0, 0.1, 1.0, 0.0462117157),  # 0.1 tanh(1/2)
    (2000, 1000, 0.0, 0.1, 1.0, 0.0761594156),  # 0.1 tanh(1)
    (600, 1000, 0.0, 0.1, 1.0, 0.0291312612),  # 0.1 tanh(0.3)
    (50, 100, 0.2, 1.0, 2.0, 0.5696937258),  # 0.2 + 0.8 tanh(1/2)
])
def test_grl_coeff_known_values(step, max_iters, lo, hi, alpha, expected):
    """The ramp 2 h / (1 + exp(-a i / m)) - h is h tanh(a i / 2m): values from tanh tables."""
    assert grl_coeff(step, max_iters, lo, hi, alpha) == pytest.approx(expected, abs=1e-9)


def test_grl_coeff_ramp_facts():
    assert grl_coeff(0) == pytest.approx(0.0)
    assert grl_coeff(600) == pytest.approx(0.029, abs=5e-4)  # a 600-step run never passes 0.029
    assert grl_coeff(10_000) == pytest.approx(0.1, abs=1e-5)


@pytest.mark.parametrize("coeff", [0.0, 0.1, 1.0, 2.5])
def test_reversed_gradient_is_minus_coeff_times_grad(coeff):
    x = torch.randn(3, 4, requires_grad=True)
    w = torch.randn(3, 4)
    (reverse_gradient(x, coeff) * w).sum().backward()
    assert torch.allclose(x.grad, -coeff * w)
    assert torch.equal(reverse_gradient(x, coeff), x)  # identity forward


def test_model_shapes_and_param_groups():
    model = MDDNet(11, bottleneck_dim=32, head_width=16)
    y, y_adv = model(torch.randn(6, 3, 32, 32), coeff=0.1)
    assert y.shape == y_adv.shape == (6, 11)
    model.eval()
    assert model.predict(torch.randn(2, 3, 32, 32)).shape == (2, 11)
    groups = model.param_groups(0.004, 0.1)
    assert [g["lr"] for g in groups] == pytest.approx([0.0004, 0.004])


def test_one_step_puts_both_domains_through_one_batchnorm_forward():
    """After one training step, the first BatchNorm's running mean is the momentum-weighted mean
    of the source and target batch together: both domains went through one forward."""
    from submission.train.step import train_step

    torch.manual_seed(0)
    model = MDDNet(11, 16, 16, dropout=0.0)
    bn = model.backbone.bn1
    x_s = torch.randn(4, 3, 32, 32)
    x_t = torch.randn(4, 3, 32, 32) * 2 + 3  # a target far from the source
    with torch.no_grad():
        pre = model.backbone.conv1(torch.cat([x_s, x_t])).mean((0, 2, 3))
        pre_s = model.backbone.conv1(x_s).mean((0, 2, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    train_step(model, x_s, torch.randint(0, 11, (4,)), x_t, opt, 0.1, make_config(trade_off=1.0, mcc_weight=0.0, target_in_batch=True))
    expected = bn.momentum * pre  # running mean starts at 0
    assert torch.allclose(bn.running_mean, expected, atol=1e-5)
    assert not torch.allclose(bn.running_mean, bn.momentum * pre_s, atol=1e-3)
    # and the source-only step (no target in the batch) sees the source alone
    model2 = MDDNet(11, 16, 16, dropout=0.0)
    model2.load_state_dict({k: v for k, v in model.state_dict().items()})
    model2.backbone.bn1.reset_running_stats()
    train_step(model2, x_s, torch.randint(0, 11, (4,)), None, opt, 0.1, make_config("source-only"))
    assert torch.allclose(model2.backbone.bn1.running_mean, bn.momentum * pre_s, atol=1e-5)


def test_missing_imagenet_weights_is_one_clear_error(monkeypatch):
    def offline(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(KitError, match=r"--no-pretrained") as e:
        MDDNet(pretrained=True)
    assert "resnet18-f37072fd.pth" in str(e.value) and torch.hub.get_dir() in str(e.value)
