"""Tests of the embedded digit-scenes dataset generator."""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from activedet.data import digit_scenes as ds

SMALL = {"n_pool": 120, "n_test": 40}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("scenes_a")
    summary = ds.generate(out, seed=3, **SMALL)
    return out, summary


def _load(out: Path, split: str) -> dict:
    return json.loads((out / f"{split}.json").read_text(encoding="utf-8"))


def _png_bytes(out: Path, split: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / split / "images").glob("*.png"))}


def test_defaults_match_signature():
    sig = inspect.signature(ds.generate)
    for name in ("n_pool", "n_test", "image_size"):
        assert ds.DEFAULTS[name] == sig.parameters[name].default
    assert ds.DEFAULTS["imbalance"] == 20
    assert ds.DEFAULTS["max_objects"] == 5
    assert (ds.DEFAULTS["min_size"], ds.DEFAULTS["max_size"]) == (12, 30)


def test_deterministic_same_seed(small, tmp_path):
    out_a, summary_a = small
    out_b = tmp_path / "b"
    summary_b = ds.generate(out_b, seed=3, **SMALL)
    for split in ("pool", "test"):
        assert (out_a / f"{split}.json").read_bytes() == (out_b / f"{split}.json").read_bytes()
        a, b = _png_bytes(out_a, split), _png_bytes(out_b, split)
        assert len(a) == SMALL[f"n_{split}"]
        assert a == b
        assert summary_a[split] == summary_b[split]


def test_different_seed_differs(small, tmp_path):
    out_a, _ = small
    out_c = tmp_path / "c"
    ds.generate(out_c, seed=4, **SMALL)
    a, c = _png_bytes(out_a, "pool"), _png_bytes(out_c, "pool")
    assert a.keys() == c.keys()
    assert sum(a[k] != c[k] for k in a) > 0.9 * len(a)
    assert _load(out_a, "pool")["annotations"] != _load(out_c, "pool")["annotations"]


def test_prefix_stable(small, tmp_path):
    """Image i does not depend on the size of the split."""
    out_a, _ = small
    out_d = tmp_path / "d"
    ds.generate(out_d, seed=3, n_pool=30, n_test=5)
    a, d = _png_bytes(out_a, "pool"), _png_bytes(out_d, "pool")
    assert len(d) == 30
    assert all(a[k] == d[k] for k in d)


def test_rewrite_removes_stale_images(tmp_path):
    ds.generate(tmp_path, seed=1, n_pool=12, n_test=4)
    ds.generate(tmp_path, seed=1, n_pool=5, n_test=3)
    assert len(list((tmp_path / "pool" / "images").glob("*.png"))) == 5
    assert len(list((tmp_path / "test" / "images").glob("*.png"))) == 3
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("split", ["pool", "test"])
def test_annotations_valid(small, split):
    out, summary = small
    coco = _load(out, split)
    S = ds.DEFAULTS["image_size"]
    assert [c["id"] for c in coco["categories"]] == list(range(1, 11))
    assert [c["name"] for c in coco["categories"]] == [str(k) for k in range(10)]
    ids = [im["id"] for im in coco["images"]]
    assert len(ids) == len(set(ids)) == SMALL[f"n_{split}"]
    assert min(ids) == 1
    by_id = {im["id"]: im for im in coco["images"]}
    for im in coco["images"]:
        path = out / split / "images" / im["file_name"]
        assert path.is_file(), path
        assert "/" not in im["file_name"]
        with Image.open(path) as pil:
            assert pil.mode == "RGB"
            assert pil.size == (im["width"], im["height"]) == (S, S)
    ann_ids = [a["id"] for a in coco["annotations"]]
    assert len(ann_ids) == len(set(ann_ids))
    assert min(ann_ids) == 1
    assert len(coco["annotations"]) > SMALL[f"n_{split}"]  # about two objects per image
    for a in coco["annotations"]:
        assert a["image_id"] in by_id
        assert 1 <= a["category_id"] <= 10
        assert a["iscrowd"] == 0
        x, y, w, h = a["bbox"]
        assert all(isinstance(v, float) for v in a["bbox"])
        im = by_id[a["image_id"]]
        assert w > 0 and h > 0
        assert x >= 0 and y >= 0 and x + w <= im["width"] and y + h <= im["height"]
        assert a["area"] == pytest.approx(w * h)
        # boxes of the smallest digits still have a few pixels of ink
        assert max(w, h) >= 5
    assert summary[split]["annotations"] == len(coco["annotations"])
    assert summary[split]["images"] == len(coco["images"])


def test_objects_do_not_overlap_much(small):
    out, _ = small
    by_img: dict[int, list] = {}
    for a in _load(out, "pool")["annotations"]:
        x, y, w, h = a["bbox"]
        by_img.setdefault(a["image_id"], []).append((x, y, x + w, y + h))
    pairs = 0
    for boxes in by_img.values():
        for i, a in enumerate(boxes):
            for b in boxes[:i]:
                iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
                ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
                inter = iw * ih
                area_a = (a[2] - a[0]) * (a[3] - a[1])
                area_b = (b[2] - b[0]) * (b[3] - b[1])
                assert inter / (area_a + area_b - inter) <= ds.DEFAULTS["max_overlap"] + 1e-9
                assert inter / min(area_a, area_b) <= ds.DEFAULTS["max_object_cover"] + 1e-9
                pairs += 1
    assert pairs >= 20


