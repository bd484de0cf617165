"""MI-AOD: each loss against hand computation on tiny tensors, the min/max steps' trainable sets,
pseudo labels, top-k image scores, and one cycle end to end."""
import math

import pytest
import torch

from activedet import params as P
from activedet.engine.miaod import phase_iterations, schedule, set_trainable, unlabeled_loss
from activedet.models import build_model
from activedet.models.miaod import (
    class_softmax, discrepancy, image_labels, image_scores, image_uncertainty, instance_uncertainty, level_index,
    mil_instance_scores, mil_loss, pseudo_image_labels, segment_softmax)

sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731

# 2 images, 2 levels (2 anchors + 1 anchor), 3 classes
LEVELS = [2, 1]
F1 = torch.tensor([[[0.0, 1.0, -1.0], [2.0, 0.0, 0.0], [-1.0, -1.0, 3.0]],
                   [[1.0, 1.0, 1.0], [0.0, -2.0, 0.5], [0.0, 0.0, 0.0]]])
F2 = torch.tensor([[[1.0, 1.0, 0.0], [0.0, 0.0, 0.0], [-1.0, 1.0, 1.0]],
                   [[-1.0, 1.0, 0.0], [0.0, 2.0, 0.5], [1.0, 0.0, -1.0]]])
FMIL = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 2.0]],
                     [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [3.0, 0.0, 0.0]]])


def softmax(v):
    e = [math.exp(x) for x in v]
    return [x / sum(e) for x in e]


def test_level_index_and_segment_softmax():
    assert level_index(LEVELS).tolist() == [0, 0, 1]
    x = torch.tensor([[1.0, 2.0, 5.0], [0.0, 0.0, -3.0]])
    out = segment_softmax(x, level_index(LEVELS), 2)
    assert out[0].tolist() == pytest.approx(softmax([1, 2]) + [1.0])
    assert out[1].tolist() == pytest.approx([0.5, 0.5, 1.0])


def hand_mil(b):
    """Eq. 5 as coded, by hand for image b: per level softmax over anchors of max_c σ((f1+f2)/2)."""
    inst = [max(sig((F1[b, a, c] + F2[b, a, c]).item() / 2) for c in range(3)) for a in range(3)]
    w = softmax(inst[:2]) + [1.0]
    return [[w[a] * p for p in softmax(FMIL[b, a].tolist())] for a in range(3)]


def test_mil_instance_and_image_scores_by_hand():
    y = mil_instance_scores(F1, F2, FMIL, LEVELS)
    for b in range(2):
        expected = hand_mil(b)
        assert y[b].tolist() == [pytest.approx(row) for row in expected]
        # image score: per level sum over anchors, max over levels, clamped
        lvl0 = [expected[0][c] + expected[1][c] for c in range(3)]
        lvl1 = expected[2]
        img = [min(max(max(lvl0[c], lvl1[c]), 1e-5), 1 - 1e-5) for c in range(3)]
        assert image_scores(y, LEVELS)[b].tolist() == pytest.approx(img)


def test_mil_weights_carry_no_gradient_into_the_instance_classifiers():
    f1, f2, fm = F1.clone().requires_grad_(), F2.clone().requires_grad_(), FMIL.clone().requires_grad_()
    image_scores(mil_instance_scores(f1, f2, fm, LEVELS), LEVELS).sum().backward()
    assert f1.grad is None and f2.grad is None and fm.grad is not None


def test_class_softmax_equals_softmax_over_classes_in_value_and_gradient():
    # the default head's shape: 16 images, 1344 anchors, 10 classes
    x = torch.randn(16, 1344, 10, generator=torch.Generator().manual_seed(0))
    g = torch.randn(16, 1344, 10, generator=torch.Generator().manual_seed(1))
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = class_softmax(a), b.softmax(dim=-1)
    torch.testing.assert_close(ya, yb, rtol=1e-6, atol=1e-7)
    (ya * g).sum().backward()
    (yb * g).sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7)


