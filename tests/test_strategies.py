"""Tests for the selection strategies: entropy, k-center greedy, selection rules, scoring end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from activedet import params
from activedet.data.coco import load_coco
from activedet.data.dataset import DetectionDataset
from activedet.models import build_model
from activedet.strategies import STRATEGIES, Strategy, build_strategy
from activedet.strategies.coreset import CoresetStrategy, k_center_greedy
from activedet.strategies.entropy import EntropyStrategy, aggregate, detection_entropy
from activedet.strategies.random import RandomStrategy


# ------------------------------------------------------------------ entropy
def brute_entropy(p: np.ndarray) -> np.ndarray:
    out = []
    for row in p:
        q = row / row.sum()
        out.append(-sum(v * math.log(v) for v in q if v > 0))
    return np.array(out)


@pytest.mark.parametrize("seed", range(5))
def test_detection_entropy_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n, c = int(rng.integers(1, 30)), int(rng.integers(1, 12))
    p = rng.uniform(0, 1, size=(n, c))
    p[rng.uniform(size=p.shape) < 0.2] = 0.0  # some exact zeros
    p[:, 0] += 1e-3  # no all-zero rows
    got = detection_entropy(torch.from_numpy(p)).numpy()
    assert got.shape == (n,)
    np.testing.assert_allclose(got, brute_entropy(p), rtol=1e-9, atol=1e-9)


def test_detection_entropy_known_values():
    p = torch.tensor([[0.3, 0.3, 0.3], [0.9, 0.0, 0.0], [0.2, 0.6, 0.0], [0.0, 0.0, 0.0]])
    e = detection_entropy(p)
    assert e[0].item() == pytest.approx(math.log(3))
    assert e[1].item() == pytest.approx(0.0, abs=1e-9)
    assert e[2].item() == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    assert torch.isfinite(e).all() and e[3].item() == 0.0
    assert detection_entropy(torch.zeros((0, 5))).shape == (0,)


def test_detection_entropy_scale_invariant():
    p = torch.rand(10, 4, generator=torch.Generator().manual_seed(0)) + 0.01
    assert torch.allclose(detection_entropy(p), detection_entropy(p * 0.1), atol=1e-6)


def test_aggregate():
    v = torch.tensor([0.5, 2.0, 1.0, 0.25])
    assert aggregate(v, "mean") == pytest.approx(0.9375)
    assert aggregate(v, "max") == pytest.approx(2.0)
    assert aggregate(v, "sum") == pytest.approx(3.75)
    for how in ("mean", "max", "sum"):
        assert aggregate(torch.zeros(0), how) == 0.0
        assert isinstance(aggregate(v, how), float)
    with pytest.raises(KeyError):
        aggregate(v, "median")


# ---------------------------------------------------------- k-center greedy
def brute_k_center(x: np.ndarray, is_center: np.ndarray, budget: int) -> list[int]:
    """The textbook algorithm, O(n^2) per pick, in float64."""
    n = len(x)

    def dist(i, j_or_point):
        q = x[j_or_point] if isinstance(j_or_point, int) else j_or_point
        return math.sqrt(sum((a - b) ** 2 for a, b in zip(x[i], q)))

    centers = [i for i in range(n) if is_center[i]]
    chosen: list[int] = []
    for _ in range(budget):
        best, best_d = None, -1.0
        for i in range(n):
            if i in centers or i in chosen:
                continue
            if centers or chosen:
                d = min(dist(i, c) for c in centers + chosen)
            else:
                d = dist(i, x.mean(0))
            if d > best_d:
                best, best_d = i, d
        chosen.append(best)
    return chosen


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("with_centers", [False, True])
def test_k_center_greedy_matches_brute_force(seed, with_centers):
    rng = np.random.default_rng(seed)
    n, dim = int(rng.integers(15, 60)), int(rng.integers(2, 8))
    x = rng.normal(size=(n, dim)) * rng.uniform(0.5, 3.0, size=dim)
    is_center = np.zeros(n, dtype=bool)
    if with_centers:
        is_center[rng.choice(n, size=int(rng.integers(1, n // 2)), replace=False)] = True
    budget = int(rng.integers(1, min(10, int((~is_center).sum())) + 1))
    got = k_center_greedy(torch.from_numpy(x).float(), torch.from_numpy(is_center), budget)
    assert got == brute_k_center(x, is_center, budget)
    assert len(set(got)) == budget
    assert not is_center[got].any()


def test_k_center_greedy_chunked_centres_agree():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(size=(40, 3))).float()
    is_center = torch.zeros(40, dtype=torch.bool)
    is_center[:13] = True
    assert k_center_greedy(x, is_center, 5, chunk=4) == k_center_greedy(x, is_center, 5)


@pytest.mark.parametrize("block", [1, 7, 52, 10 ** 6])
def test_k_center_greedy_row_blocks_agree_with_brute_force(block):
    # blocks of 1 row, rows not dividing the pool, a block of whole chunks, and one block: same picks,
    # Euclidean and CDAL's symmetric KL
    from activedet.strategies.cdal import symmetric_kl
    rng = np.random.default_rng(3)
    x = rng.normal(size=(45, 4))
    is_center = np.zeros(45, dtype=bool)
    is_center[rng.choice(45, size=17, replace=False)] = True
    got = k_center_greedy(torch.from_numpy(x), torch.from_numpy(is_center), 6, chunk=5, block=block)
    assert got == brute_k_center(x, is_center, 6)
    p = torch.from_numpy(rng.dirichlet(np.ones(5), size=45))
    kl = [k_center_greedy(p, torch.from_numpy(is_center), 6, chunk=c, distance=symmetric_kl, block=b)
          for c, b in ((5, block), (4096, 10 ** 9))]
    assert kl[0] == kl[1] and len(set(kl[0])) == 6


def test_k_center_greedy_obvious_case():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 3.0], [10.0, 10.0], [10.0, 12.0]])
    is_center = torch.tensor([True, False, False, False, False])
    # distances to the centre 0: 1, 3, 14.1, 15.6 -> pick 4; then 3 is only 2 from 4 -> pick 2 (3 from 0)
    assert k_center_greedy(x, is_center, 2) == [4, 2]
    assert k_center_greedy(x, is_center, 4) == [4, 2, 3, 1]


def test_k_center_greedy_without_centres_mean_is_not_a_centre():
    # P far right, R and R' up/down, ten points at (-2, 0) near the mean (-0.15, 0).
    x = torch.tensor([[10.0, 0.0], [4.0, 6.0], [4.0, -6.0]] + [[-2.0, 0.0]] * 10)
    got = k_center_greedy(x, torch.zeros(len(x), dtype=torch.bool), 2)
    assert got[0] == 0   # farthest from the mean
    # farthest from P (12 away), although close to the mean; R is only 8.5 from P
    assert got[1] == 3


# ------------------------------------------------------------- selection
def scores_frame(seed: int = 0, n: int = 30, n_labeled: int = 8, dim: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(1000, 1000 + 7 * n, 7))
    labeled = np.zeros(n, dtype=bool)
    labeled[rng.choice(n, n_labeled, replace=False)] = True
    score = rng.uniform(size=n)
    score[labeled] = np.nan
    df = pd.DataFrame({"image_id": ids, "labeled": labeled, "score": score})
    df["feature"] = [row for row in rng.normal(size=(n, dim)).astype(np.float32)]
    return df


@pytest.mark.parametrize("name", ["random", "entropy", "coreset"])
@pytest.mark.parametrize("budget", [1, 7, 22])
def test_select_returns_budget_distinct_unlabeled(name, budget):
    df = scores_frame()
    chosen = build_strategy(name, params.load(None)).select(df, budget, np.random.default_rng(0))
    assert len(chosen) == budget == len(set(chosen))
    assert all(isinstance(i, int) for i in chosen)
    unl = set(df.loc[~df["labeled"], "image_id"].tolist())
    assert set(chosen) <= unl


def test_entropy_select_is_top_scores():
    df = scores_frame()
    chosen = EntropyStrategy().select(df, 5, np.random.default_rng(0))
    unl = df[~df["labeled"]]
    assert chosen == unl.nlargest(5, "score")["image_id"].tolist()


def test_select_ties_broken_by_image_id():
    df = pd.DataFrame({"image_id": [50, 7, 30, 12, 99, 3],
                       "labeled": [False, False, False, False, False, True],
                       "score": [1.0, 1.0, 2.0, 1.0, 0.5, np.nan]})
    assert Strategy().select(df, 3, np.random.default_rng(0)) == [30, 7, 12]
    assert Strategy().select(df, 5, np.random.default_rng(0)) == [30, 7, 12, 50, 99]
    # the row order of the frame does not matter
    assert Strategy().select(df.iloc[::-1], 3, np.random.default_rng(0)) == [30, 7, 12]


def test_random_select_deterministic_for_seed():
    df = scores_frame()
    a = RandomStrategy().select(df, 10, np.random.default_rng(42))
    b = RandomStrategy().select(df, 10, np.random.default_rng(42))
    c = RandomStrategy().select(df, 10, np.random.default_rng(43))
    assert a == b and a != c
    # independent of row order
    assert RandomStrategy().select(df.iloc[::-1], 10, np.random.default_rng(42)) == a


def test_coreset_select_matches_k_center():
    df = scores_frame(seed=3)
    chosen = CoresetStrategy().select(df, 6, np.random.default_rng(0))
    x = np.stack(df["feature"].to_numpy()).astype(np.float64)
    picks = brute_k_center(x, df["labeled"].to_numpy(), 6)
    assert chosen == [int(df["image_id"].iloc[i]) for i in picks]


def test_registry():
    assert set(STRATEGIES) == {"random", "entropy", "coreset", "miaod", "ll4al", "cdal", "ebal", "mgral"}
    s = build_strategy("entropy", params.load({"strategies": {"entropy": {"aggregate": "max"}}}))
    assert isinstance(s, EntropyStrategy) and s.options["aggregate"] == "max"
    assert RandomStrategy.needs_model is False and EntropyStrategy.needs_model is True
    from activedet.io import InputError

    with pytest.raises(InputError, match="unknown strategy"):
        build_strategy("nope", params.load(None))


# ----------------------------------------------------------- end to end
@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def tiny_pool(tmp_path) -> DetectionDataset:
    rng = np.random.default_rng(0)
    images, anns = [], []
    for k in range(6):
        iid = 10 + k
        Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(tmp_path / f"{iid}.png")
        images.append({"id": iid, "file_name": f"{iid}.png", "width": 64, "height": 64})
        anns.append({"id": k + 1, "image_id": iid, "category_id": 1 + k % 3, "bbox": [4, 4, 20, 20]})
    data = {"images": images, "annotations": anns, "categories": [{"id": c, "name": str(c)} for c in (1, 2, 3)]}
    (tmp_path / "pool.json").write_text(json.dumps(data), encoding="utf-8")
    return DetectionDataset(load_coco(tmp_path / "pool.json"), tmp_path, input_size=(64, 64))


def tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model(params.load(None), num_classes=3)


LABELED = {11, 14}


def test_entropy_score_end_to_end(tiny_pool, one_thread):
    df = EntropyStrategy({"aggregate": "mean", "score_threshold": 0.05}).score(
        tiny_model(), tiny_pool, LABELED, torch.device("cpu"), batch_size=4)
    assert list(df.columns) == ["image_id", "labeled", "score"]
    assert len(df) == 6
    assert df["image_id"].tolist() == list(range(10, 16))
    assert df["labeled"].tolist() == [i in LABELED for i in range(10, 16)]
    assert df.loc[df["labeled"], "score"].isna().all()
    unl = df.loc[~df["labeled"], "score"]
    assert unl.notna().all() and (unl >= 0).all()
    # the untrained classifier's prior (0.01) is below the threshold: no detections, score 0
    assert (unl == 0).all()


def test_entropy_score_uniform_classifier(tiny_pool, one_thread):
    """With a zero classifier output layer every class probability is 0.5: each detection's entropy is ln 3."""
    model = tiny_model()
    torch.nn.init.zeros_(model.branches["cls"].out.bias)
    torch.nn.init.zeros_(model.branches["cls"].out.weight)
    frames = {how: EntropyStrategy({"aggregate": how}).score(model, tiny_pool, LABELED, torch.device("cpu"), 6)
              for how in ("mean", "max", "sum")}
    unl = ~frames["mean"]["labeled"]
    mean, mx, sm = (frames[h].loc[unl, "score"].to_numpy() for h in ("mean", "max", "sum"))
    np.testing.assert_allclose(mean, math.log(3), atol=1e-3)
    np.testing.assert_allclose(mx, math.log(3), atol=1e-3)
    assert (sm >= mx - 1e-9).all() and (sm > 1.0).all()  # several detections per image
    n_dets = sm / mean
    np.testing.assert_allclose(n_dets, np.round(n_dets), atol=1e-3)
    assert (np.round(n_dets) <= params.load(None)["detector"]["detections_per_image"]).all()
    assert frames["sum"].loc[~unl, "score"].isna().all()
    # scores above 1 are impossible for a probability: a threshold of 1.0 keeps no detection
    none = EntropyStrategy({"score_threshold": 1.0}).score(model, tiny_pool, LABELED, torch.device("cpu"), 6)
    assert (none.loc[unl, "score"] == 0).all()


