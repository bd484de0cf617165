"""The paper-scale detectors on CPU: SSD300-VGG16 (softmax head, MultiBox loss) and RetinaNet-R50-FPN,
each with the MI-AOD branches; the SSD loss against torchvision's and hand computation."""
import math
from types import SimpleNamespace

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.ssd import SSD as TorchvisionSSD

from activedet import params as P
from activedet.engine.miaod import labeled_loss, unlabeled_loss
from activedet.io import InputError
from activedet.models import build_model
from activedet.models.losses import build_targets
from activedet.models.ssd import foreground_logits, multibox_loss, vgg16_layers

SSD_PARAMS = {"dataset": {"input_size": [300, 300]},
              "detector": {"arch": "ssd300_vgg16", "fg_iou_threshold": 0.5, "bg_iou_threshold": 0.5}}
R50_PARAMS = {"dataset": {"input_size": [128, 128]},
              "detector": {"arch": "resnet50_fpn", "fpn_channels": 64, "head_convs": 1, "head_channels": 64,
                           "anchor_sizes": [[32, 40, 50], [64, 80, 101], [128, 161, 203], [256, 322, 406],
                                            [512, 645, 812]], "aspect_ratios": [0.5, 1.0, 2.0]}}


# ------------------------------------------------------------------ foreground logits
def test_foreground_logits_are_the_logits_of_the_softmax_probabilities():
    x = torch.tensor([[0.0, 1.0, -2.0, 0.5],
                      [60.0, -40.0, 3.0, 0.0],     # background certain
                      [-30.0, 45.0, 0.0, -5.0],    # one class certain: p rounds to 1 in float32
                      [2.0, 2.0, 2.0, 2.0]], requires_grad=True)
    fg = foreground_logits(x)
    ref = torch.softmax(x.detach().double(), -1)[:, 1:]
    assert torch.allclose(torch.sigmoid(fg.double()), ref, atol=1e-6)
    # the logit itself is x_c - logsumexp of the other logits, exact even where p rounds to 1
    for i in range(4):
        for c in range(1, 4):
            others = torch.cat([x[i, :c], x[i, c + 1:]]).detach().double()
            assert fg[i, c - 1].item() == pytest.approx((x[i, c] - torch.logsumexp(others, 0)).item(), abs=1e-4)
    fg.sum().backward()
    assert torch.isfinite(x.grad).all()


# ------------------------------------------------------------------ MultiBox loss
def test_multibox_loss_by_hand_with_hard_negative_mining():
    # 1 image, 6 anchors: anchor 0 is the box (positive, class 1 -> label 2); anchors 1..5 are negatives.
    # 3:1 mining keeps the 3 negatives with the largest cross-entropy: anchors 2, 4, 5.
    anchors = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50],
                            [60, 60, 70, 70], [80, 80, 90, 90], [100, 100, 110, 110]])
    targets = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1])}]
    logits = torch.tensor([[[0.0, 0.5, 1.0],      # positive, target class index 2
                            [3.0, 0.0, 0.0],      # confident background: small CE
                            [0.0, 2.0, 0.0],      # hard
                            [2.0, 1.0, 0.0],
                            [0.0, 0.0, 1.5],      # hard
                            [0.0, 1.0, 1.0]]])    # hard
    reg = torch.zeros(1, 6, 4)
    reg[0, 0] = torch.tensor([0.5, -2.0, 0.0, 0.0])
    t = build_targets(anchors, targets, 2, 0.5, 0.5)
    out = multibox_loss([logits], reg, anchors, t, BoxCoder((10.0, 10.0, 5.0, 5.0)), 3)

    def ce(row, k):
        return -math.log(math.exp(row[k]) / sum(math.exp(v) for v in row))

    rows = logits[0].tolist()
    neg = sorted((ce(rows[a], 0) for a in range(1, 6)), reverse=True)[:3]
    assert out["loss_cls"].item() == pytest.approx(ce(rows[0], 2) + sum(neg), rel=1e-6)
    assert {a for a in range(1, 6) if ce(rows[a], 0) >= neg[-1]} == {2, 4, 5}
    # smooth L1 (beta 1) against zero target deltas: 0.5 * 0.5^2 + (2 - 0.5)
    assert out["loss_reg"].item() == pytest.approx(0.125 + 1.5, rel=1e-6)


