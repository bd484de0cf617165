"""Detector: batched matching vs torchvision, loss vs hand computation, training lowers the loss."""
import math

import pytest
import torch
from torchvision.models.detection._utils import BoxCoder, Matcher
from torchvision.ops import box_iou

from activedet import params as P
from activedet.models import build_model
from activedet.models.losses import build_targets, detection_loss, match_anchors

DET = P.load(None)["detector"]


def random_targets(n_images, seed=0, size=64):
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n_images):
        n = i % 4  # includes images without boxes
        xy = torch.rand(n, 2, generator=g) * (size - 24)
        wh = torch.rand(n, 2, generator=g) * 16 + 6
        out.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(0, 3, (n,), generator=g)})
    return out


def test_batched_matcher_equals_torchvision_matcher_per_image():
    model = build_model(P.load(None), 3)
    anchors = model.anchors(torch.zeros(1, 3, 64, 64))
    targets = random_targets(12)
    matches = match_anchors(anchors, [t["boxes"] for t in targets], 0.5, 0.4)
    ref = Matcher(0.5, 0.4, allow_low_quality_matches=True)
    for i, t in enumerate(targets):
        if len(t["boxes"]):
            assert torch.equal(matches[i], ref(box_iou(t["boxes"], anchors)))
        else:
            assert (matches[i] == -1).all()


def focal(p, y, alpha=0.25, gamma=2.0):
    pt = p if y else 1 - p
    a = alpha if y else 1 - alpha
    return -a * (1 - pt) ** gamma * math.log(pt)


def test_detection_loss_matches_hand_computation():
    # 3 anchors; image 0 has one box equal to anchor 0 (positive), anchor 1 overlaps at IoU 0.45
    # (ignored), anchor 2 is far (negative). Image 1 has no box: all anchors negative.
    anchors = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 4.5], [30, 30, 40, 40]])
    targets = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([1])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    logits = torch.tensor([[[0.5, -1.0], [2.0, 2.0], [-2.0, 0.0]],
                           [[0.0, 1.0], [-1.0, -1.0], [3.0, -3.0]]])
    reg = torch.zeros(2, 3, 4)
    reg[0, 0] = torch.tensor([0.1, -0.2, 0.3, 0.0])
    out = detection_loss([logits], reg, anchors, targets, DET, BoxCoder((1.0, 1.0, 1.0, 1.0)))
    s = torch.sigmoid(logits).tolist()
    # image 0: anchor 0 positive for class 1, anchor 1 ignored, anchor 2 negative
    img0 = focal(s[0][0][0], 0) + focal(s[0][0][1], 1) + focal(s[0][2][0], 0) + focal(s[0][2][1], 0)
    img1 = sum(focal(s[1][a][c], 0) for a in range(3) for c in range(2))
    n_pos = 1
    assert out["loss_cls"].item() == pytest.approx((img0 + img1) / n_pos, rel=1e-5)
    # the target deltas of a box equal to its anchor are 0, so L1 = sum |reg|
    assert out["loss_reg"].item() == pytest.approx(0.1 + 0.2 + 0.3, rel=1e-5)
    assert out["per_image"][0].item() == pytest.approx(img0 + 0.6, rel=1e-5)
    assert out["per_image"][1].item() == pytest.approx(img1, rel=1e-5)  # no positives: divided by 1


def test_two_classifiers_average_their_focal_losses():
    anchors = torch.tensor([[0.0, 0, 10, 10], [30, 30, 40, 40]])
    targets = [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([0])}]
    a, b = torch.randn(1, 2, 3), torch.randn(1, 2, 3)
    reg = torch.zeros(1, 2, 4)
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
    la = detection_loss([a], reg, anchors, targets, DET, coder)["loss_cls"]
    lb = detection_loss([b], reg, anchors, targets, DET, coder)["loss_cls"]
    lab = detection_loss([a, b], reg, anchors, targets, DET, coder)["loss_cls"]
    assert lab.item() == pytest.approx(0.5 * (la + lb).item(), rel=1e-6)


def test_targets_one_hot_on_foreground_only():
    anchors = torch.tensor([[0.0, 0, 10, 10], [30, 30, 40, 40]])
    t = build_targets(anchors, [{"boxes": torch.tensor([[0.0, 0, 10, 10]]), "labels": torch.tensor([2])}], 3,
                      0.5, 0.4)
    assert t["cls_target"][0, 0].tolist() == [0, 0, 1]
    assert t["cls_target"][0, 1].sum() == 0
    assert t["foreground"].tolist() == [[True, False]]


def test_a_few_training_iterations_lower_the_loss():
    torch.manual_seed(0)
    params = P.load(None)
    model = build_model(params, 3)
    images = torch.rand(8, 3, 64, 64)
    targets = random_targets(8, seed=1)
    for t in targets:  # paint the boxes so there is something to learn
        for (x1, y1, x2, y2), lab in zip(t["boxes"].round().long().tolist(), t["labels"].tolist()):
            images[:, lab, y1:y2, x1:x2] = 1.0
    anchors = model.anchors(images)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(30):
        out = model(images, branches=("cls", "reg"))
        loss = detection_loss([out["cls"]], out["reg"], anchors, targets, params["detector"], model.box_coder)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_head_outputs_and_postprocess_shapes():
    params = P.load(None)
    model = build_model(params, 3).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x, return_features=True)
    A = sum(out["level_sizes"])
    assert out["cls"].shape == (2, A, 3) and out["reg"].shape == (2, A, 4)
    assert len(out["features"]) == 3
    assert model.anchors(x).shape == (A, 4)
    # the prior bias makes every initial score about 0.01
    assert torch.sigmoid(out["cls"]).mean().item() == pytest.approx(0.01, abs=0.005)
    model.postprocess_cfg["score_threshold"] = 0.0
    model.postprocess_cfg["detections_per_image"] = 7
    dets = model.postprocess(out["cls"], out["reg"], model.anchors(x), (64, 64))
    assert len(dets) == 2
    for b, d in enumerate(dets):
        assert len(d["boxes"]) == 7
        assert (d["scores"][:-1] >= d["scores"][1:]).all()
        assert (d["boxes"] >= 0).all() and (d["boxes"] <= 64).all()
        # each detection's score is its anchor's sigmoid output for its label
        expected = torch.sigmoid(out["cls"][b, d["anchor_idx"], d["labels"]])
        assert torch.allclose(d["scores"], expected)


def test_extra_branches_attach_without_changing_the_detector():
    params = P.load(None)
    torch.manual_seed(0)
    model = build_model(params, 3)
    from activedet.models.retinanet import build_detector, classifier_bias

    torch.manual_seed(0)
    extra = build_detector(params["detector"], 3, {"cls2": (3, classifier_bias()), "mil": (3, classifier_bias())})
    x = torch.rand(1, 3, 64, 64)
    out = extra(x)
    assert set(out) >= {"cls", "reg", "cls2", "mil"}
    assert out["cls2"].shape == out["cls"].shape
    # f1 and f2 are initialised independently
    assert not torch.equal(extra.branches["cls"].out.weight, extra.branches["cls2"].out.weight)
    assert set(model.state_dict()) <= set(extra.state_dict())
