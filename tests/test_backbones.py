"""Backbones: torchvision resnets, timm models and DinoBloom files from disk (random weights written in
their makers' formats, nothing downloaded), the settings that follow from a backbone, and the errors."""

import dataclasses

import pytest
import torch
from backbone_files import WIDTHS, write_dinobloom, write_timm, write_torchvision

from submission.config import make_config
from submission.errors import KitError
from submission.methods import backbones, weights
from submission.methods.model import MDDNet
from submission.train.backbone import build_model, resolve

pytest.importorskip("timm")
VIT_S = "timm:vit_small_patch14_dinov2"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """{name: (path, the timm state dict loading must give)}: DinoBloom-S at full depth, B/L/G at depth 1."""
    folder = tmp_path_factory.mktemp("weights")
    out = {}
    for size in WIDTHS:
        path = folder / f"DinoBloom-{size}.pth"
        out[size] = (path, write_dinobloom(path, size, None if size == "S" else 1, seed=1))
    return out


@pytest.mark.parametrize("size", list(WIDTHS))
def test_dinobloom_files_load_back_exactly(files, size):
    path, expected = files[size]
    name, width = WIDTHS[size]
    raw = torch.load(path, weights_only=True)["teacher"]
    assert raw["backbone.pos_embed"].shape == (1, 257, width) and raw["backbone.mask_token"].shape == (1, width)
    assert any(k.startswith("dino_head.") for k in raw) and any(k.startswith("ibot_head.") for k in raw)
    if size == "G":  # DINOv2's SwiGLU keys, which timm names fc1/fc2
        assert "backbone.blocks.0.mlp.w12.weight" in raw and "backbone.blocks.0.mlp.w3.weight" in raw
    net, features = backbones.build(f"timm:{name}", 224, args=None if size == "S" else {"depth": 1})
    assert features == width
    assert weights.load_backbone_weights(net, path, name) == "DinoBloom (teacher)"
    got = net.state_dict()
    assert set(got) == set(expected)
    assert all(torch.equal(got[k], expected[k]) for k in expected)
    assert weights.grid_size(path) == 224


def test_a_timm_and_a_torchvision_state_dict_load_without_their_classifiers(tmp_path):
    timm_file = tmp_path / "convnext.pth"
    expected = write_timm(timm_file, "convnext_atto", seed=2)
    net, _ = backbones.build("timm:convnext_atto", 64)
    weights.load_backbone_weights(net, timm_file, "timm:convnext_atto")
    got = net.state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in got.items()) and any(k.startswith("head.fc") for k in expected)
    tv_file = tmp_path / "resnet34.pth"
    expected = write_torchvision(tv_file, "resnet34", seed=3)
    net, width = backbones.build("resnet34", 64)
    weights.load_backbone_weights(net, tv_file, "resnet34")
    assert width == 512 and all(torch.equal(v, expected[k]) for k, v in net.state_dict().items())


def test_a_file_that_does_not_fit_is_one_error_naming_the_mismatch(files, tmp_path):
    net, _ = backbones.build(VIT_S, 224)
    with pytest.raises(KitError, match=r"1x1x768 in the file vs 1x1x384 in the model.*ViT-B \(DinoBloom-B\)"):
        weights.load_backbone_weights(net, files["B"][0], VIT_S)
    teacher = torch.load(files["S"][0], weights_only=True)["teacher"]
    del teacher["backbone.blocks.3.attn.qkv.weight"]
    torch.save({"teacher": teacher}, tmp_path / "cut.pth")
    with pytest.raises(KitError, match=r"1 keys missing from the file \(blocks\.3\.attn\.qkv\.weight\)"):
        weights.load_backbone_weights(net, tmp_path / "cut.pth", VIT_S)
    write_timm(tmp_path / "p16.pth", "vit_small_patch16_224")
    with pytest.raises(KitError, match=r"patch size 16 in the file, 14 in the model"):
        weights.load_backbone_weights(net, tmp_path / "p16.pth", VIT_S)
    write_torchvision(tmp_path / "resnet.pth")
    with pytest.raises(KitError, match=r"does not fit --backbone timm:vit_small_patch14_dinov2"):
        weights.load_backbone_weights(net, tmp_path / "resnet.pth", VIT_S)
    (tmp_path / "notes.txt").write_text("not weights")
    with pytest.raises(KitError, match=r"not a loadable weights file"):
        weights.load_backbone_weights(net, tmp_path / "notes.txt", VIT_S)
    torch.save([torch.zeros(3)], tmp_path / "list.pth")
    with pytest.raises(KitError, match=r"holds no state dict"):
        weights.load_backbone_weights(net, tmp_path / "list.pth", VIT_S)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # nothing was loaded in part


