"""Baselines LL4AL, CDAL and EBAL: ranking loss by hand, LL4AL's gradient stop, CDAL's distance and
k-center selection against brute force, EBAL's ENMS and prototype selection on constructed detections,
tower features at anchors, selections of exactly b unlabeled images, and each strategy through the CLI."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from activedet import params as P
from activedet.models import build_model
from activedet.models.ll4al import LossPredictionModule, ranking_loss
from activedet.strategies import build_strategy
from activedet.strategies.cdal import contextual_vectors, symmetric_kl
from activedet.strategies.ebal import (
    binary_entropy, class_prototypes, divproto_select, entropy_nms, minority_quotas)

TINY_DET = {"channels": [8, 16, 16, 16], "fpn_channels": 16, "head_convs": 1, "head_channels": 16}


# ------------------------------------------------------------------ LL4AL
def test_ranking_loss_on_constructed_pairs():
    # pairs (0, 3) and (1, 2): the batch split in halves, i with B-1-i
    pred = torch.tensor([3.0, 0.5, 1.0, 2.0], requires_grad=True)
    target = torch.tensor([1.0, 4.0, 2.0, 0.0], requires_grad=True)
    # (0, 3): l0 > l3, so y = +1; pred diff 1 -> max(0, -1 + 1) = 0
    # (1, 2): l1 > l2, so y = +1; pred diff -0.5 -> max(0, 0.5 + 1) = 1.5
    loss = ranking_loss(pred, target, margin=1.0)
    assert loss.item() == pytest.approx(0.75)
    loss.backward()
    assert pred.grad.tolist() == pytest.approx([0.0, -0.5, 0.5, 0.0])
    assert target.grad is None  # the true losses are detached
    assert ranking_loss(pred, target, margin=0.5).item() == pytest.approx(0.5)
    # a tie counts as "not larger" (y = -1, as in the authors' code): max(0, (3 - 2) + 1) = 2
    assert ranking_loss(torch.tensor([3.0, 2.0]), torch.tensor([1.0, 1.0])).item() == pytest.approx(2.0)
    # odd batch: the middle image has no pair; one image alone gives zero
    assert ranking_loss(torch.tensor([3.0, 0.5, 9.0, 1.0, 2.0]), torch.tensor([1.0, 4.0, 7.0, 2.0, 0.0])).item() \
        == pytest.approx(0.75)
    assert ranking_loss(torch.tensor([1.0]), torch.tensor([2.0])).item() == 0.0


@pytest.mark.parametrize("seed", range(4))
def test_ranking_loss_matches_the_authors_formula(seed):
    g = torch.Generator().manual_seed(seed)
    pred, target = torch.randn(8, generator=g), torch.randn(8, generator=g)
    # LossPredLoss of the LL4AL code: differences with the flipped batch, first half, sign of clamp(target diff)
    d_in = (pred - pred.flip(0))[:4]
    d_t = (target - target.flip(0))[:4]
    one = 2 * torch.sign(torch.clamp(d_t, min=0)) - 1
    expected = torch.sum(torch.clamp(1.0 - one * d_in, min=0)) / 4
    assert ranking_loss(pred, target).item() == pytest.approx(expected.item())


def test_loss_prediction_module_is_pool_fc_relu_concat_fc():
    torch.manual_seed(0)
    m = LossPredictionModule([4, 6], hidden=3)
    feats = [torch.randn(2, 4, 5, 5), torch.randn(2, 6, 3, 2)]
    by_hand = []
    for b in range(2):
        h = []
        for fc, f in zip(m.level_fcs, feats):
            h += torch.relu(fc.weight @ f[b].mean(dim=(1, 2)) + fc.bias).tolist()
        by_hand.append((m.out.weight[0] @ torch.tensor(h) + m.out.bias[0]).item())
    assert m(feats).tolist() == pytest.approx(by_hand, abs=1e-6)
    # the paper's width 128 per level on a built LL4AL detector: one FC per FPN level ...
    model = build_model(P.load({"detector": TINY_DET}), 3, "ll4al")
    assert [(fc.in_features, fc.out_features) for fc in model.loss_module.level_fcs] == [(16, 128)] * 3
    assert model.loss_module.out.in_features == 3 * 128
    # ... or per SSD300 feature map, each of its own width (the LL4AL paper's detector)
    ssd = build_model(P.load({"detector": {"arch": "ssd300_vgg16"}, "dataset": {"input_size": [300, 300]}}), 3, "ll4al")
    assert [fc.in_features for fc in ssd.loss_module.level_fcs] == list(ssd.backbone.out_channels)


def _objective_grads(detach_after: float, iteration: int, total: int = 10):
    from activedet.engine.ll4al import LL4ALObjective
    from activedet.models.losses import detection_loss

    p = P.load({"detector": TINY_DET})
    torch.manual_seed(0)
    model = build_model(p, 3, "ll4al").train()
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    targets = [{"boxes": torch.tensor([[4.0, 4.0, 30.0 + 4 * i, 30.0]]), "labels": torch.tensor([i % 3])}
               for i in range(4)]
    out = model(images, branches=("cls", "reg"), return_features=True)
    losses = detection_loss([out["cls"]], out["reg"], model.anchors(images), targets, p["detector"], model.box_coder)
    objective = LL4ALObjective({"weight": 1.0, "margin": 1.0, "detach_after": detach_after})
    loss, stats = objective(model, out, losses, iteration, total)
    model.zero_grad(set_to_none=True)
    loss.backward()  # the module's term alone
    module = {id(q) for q in model.loss_module.parameters()}
    detector = {n: q.grad for n, q in model.named_parameters() if id(q) not in module}
    return detector, [q.grad for q in model.loss_module.parameters()], stats


def test_ll4al_gradient_reaches_the_detector_only_before_the_switch_point():
    # detach_after 0.5 of 10 iterations: iterations 0..4 train the backbone through the module, 5.. do not
    before, module_before, stats = _objective_grads(0.5, iteration=4)
    after, module_after, _ = _objective_grads(0.5, iteration=5)
    assert stats["loss_ranking"] > 0  # the module's loss was not zero, so "no gradient" means something
    assert any(g is not None and g.abs().sum() > 0 for n, g in before.items() if n.startswith("backbone."))
    assert all(g is None for g in after.values())
    assert all(g is None for n, g in before.items() if n.startswith("branches."))  # the module reads the neck only
    for grads in (module_before, module_after):
        assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


def _tiny_dataset(tmp_path_factory):
    from activedet.cli import main

    tiny = {"dataset": {"digit_scenes": {"n_pool": 40, "n_test": 12}}, "detector": TINY_DET,
            "train": {"epochs": 1, "min_iterations": 12, "batch_size": 8, "warmup_iterations": 2,
                      "checkpoint_every": 0},
            "device": "cpu", "num_threads": 1}
    out = tmp_path_factory.mktemp("data") / "ds"
    assert main(["make-dataset", "--params", json.dumps(tiny), "--out", str(out)]) == 0
    return tiny, out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _tiny_dataset(tmp_path_factory)


def _state(path):
    return torch.load(path, weights_only=True)["model"]


def test_ll4al_detector_trains_with_the_plain_recipe(tiny, tmp_path):
    """With the module's gradient stopped from the start the detector's weights are the plain detector's
    bit for bit (same seed, batches, schedule, clipping); with it never stopped they differ."""
    from activedet.data.coco import load_coco
    from activedet.data.dataset import DetectionDataset
    from activedet.engine.ll4al import train_ll4al
    from activedet.engine.train import train_detector

    params, data = tiny
    p = P.load(params)
    ds = DetectionDataset(load_coco(data / "pool.json"), data / "pool" / "images")
    train_detector(p, ds, tmp_path / "plain.pt", seed=3, log=lambda m: None)
    s0 = train_ll4al(p, ds, tmp_path / "stopped.pt", seed=3, log=lambda m: None,
                     options={"weight": 1.0, "margin": 1.0, "detach_after": 0.0})
    train_ll4al(p, ds, tmp_path / "joint.pt", seed=3, log=lambda m: None,
                options={"weight": 1.0, "margin": 1.0, "detach_after": 1.0})
    assert s0["detach_iteration"] == 0 and s0["iterations"] == 12
    plain, stopped, joint = (_state(tmp_path / f"{n}.pt") for n in ("plain", "stopped", "joint"))
    assert set(stopped) - set(plain) == {k for k in stopped if k.startswith("loss_module.")} != set()
    assert all(torch.equal(plain[k], stopped[k]) for k in plain)
    assert not all(torch.equal(plain[k], joint[k]) for k in plain if k.startswith("backbone."))
    ckpt = torch.load(tmp_path / "joint.pt", weights_only=True)
    assert ckpt["method"] == "ll4al" and "loss_ranking" in ckpt["history"][-1]
    assert "method" not in torch.load(tmp_path / "plain.pt", weights_only=True)  # plain checkpoints unchanged


def test_interrupted_ll4al_training_resumes_to_identical_weights(tiny, tmp_path, monkeypatch):
    """Killed after the state at iteration 5, before the switch point (7 of 12): the resumed run ends with
    the uninterrupted run's detector and module. A plain detector's state is never resumed by LL4AL."""
    from activedet.data.coco import load_coco
    from activedet.data.dataset import DetectionDataset
    from activedet.engine import train as train_mod
    from activedet.engine.ll4al import train_ll4al

    params, data = tiny
    p = P.load({**params, "train": {**params["train"], "checkpoint_every": 5}})
    ds = DetectionDataset(load_coco(data / "pool.json"), data / "pool" / "images")
    opts = p["strategies"]["ll4al"]
    assert train_ll4al(p, ds, tmp_path / "a.pt", seed=3, log=lambda m: None, options=opts)["detach_iteration"] == 7
    real_save = train_mod.save_checkpoint

    def save_then_die(path, ckpt):
        real_save(path, ckpt)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_die)
    state = tmp_path / "b.pt.resume"
    with pytest.raises(KeyboardInterrupt):
        train_ll4al(p, ds, tmp_path / "b.pt", seed=3, state_path=state, log=lambda m: None, options=opts)
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    logs = []
    train_ll4al(p, ds, tmp_path / "b.pt", seed=3, state_path=state, log=logs.append, options=opts)
    assert any("resumed" in m and "iteration 5" in m for m in logs)
    a, b = _state(tmp_path / "a.pt"), _state(tmp_path / "b.pt")
    assert any(k.startswith("loss_module.") for k in a) and all(torch.equal(a[k], b[k]) for k in a)

    plain_state = tmp_path / "c.pt.resume"
    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train_detector(p, ds, tmp_path / "plain.pt", seed=3, state_path=plain_state, log=lambda m: None)
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    logs = []
    train_ll4al(p, ds, tmp_path / "c.pt", seed=3, state_path=plain_state, log=logs.append, options=opts)
    assert not any("resumed" in m for m in logs)
    c = _state(tmp_path / "c.pt")
    assert all(torch.equal(a[k], c[k]) for k in a)


# ------------------------------------------------------------------ CDAL
def brute_kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q) if a > 0)


@pytest.mark.parametrize("seed", range(3))
def test_symmetric_kl_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.dirichlet(np.ones(5), size=6), rng.dirichlet(np.ones(5) * 0.5, size=4)
    got = symmetric_kl(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    expected = [[0.5 * brute_kl(a, b) + 0.5 * brute_kl(b, a) for b in y] for a in x]
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
    d = symmetric_kl(torch.from_numpy(x), torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.diag(d), 0.0, atol=1e-12)
    np.testing.assert_allclose(d, d.T, atol=1e-12)


def test_contextual_vectors_by_hand():
    # image 0: two detections; image 1: none (uniform); image 2: one detection of zero entropy
    probs = torch.tensor([[0.8, 0.2, 0.0], [0.3, 0.3, 0.3], [0.0, 0.9, 0.0]], dtype=torch.float64)
    image_idx = torch.tensor([0, 0, 2])
    v = contextual_vectors(probs, image_idx, 3)
    h1 = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2))
    h2 = math.log(3)
    expected0 = [(h1 * a + h2 * b) / (h1 + h2) for a, b in zip([0.8, 0.2, 0.0], [1 / 3] * 3)]
    assert v[0].tolist() == pytest.approx(expected0)
    assert v[1].tolist() == pytest.approx([1 / 3] * 3)
    assert v[2].tolist() == pytest.approx([0.0, 1.0, 0.0])
    assert v.sum(1).tolist() == pytest.approx([1.0] * 3)


def brute_k_center_kl(x: np.ndarray, labeled: np.ndarray, budget: int) -> list[int]:
    """k-center greedy written out with the symmetric KL of two distributions, O(n^2) per pick."""
    def d(a, b):
        return 0.5 * brute_kl(a, b) + 0.5 * brute_kl(b, a)

    centers = [i for i in range(len(x)) if labeled[i]]
    chosen: list[int] = []
    for _ in range(budget):
        best, best_d = None, -1.0
        for i in range(len(x)):
            if i in centers or i in chosen:
                continue
            di = min(d(x[i], x[c]) for c in centers + chosen) if centers or chosen else d(x[i], x.mean(0))
            if di > best_d:
                best, best_d = i, di
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("n_labeled", [0, 4])
def test_cdal_selection_matches_brute_force(seed, n_labeled):
    rng = np.random.default_rng(seed)
    n = 14
    x = rng.dirichlet(np.ones(4) * 0.7, size=n)
    labeled = np.zeros(n, dtype=bool)
    labeled[rng.choice(n, n_labeled, replace=False)] = True
    ids = rng.permutation(np.arange(100, 100 + 3 * n, 3))
    df = pd.DataFrame({"image_id": ids, "labeled": labeled, "score": np.nan, "feature": list(x)})
    chosen = build_strategy("cdal", P.load(None)).select(df, 5, np.random.default_rng(0))
    assert chosen == [int(ids[i]) for i in brute_k_center_kl(x, labeled, 5)]


# ------------------------------------------------------------------ EBAL
def test_binary_entropy():
    h = binary_entropy(torch.tensor([0.5, 0.0, 1.0, 0.2]))
    assert h.tolist() == pytest.approx([math.log(2), 0.0, 0.0, -(0.2 * math.log(0.2) + 0.8 * math.log(0.8))])


def unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def test_enms_on_constructed_detections():
    # Image 0 in entropy order: a (0.6, class 0, 0 deg) kept; b (0.5, class 0, 50 deg: cos 0.64 > 0.5 with a)
    # suppressed; d (0.4, class 1, 0 deg: a's feature but another class) kept; f (0.35, class 1, 0 deg) and
    # e (0.2, class 1, 30 deg: cos 0.87 with d) suppressed by d; c (0.3, class 0, 100 deg: cos -0.17 with a)
    # kept although it is close to b (cos 0.64): a suppressed detection suppresses nothing.
    # Image 1: its one detection, kept.
    #                        e    a    c    b    d    img1  f
    entropy = torch.tensor([0.2, 0.6, 0.3, 0.5, 0.4, 0.1, 0.35])
    labels = torch.tensor([1, 0, 0, 0, 1, 2, 1])
    feats = torch.tensor([unit(30), unit(0), unit(100), unit(50), unit(0), unit(0), unit(0)]) * 3.0
    image_idx = torch.tensor([0, 0, 0, 0, 0, 1, 0])
    keep = entropy_nms(entropy, labels, feats, image_idx, 2, threshold=0.5)
    assert keep.tolist() == [False, True, True, False, True, True, False]
    score = torch.zeros(2).index_add(0, image_idx[keep], entropy[keep])
    assert score.tolist() == pytest.approx([0.6 + 0.3 + 0.4, 0.1])
    # a threshold above every similarity keeps everything; below every one keeps one per class and image
    assert entropy_nms(entropy, labels, feats, image_idx, 2, threshold=1.01).all()
    assert entropy_nms(entropy, labels, feats, image_idx, 2, threshold=-1.01).tolist() == \
        [False, True, False, False, True, True, False]


def brute_enms(entropy, labels, feats, threshold):
    order = sorted(range(len(entropy)), key=lambda i: -entropy[i])  # stable: ties keep their order
    removed, kept = set(), []
    for i in order:
        if i in removed:
            continue
        kept.append(i)
        for j in order:
            if j not in removed and j != i and labels[j] == labels[i]:
                cos = np.dot(feats[i], feats[j]) / (np.linalg.norm(feats[i]) * np.linalg.norm(feats[j]))
                if cos > threshold:
                    removed.add(j)
    return sorted(kept)


@pytest.mark.parametrize("seed", range(5))
def test_batched_enms_matches_per_image_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_images = 4
    counts = rng.integers(0, 12, size=n_images)
    image_idx = np.repeat(np.arange(n_images), counts)
    rng.shuffle(image_idx)
    N = len(image_idx)
    entropy, labels = rng.uniform(0, 0.7, size=N), rng.integers(0, 3, size=N)
    feats = rng.normal(size=(N, 3))
    keep = entropy_nms(torch.from_numpy(entropy), torch.from_numpy(labels), torch.from_numpy(feats),
                       torch.from_numpy(image_idx), n_images, threshold=0.3).numpy()
    for b in range(n_images):
        idx = np.nonzero(image_idx == b)[0]
        expected = brute_enms(entropy[idx], labels[idx], feats[idx], 0.3)
        assert np.nonzero(keep[idx])[0].tolist() == expected


def test_class_prototypes_are_entropy_weighted_means():
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [1.0, 1.0]])
    entropy = torch.tensor([0.3, 0.1, 0.5, 0.0])
    labels = torch.tensor([0, 0, 1, 2])
    image_idx = torch.tensor([0, 0, 0, 1])
    protos, present = class_prototypes(feats, entropy, labels, image_idx, 2, 3)
    assert present.tolist() == [[True, True, False], [False, False, True]]
    w = np.array([0.3 * 1.0, 0.1 * 1.0])  # (0.3 * [1, 0] + 0.1 * [0, 1]) / 0.4, normalised
    assert protos[0, 0].tolist() == pytest.approx((w / np.linalg.norm(w)).tolist())
    assert protos[0, 1].tolist() == pytest.approx([2 ** -0.5] * 2)
    assert protos[1, 2].tolist() == pytest.approx([2 ** -0.5] * 2)  # zero entropy: the plain mean


def test_minority_quotas():
    counts = np.array([30, 2, 9, 2, 50, 7])
    # floor(0.5 * 6) = 3 classes with the fewest boxes (ties by index): 1, 3, 5; floor(0.75 * 20 / 3) = 5 each
    assert minority_quotas(counts, 20, 0.5, 0.75) == {1: 5, 3: 5, 5: 5}
    assert minority_quotas(counts, 2, 0.5, 0.75) == {}  # floor(0.5) = 0: no quota, no constraint
    assert minority_quotas(np.array([4]), 20, 0.5, 0.75) == {}  # one class: no minority


def test_divproto_walk_on_constructed_images():
    e0, e45, e90 = np.array(unit(0)), np.array(unit(45)), np.array(unit(90))
    # candidates in uncertainty order 0..5; class 2 is the minority class with quota 2
    # candidates in uncertainty order 0..5 with (classes, unit prototypes); class 2 is the minority class
    prototypes = [
        (np.array([0]), np.stack([e0])),            # 0
        (np.array([0]), np.stack([e0])),            # 1: class 0 as 0's (cos 1)
        (np.array([0, 1]), np.stack([e0, e90])),    # 2: class 0 as 0's, class 1 new until chosen
        (np.array([1]), np.stack([e90])),           # 3: class 1 as 2's
        (np.array([0]), np.stack([e45])),           # 4: class 0 at cos 45 deg = 0.71 >= 0.7 from 0's
        (np.array([1]), np.stack([e0])),            # 5: class 1 at cos 0 from 2's
    ]
    conf = np.zeros((6, 3))
    conf[0, 2], conf[2, 2], conf[5, 2] = 0.9, 0.2, 0.5
    conf[2, 0] = 0.8
    # quota 2: 0 taken (minority 0.9), 1 intra-rejected, 2 passes intra (class 1 new: min similarity -1) but
    # its minority confidence 0.2 <= 0.3, 3 has no minority class, 4 intra-rejected, 5 taken (0.5);
    # the walk ends with [0, 5] and the budget is filled by uncertainty: 1
    assert divproto_select(list(range(6)), prototypes, conf, {2: 2}, 3, 0.7, 0.3) == [0, 5, 1]
    # quota 1: spent by 0, then only intra applies: 2 taken, 3 rejected (class 1 as 2's), 4 rejected, 5 taken
    assert divproto_select(list(range(6)), prototypes, conf, {2: 1}, 3, 0.7, 0.3) == [0, 2, 5]
    # no minority quotas at all, budget 6: the walk keeps 0, 2, 5, the rest fills by uncertainty
    assert divproto_select(list(range(6)), prototypes, conf, {}, 6, 0.7, 0.3) == [0, 2, 5, 1, 3, 4]


def test_tower_features_sit_at_each_anchor():
    """The captured tower map at an anchor's location, through the branch's output conv, gives that
    anchor's classification logits: location and level of every anchor line up."""
    from activedet.models.taps import anchor_features, capture_tower_outputs

    torch.manual_seed(0)
    model = build_model(P.load({"detector": TINY_DET}), 3).eval()
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad(), capture_tower_outputs(model, "cls") as towers:
        out = model(images, branches=("cls", "reg"))
        maps = list(towers)
    assert len(maps) == len(out["level_sizes"]) and not model.branches["cls"].tower._forward_hooks
    A, C = model.num_anchors, model.num_classes
    anchors = torch.tensor([0, 1, 5, out["level_sizes"][0] - 1, out["level_sizes"][0], sum(out["level_sizes"]) - 1])
    image_idx = torch.tensor([0, 1, 1, 0, 1, 0])
    f = anchor_features(maps, image_idx, anchors, A)
    conv = model.branches["cls"].out
    for b, a, v in zip(image_idx.tolist(), anchors.tolist(), f):
        k = a % A  # the anchor's slot at its location: output channels k*C .. (k+1)*C of the output conv
        w, bias = conv.weight[k * C:(k + 1) * C], conv.bias[k * C:(k + 1) * C]
        level = int(np.searchsorted(np.cumsum(out["level_sizes"]), a, side="right"))
        start = sum(out["level_sizes"][:level])
        loc = (a - start) // A
        H, W = maps[level].shape[-2:]
        assert torch.equal(v, maps[level][b, :, loc // W, loc % W])
        logits = torch.nn.functional.conv2d(maps[level][b:b + 1], w, bias, padding=1)[0, :, loc // W, loc % W]
        assert torch.allclose(logits, out["cls"][b, a], atol=1e-5)


def test_ebal_options_fall_back_to_the_schema_defaults():
    """A checkpoint trained before EBAL existed has no strategies.ebal; select-images builds from its params."""
    from activedet.io import InputError
    from activedet.strategies.ebal import EBALStrategy

    assert EBALStrategy().options == P.load(None)["strategies"]["ebal"]
    assert EBALStrategy({"intra_threshold": 0.9}).options["intra_threshold"] == 0.9
    with pytest.raises(InputError, match="strategies.ebal.intra "):
        EBALStrategy({"intra": 0.9})


# ------------------------------------------------------------- selections
def scores_frame(name: str, seed: int = 0, n: int = 30, n_labeled: int = 8, C: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(1000, 1000 + 7 * n, 7))
    labeled = np.zeros(n, dtype=bool)
    labeled[rng.choice(n, n_labeled, replace=False)] = True
    df = pd.DataFrame({"image_id": ids, "labeled": labeled})
    if name == "cdal":
        df["score"] = np.nan
        df["feature"] = list(rng.dirichlet(np.ones(C), size=n))
        return df
    df["score"] = np.where(labeled, np.nan, rng.uniform(size=n))
    if name == "ebal":
        classes = [np.sort(rng.choice(C, rng.integers(0, 3), replace=False)) for _ in range(n)]
        df["proto_classes"] = classes
        df["prototypes"] = [rng.normal(size=(len(c), 5)).ravel() for c in classes]
        df["class_conf"] = list(rng.uniform(size=(n, C)))
        df["class_counts"] = list(rng.integers(0, 20, size=(n, C)) * labeled[:, None])
    return df


@pytest.mark.parametrize("name", ["ll4al", "cdal", "ebal"])
@pytest.mark.parametrize("budget", [1, 7, 22])
def test_select_returns_budget_distinct_unlabeled(name, budget, tmp_path):
    df = scores_frame(name)
    df.to_parquet(tmp_path / "s.parquet", index=False)  # the selection reads what the score step wrote
    df = pd.read_parquet(tmp_path / "s.parquet")
    chosen = build_strategy(name, P.load(None)).select(df, budget, np.random.default_rng(0))
    assert len(chosen) == budget == len(set(chosen))
    assert all(isinstance(i, int) for i in chosen)
    assert set(chosen) <= set(df.loc[~df["labeled"], "image_id"].tolist())
    if name == "ll4al":  # top predicted losses
        assert chosen == df[~df["labeled"]].nlargest(budget, "score")["image_id"].tolist()


# ----------------------------------------------------------- end to end
def test_each_baseline_through_the_cli(tiny, tmp_path):
    from activedet.cli import main

    params, data = tiny
    ps = json.dumps(params)
    images, pool = str(data / "pool" / "images"), str(data / "pool.json")
    run = tmp_path / "run"
    assert main(["init-split", "--params", ps, "--pool", pool, "--size", "10", "--seed", "0",
                 "--out", str(run / "labeled0.json")]) == 0
    labeled0 = json.loads((run / "labeled0.json").read_text())
    labeled_ids = {im["id"] for im in labeled0["images"]}
    assert main(["train", "--params", ps, "--images", images, "--labeled", str(run / "labeled0.json"),
                 "--out", str(run / "plain.pt")]) == 0
    assert main(["train-ll4al", "--params", ps, "--images", images, "--labeled", str(run / "labeled0.json"),
                 "--out", str(run / "ll4al.pt"), "--summary", str(run / "ll4al.json")]) == 0
    summary = json.loads((run / "ll4al.json").read_text())
    assert summary["iterations"] == 12 and summary["detach_iteration"] == round(0.6 * 12)
    # a strategy refuses a model of the other trainer
    assert main(["score", "--params", ps, "--strategy", "ll4al", "--model", str(run / "plain.pt"), "--images", images,
                 "--pool", pool, "--labeled", str(run / "labeled0.json"), "--out", str(run / "x.parquet")]) == 2
    for name, model in (("ll4al", "ll4al.pt"), ("cdal", "plain.pt"), ("ebal", "plain.pt")):
        scores = run / f"{name}.parquet"
        assert main(["score", "--params", ps, "--strategy", name, "--model", str(run / model), "--images", images,
                     "--pool", pool, "--labeled", str(run / "labeled0.json"), "--out", str(scores)]) == 0
        assert main(["select", "--params", ps, "--strategy", name, "--scores", str(scores), "--budget", "8",
                     "--seed", "0", "--cycle", "0", "--out", str(run / f"{name}.json")]) == 0
        assert main(["merge", "--params", ps, "--labeled", str(run / "labeled0.json"), "--selected",
                     str(run / f"{name}.json"), "--pool", pool, "--budget", "8",
                     "--out", str(run / f"{name}_labeled1.json")]) == 0
        selected = [s["image_id"] for s in json.loads((run / f"{name}.json").read_text())["selected"]]
        assert len(set(selected)) == 8 and not set(selected) & labeled_ids
        df = pd.read_parquet(scores)
        assert len(df) == 40 and set(df.loc[df["labeled"], "image_id"]) == labeled_ids
        if name == "ll4al":
            assert df.loc[~df["labeled"], "score"].notna().all()
            top = df[~df["labeled"]].sort_values("score", ascending=False)["image_id"].head(8)
            assert sorted(top) == sorted(selected)
        if name == "cdal":
            v = np.stack(df["feature"].to_numpy())
            assert v.shape == (40, 10) and np.allclose(v.sum(1), 1.0)
        if name == "ebal":
            assert (df.loc[~df["labeled"], "score"] >= 0).all()
            # the minority classes come from the labeled file's boxes; unlabeled images carry none
            counts = np.stack(df["class_counts"].to_numpy())
            cats = sorted(c["id"] for c in labeled0["categories"])
            expected = np.bincount([cats.index(a["category_id"]) for a in labeled0["annotations"]], minlength=10)
            assert (counts.sum(0) == expected).all() and (counts[~df["labeled"].to_numpy()] == 0).all()