def random_batch(seed, B=4, A=300, C=3, size=300.0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(A, 2, generator=g) * (size - 40)
    anchors = torch.cat([xy, xy + 10 + torch.rand(A, 2, generator=g) * 60], 1)
    targets = []
    for i in range(B):
        n = (0, 1, 3, 5)[i % 4]  # an image without boxes: no positives, no negatives
        bxy = torch.rand(n, 2, generator=g) * (size - 80)
        targets.append({"boxes": torch.cat([bxy, bxy + 15 + torch.rand(n, 2, generator=g) * 60], 1),
                        "labels": torch.randint(0, C, (n,), generator=g)})
    logits = torch.randn(B, A, C + 1, generator=g) * 2
    reg = torch.randn(B, A, 4, generator=g)
    return anchors, targets, logits, reg


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_multibox_loss_equals_torchvision_ssd_compute_loss(seed):
    anchors, targets, logits, reg = random_batch(seed)
    t = build_targets(anchors, targets, 3, 0.5, 0.5)
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    ours = multibox_loss([logits], reg, anchors, t, coder, 3)
    # torchvision's loss loops over images; labels 1..C with background 0, our matches as its matched_idxs
    ref_self = SimpleNamespace(box_coder=coder, neg_to_pos_ratio=3)
    tv_targets = [{"boxes": tg["boxes"], "labels": tg["labels"] + 1} for tg in targets]
    ref = TorchvisionSSD.compute_loss(ref_self, tv_targets, {"cls_logits": logits, "bbox_regression": reg},
                                      [anchors] * len(targets), list(t["matches"]))
    assert ours["loss_cls"].item() == pytest.approx(ref["classification"].item(), rel=1e-5)
    assert ours["loss_reg"].item() == pytest.approx(ref["bbox_regression"].item(), rel=1e-5)
    assert t["foreground"].sum() > 0


def test_multibox_two_classifiers_average_their_losses():
    anchors, targets, a, reg = random_batch(5)
    b = torch.randn_like(a)
    t = build_targets(anchors, targets, 3, 0.5, 0.5)
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    la, lb = (multibox_loss([x], reg, anchors, t, coder, 3)["loss_cls"] for x in (a, b))
    assert multibox_loss([a, b], reg, anchors, t, coder, 3)["loss_cls"].item() == pytest.approx(
        0.5 * (la + lb).item(), rel=1e-6)


# ------------------------------------------------------------------ SSD300 and R50 on one image
def one_image_forward_and_losses(params_override, size, num_classes=3):
    p = P.load(params_override)
    torch.manual_seed(0)
    model = build_model(p, num_classes, "miaod")
    model.train()
    images = torch.rand(1, 3, size, size)
    targets = [{"boxes": torch.tensor([[0.1, 0.15, 0.45, 0.7], [0.5, 0.5, 0.95, 0.9]]) * size,
                "labels": torch.tensor([0, 2])}]
    out = model(images)
    anchors = model.anchors(images)
    det = model.detection_loss(out, ("cls",), anchors, targets, p["detector"])
    loss = labeled_loss(model, out, images, targets, p, use_mil=True) \
        + unlabeled_loss(model, out, p["strategies"]["miaod"], maximize=False)
    loss.backward()
    return p, model, images, out, anchors, det, loss


def check_common(model, out, anchors, det, loss, num_classes=3):
    A = anchors.shape[0]
    assert sum(out["level_sizes"]) == A
    for name in ("cls", "cls2", "mil"):
        assert out[name].shape == (1, A, num_classes)
    assert out["reg"].shape == (1, A, 4)
    assert torch.isfinite(det["loss"]) and det["loss"] > 0 and torch.isfinite(loss)
    assert det["targets"]["foreground"].sum() >= 2  # each box has at least its best anchor
    for name in ("cls", "cls2", "reg", "mil"):  # the MI-AOD losses reach every branch
        grads = [p.grad for p in model.branches[name].parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())


def test_ssd300_vgg16_miaod_forward_and_losses_on_one_image():
    p, model, images, out, anchors, det, loss = one_image_forward_and_losses(SSD_PARAMS, 300)
    check_common(model, out, anchors, det, loss)
    assert anchors.shape == (8732, 4)
    assert out["level_sizes"] == [38 * 38 * 4, 19 * 19 * 6, 10 * 10 * 6, 5 * 5 * 6, 3 * 3 * 4, 1 * 1 * 4]
    # anchor order matches the head's flattening: level 0, location (y, x), box k -> centre ((x+.5)*8, (y+.5)*8)
    for y, x, k in [(0, 0, 0), (0, 1, 3), (5, 7, 2), (37, 37, 1)]:
        a = anchors[(y * 38 + x) * 4 + k]
        assert ((a[0] + a[2]) / 2).item() == pytest.approx((x + 0.5) * 8, abs=1e-3)
        assert ((a[1] + a[3]) / 2).item() == pytest.approx((y + 0.5) * 8, abs=1e-3)
    # classifiers: softmax over C+1 (background first); sigmoid of the output is the class probability
    raw = out["softmax_logits"]["cls"]
    assert raw.shape == (1, 8732, 4)
    assert torch.allclose(torch.sigmoid(out["cls"]), torch.softmax(raw, -1)[..., 1:], atol=1e-5)
    model.eval()
    with torch.no_grad():
        e = model(images, branches=("cls", "reg"))
        dets = model.postprocess(e["cls"], e["reg"], anchors, (300, 300))
    assert len(dets) == 1 and len(dets[0]["scores"]) <= p["detector"]["detections_per_image"]
    assert (dets[0]["scores"] <= 1).all() and (dets[0]["boxes"] >= 0).all() and (dets[0]["boxes"] <= 300).all()


def test_resnet50_fpn_miaod_forward_and_losses_on_one_small_image():
    p, model, images, out, anchors, det, loss = one_image_forward_and_losses(R50_PARAMS, 128)
    check_common(model, out, anchors, det, loss)
    assert len(out["level_sizes"]) == 5  # P3-P7
    assert anchors.shape[0] == 9 * sum(math.ceil(128 / s) ** 2 for s in (8, 16, 32, 64, 128))
    # stem and layer1 stay frozen
    assert all(p_.grad is None for n, p_ in model.backbone.body.body.named_parameters()
               if not n.startswith(("layer2", "layer3", "layer4")))


# ------------------------------------------------------------------ local backbone weights
def test_missing_backbone_weights_file_stops_with_its_name(tmp_path):
    missing = tmp_path / "nowhere" / "vgg16.pth"
    with pytest.raises(InputError, match=r"detector.backbone_weights: .*nowhere/vgg16.pth not found .*downloaded"):
        build_model(P.load({**SSD_PARAMS, "detector": {**SSD_PARAMS["detector"], "backbone_weights": str(missing)}}), 2)
    r50 = P.load({**R50_PARAMS, "detector": {**R50_PARAMS["detector"], "backbone_weights": str(missing)}})
    with pytest.raises(FileNotFoundError, match=r"nowhere/vgg16.pth not found"):
        build_model(r50, 2)


def test_vgg16_weights_are_read_from_a_local_file(tmp_path):
    torch.manual_seed(1)
    source = vgg16_layers(None)
    path = tmp_path / "vgg16.pth"
    torch.save({f"features.{k}": v for k, v in source.state_dict().items()}, path)  # torchvision vgg16 key names
    loaded = vgg16_layers(str(path))
    for (k, a), b in zip(source.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    bad = tmp_path / "not_vgg.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, bad)
    with pytest.raises(InputError, match="not_vgg.pth: not a VGG-16 state dict"):
        vgg16_layers(str(bad))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="garbage.pth: not a readable state dict"):
        vgg16_layers(str(garbage))