def test_settings_that_follow_from_the_backbone(files, tmp_path):
    with pytest.raises(KitError, match=r"downloads no timm weights.*--weights FILE.*--no-pretrained"):
        make_config(backbone=VIT_S)
    with pytest.raises(KitError, match=r"timm has no model 'vit_nonexistent'"):
        resolve(make_config(backbone="timm:vit_nonexistent", pretrained=False))
    with pytest.raises(KitError, match=r"--backbone must be one of resnet18, resnet34, resnet50 or timm:MODEL"):
        resolve(make_config(backbone="vgg16"))
    cfg = resolve(make_config("adabn", backbone=VIT_S, weights=str(files["S"][0])))  # AdaBN: resolved with the model
    assert (cfg.image_size, cfg.input_norm, cfg.backbone_lr_mult, cfg.adapt) == (224, "weights", 0.1, None)
    assert resolve(make_config(backbone=VIT_S, weights=str(files["S"][0]))).adapt == "own"  # the kit: no AdaBN
    assert resolve(make_config(backbone=VIT_S, pretrained=False)).image_size == 518  # timm's own input size
    assert resolve(make_config(backbone=VIT_S, weights=str(files["S"][0]), image_size=64)).image_size == 56
    assert resolve(make_config(image_size=64)).image_size == 64 and make_config().input_norm is None
    _, cfg, record = build_model(cfg)
    assert cfg.adapt == "source" and record["format"] == "DinoBloom (teacher)" and len(record["sha256"]) == 16
    with pytest.raises(KitError, match=r"--adapt adabn does nothing for timm:vit_small_patch14_dinov2: it has no BatchNorm"):
        build_model(resolve(make_config(backbone=VIT_S, weights=str(files["S"][0]), adapt="adabn", image_size=28)))
    with pytest.raises(KitError, match=r"--adapt adabn with --freeze-backbone"):
        build_model(make_config(freeze_backbone=True, adapt="adabn", pretrained=False))
    # the adabn recipe's treatment where the model has BatchNorm that learns, else its normalisation (the sources')
    assert build_model(make_config("adabn", freeze_backbone=True, pretrained=False))[1].adapt == "source"
    assert build_model(make_config("adabn", backbone="timm:convnext_atto", pretrained=False, image_size=32))[1].adapt == "source"
    assert build_model(make_config("adabn", backbone="timm:efficientnet_b0", pretrained=False, image_size=32))[1].adapt == "adabn"


def test_layer_wise_decay_scales_each_block_of_a_vit():
    model = MDDNet(11, 16, 16, backbone="timm:vit_small_patch14_dinov2", image_size=28, backbone_args={"depth": 3})
    groups = model.param_groups(0.01, 0.1, layer_decay=0.5, weight_decay=5e-4)
    by_param = {id(p): g for g in groups for p in g["params"]}
    lr = {n: by_param[id(p)]["lr"] for n, p in model.named_parameters()}
    # timm's groups: the embeddings, then one per block; the last block and the final norm at the backbone's rate
    assert lr["backbone.norm.weight"] == lr["backbone.blocks.2.attn.qkv.weight"] == pytest.approx(0.001)
    assert lr["backbone.blocks.1.attn.qkv.weight"] == pytest.approx(0.001 * 0.5)
    assert lr["backbone.blocks.0.attn.qkv.weight"] == pytest.approx(0.001 * 0.5**2)
    assert lr["backbone.patch_embed.proj.weight"] == lr["backbone.cls_token"] == pytest.approx(0.001 * 0.5**3)
    assert lr["head.0.weight"] == pytest.approx(0.01)
    assert by_param[id(model.backbone.norm.weight)]["weight_decay"] == 0.0  # timm: no decay on 1-d parameters
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    with pytest.raises(KitError, match=r"--layer-lr-decay needs a timm backbone"):
        MDDNet(11, 16, 16).param_groups(0.01, 0.1, layer_decay=0.5)


def test_the_resnets_are_torchvisions(tmp_path):
    for name, width in backbones.RESNETS.items():
        net, got = backbones.build(name, 32)
        assert got == width and net(torch.randn(2, 3, 32, 32)).shape == (2, width)
    assert dataclasses.replace(make_config(), backbone="resnet50").backbone == "resnet50"
    with pytest.raises(KitError, match=r"--timm-args is for timm models"):
        backbones.build("resnet18", 32, args={"depth": 1})
    assert backbones.parse_args("drop_path_rate=0.1,depth=1,global_pool=avg") == {
        "drop_path_rate": 0.1, "depth": 1, "global_pool": "avg"}
    with pytest.raises(KitError, match=r"key=value"):
        backbones.parse_args("depth")


def test_a_resnet_from_a_weights_file_downloads_nothing(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    expected = write_torchvision(tmp_path / "resnet18.pth", seed=5)
    cfg = make_config("adabn", weights=str(tmp_path / "resnet18.pth"))  # --pretrained is the default: the file replaces it
    model, cfg, record = build_model(resolve(cfg))
    assert cfg.backbone_lr_mult == 0.1 and cfg.adapt == "adabn" and record["format"] == "state dict"
    assert all(torch.equal(v, expected[k]) for k, v in model.backbone.state_dict().items())
    with pytest.raises(KitError, match=r"no weights file"):
        resolve(make_config(weights=str(tmp_path / "missing.pth")))
