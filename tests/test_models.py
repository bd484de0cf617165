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


# --- postprocess: the fast path against the implementation it replaced ---------------------------------------

def reference_postprocess(model, cls_logits, reg, anchors, image_size):
    """The postprocess before issue 20 (top-k per image, then torchvision's ``batched_nms``, which on CPU
    loops over the image x class groups above 1,000 boxes), kept verbatim as the reference."""
    from torchvision.ops import batched_nms, clip_boxes_to_image

    cfg = model.postprocess_cfg
    score_threshold, nms_threshold = cfg["score_threshold"], cfg["nms_threshold"]
    B, A, C = cls_logits.shape
    scores = cls_logits.sigmoid().flatten(1)
    k = min(cfg["candidates_per_image"], A * C)
    top_scores, top_idx = scores.topk(k, dim=1)
    keep = top_scores > score_threshold
    img_idx = torch.arange(B, device=scores.device)[:, None].expand(B, k)[keep]
    flat, s = top_idx[keep], top_scores[keep]
    anchor_idx, labels = flat // C, flat % C
    boxes = model.box_coder.decode_single(reg[img_idx, anchor_idx], anchors[anchor_idx])
    boxes = clip_boxes_to_image(boxes, image_size)
    kept = batched_nms(boxes, s, img_idx * C + labels, nms_threshold)
    img_k = img_idx[kept]
    order = torch.sort(img_k, stable=True).indices
    kept, img_k = kept[order], img_k[order]
    counts = torch.bincount(img_k, minlength=B)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(kept), device=kept.device) - starts[img_k]
    kept = kept[rank < cfg["detections_per_image"]]
    per_image = torch.bincount(img_idx[kept], minlength=B).tolist()
    fields = {"boxes": boxes[kept], "scores": s[kept], "labels": labels[kept], "anchor_idx": anchor_idx[kept]}
    split = {name: v.split(per_image) for name, v in fields.items()}
    return [{name: split[name][i] for name in fields} for i in range(B)]


@pytest.fixture(scope="module")
def trained_outputs(tmp_path_factory):
    """Raw outputs of the default detector trained briefly on digit scenes, for 64 pool images."""
    from activedet.data.coco import load_coco
    from activedet.data.dataset import DetectionDataset, collate
    from activedet.data.digit_scenes import generate

    out = tmp_path_factory.mktemp("scenes")
    generate(out, seed=5, n_pool=96, n_test=1)
    ds = DetectionDataset(load_coco(out / "pool.json"), out / "pool" / "images")
    params = P.load(None)
    torch.manual_seed(0)
    model = build_model(params, len(ds.categories))
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9)
    model.train()
    for it in range(40):
        images, targets = collate([ds[(16 * it + i) % 32] for i in range(16)])
        out_ = model(images, branches=("cls", "reg"))
        loss = model.detection_loss(out_, ("cls",), model.anchors(images), targets, params["detector"])["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
    model.eval()
    images, _ = collate([ds[i] for i in range(32, 96)])
    with torch.no_grad():
        raw = model(images, branches=("cls", "reg"))
    return model, raw, model.anchors(images), tuple(images.shape[-2:])


@pytest.mark.parametrize("setting", [{}, {"score_threshold": 0.0}, {"score_threshold": 0.0, "candidates_per_image": 50},
                                     {"score_threshold": 0.02, "detections_per_image": 5}])
def test_postprocess_equals_the_reference_on_a_trained_detector(trained_outputs, setting):
    """Identical boxes, scores, labels and anchors (so every detection-based selection is unchanged), at the
    default thresholds and where the top-k, the NMS over 64 x 1,000 candidates and the per-image cap bind."""
    model, raw, anchors, size = trained_outputs
    saved = dict(model.postprocess_cfg)
    model.postprocess_cfg.update(setting)
    try:
        new = model.postprocess(raw["cls"], raw["reg"], anchors, size)
        ref = reference_postprocess(model, raw["cls"], raw["reg"], anchors, size)
    finally:
        model.postprocess_cfg = saved
    if setting.get("score_threshold") == 0.0:  # 64 x 1,000 (or 50) candidates: the top-k, NMS and (at 1,000) the per-image cap bind
        assert all(0 < len(d["scores"]) <= model.postprocess_cfg["detections_per_image"] for d in ref)
    for a, b in zip(new, ref):
        for key in ("boxes", "scores", "labels", "anchor_idx"):
            assert torch.equal(a[key], b[key]), key


def test_class_aware_nms_equals_torchvision_per_group():
    """The one-call NMS keeps, per group, exactly what torchvision's nms keeps on that group alone."""
    from torchvision.ops import nms

    from activedet.models.retinanet import class_aware_nms

    g = torch.Generator().manual_seed(0)
    n = 3000
    xy = torch.rand(n, 2, generator=g) * 60
    boxes = torch.cat([xy, xy + 4 + torch.rand(n, 2, generator=g) * 20], 1)
    scores = torch.rand(n, generator=g)
    groups = torch.randint(0, 200, (n,), generator=g)
    kept = class_aware_nms(boxes, scores, groups, 0.5)
    assert (scores[kept][:-1] >= scores[kept][1:]).all()
    for grp in range(200):
        idx = torch.nonzero(groups == grp).flatten()
        expected = idx[nms(boxes[idx], scores[idx], 0.5)]
        assert torch.equal(kept[groups[kept] == grp], expected)
    assert len(class_aware_nms(boxes[:0], scores[:0], groups[:0], 0.5)) == 0
