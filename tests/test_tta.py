import torch
from torch import nn

from submission.methods.tta import dihedral_views, predict_tta


def test_eight_views_are_the_dihedral_group():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    views = dihedral_views(x)
    assert views.shape == (8, 1, 1, 4, 4)
    keys = {tuple(v.flatten().tolist()) for v in views}
    assert len(keys) == 8  # no duplicates
    # closed: the views of any view are the same 8 images
    for v in views:
        assert {tuple(w.flatten().tolist()) for w in dihedral_views(v)} == keys


class Invariant(nn.Module):
    """Global average pooling then a linear layer: exactly invariant to rotations and flips."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 5)

    def predict(self, x):
        return self.fc(x.mean((2, 3)))


class PerPixel(nn.Module):
    def predict(self, x):
        return x.flatten(1)[:, :5]


def test_invariant_model_gives_the_same_logits_with_and_without_tta():
    torch.manual_seed(0)
    model, x = Invariant(), torch.randn(6, 3, 8, 8, dtype=torch.float64)
    model.double()
    assert torch.allclose(predict_tta(model, x, tta=True), predict_tta(model, x, tta=False), atol=1e-12)


def test_output_order_matches_input_order():
    x = torch.randn(5, 3, 8, 8)
    full = predict_tta(PerPixel(), x)
    for i in range(5):
        assert torch.allclose(predict_tta(PerPixel(), x[i : i + 1])[0], full[i])
    views = dihedral_views(x)
    expected = torch.stack([v.flatten(1)[:, :5] for v in views]).mean(0)
    assert torch.allclose(full, expected)