def test_boxes_fit_the_ink(small):
    """Boxes are tight around the drawn digit, not the 8x8 cell: the pixels
    just inside the box differ from the image's ground more than those just outside."""
    out, _ = small
    coco = _load(out, "pool")
    by_img: dict[int, list] = {}
    for a in coco["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a["bbox"])
    inside, outside = [], []
    for im in coco["images"]:
        boxes = by_img.get(im["id"], [])
        if not boxes:
            continue
        arr = np.asarray(Image.open(out / "pool" / "images" / im["file_name"]), dtype=np.float64).mean(axis=2)
        ground = np.median(arr)
        for x, y, w, h in boxes:
            x0, y0, x1, y1 = int(x), int(y), int(x + w), int(y + h)
            # strongest ink on the box's outermost rows/columns
            edge = [arr[y0, x0:x1], arr[y1 - 1, x0:x1], arr[y0:y1, x0], arr[y0:y1, x1 - 1]]
            inside.append(min(np.abs(e - ground).max() for e in edge))
            # the ring two pixels outside the box
            ring = []
            if y0 >= 2:
                ring.append(arr[y0 - 2, x0:x1])
            if y1 + 1 < arr.shape[0]:
                ring.append(arr[y1 + 1, x0:x1])
            if x0 >= 2:
                ring.append(arr[y0:y1, x0 - 2])
            if x1 + 1 < arr.shape[1]:
                ring.append(arr[y0:y1, x1 + 1])
            if ring:
                outside.append(np.median(np.abs(np.concatenate(ring) - ground)))
    assert np.median(inside) > 2 * np.median(outside) + 5


def test_empty_and_crowded_images(small):
    out, summary = small
    coco = _load(out, "pool")
    per_image = {im["id"]: 0 for im in coco["images"]}
    for a in coco["annotations"]:
        per_image[a["image_id"]] += 1
    counts = np.array(list(per_image.values()))
    assert (counts == 0).sum() >= 3
    assert (counts >= 3).sum() >= 10
    assert counts.max() <= ds.DEFAULTS["max_objects"]
    assert summary["pool"]["empty_images"] == int((counts == 0).sum())


def test_sources_disjoint(small):
    out, _ = small
    pool, test = _load(out, "pool"), _load(out, "test")
    src_pool = set(pool["info"]["source_indices"])
    src_test = set(test["info"]["source_indices"])
    assert src_pool and src_test
    assert not src_pool & src_test
    assert len(src_pool | src_test) == 1797
    used_pool = {a["source_index"] for a in pool["annotations"]}
    used_test = {a["source_index"] for a in test["annotations"]}
    assert used_pool <= src_pool
    assert used_test <= src_test
    # the digit drawn is the one labelled
    _, labels = ds.load_source_digits()
    for a in pool["annotations"] + test["annotations"]:
        assert labels[a["source_index"]] + 1 == a["category_id"]
    assert pool["info"]["seed"] == 3 and pool["info"]["split"] == "pool"
    assert pool["info"]["params"]["imbalance"] == ds.DEFAULTS["imbalance"]


def test_class_frequencies():
    p = ds.class_frequencies(20.0)
    assert p.shape == (10,)
    assert p.sum() == pytest.approx(1.0)
    assert p.max() / p.min() == pytest.approx(20.0)
    ratios = np.sort(p)[::-1]
    assert np.allclose(ratios[:-1] / ratios[1:], 20.0 ** (1 / 9))
    assert np.array_equal(p, ds.class_frequencies(20.0))
    assert not np.array_equal(p, ds.class_frequencies(20.0, seed=1))
    assert np.allclose(ds.class_frequencies(1.0), 0.1)
    with pytest.raises(ValueError, match="imbalance"):
        ds.class_frequencies(0.5)


def _ranks(x: np.ndarray) -> np.ndarray:
    r = np.empty(len(x))
    r[np.argsort(x, kind="stable")] = np.arange(len(x))
    return r


def test_long_tail(tmp_path):
    imbalance = ds.DEFAULTS["imbalance"]
    summary = ds.generate(tmp_path, seed=0, n_pool=600, n_test=1, image_size=48, min_size=12, max_size=24)
    counts = np.array([summary["pool"]["class_counts"][str(k)] for k in range(10)], dtype=float)
    coco = _load(tmp_path, "pool")
    assert counts.sum() == len(coco["annotations"])
    probs = np.asarray(coco["info"]["class_probabilities"])
    assert np.allclose(probs, ds.class_frequencies(imbalance))
    assert counts.min() >= 1
    assert counts.max() / counts.min() >= imbalance / 3
    assert int(np.argmax(counts)) == int(np.argmax(probs))
    assert int(np.argmin(probs)) in set(np.argsort(counts)[:2].tolist())
    spearman = np.corrcoef(_ranks(counts), _ranks(probs))[0, 1]
    assert spearman >= 0.85


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"min_size": 31}, "min_size"),
        ({"max_size": 80}, "max_size"),
        ({"imbalance": 0.5}, "imbalance"),
        ({"p_empty": 1.5}, "p_empty"),
        ({"max_objects": 0}, "max_objects"),
        ({"max_overlap": -0.1}, "max_overlap"),
        ({"contrast_range": (0.9, 0.2)}, "contrast_range"),
        ({"noise_range": (0.0, 0.9)}, "noise_range"),
        ({"n_pool": -1}, "n_pool"),
        ({"image_size": 8}, "image_size"),
        ({"distractor_mean": "many"}, "distractor_mean"),
        ({"not_a_param": 1}, "not_a_param"),
    ],
)
def test_bad_parameter(tmp_path, kwargs, name):
    with pytest.raises(ValueError, match=name):
        ds.generate(tmp_path / "bad", seed=0, **kwargs)
    assert not (tmp_path / "bad").exists()
