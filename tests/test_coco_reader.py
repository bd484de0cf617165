"""Tests for the COCO reader: validation errors naming file and id, resizing, letterbox, flips."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from activedet.data.coco import CocoData, check_file_name, load_coco, validate_coco
from activedet.data.dataset import DetectionDataset, augment_batch, collate
from activedet.io import InputError, read_json


# ----------------------------------------------------------------- helpers
def write_png(path: Path, width: int, height: int, seed: int = 0) -> np.ndarray:
    arr = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr


def coco_dict(images=None, annotations=None, categories=None) -> dict:
    if images is None:
        images = [{"id": 1, "file_name": "a.png", "width": 32, "height": 48},
                  {"id": 2, "file_name": "b.png", "width": 40, "height": 40}]
    if annotations is None:
        annotations = [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [2, 4, 10, 12]},
                       {"id": 11, "image_id": 1, "category_id": 2, "bbox": [0, 0, 32, 48]},
                       {"id": 12, "image_id": 2, "category_id": 2, "bbox": [5, 5, 20, 10]}]
    if categories is None:
        categories = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_dataset(tmp_path: Path, data: dict, name: str = "ann.json", images: bool = True) -> Path:
    """COCO JSON plus a PNG per image entry of the declared size."""
    if images:
        for k, im in enumerate(data["images"]):
            write_png(tmp_path / "images" / im["file_name"], int(im["width"]), int(im["height"]), seed=k)
    p = tmp_path / name
    p.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return p


def expect_error(data: dict, *fragments, path="x.json", **kw):
    with pytest.raises(InputError) as e:
        validate_coco(data, path, **kw)
    msg = str(e.value)
    assert path in msg, msg
    for f in fragments:
        assert f in msg, msg
    return msg


# ------------------------------------------------------------- valid files
def test_valid_file_loads(tmp_path):
    p = write_dataset(tmp_path, coco_dict())
    coco = load_coco(p)
    assert isinstance(coco, CocoData)
    assert coco.image_ids == [1, 2]
    assert [c["id"] for c in coco.categories] == [1, 2]
    assert len(coco.annotations) == 3
    a = coco.annotations[0]
    assert a["bbox"] == [2.0, 4.0, 10.0, 12.0]
    assert a["area"] == 120.0 and a["iscrowd"] == 0
    by = coco.annotations_by_image()
    assert [x["id"] for x in by[1]] == [10, 11] and [x["id"] for x in by[2]] == [12]


def test_validate_does_not_mutate_input():
    data = coco_dict()
    before = copy.deepcopy(data)
    validate_coco(data, "x.json")
    assert data == before


def test_annotations_without_ids_get_unique_ids():
    data = coco_dict()
    for a in data["annotations"][1:]:
        del a["id"]
    coco, _ = validate_coco(data, "x.json")
    ids = [a["id"] for a in coco.annotations]
    assert len(set(ids)) == 3 and ids[0] == 10


def test_image_without_annotations_is_valid(tmp_path):
    data = coco_dict(images=[{"id": 1, "file_name": "a.png", "width": 32, "height": 48},
                             {"id": 7, "file_name": "empty.png", "width": 20, "height": 20}],
                     annotations=[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}])
    p = write_dataset(tmp_path, data)
    coco = load_coco(p)
    ds = DetectionDataset(coco, tmp_path / "images", input_size=(64, 64))
    img, t = ds[1]
    assert t["image_id"] == 7
    assert t["boxes"].shape == (0, 4) and t["labels"].shape == (0,)
    assert img.shape == (3, 64, 64)


def test_empty_annotations_list_is_valid():
    coco, warnings = validate_coco(coco_dict(annotations=[]), "x.json")
    assert coco.annotations == [] and warnings == []


def test_unicode_file_names(tmp_path):
    data = coco_dict(images=[{"id": 1, "file_name": "schöne Bilder/猫 ü.png", "width": 16, "height": 16}],
                     annotations=[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4]}],
                     categories=[{"id": 1, "name": "Kätzchen"}])
    p = write_dataset(tmp_path, data, name="annotations ü.json")
    coco = load_coco(p)
    ds = DetectionDataset(coco, tmp_path / "images", input_size=(16, 16))
    img, t = ds[0]
    expected = np.array(Image.open(tmp_path / "images" / "schöne Bilder" / "猫 ü.png").convert("RGB"))
    assert torch.equal(img, torch.from_numpy(expected).permute(2, 0, 1))
    assert ds.categories[0]["name"] == "Kätzchen"


# ------------------------------------------------------------ resizing
def test_boxes_scaled_by_input_size(tmp_path):
    p = write_dataset(tmp_path, coco_dict())
    ds = DetectionDataset(load_coco(p), tmp_path / "images", input_size=(64, 64))
    img, t = ds[0]  # 32 wide, 48 high -> 64x64: sx = 2, sy = 4/3
    assert img.dtype == torch.uint8 and img.shape == (3, 64, 64)
    assert t["scale"] == pytest.approx((2.0, 4 / 3))
    assert t["orig_size"] == (48, 32)
    # [2, 4, 10, 12] xywh -> xyxy [2, 4, 12, 16] -> scaled
    expected = torch.tensor([[2 * 2, 4 * 4 / 3, 12 * 2, 16 * 4 / 3], [0, 0, 64, 64]])
    assert torch.allclose(t["boxes"], expected, atol=1e-4)
    assert t["labels"].tolist() == [0, 1]
    assert t["difficult"].tolist() == [False, False]


def test_non_square_input_size(tmp_path):
    p = write_dataset(tmp_path, coco_dict())
    ds = DetectionDataset(load_coco(p), tmp_path / "images", input_size=(32, 80))  # H=32, W=80
    img, t = ds[1]  # 40x40 -> sx = 2, sy = 0.8
    assert img.shape == (3, 32, 80)
    assert t["scale"] == pytest.approx((2.0, 0.8))
    assert torch.allclose(t["boxes"], torch.tensor([[10.0, 4.0, 50.0, 12.0]]), atol=1e-4)


def test_keep_ratio_letterbox(tmp_path):
    p = write_dataset(tmp_path, coco_dict())
    ds = DetectionDataset(load_coco(p), tmp_path / "images", input_size=(64, 64), keep_ratio=True)
    img, t = ds[0]  # 32x48: s = min(2, 4/3) = 4/3; content 43x64, padding on the right
    s = 4 / 3
    assert t["scale"] == pytest.approx((s, s))
    assert torch.allclose(t["boxes"], torch.tensor([[2 * s, 4 * s, 12 * s, 16 * s], [0, 0, 32 * s, 64]]), atol=1e-4)
    assert img.shape == (3, 64, 64)
    assert int(img[:, :, 43:].abs().sum()) == 0  # right padding is black
    assert int(img[:, :, :43].sum()) > 0
    original = Image.open(tmp_path / "images" / "a.png").convert("RGB").resize((43, 64), Image.BILINEAR)
    assert torch.equal(img[:, :, :43], torch.from_numpy(np.array(original)).permute(2, 0, 1))


def test_keep_ratio_pads_bottom(tmp_path):
    data = coco_dict(images=[{"id": 1, "file_name": "w.png", "width": 64, "height": 32}],
                     annotations=[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 64, 32]}])
    p = write_dataset(tmp_path, data)
    ds = DetectionDataset(load_coco(p), tmp_path / "images", input_size=(64, 64), keep_ratio=True)
    img, t = ds[0]
    assert t["scale"] == (1.0, 1.0)
    assert int(img[:, 32:, :].sum()) == 0
    assert torch.allclose(t["boxes"], torch.tensor([[0.0, 0.0, 64.0, 32.0]]))


def test_uncached_equals_cached(tmp_path):
    p = write_dataset(tmp_path, coco_dict())
    coco = load_coco(p)
    a = DetectionDataset(coco, tmp_path / "images", cache=True)
    b = DetectionDataset(coco, tmp_path / "images", cache=False)
    for i in range(len(a)):
        assert torch.equal(a[i][0], b[i][0])
        assert torch.equal(a[i][1]["boxes"], b[i][1]["boxes"])


def test_labels_contiguous_in_category_id_order(tmp_path):
    data = coco_dict(categories=[{"id": 2, "name": "dog"}, {"id": 1, "name": "cat"}])
    p = write_dataset(tmp_path, data)
    ds = DetectionDataset(load_coco(p), tmp_path / "images")
    assert [c["name"] for c in ds.categories] == ["cat", "dog"]
    assert ds[0][1]["labels"].tolist() == [0, 1]


def test_category_not_among_model_classes(tmp_path):
    p = write_dataset(tmp_path, coco_dict())
    with pytest.raises(InputError, match=str(p)):
        DetectionDataset(load_coco(p), tmp_path / "images", categories=[{"id": 1, "name": "cat"}])


def test_collate():
    p_imgs = [torch.full((3, 4, 4), 255, dtype=torch.uint8), torch.zeros((3, 4, 4), dtype=torch.uint8)]
    images, targets = collate([(p_imgs[0], {"a": 1}), (p_imgs[1], {"a": 2})])
    assert images.dtype == torch.float32 and images.shape == (2, 3, 4, 4)
    assert images[0].max() == 1.0 and images[1].max() == 0.0
    assert targets == [{"a": 1}, {"a": 2}]


# ---------------------------------------------------------- validation errors
def test_unknown_image_id():
    data = coco_dict()
    data["annotations"][1]["image_id"] = 99
    expect_error(data, "annotation id 11", "unknown image id 99")


def test_unknown_category_id():
    data = coco_dict()
    data["annotations"][2]["category_id"] = 5
    expect_error(data, "annotation id 12", "unknown category id 5")


@pytest.mark.parametrize("bbox", [[1, 1, 0, 5], [1, 1, 5, 0], [1, 1, -3, 5], [1, 1, 5, -0.5]])
def test_zero_or_negative_box_size(bbox):
    data = coco_dict()
    data["annotations"][0]["bbox"] = bbox
    expect_error(data, "annotation id 10", "zero or negative size")


@pytest.mark.parametrize("bbox", [[1, 1, 5], "1 1 5 5", [1, 1, 5, float("nan")], [1, 1, True, 5]])
def test_malformed_bbox(bbox):
    data = coco_dict()
    data["annotations"][0]["bbox"] = bbox
    expect_error(data, "annotation id 10", "bbox")


@pytest.mark.parametrize("bbox", [[20, 40, 20, 5], [-3, 2, 5, 5], [1, 1, 10, 60]])
def test_box_outside_error(bbox):
    data = coco_dict()
    data["annotations"][0]["bbox"] = bbox  # image 1 is 32x48
    expect_error(data, "annotation id 10", "outside image 1", on_box_outside="error")


def test_box_outside_clipped_with_warning(tmp_path, capsys):
    data = coco_dict()
    data["annotations"][0]["bbox"] = [20, 40, 20, 20]  # x2 = 40 > 32, y2 = 60 > 48
    data["annotations"][2]["bbox"] = [-5, -2, 10, 10]
    coco, warnings = validate_coco(data, "x.json", on_box_outside="clip")
    assert coco.annotations[0]["bbox"] == [20.0, 40.0, 12.0, 8.0]
    assert coco.annotations[2]["bbox"] == [0.0, 0.0, 5.0, 8.0]
    assert len(warnings) == 2
    assert "x.json" in warnings[0] and "annotation id 10" in warnings[0] and "clipped" in warnings[0]
    assert "annotation id 12" in warnings[1]
    # load_coco reports the warnings
    p = write_dataset(tmp_path, data, images=False)
    coco2 = load_coco(p)
    out = capsys.readouterr().out
    assert "warning" in out and "annotation id 10" in out and "annotation id 12" in out
    assert coco2.annotations[0]["bbox"] == [20.0, 40.0, 12.0, 8.0]


def test_box_within_tolerance_not_clipped():
    data = coco_dict()
    data["annotations"][0]["bbox"] = [0, 0, 32.0005, 48]
    coco, warnings = validate_coco(data, "x.json", on_box_outside="error")
    assert warnings == []


def test_box_entirely_outside_refused_even_when_clipping():
    data = coco_dict()
    data["annotations"][0]["bbox"] = [40, 10, 5, 5]
    expect_error(data, "annotation id 10", "entirely outside", on_box_outside="clip")


def test_duplicate_image_ids():
    data = coco_dict()
    data["images"][1]["id"] = 1
    expect_error(data, "duplicate image id 1")


@pytest.mark.parametrize("field,value", [("image_id", [1]), ("image_id", True), ("image_id", 1.0),
                                         ("category_id", {"a": 1}), ("category_id", True)])
def test_non_integer_references_refused(field, value):
    """Ids that are not plain integers are refused with a message, not a crash or a silent match."""
    data = coco_dict()
    data["annotations"][0][field] = value
    expect_error(data, "annotation id 10", f"unknown {field.split('_')[0]} id")


@pytest.mark.parametrize("value", [[10], "10", True])
def test_annotation_id_must_be_integer(value):
    data = coco_dict()
    data["annotations"][0]["id"] = value
    expect_error(data, "'id' must be an integer")


def test_category_id_must_be_integer():
    expect_error(coco_dict(categories=[{"id": True, "name": "a"}], annotations=[]), "integer 'id'")


def test_duplicate_annotation_ids():
    data = coco_dict()
    data["annotations"][2]["id"] = 10
    expect_error(data, "duplicate annotation id 10")


def test_duplicate_category_ids():
    data = coco_dict(categories=[{"id": 1, "name": "a"}, {"id": 1, "name": "b"}])
    expect_error(data, "duplicate category id 1")


@pytest.mark.parametrize("name", ["../a.png", "sub/../../a.png", "/etc/passwd", "..\\a.png", ""])
def test_file_name_escaping_refused(name):
    data = coco_dict()
    data["images"][1]["file_name"] = name
    expect_error(data, "image id 2", "file_name")


def test_file_name_missing_refused():
    data = coco_dict()
    del data["images"][0]["file_name"]
    expect_error(data, "image id 1", "file_name")


def test_check_file_name_inside(tmp_path):
    assert check_file_name(tmp_path, "sub/x.png", "w") == tmp_path / "sub" / "x.png"
    assert check_file_name(tmp_path, "sub\\x.png", "w") == tmp_path / "sub" / "x.png"
    with pytest.raises(InputError, match="escapes"):
        check_file_name(tmp_path, "a/../../x.png", "w")


@pytest.mark.parametrize("key,value", [("width", 0), ("height", -4), ("width", "32"), ("height", None)])
def test_bad_image_size(key, value):
    data = coco_dict()
    data["images"][0][key] = value
    expect_error(data, "image id 1", key)


@pytest.mark.parametrize("value", ["1", 1.0, None, True])
def test_image_id_must_be_integer(value):
    data = coco_dict()
    data["images"][0]["id"] = value
    expect_error(data, "integer 'id'")


def test_no_categories(tmp_path):
    expect_error(coco_dict(categories=[], annotations=[]), "no categories")
    p = write_dataset(tmp_path, coco_dict(categories=[], annotations=[]), images=False)
    with pytest.raises(InputError, match="no categories"):
        load_coco(p)


def test_empty_images_list(tmp_path):
    p = write_dataset(tmp_path, coco_dict(images=[], annotations=[]), images=False)
    with pytest.raises(InputError) as e:
        load_coco(p)
    assert str(p) in str(e.value) and "no images" in str(e.value)
    assert load_coco(p, allow_empty=True).images == []


@pytest.mark.parametrize("missing", ["images", "annotations", "categories"])
def test_missing_top_level_list(missing):
    data = coco_dict()
    del data[missing]
    expect_error(data, missing)


def test_not_an_object():
    expect_error([1, 2, 3], "COCO JSON object")


def test_malformed_json_names_file_and_line(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{\n "images": [],\n "annotations": [,]\n}\n', encoding="utf-8")
    with pytest.raises(InputError) as e:
        load_coco(p)
    assert str(p) in str(e.value) and "line 3" in str(e.value)
    with pytest.raises(InputError, match="line 3"):
        read_json(p)


def test_json_not_utf8(tmp_path):
    p = tmp_path / "latin.json"
    p.write_bytes('{"images": "é"}'.encode("latin-1"))
    with pytest.raises(InputError, match="UTF-8"):
        read_json(p)


def test_missing_json_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_coco(tmp_path / "nope.json")


# ----------------------------------------------------- image file errors
def test_missing_image_file(tmp_path):
    p = write_dataset(tmp_path, coco_dict())
    (tmp_path / "images" / "b.png").unlink()
    coco = load_coco(p)  # the JSON alone is fine
    with pytest.raises(InputError) as e:
        DetectionDataset(coco, tmp_path / "images")
    msg = str(e.value)
    assert str(p) in msg and "image id 2" in msg and "not found" in msg
    # without the cache the error comes when the image is read
    ds = DetectionDataset(coco, tmp_path / "images", cache=False)
    ds[0]
    with pytest.raises(InputError, match="image id 2"):
        ds[1]


def test_corrupt_image_file(tmp_path):
    p = write_dataset(tmp_path, coco_dict())
    (tmp_path / "images" / "a.png").write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(InputError) as e:
        DetectionDataset(load_coco(p), tmp_path / "images")
    msg = str(e.value)
    assert str(p) in msg and "image id 1" in msg and "corrupt" in msg


def test_truncated_image_file(tmp_path):
    p = write_dataset(tmp_path, coco_dict())
    f = tmp_path / "images" / "b.png"
    f.write_bytes(f.read_bytes()[:200])
    with pytest.raises(InputError, match="image id 2"):
        DetectionDataset(load_coco(p), tmp_path / "images")


def test_image_size_mismatch(tmp_path):
    p = write_dataset(tmp_path, coco_dict())
    write_png(tmp_path / "images" / "b.png", 41, 40)
    with pytest.raises(InputError) as e:
        DetectionDataset(load_coco(p), tmp_path / "images")
    msg = str(e.value)
    assert str(p) in msg and "image id 2" in msg and "41x40" in msg


def test_grayscale_image_becomes_rgb(tmp_path):
    data = coco_dict(images=[{"id": 1, "file_name": "g.png", "width": 8, "height": 8}], annotations=[])
    p = write_dataset(tmp_path, data, images=False)
    (tmp_path / "images").mkdir()
    Image.fromarray(np.full((8, 8), 100, dtype=np.uint8), mode="L").save(tmp_path / "images" / "g.png")
    ds = DetectionDataset(load_coco(p), tmp_path / "images", input_size=(8, 8))
    img, _ = ds[0]
    assert img.shape == (3, 8, 8) and bool((img == 100).all())


# ------------------------------------------------------------------ augmentation
FLIP_ONLY = {"hflip": True, "translate": 0.0, "scale": [1.0, 1.0], "invert": 0.0, "channel_shuffle": False}


def test_augment_hflip_flips_images_and_boxes():
    B, H, W = 16, 8, 20
    g = torch.Generator().manual_seed(0)
    images = torch.rand(B, 3, H, W, generator=g)
    targets = []
    for i in range(B):
        x1, y1 = float(i % 5), 1.0
        targets.append({"boxes": torch.tensor([[x1, y1, x1 + 3.0 + i % 7, 6.0], [0.0, 0.0, W, H]]),
                        "labels": torch.tensor([0, 1])})
    orig_images, orig_targets = images.clone(), copy.deepcopy(targets)
    augment_batch(images, targets, torch.Generator().manual_seed(1), FLIP_ONLY)
    flipped = 0
    for i in range(B):
        b0 = orig_targets[i]["boxes"]
        if torch.equal(images[i], orig_images[i]):
            assert torch.equal(targets[i]["boxes"], b0)
            continue
        flipped += 1
        assert torch.equal(images[i], orig_images[i].flip(-1))
        expected = torch.stack([W - b0[:, 2], b0[:, 1], W - b0[:, 0], b0[:, 3]], dim=1)
        assert torch.allclose(targets[i]["boxes"], expected)
        assert type(targets[i]["boxes"]) is torch.Tensor
        assert torch.equal(targets[i]["labels"], orig_targets[i]["labels"])
    assert 0 < flipped < B  # a random half, not all or none
    # the same generator seed gives the same augmentation
    images2, targets2 = orig_images.clone(), copy.deepcopy(orig_targets)
    augment_batch(images2, targets2, torch.Generator().manual_seed(1), FLIP_ONLY)
    assert torch.equal(images2, images)


def test_augment_empty_boxes():
    images = torch.rand(8, 3, 4, 6)
    targets = [{"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.long)} for _ in range(8)]
    cfg = {**FLIP_ONLY, "translate": 0.2, "scale": [0.8, 1.2]}
    augment_batch(images, targets, torch.Generator().manual_seed(0), cfg)
    assert all(t["boxes"].shape == (0, 4) for t in targets)


def test_augment_translation_and_zoom_move_boxes_with_the_pixels():
    cfg = {"hflip": False, "translate": 0.2, "scale": [0.8, 1.25], "invert": 0.0, "channel_shuffle": False}
    images = torch.zeros(8, 3, 64, 64)
    images[:, :, 20:40, 24:36] = 1.0  # a bright 12x20 object in the middle
    targets = [{"boxes": torch.tensor([[24.0, 20.0, 36.0, 40.0]]), "labels": torch.tensor([3])} for _ in range(8)]
    augment_batch(images, targets, torch.Generator().manual_seed(0), cfg)
    moved = 0
    for img, t in zip(images, targets):
        assert t["labels"].tolist() == [3]
        x1, y1, x2, y2 = t["boxes"][0].tolist()
        moved += abs(x1 - 24) > 1 or abs(y1 - 20) > 1
        inside = img[0, round(y1) + 1:round(y2) - 1, round(x1) + 1:round(x2) - 1]
        assert inside.mean() > 0.9  # the box still covers the object
        assert img[0].sum() <= inside.numel() + 2 * (x2 - x1 + y2 - y1) + 8  # and the object lies in the box
    assert moved >= 6


def test_augment_drops_boxes_pushed_out_of_the_image_and_inverts():
    cfg = {"hflip": False, "translate": 0.5, "scale": [1.0, 1.0], "invert": 1.0, "channel_shuffle": False}
    images = torch.zeros(32, 3, 16, 16)
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 4.0, 4.0]]), "labels": torch.tensor([1])} for _ in range(32)]
    augment_batch(images, targets, torch.Generator().manual_seed(0), cfg)
    assert (images.flatten(1).max(1).values == 1.0).all()  # every image inverted (zeros -> ones)
    kept = [len(t["boxes"]) for t in targets]
    assert 0 in kept and 1 in kept  # some corner boxes leave the image, some stay
    for t in targets:
        assert len(t["boxes"]) == len(t["labels"])