def test_single_class_mil_uses_sigmoid_and_still_learns():
    f = torch.zeros(1, 3, 1)
    fm = torch.tensor([[[0.0], [2.0], [-1.0]]], requires_grad=True)
    y = mil_instance_scores(f, f, fm, LEVELS)
    # weights 0.5, 0.5 on level 0 and 1.0 on level 1, times σ(f_mil) (a softmax over one class would be 1)
    assert y[0, :, 0].tolist() == pytest.approx([0.5 * sig(0), 0.5 * sig(2), sig(-1)])
    loss = mil_loss(image_scores(y, LEVELS), torch.ones(1, 1))
    loss.backward()
    assert fm.grad.abs().sum() > 0


def test_mil_loss_is_bce_and_masks_per_image():
    s = torch.tensor([[0.9, 0.2], [0.3, 0.6]])
    y = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    bce = lambda p, t: -(t * math.log(p) + (1 - t) * math.log(1 - p))  # noqa: E731
    img0 = (bce(0.9, 1) + bce(0.2, 0)) / 2
    img1 = (bce(0.3, 0) + bce(0.6, 0)) / 2
    assert mil_loss(s, y).item() == pytest.approx((img0 + img1) / 2)
    assert mil_loss(s, y, torch.tensor([True, False])).item() == pytest.approx(img0)
    assert mil_loss(s, y, torch.tensor([False, False])).item() == 0.0


def test_discrepancy_plain_weighted_and_max_form():
    lam = 0.5
    d = [[[abs(sig(F1[b, a, c].item()) - sig(F2[b, a, c].item())) for c in range(3)] for a in range(3)]
         for b in range(2)]
    plain = lam * sum(sum(row) / 3 for img in d for row in img)
    assert discrepancy(F1, F2, 1.0, lam).item() == pytest.approx(plain)
    w = mil_instance_scores(F1, F2, FMIL, LEVELS)
    weighted = lam * sum(sum(d[b][a][c] * w[b, a, c].item() for c in range(3)) / 3
                         for b in range(2) for a in range(3))
    assert discrepancy(F1, F2, w, lam).item() == pytest.approx(weighted)
    maxform = lam * sum(sum((1 - d[b][a][c]) * w[b, a, c].item() for c in range(3)) / 3
                        for b in range(2) for a in range(3))
    assert discrepancy(F1, F2, w, lam, maximize=True).item() == pytest.approx(maxform)
    # same gradient as the negated loss
    f1 = F1.clone().requires_grad_()
    discrepancy(f1, F2, w, lam, maximize=True).backward()
    g_max = f1.grad.clone()
    f1.grad = None
    (-discrepancy(f1, F2, w, lam)).backward()
    assert torch.allclose(g_max, f1.grad)