def test_coreset_score_end_to_end(tiny_pool, one_thread):
    model = tiny_model()
    df = CoresetStrategy({"feature_levels": [0, 1, 2]}).score(model, tiny_pool, LABELED, torch.device("cpu"), 4)
    assert list(df.columns) == ["image_id", "labeled", "score", "feature"]
    assert len(df) == 6 and df["image_id"].tolist() == list(range(10, 16))
    assert df["labeled"].tolist() == [i in LABELED for i in range(10, 16)]
    assert df["score"].isna().all()
    feats = np.stack(df["feature"].to_numpy())
    assert feats.shape == (6, 3 * params.load(None)["detector"]["fpn_channels"])
    assert np.isfinite(feats).all()
    # the features are the global-average-pooled FPN levels of each image
    images = torch.stack([tiny_pool[i][0] for i in range(6)]).float() / 255.0
    with torch.no_grad():
        model.eval()
        fpn = model(images, branches=(), return_features=True)["features"]
    expected = torch.cat([f.mean(dim=(2, 3)) for f in fpn], dim=1).numpy()
    np.testing.assert_allclose(feats, expected, rtol=1e-4, atol=1e-5)
    # one level only
    df1 = CoresetStrategy({"feature_levels": [1]}).score(model, tiny_pool, LABELED, torch.device("cpu"), 4)
    assert np.stack(df1["feature"].to_numpy()).shape == (6, params.load(None)["detector"]["fpn_channels"])
    # and the selection from these scores
    chosen = CoresetStrategy().select(df, 3, np.random.default_rng(0))
    assert len(set(chosen)) == 3 and not set(chosen) & LABELED


def test_random_score_needs_no_model(tiny_pool):
    df = RandomStrategy().score(None, tiny_pool, LABELED, torch.device("cpu"), 4)
    assert list(df.columns) == ["image_id", "labeled", "score"]
    assert df["score"].isna().all() and df["labeled"].sum() == 2
    chosen = RandomStrategy().select(df, 4, np.random.default_rng(0))
    assert sorted(chosen) == chosen and set(chosen) == {10, 12, 13, 15}