def test_pseudo_image_labels_eq10():
    f1 = torch.tensor([[[3.0, -3.0], [-3.0, -3.0]], [[-3.0, -3.0], [-3.0, 0.2]]])
    f2 = torch.tensor([[[1.0, -3.0], [-3.0, 0.0]], [[-3.0, -3.0], [-3.0, -0.1]]])
    # image 0: class 0 max (σ3+σ1)/2 ≈ 0.84 -> 1; class 1 max (σ(-3)+σ0)/2 ≈ 0.27 -> 0
    # image 1: class 1 max (σ0.2+σ-0.1)/2 ≈ 0.512 -> 1
    assert pseudo_image_labels(f1, f2).tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert image_labels([torch.tensor([2, 0, 2]), torch.tensor([], dtype=torch.long)], 3).tolist() == [
        [1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]


def test_topk_image_uncertainty_on_constructed_discrepancies():
    f1 = torch.zeros(2, 4, 2)
    f2 = torch.zeros(2, 4, 2)
    f1[0, :, 0] = torch.tensor([4.0, 2.0, 0.0, 1.0])  # image 0: discrepancies on class 0 only
    f1[1, 0, :] = 10.0
    u = instance_uncertainty(f1, f2, squared=True)
    by_hand = [[((sig(x) - 0.5) ** 2) / 2 for x in (4.0, 2.0, 0.0, 1.0)], [((sig(10) - 0.5) ** 2)] + [0.0] * 3]
    assert u.tolist() == [pytest.approx(r) for r in by_hand]
    assert instance_uncertainty(f1, f2, squared=False)[0, 0].item() == pytest.approx((sig(4) - 0.5) / 2)
    top2 = image_uncertainty(u, 2)
    assert top2[0].item() == pytest.approx((by_hand[0][0] + by_hand[0][1]) / 2)
    assert top2[1].item() == pytest.approx(by_hand[1][0] / 2)
    assert image_uncertainty(u, None)[0].item() == pytest.approx(sum(by_hand[0]) / 4)
    assert image_uncertainty(u, 1, "max").tolist() == pytest.approx([by_hand[0][0], by_hand[1][0]])


def test_schedule_and_phase_iterations():
    cfg = P.load(None)["strategies"]["miaod"]
    assert schedule(cfg) == ["label", "min", "max", "label", "min", "max", "label"]
    assert schedule({**cfg, "order": ["max", "min"]})[1:3] == ["max", "min"]
    assert schedule({**cfg, "iul": False}) == ["label"] * 7
    counts = phase_iterations(schedule(cfg), 130)
    assert counts == [30, 10, 10, 30, 10, 10, 30] and sum(phase_iterations(schedule(cfg), 131)) == 131
    assert phase_iterations(schedule(cfg), 190, label_units=5) == [50, 10, 10, 50, 10, 10, 50]  # SSD's 5:1:1


def _model():
    torch.manual_seed(0)
    p = P.load({"detector": {"channels": [8, 16, 16, 16], "fpn_channels": 16, "head_convs": 1,
                             "head_channels": 16}})
    return p, build_model(p, 3, "miaod")


@pytest.mark.parametrize("phase", ["max", "min"])
def test_only_the_right_parameters_change_in_min_and_max_steps(phase):
    p, model = _model()
    with torch.no_grad():  # confident instance classifiers, so the min step has pseudo labels to learn from
        model.branches["cls"].out.bias.fill_(2.0)
        model.branches["cls2"].out.bias.fill_(1.0)
    model.train()
    trainable = set_trainable(model, phase)
    before = {n: t.detach().clone() for n, t in model.named_parameters()}
    opt = torch.optim.SGD(trainable, lr=0.1)
    out = model(torch.rand(2, 3, 64, 64), branches=("cls", "cls2", "reg", "mil"))
    loss = unlabeled_loss(model, out, p["strategies"]["miaod"], maximize=phase == "max")
    if phase == "min":  # the min step also trains the regressor through the labeled loss; touch it here
        loss = loss + out["reg"].abs().mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    changed = {n for n, t in model.named_parameters() if not torch.equal(t, before[n])}
    instance = {n for n in before if n.startswith(("branches.cls.", "branches.cls2."))}
    if phase == "max":
        assert changed and changed <= instance
    else:
        assert changed and not (changed & instance)
        assert any(n.startswith("backbone.") for n in changed) and any(n.startswith("branches.mil.") for n in changed)


def test_instance_loss_mean_halves_and_sum_adds_the_two_focal_losses():
    from activedet.engine.miaod import head_outputs, labeled_loss
    from activedet.models.losses import detection_loss

    p, model = _model()
    images = torch.rand(2, 3, 64, 64)
    targets = [{"boxes": torch.tensor([[4.0, 4.0, 30.0, 30.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    out = head_outputs(model, images)
    anchors, det = model.anchors(images), p["detector"]
    one = {name: detection_loss([out[name]], out["reg"], anchors, targets, det, model.box_coder)
           for name in ("cls", "cls2")}
    fl1, fl2, reg = float(one["cls"]["loss_cls"]), float(one["cls2"]["loss_cls"]), float(one["cls"]["loss_reg"])
    assert fl1 != pytest.approx(fl2)  # independently initialised classifiers
    mean = float(labeled_loss(model, out, images, targets, p, use_mil=False, instance_loss="mean"))
    total = float(labeled_loss(model, out, images, targets, p, use_mil=False, instance_loss="sum"))
    assert mean == pytest.approx(0.5 * (fl1 + fl2) + reg, rel=1e-5)
    assert total == pytest.approx(fl1 + fl2 + reg, rel=1e-5)


def test_max_step_partial_graph_gives_the_same_loss_and_instance_gradients():
    from activedet.engine.miaod import head_outputs

    p, model = _model()
    model.train()
    set_trainable(model, "max")
    images = torch.rand(2, 3, 64, 64)
    grads = []
    for phase in ("label", "max"):  # "label": full graph; "max": backbone, f_r, f_mil without autograd
        model.zero_grad(set_to_none=True)
        out = head_outputs(model, images, phase)
        loss = unlabeled_loss(model, out, p["strategies"]["miaod"], maximize=True)
        loss.backward()
        grads.append((float(loss), {n: t.grad.clone() for n, t in model.named_parameters() if t.grad is not None}))
    (full_loss, full), (part_loss, part) = grads
    assert part_loss == pytest.approx(full_loss, rel=1e-6)
    assert set(part) == set(full) and all(n.startswith(("branches.cls.", "branches.cls2.")) for n in part)
    for n in full:
        assert torch.allclose(part[n], full[n], atol=1e-7)
    assert head_outputs(model, images, "max")["mil"].grad_fn is None


def test_steps_compute_only_the_branches_their_losses_read_with_unchanged_values():
    from activedet.engine.miaod import head_outputs, labeled_loss

    p, model = _model()
    model.train()
    images = torch.rand(2, 3, 64, 64)
    targets = [{"boxes": torch.tensor([[4.0, 4.0, 30.0, 30.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}]
    full = head_outputs(model, images)
    unl = head_outputs(model, images, "min", labeled=False)
    assert "reg" not in unl and {"cls", "cls2", "mil"} <= set(unl)
    cfg = p["strategies"]["miaod"]
    for maximize in (False, True):
        assert float(unlabeled_loss(model, unl, cfg, maximize)) == float(unlabeled_loss(model, full, cfg, maximize))
    no_mil = head_outputs(model, images, "max", use_mil=False)
    assert "mil" not in no_mil and {"cls", "cls2", "reg"} <= set(no_mil)
    assert float(labeled_loss(model, no_mil, images, targets, p, use_mil=False)) == \
        float(labeled_loss(model, full, images, targets, p, use_mil=False))


def test_miaod_detector_has_four_independent_branches():
    _, model = _model()
    assert set(model.branches) == {"cls", "cls2", "reg", "mil"}
    assert not torch.equal(model.branches["cls"].out.weight, model.branches["cls2"].out.weight)
    b = -math.log(99)
    for name in ("cls", "cls2", "mil"):
        assert model.branches[name].out.bias.detach().tolist() == pytest.approx([b] * len(model.branches[name].out.bias))
    assert model.branches["reg"].out.bias.abs().sum().item() == 0


def test_one_miaod_cycle_end_to_end_through_the_cli(tmp_path):
    import json

    from activedet.cli import main

    tiny = {"dataset": {"digit_scenes": {"n_pool": 40, "n_test": 12}},
            "detector": {"channels": [8, 16, 16, 16], "fpn_channels": 16, "head_convs": 1, "head_channels": 16},
            "train": {"epochs": 1, "min_iterations": 26, "batch_size": 4, "warmup_iterations": 2,
                      "checkpoint_every": 0},
            "device": "cpu", "num_threads": 1}
    ps = json.dumps(tiny)
    data, run = tmp_path / "ds", tmp_path / "run"
    assert main(["make-dataset", "--params", ps, "--out", str(data)]) == 0
    images, pool = str(data / "pool" / "images"), str(data / "pool.json")
    assert main(["init-split", "--params", ps, "--pool", pool, "--size", "10", "--seed", "0",
                 "--out", str(run / "labeled0.json")]) == 0
    assert main(["train-miaod", "--params", ps, "--images", images, "--labeled", str(run / "labeled0.json"),
                 "--pool", pool, "--out", str(run / "model.pt"), "--summary", str(run / "train.json")]) == 0
    summary = json.loads((run / "train.json").read_text())
    assert [p for p, _ in summary["phases"]] == ["label", "min", "max", "label", "min", "max", "label"]
    assert sum(n for _, n in summary["phases"]) == 26 and summary["n_unlabeled"] == 10
    ckpt = torch.load(run / "model.pt", weights_only=True)
    assert ckpt["method"] == "miaod" and any(k.startswith("branches.mil.") for k in ckpt["model"])
    assert main(["score", "--params", ps, "--strategy", "miaod", "--model", str(run / "model.pt"), "--images", images,
                 "--pool", pool, "--labeled", str(run / "labeled0.json"), "--out", str(run / "scores.parquet")]) == 0
    assert main(["select", "--params", ps, "--strategy", "miaod", "--scores", str(run / "scores.parquet"),
                 "--budget", "8", "--seed", "0", "--cycle", "0", "--out", str(run / "selected.json")]) == 0
    assert main(["merge", "--params", ps, "--labeled", str(run / "labeled0.json"), "--selected",
                 str(run / "selected.json"), "--pool", pool, "--budget", "8", "--out", str(run / "labeled1.json")]) == 0
    selected = [s["image_id"] for s in json.loads((run / "selected.json").read_text())["selected"]]
    labeled0 = {im["id"] for im in json.loads((run / "labeled0.json").read_text())["images"]}
    assert len(set(selected)) == 8 and not set(selected) & labeled0
    import pandas as pd

    scores = pd.read_parquet(run / "scores.parquet").set_index("image_id")
    top = scores[~scores["labeled"]].sort_values("score", ascending=False).index[:8]
    assert sorted(top) == sorted(selected)  # the top-8 uncertainty scores are chosen
    assert len(json.loads((run / "labeled1.json").read_text())["images"]) == 18


def test_resnet50_fpn_miaod_forward_and_losses_on_one_small_image():
    p = P.load({"detector": {"arch": "resnet50_fpn", "fpn_channels": 64, "head_convs": 1, "head_channels": 32,
                             "anchor_sizes": [[32], [64], [128], [256], [512]], "aspect_ratios": [0.5, 1.0, 2.0]}})
    torch.manual_seed(0)
    model = build_model(p, 3, "miaod").train()
    images = torch.rand(1, 3, 128, 128)
    out = model(images, branches=("cls", "cls2", "reg", "mil"))
    assert len(out["level_sizes"]) == 5  # P3-P7
    A = sum(out["level_sizes"])
    assert out["mil"].shape == (1, A, 3) and model.anchors(images).shape == (A, 4)
    from activedet.engine.miaod import labeled_loss

    targets = [{"boxes": torch.tensor([[10.0, 20.0, 70.0, 90.0]]), "labels": torch.tensor([1])}]
    loss = labeled_loss(model, out, images, targets, p, use_mil=True) + unlabeled_loss(
        model, out, p["strategies"]["miaod"], maximize=False)
    loss.backward()
    assert torch.isfinite(loss)
    # the paper's backbone freezes the stem and layer1 (and BatchNorm)
    assert not any(q.requires_grad for n, q in model.backbone.named_parameters() if ".layer1." in n or "conv1" in n
                   and "layer" not in n)


def test_scoring_with_a_model_of_the_wrong_trainer_is_refused(tmp_path):
    from activedet.io import InputError
    from activedet.strategies import build_strategy

    p = P.load(None)
    with pytest.raises(InputError, match="model.pt: a model trained by 'detector', but strategy miaod"):
        build_strategy("miaod", p).check_model({"method": "detector"}, "model.pt")
    with pytest.raises(InputError, match="trained by 'miaod', but strategy entropy"):
        build_strategy("entropy", p).check_model({"method": "miaod"}, "model.pt")
    build_strategy("entropy", p).check_model({}, "model.pt")  # older checkpoints: plain detector


def test_random_image_score_draws_from_seed_and_cycle_like_the_random_strategy(monkeypatch):
    """Table 1's random rows: the draw follows (seed, cycle), never the labeled set's size alone."""
    import numpy as np

    from activedet.engine import predict
    from activedet.strategies import build_strategy
    from activedet.strategies.random import RandomStrategy

    n, batch = 40, 8

    def fake_run_model(model, pool, device, batch_size, on_batch, **kw):  # discrepancies rising with the image id
        for start in range(0, n, batch):
            f1 = torch.arange(start, start + batch, dtype=torch.float32)[:, None, None].expand(-1, 5, 2) / n
            on_batch(None, None, {"cls": f1, "cls2": torch.zeros_like(f1)}, None)

    monkeypatch.setattr(predict, "run_model", fake_run_model)

    class Pool:
        records = [({"id": i}, None, None, None) for i in range(1, n + 1)]

    p = P.load(None)
    labeled = set(range(1, 11))
    strategy = build_strategy("miaod", {**p, "strategies": {**p["strategies"], "miaod": {
        **p["strategies"]["miaod"], "image_score": "random"}}})

    def picks(seed, cycle):
        scores = strategy.score(None, Pool(), labeled, "cpu", batch)
        return strategy.select(scores, 8, np.random.default_rng([seed, cycle]))

    a = picks(0, 0)
    assert a == picks(0, 0)  # same seed and cycle: same picks
    assert picks(1, 0) != a and picks(2, 0) != a and picks(0, 1) != a  # other seeds or cycles: other picks
    assert len(set(a)) == 8 and not set(a) & labeled
    scores = strategy.score(None, Pool(), labeled, "cpu", batch)
    assert a == RandomStrategy().select(scores, 8, np.random.default_rng([0, 0]))  # the random strategy's rule
    # the top-k score still ranks by uncertainty
    top = build_strategy("miaod", p).select(scores, 8, np.random.default_rng([0, 0]))
    assert top == list(range(n, n - 8, -1))


def test_uniform_weight_has_the_mil_weights_mass_and_matches_a_hand_computed_loss():
    """w = 1 (Table 1 without IUR, Table 3's w = 1 rows) at the MIL weights' mass: 1/(N_l·C) per anchor and class."""
    from activedet.engine.miaod import discrepancy_weight, uniform_weight

    w = uniform_weight(LEVELS, 3)
    assert w.shape == (1, 3, 1) and w.flatten().tolist() == pytest.approx([1 / 6, 1 / 6, 1 / 3])
    y = mil_instance_scores(F1, F2, FMIL, LEVELS)
    for b in range(2):  # per level, both weights sum to 1 over its anchors and classes
        assert [float(y[b, :2].sum()), float(y[b, 2:].sum())] == pytest.approx([1.0, 1.0])
    assert [float(w[0, :2].sum()) * 3, float(w[0, 2:].sum()) * 3] == pytest.approx([1.0, 1.0])
    cfg = {**P.load(None)["strategies"]["miaod"], "lambda": 0.5}
    out = {"cls": F1, "cls2": F2, "mil": FMIL, "level_sizes": LEVELS}
    d = [[[abs(sig(F1[b, a, c].item()) - sig(F2[b, a, c].item())) for c in range(3)] for a in range(3)]
         for b in range(2)]
    per_anchor = [1 / 6, 1 / 6, 1 / 3]
    by_hand = 0.5 * sum(sum(d[b][a]) / 3 * per_anchor[a] for b in range(2) for a in range(3)) / 2  # / batch
    for c in ({**cfg, "weight": "one"}, {**cfg, "iur": False}, {**cfg, "iur": False, "weight": "mil"}):
        assert float(unlabeled_loss(None, out, {**c, "iur_set": "none"}, maximize=False)) == pytest.approx(by_hand)
    raw = 0.5 * sum(sum(d[b][a]) / 3 for b in range(2) for a in range(3)) / 2
    for c in ({**cfg, "weight": "one_raw"}, {**cfg, "iur": False, "weight": "one_raw"}):
        assert discrepancy_weight(c, out, y) == 1.0
        assert float(unlabeled_loss(None, out, {**c, "iur_set": "none"}, maximize=False)) == pytest.approx(raw)
    # a discrepancy equal everywhere: the same loss under the uniform and the MIL weights (same mass per level)
    flat = {"cls": torch.full_like(F1, 1.0), "cls2": torch.full_like(F2, -1.0), "mil": FMIL, "level_sizes": LEVELS}
    y_flat = mil_instance_scores(flat["cls"], flat["cls2"], FMIL, LEVELS)
    assert float(discrepancy(flat["cls"], flat["cls2"], discrepancy_weight({**cfg, "weight": "one"}, flat, y_flat), 0.5)) \
        == pytest.approx(float(discrepancy(flat["cls"], flat["cls2"], y_flat, 0.5)))


def test_uniform_weight_loss_and_gradient_are_of_the_mil_weighted_size_on_the_untrained_detector():
    """The raw w = 1 is thousands of times the MIL-weighted loss (a change of λ's scale); the uniform one is not."""
    p, model = _model()
    model.train()
    images = torch.rand(2, 3, 64, 64)
    cfg = {**p["strategies"]["miaod"], "iur_set": "none"}
    size = {}
    for weight in ("mil", "one", "one_raw"):
        model.zero_grad(set_to_none=True)
        loss = unlabeled_loss(model, model(images, branches=("cls", "cls2", "mil")), {**cfg, "weight": weight},
                              maximize=False)
        loss.backward()
        grad = torch.cat([q.grad.flatten() for n, q in model.named_parameters()
                          if n.startswith(("branches.cls.", "branches.cls2.")) and q.grad is not None]).norm()
        size[weight] = (float(loss.detach()), float(grad))
    for i in (0, 1):
        assert 0.2 < size["one"][i] / size["mil"][i] < 5
        assert size["one_raw"][i] / size["mil"][i] > 100


def test_instance_loss_default_is_justified_by_the_paper_or_the_released_code_not_by_pool_labels():
    """The embedded default follows Eq. 1 (sum), the schema default the released code (mean); their stated
    reasons name those sources and no measurement on pool labels, which an active-learning run does not have."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    text = (root / "params.yaml").read_text().splitlines()
    i = next(k for k, line in enumerate(text) if line.strip().startswith("instance_loss:"))
    comment = " ".join(line.split("#", 1)[1] for line in text[i:i + 3] if "#" in line
                       and (line is text[i] or line.strip().startswith("#")))
    assert yaml.safe_load((root / "params.yaml").read_text())["strategies"]["miaod"]["instance_loss"] == "sum"
    assert "Eq. 1" in comment and "released code" in comment
    schema = yaml.safe_load((root / "src" / "activedet" / "params.schema.yaml").read_text())
    spec = schema["properties"]["strategies"]["properties"]["miaod"]["properties"]["instance_loss"]
    assert spec["default"] == "mean" and "released code" in spec["description"] and "Eq. 1" in spec["description"]
    for reason in (comment, spec["description"]):
        assert "pool" not in reason and "mAP" not in reason
