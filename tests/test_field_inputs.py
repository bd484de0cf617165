"""Inputs from the field (issue 19, library side): what real users' files hold, read as they are meant to be seen.

* every pixel format becomes the 8-bit values a viewer shows, or is refused with a message;
* EXIF orientation: one frame (the displayed one) for sizes, pre-annotations, import and training;
* no traceback for any image: a 200-megapixel PNG, a truncated file -> ``error: <file>: ...``, exit 2;
* ambiguous names on import say so; categories nobody annotated stay out of the detector;
* VOC data with its own classes; CVAT and Label Studio exports with more than boxes.

Every input is made here (numpy + PIL, hand-written exports); values are checked against hand computation.
"""
from __future__ import annotations

import csv
import json
import struct
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from activedet.cli import main
from activedet.data import images as image_files
from activedet.data.coco import load_coco
from activedet.data.dataset import DetectionDataset
from activedet.hitl import cvat, label_studio
from activedet.hitl.boxes import AnnotatedImage, Box, SelectedImage
from activedet.hitl.importer import labels_for_selection, read_export
from activedet.io import InputError

TINY = {"detector": {"channels": [8, 16, 16, 16], "fpn_channels": 16, "head_convs": 1, "head_channels": 16},
        "train": {"epochs": 1, "min_iterations": 6, "batch_size": 6, "warmup_iterations": 2, "checkpoint_every": 0},
        "device": "cpu", "num_threads": 1}
CATS = [{"id": 0, "name": "things", "supercategory": "none"},  # a grouping entry no annotation uses (Roboflow)
        {"id": 1, "name": "red", "supercategory": "things"}, {"id": 2, "name": "blue", "supercategory": "things"}]


@pytest.fixture(autouse=True)
def default_image_settings():
    """The reader's settings are per process: every test starts and ends with the defaults."""
    image_files.configure({})
    yield
    image_files.configure({})


def png_bytes(width: int, height: int, bit_depth: int, colour_type: int, rows: list[bytes]) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit colour PNGs): filter byte 0 before every row."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    comp = zlib.compressobj(1)
    idat = b"".join(comp.compress(b"\x00" + r) for r in rows) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def scene(rng, colour_boxes, size=(64, 64)) -> np.ndarray:
    a = (rng.random((size[1], size[0], 3)) * 60).astype(np.uint8)
    for colour, (x, y, w, h) in colour_boxes:
        a[y:y + h, x:x + w] = colour
    return a


RED, BLUE = (220, 30, 30), (30, 30, 220)


def write_labeled_folder(root: Path, n: int = 6) -> tuple[Path, Path]:
    """``root/images/lab<i>.png`` scenes (a red and a blue square) and ``root/labeled.json`` with a grouping category."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    ims, anns = [], []
    for i in range(1, n + 1):
        Image.fromarray(scene(rng, [(RED, (10, 10, 20, 20)), (BLUE, (30, 36, 20, 20))])).save(images / f"lab{i}.png")
        ims.append({"id": i, "file_name": f"lab{i}.png", "width": 64, "height": 64})
        anns += [{"id": len(anns) + 1, "image_id": i, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400,
                  "iscrowd": 0},
                 {"id": len(anns) + 2, "image_id": i, "category_id": 2, "bbox": [30, 36, 20, 20], "area": 400,
                  "iscrowd": 0}]
    labeled = root / "labeled.json"
    labeled.write_text(json.dumps({"images": ims, "annotations": anns, "categories": CATS}))
    return images, labeled


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A detector trained on a labeled file of one's own whose categories include one nobody annotated."""
    root = tmp_path_factory.mktemp("field")
    images, labeled = write_labeled_folder(root)
    model = root / "model.pt"
    image_files.configure({})
    assert main(["train", "--params", json.dumps(TINY), "--images", str(images), "--labeled", str(labeled),
                 "--out", str(model)]) == 0
    return root, images, labeled, model


def copy_folder(trained, tmp_path) -> tuple[Path, Path]:
    import shutil

    _, images, labeled, _ = trained
    shutil.copytree(images, tmp_path / "images")
    shutil.copy(labeled, tmp_path / "labeled.json")
    return tmp_path / "images", tmp_path / "labeled.json"


def no_traceback(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err


# ------------------------------------------------------------------ 19.2: pixel formats, per mode
GREY16 = np.array([[0, 300], [4000, 65535]], dtype=np.uint16)
GREY16_SHOWN = [[0, 1], [16, 255]]  # round(v * 255 / 65535): 300 -> 1.17, 4000 -> 15.56


def _save(arr, path, **kw):
    Image.fromarray(arr).save(path, **kw)
    return path


@pytest.mark.parametrize("name, make, expected", [
    ("16-bit grey PNG (I;16)", lambda p: _save(GREY16, p / "g.png"), GREY16_SHOWN),
    ("16-bit grey TIFF (I;16)", lambda p: _save(GREY16, p / "g.tif"), GREY16_SHOWN),
    ("16-bit big-endian grey TIFF (I;16B)", lambda p: _save(GREY16.astype(">u2"), p / "gb.tif"), GREY16_SHOWN),
    ("32-bit integer within 16 bits (I)", lambda p: _save(GREY16.astype(np.int32), p / "i.tif"), GREY16_SHOWN),
    ("float in 0..1 (F)", lambda p: _save(np.array([[0, 0.25], [0.5, 1]], np.float32), p / "f.tif"),
     [[0, 64], [128, 255]]),  # round(v * 255): 63.75 -> 64, 127.5 -> 128 (numpy rounds half to even)
    ("8-bit grey (L)", lambda p: _save(np.array([[0, 1], [16, 255]], np.uint8), p / "l.png"), [[0, 1], [16, 255]]),
    ("1-bit (1)", lambda p: _save(np.array([[False, True], [True, False]]), p / "b.png"), [[0, 255], [255, 0]]),
])
def test_single_channel_modes_read_as_a_viewer_shows_them(tmp_path, name, make, expected):
    path = make(tmp_path)
    im = image_files.read_image(path)
    arr = np.asarray(im)
    assert im.mode == "RGB" and arr.shape == (2, 2, 3), name
    assert (arr[..., 0] == arr[..., 1]).all() and (arr[..., 0] == arr[..., 2]).all(), name  # grey stays grey
    assert arr[..., 0].tolist() == expected, name


def test_sixteen_bit_colour_pngs_keep_each_samples_high_byte(tmp_path):
    # 48-bit RGB and 64-bit RGBA PNGs: viewers show v >> 8 (within one level of v * 255 / 65535)
    px = [(300, 4000, 65535), (0, 32768, 65280)]
    rgb = png_bytes(2, 1, 16, 2, [b"".join(struct.pack(">HHH", *p) for p in px)])
    (tmp_path / "rgb48.png").write_bytes(rgb)
    rgba = png_bytes(2, 1, 16, 6, [b"".join(struct.pack(">HHHH", *p, 65535) for p in px)])
    (tmp_path / "rgba64.png").write_bytes(rgba)
    for name in ("rgb48.png", "rgba64.png"):
        arr = np.asarray(image_files.read_image(tmp_path / name))
        assert arr.shape == (1, 2, 3)
        assert arr[0].tolist() == [[1, 15, 255], [0, 128, 255]], name
        assert (np.abs(arr[0].astype(int) - np.rint(np.array(px) * 255 / 65535)) <= 1).all()


def test_twelve_bit_data_in_sixteen_bits_is_not_white(tmp_path):
    """The field case: a 12-bit sensor (values 300..4000) in a 16-bit PNG was read as a uniformly white image."""
    rng = np.random.default_rng(3)
    g = (300 + rng.random((64, 64)) * 600).astype(np.uint16)
    g[20:44, 20:44] = 3500 + (rng.random((24, 24)) * 500).astype(np.uint16)
    path = _save(g, tmp_path / "sensor.png")
    shown = np.asarray(image_files.read_image(path))[..., 0].astype(int)
    assert np.array_equal(shown, np.rint(g.astype(float) * 255 / 65535).astype(int))  # bit depth: dark, as in the tools
    assert shown.max() <= 16 and shown[20:44, 20:44].min() > shown[:10].max()  # the object still stands out
    image_files.configure({"high_bit_scaling": "min_max"})
    stretched = np.asarray(image_files.read_image(path))[..., 0].astype(int)
    lo, hi = int(g.min()), int(g.max())
    assert np.array_equal(stretched, np.rint((g.astype(float) - lo) * 255 / (hi - lo)).astype(int))
    assert stretched.min() == 0 and stretched.max() == 255


@pytest.mark.parametrize("arr, fragment", [
    (np.array([[-5, 0], [1, 70000]], np.int32), "32-bit integer image with values -5..70000"),
    (np.array([[-3.0, 0], [1, 500.5]], np.float32), "floating-point image with values -3..500.5"),
])
def test_signed_and_out_of_range_modes_are_refused_or_stretched_on_request(tmp_path, arr, fragment):
    path = _save(arr, tmp_path / "x.tif")
    with pytest.raises(InputError) as e:
        image_files.read_image(path)
    assert str(e.value).startswith(f"{path}: ") and fragment in str(e.value)
    assert "dataset.high_bit_scaling: min_max" in str(e.value)
    image_files.configure({"high_bit_scaling": "min_max"})
    shown = np.asarray(image_files.read_image(path))[..., 0].astype(int)
    lo, hi = float(arr.min()), float(arr.max())
    assert np.array_equal(shown, np.rint((arr.astype(float) - lo) * 255 / (hi - lo)).astype(int))


def test_nan_in_a_float_image_is_refused_in_every_scaling(tmp_path):
    path = _save(np.array([[0, np.nan], [0.5, 1]], np.float32), tmp_path / "nan.tif")
    for scaling in ("bit_depth", "min_max"):
        image_files.configure({"high_bit_scaling": scaling})
        with pytest.raises(InputError, match="NaN or infinite"):
            image_files.read_image(path)


def test_detection_dataset_sees_the_viewers_values(tmp_path):
    """The training/scoring path (DetectionDataset) goes through the same reader: no clipping to white."""
    path = _save(np.full((64, 64), 4000, np.uint16), tmp_path / "flat.png")
    coco = load_coco(_coco_file(tmp_path, [("flat.png", 64, 64)]))
    img, _ = DetectionDataset(coco, tmp_path, (64, 64))[0]
    assert path.exists() and int(img.max()) == round(4000 * 255 / 65535) == 16


def _coco_file(root: Path, images: list[tuple[str, int, int]], name: str = "set.json", boxes=()) -> Path:
    data = {"images": [{"id": i + 1, "file_name": f, "width": w, "height": h} for i, (f, w, h) in enumerate(images)],
            "annotations": [{"id": k + 1, "image_id": i, "category_id": c, "bbox": list(b), "iscrowd": 0}
                            for k, (i, c, b) in enumerate(boxes)],
            "categories": [{"id": 1, "name": "red"}, {"id": 2, "name": "blue"}]}
    (root / name).write_text(json.dumps(data))
    return root / name


# ------------------------------------------------------------------ 19.4: no traceback, the pixel limit
def big_scan(path: Path, width: int = 20000, height: int = 10000) -> Path:
    """A valid 1-bit PNG of width x height (200 megapixels by default) in a few kB: white with a dark block."""
    white = b"\xff" * (width // 8)
    mark = b"\xff" * 1000 + b"\x00" * 200 + b"\xff" * (width // 8 - 1200)
    rows = [mark if 4000 <= y < 5600 else white for y in range(height)]
    path.write_bytes(png_bytes(width, height, 1, 0, rows))
    return path


def test_the_pixel_limit_is_a_setting_with_a_message(tmp_path):
    path = _save(np.zeros((40, 50, 3), np.uint8), tmp_path / "a.png")
    image_files.configure({"max_image_pixels": 1999})
    for read in (image_files.read_image, image_files.image_size):
        with pytest.raises(InputError) as e:
            read(path)
        assert str(e.value).startswith(f"{path}: ") and "50x40 = 2,000 pixels" in str(e.value)
        assert "dataset.max_image_pixels" in str(e.value)
    image_files.configure({"max_image_pixels": 2000})
    assert image_files.read_image(path).size == (50, 40)
    image_files.configure({"max_image_pixels": 0})  # no limit
    assert image_files.image_size(path) == (50, 40)
    with pytest.raises(InputError, match="max_image_pixels must be a whole number"):
        image_files.configure({"max_image_pixels": -1})


def test_a_200_megapixel_png_is_an_error_naming_it_in_select_images_and_evaluate(trained, tmp_path, capsys):
    _, _, _, model = trained
    images, labeled = copy_folder(trained, tmp_path)
    scan = big_scan(images / "big_scan.png")
    args = ["select-images", "--images", str(images), "--labeled", str(labeled), "--model", str(model),
            "--strategy", "entropy", "--budget", "1", "--out", str(tmp_path / "round1"), "--device", "cpu"]
    assert main(args) == 2
    err = no_traceback(capsys)
    assert err.startswith("error: ") and str(scan) in err and "20000x10000 = 200,000,000 pixels" in err
    assert not (tmp_path / "round1").exists()
    test = _coco_file(tmp_path, [("lab1.png", 64, 64), ("big_scan.png", 20000, 10000)], "test.json",
                      [(1, 1, (10, 10, 20, 20)), (2, 2, (8000, 4000, 1600, 1600))])
    assert main(["evaluate", "--model", str(model), "--images", str(images), "--annotations", str(test),
                 "--out", str(tmp_path / "metrics.json"), "--device", "cpu"]) == 2
    err = no_traceback(capsys)
    assert err.startswith(f"error: {test}: image id 2: image file {scan} is 20000x10000")
    assert "dataset.max_image_pixels" in err and not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_image_is_an_error_not_a_traceback(trained, tmp_path, capsys, damage):
    _, _, _, model = trained
    images, _ = copy_folder(trained, tmp_path)
    good = (images / "lab2.png").read_bytes()
    bad = images / "lab2.png"
    bad.write_bytes({"truncated": good[: len(good) // 2], "garbage": b"\x89PNG\r\n\x1a\n" + b"\x07" * 300,
                     "empty": b""}[damage])
    test = _coco_file(tmp_path, [("lab1.png", 64, 64), ("lab2.png", 64, 64)], "test.json", [(1, 1, (10, 10, 20, 20))])
    assert main(["evaluate", "--model", str(model), "--images", str(images), "--annotations", str(test),
                 "--out", str(tmp_path / "m.json"), "--device", "cpu"]) == 2
    err = no_traceback(capsys)
    assert err.startswith(f"error: {test}: image id 2: image file {bad} is unreadable or corrupt"), err


# ------------------------------------------------------------------ 19.3: EXIF orientation
def phone_photo(path: Path) -> tuple[int, int, list[int]]:
    """A 48x32 JPEG stored with EXIF Orientation 6 (shown 32x48) and a red square; its displayed box [x, y, w, h]."""
    rng = np.random.default_rng(5)
    a = (rng.random((32, 48, 3)) * 60).astype(np.uint8)
    a[4:18, 30:44] = RED
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(a).save(path, quality=95, exif=exif.tobytes())
    # what a browser shows (Pillow's exif_transpose is the same rule) and where the annotator sees the square
    shown = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB")).astype(int)
    ys, xs = np.nonzero((shown[..., 0] > 150) & (shown[..., 2] < 100))
    return shown.shape[1], shown.shape[0], [int(xs.min()), int(ys.min()), int(xs.max() + 1 - xs.min()),
                                            int(ys.max() + 1 - ys.min())]


def test_exif_orientation_gives_the_displayed_frame(tmp_path):
    W, H, box = phone_photo(tmp_path / "phone.jpg")
    assert (W, H) == (32, 48)
    assert image_files.image_size(tmp_path / "phone.jpg") == (32, 48)
    assert image_files.stored_size(tmp_path / "phone.jpg") == (48, 32)
    shown = np.asarray(image_files.read_image(tmp_path / "phone.jpg")).astype(int)
    assert shown.shape == (48, 32, 3)
    x, y, w, h = box
    # stored rows 4..18, columns 30..44, turned 90 degrees clockwise: x = 31 - row, y = column
    assert (x, y, w, h) == (32 - 18, 30, 14, 14)
    assert shown[y:y + h, x:x + w, 0].mean() > 180 and shown[y:y + h, x:x + w, 2].mean() < 80


def test_exif_rotated_photo_round_trip_select_images_and_import(trained, tmp_path, capsys):
    """Sizes, pre-annotations, the contact sheet and the import all in the frame Label Studio shows."""
    _, _, _, model = trained
    images, labeled = copy_folder(trained, tmp_path)
    W, H, (x, y, w, h) = phone_photo(images / "phone.jpg")
    out = tmp_path / "round1"
    assert main(["select-images", "--images", str(images), "--labeled", str(labeled), "--model", str(model),
                 "--strategy", "entropy", "--budget", "1", "--out", str(out), "--device", "cpu",
                 "--min-score", "0"]) == 0
    rows = list(csv.DictReader(open(out / "selected.csv", encoding="utf-8")))
    assert [(r["image"], int(r["width"]), int(r["height"])) for r in rows] == [("phone.jpg", 32, 48)]
    tasks = json.loads((out / "label_studio_tasks.json").read_text())
    for region in tasks[0]["predictions"][0]["result"]:  # pre-annotations in the displayed frame
        assert (region["original_width"], region["original_height"]) == (32, 48)
        v = region["value"]
        assert v["x"] + v["width"] <= 100 + 1e-6 and v["y"] + v["height"] <= 100 + 1e-6
    cvat_image = ET.parse(out / "cvat_annotations.xml").getroot().find("image")
    assert (cvat_image.get("width"), cvat_image.get("height")) == ("32", "48")
    for b in cvat_image.findall("box"):
        assert float(b.get("xbr")) <= 32 and float(b.get("ybr")) <= 48
    predictions = json.loads((out / "predictions.json").read_text())
    assert [(im["width"], im["height"]) for im in predictions["images"]] == [(32, 48)]
    # the annotator boxes the red square on the image as Label Studio shows it (32 wide, 48 high)
    export = [{"id": 1, "data": {"image": "/data/local-files/?d=phone.jpg"},
               "annotations": [{"id": 1, "was_cancelled": False, "ground_truth": False, "result": [
                   {"id": "a1", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
                    "original_width": W, "original_height": H, "image_rotation": 0,
                    "value": {"x": 100 * x / W, "y": 100 * y / H, "width": 100 * w / W, "height": 100 * h / H,
                              "rotation": 0, "rectanglelabels": ["red"]}}]}]}]
    (tmp_path / "export.json").write_text(json.dumps(export))
    capsys.readouterr()
    assert main(["import-labels", "--export", str(tmp_path / "export.json"), "--selected", str(out / "selected.csv"),
                 "--labeled", str(labeled)]) == 0, capsys.readouterr().err
    merged = load_coco(labeled)
    phone = next(im for im in merged.images if im["file_name"] == "phone.jpg")
    assert (phone["width"], phone["height"]) == (32, 48)
    boxes = [a["bbox"] for a in merged.annotations if a["image_id"] == phone["id"]]
    assert boxes == [pytest.approx([x, y, w, h], abs=1e-3)]
    # training reads the photo in the same frame: the box lies on the red square
    ds = DetectionDataset(merged.subset([phone["id"]]), images, (48, 32))
    img, target = ds[0]
    x1, y1, x2, y2 = (int(round(float(v))) for v in target["boxes"][0])
    assert img.shape == (3, 48, 32) and (x1, y1, x2, y2) == (x, y, x + w, y + h)
    assert img[0, y1:y2, x1:x2].float().mean() > 180 and img[2, y1:y2, x1:x2].float().mean() < 80


def test_coco_sizes_in_the_stored_frame_are_refused_saying_why(tmp_path):
    phone_photo(tmp_path / "phone.jpg")
    coco = load_coco(_coco_file(tmp_path, [("phone.jpg", 48, 32)]))
    with pytest.raises(InputError) as e:
        DetectionDataset(coco, tmp_path, (64, 64))
    msg = str(e.value)
    assert "image file is 32x48 (stored 48x32, shown turned by its EXIF orientation" in msg
    assert "annotation says 48x32" in msg


# ------------------------------------------------------------------ 19.8: ambiguous names on import
def test_a_name_matching_two_selected_images_says_so_and_how_to_fix_it(tmp_path):
    selection = [SelectedImage(1, "cam1/frame_0001.png", 7, 64, 64, 0.5),
                 SelectedImage(2, "cam2/frame_0001.png", 8, 64, 64, 0.4)]
    exported = [AnnotatedImage("frame_0001.png", "export.json: image id 1", 64, 64, [Box("red", 8, 8, 24, 24)]),
                AnnotatedImage("frame_0001.png", "export.json: image id 2", 64, 64, [Box("blue", 30, 30, 24, 24)])]
    with pytest.raises(InputError) as e:
        labels_for_selection(exported, selection, [{"id": 1, "name": "red"}, {"id": 2, "name": "blue"}],
                             "export.json", "round1/selected.csv")
    msg = str(e.value)
    assert ("image 'frame_0001.png' matches 2 selected images (cam1/frame_0001.png, cam2/frame_0001.png)"
            in msg)
    assert "name each image by its path relative to the images folder" in msg and "'cam1/frame_0001.png'" in msg
    assert "not one of the 2 selected images" not in msg and "not annotated yet" not in msg
    assert "image cam1/frame_0001.png (rank 1 of round1/selected.csv) is not matched" in msg
    # with the paths the export is accepted
    for im, name in zip(exported, ("cam1/frame_0001.png", "cam2/frame_0001.png")):
        im.ref = name
    coco = labels_for_selection(exported, selection, [{"id": 1, "name": "red"}, {"id": 2, "name": "blue"}],
                                "export.json", "round1/selected.csv")
    assert [(a["image_id"], a["category_id"]) for a in coco.annotations] == [(7, 1), (8, 2)]


# ------------------------------------------------------------------ 19.9: categories nobody annotated
def test_a_category_nobody_annotated_stays_out_of_the_detector_and_labeling_configs(trained, tmp_path, capsys):
    import torch

    _, _, _, model = trained
    ckpt = torch.load(model, map_location="cpu", weights_only=False)
    assert [c["name"] for c in ckpt["categories"]] == ["red", "blue"]  # not the grouping entry 'things'
    images, labeled = copy_folder(trained, tmp_path)
    Image.fromarray(scene(np.random.default_rng(1), [(RED, (5, 5, 20, 20))])).save(images / "new.png")
    out = tmp_path / "round1"
    assert main(["select-images", "--images", str(images), "--labeled", str(labeled), "--model", str(model),
                 "--strategy", "ebal", "--budget", "1", "--out", str(out), "--device", "cpu"]) == 0
    config = ET.parse(out / "label_studio_config.xml").getroot()
    assert [lab.get("value") for lab in config.iter("Label")] == ["red", "blue"]
    cvat_labels = [n.text for n in ET.parse(out / "cvat_annotations.xml").getroot().iter("name")
                   if n.text in ("red", "blue", "things")]
    assert cvat_labels == ["red", "blue"]


def test_init_split_reports_and_leaves_out_unannotated_categories_unless_kept(tmp_path, capsys):
    _, pool = write_labeled_folder(tmp_path, n=8)
    out = tmp_path / "labeled0.json"
    assert main(["init-split", "--pool", str(pool), "--size", "3", "--seed", "0", "--out", str(out)]) == 0
    assert "categories 0 'things' have no annotation in the pool; left out" in capsys.readouterr().out
    labeled = json.loads(out.read_text())
    assert [c["name"] for c in labeled["categories"]] == ["red", "blue"]
    kept = tmp_path / "kept.json"
    assert main(["init-split", "--params", json.dumps({"dataset": {"keep_unused_categories": True}}), "--pool",
                 str(pool), "--size", "3", "--seed", "0", "--out", str(kept)]) == 0
    assert [c["name"] for c in json.loads(kept.read_text())["categories"]] == ["things", "red", "blue"]
    # a pipeline labeled set keeps the pool's classes even where its own images lack one (no change of classes)
    from activedet.data.dataset import training_categories as _classes
    from activedet.params import load

    only_red = load_coco(out)
    only_red.annotations = [a for a in only_red.annotations if a["category_id"] == 1]
    assert [c["name"] for c in _classes(load({}), only_red)] == ["red", "blue"]
    only_red.info = {}  # one's own labeled file: blue has no box in it
    assert [c["name"] for c in _classes(load({}), only_red)] == ["red"]
    assert [c["name"] for c in _classes(load({"dataset": {"keep_unused_categories": True}}), only_red)] == \
        ["red", "blue"]


# ------------------------------------------------------------------ 19.10: VOC with one's own classes
def write_voc_image(root: Path, name: str, objects: list[tuple[str, int, int, int, int]], set_name="trainval"):
    year = root / "VOC2007"
    for d in ("Annotations", "ImageSets/Main", "JPEGImages"):
        (year / d).mkdir(parents=True, exist_ok=True)
    objs = "".join(f"<object><name>{c}</name><bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{x}</xmax>"
                   f"<ymax>{y}</ymax></bndbox></object>" for c, a, b, x, y in objects)
    (year / "Annotations" / f"{name}.xml").write_text(
        f"<annotation><filename>{name}.jpg</filename><size><width>64</width><height>48</height><depth>3</depth>"
        f"</size>{objs}</annotation>")
    with open(year / "ImageSets" / "Main" / f"{set_name}.txt", "a") as f:
        f.write(name + "\n")


def test_voc_with_its_own_classes_read_from_the_xml_or_given(tmp_path, capsys):
    root = tmp_path / "VOCdevkit"
    write_voc_image(root, "a", [("helmet", 5, 5, 20, 20), ("head", 30, 10, 50, 30)])
    write_voc_image(root, "b", [("helmet", 1, 1, 10, 10)])
    write_voc_image(root, "t", [("vest", 2, 2, 12, 12)], set_name="test")
    out = tmp_path / "pool.json"
    args = ["voc-to-coco", "--root", str(root), "--sets", "VOC2007/trainval", "--out", str(out)]
    assert main(args + ["--class-sets", str(root), "VOC2007/test"]) == 0
    stdout = capsys.readouterr().out
    assert "classes read from the VOC XML files (ids 1..3 in this order): head, helmet, vest" in stdout
    pool = json.loads(out.read_text())
    assert pool["categories"] == [{"id": 1, "name": "head"}, {"id": 2, "name": "helmet"}, {"id": 3, "name": "vest"}]
    assert sorted((a["image_id"], a["category_id"], a["bbox"]) for a in pool["annotations"]) == \
        [(1, 1, [29.0, 9.0, 21.0, 21.0]), (1, 2, [4.0, 4.0, 16.0, 16.0]), (2, 2, [0.0, 0.0, 10.0, 10.0])]
    # the test split, read with the pool's sets as the other source, gets the same ids
    test = tmp_path / "test.json"
    assert main(["voc-to-coco", "--root", str(root), "--sets", "VOC2007/test", "--out", str(test),
                 "--class-sets", str(root), "VOC2007/trainval"]) == 0
    assert json.loads(test.read_text())["categories"] == pool["categories"]
    # a given list fixes the order; a class outside it is refused naming the setting
    given = json.dumps({"dataset": {"classes": ["helmet", "head"]}})
    assert main(args + ["--params", given]) == 0
    assert [c["name"] for c in json.loads(out.read_text())["categories"]] == ["helmet", "head"]
    assert main(args[:-2] + ["--out", str(tmp_path / "x.json"), "--params",
                             json.dumps({"dataset": {"classes": ["helmet"]}})]) == 2
    err = capsys.readouterr().err
    assert "unknown class 'head' (known: helmet); list it in dataset.classes" in err


# ------------------------------------------------------------------ 19.11: what annotators really export
CVAT_EXPORT = """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <image id="0" name="img0.png" width="64" height="48">
    <box label="red" occluded="0" xtl="1" ytl="2" xbr="11" ybr="12">
      <attribute name="truncated">true</attribute>
    </box>
    <polyline label="" points="1,1;5,5;9,2" occluded="0"/>
    <box label="blue" xtl="20" ytl="20" xbr="40" ybr="30" rotation="90"/>
  </image>
  <image id="1" name="img1.png" width="64" height="48">
    <polygon label="blue" points="10.5,20;30,5.25;25,40" occluded="0"/>
    <points label="red" points="3,3;4,4"/>
    <mask label="red" rle="{rle}" left="40" top="10" width="4" height="3"/>
    <ellipse label="blue" cx="50" cy="30" rx="4" ry="2"/>
    <tag label="red"/>
    <skeleton label="red"><points label="1" points="1,1"/></skeleton>
  </image>
</annotations>
"""
# 4x3 mask at (40, 10): row 0 ....; row 1 .##.; row 2 ..#. -> runs: 5 off, 2 on, 3 off, 1 on, 1 off
MASK_RLE = "5,2,3,1,1"


def test_cvat_export_with_polygons_masks_polylines_points_and_tags(tmp_path, capsys):
    path = tmp_path / "annotations.xml"
    path.write_text(CVAT_EXPORT.replace("{rle}", MASK_RLE))
    images = read_export(path)
    out = capsys.readouterr().out
    got = {im.ref: [(b.label, b.x, b.y, b.w, b.h) for b in im.boxes] for im in images}
    assert got["img0.png"] == [("red", 1, 2, 10, 10),
                               # 20x10 box turned 90 degrees about its centre (30, 25): 10 wide, 20 high
                               ("blue", pytest.approx(25), pytest.approx(15), pytest.approx(10), pytest.approx(20))]
    assert got["img1.png"] == [("blue", 10.5, 5.25, 19.5, 34.75),  # the polygon's enclosing box
                               ("red", 41, 11, 2, 2),  # the mask's pixels: columns 1..2, rows 1..2 of the crop
                               ("blue", 46, 28, 8, 4)]  # the ellipse's box
    assert images[0].boxes[0].attributes == {"truncated": "true"}
    for shape in ("<polyline> (label '') skipped", "<points> (label 'red') skipped", "<tag> (label 'red') skipped",
                  "<skeleton> (label 'red') skipped"):
        assert shape in out, out
    skipped = {im.ref: [b.label for b in im.boxes] for im in read_export(path, regions="skip")}
    assert skipped == {"img0.png": ["red"], "img1.png": []}
    assert "<polygon> (label 'blue') skipped" in capsys.readouterr().out


def test_cvat_shapes_that_cannot_be_read_are_refused(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(CVAT_EXPORT.replace("{rle}", "5,2,3"))  # the runs do not cover the 4x3 mask
    with pytest.raises(InputError, match=r"<mask> \(label 'red'\): its rle covers 10 pixels, not the 4x3"):
        cvat.parse_annotations(path)
    path.write_text(CVAT_EXPORT.replace("{rle}", MASK_RLE).replace('points="10.5,20;', 'points="10.5;'))
    with pytest.raises(InputError, match=r"<polygon> \(label 'blue'\) has unreadable points"):
        cvat.parse_annotations(path)


def encode_brush_rle(values: np.ndarray) -> list[int]:
    """Label Studio's brush RLE of a flat uint8 array, with runs only (the format decode_rle reads):
    32-bit count, 5-bit word size - 1, four 4-bit run-field sizes - 1, then per run: 1, field index 0, length - 1
    in 16 bits, the value in 8 bits."""
    bits = f"{len(values):032b}" + f"{7:05b}" + f"{15:04b}" * 4
    i = 0
    while i < len(values):
        j = i
        while j < len(values) and values[j] == values[i] and j - i < 65536:
            j += 1
        bits += "1" + "00" + f"{j - i - 1:016b}" + f"{int(values[i]):08b}"
        i = j
    bits += "0" * (-len(bits) % 8)
    return [int(bits[k:k + 8], 2) for k in range(0, len(bits), 8)]


def ls_region(rid, kind, value, W=50, H=40, **extra):
    return {"id": rid, "from_name": "label", "to_name": "image", "type": kind, "original_width": W,
            "original_height": H, "image_rotation": 0, "value": value, **extra}


def test_label_studio_export_with_choices_polygons_brushes_and_two_annotators(tmp_path, capsys):
    W, H = 50, 40
    mask = np.zeros((H, W, 4), np.uint8)
    mask[10:20, 5:15, 3] = 255  # brushed pixels: columns 5..14, rows 10..19
    assert np.array_equal(label_studio.decode_brush_rle(encode_brush_rle(mask.ravel())), mask.ravel())
    first = {"id": 11, "completed_by": 1, "was_cancelled": False, "ground_truth": False,
             "updated_at": "2024-03-01T10:00:00.000000Z", "result": [
                 ls_region("r1", "rectanglelabels", {"x": 10, "y": 10, "width": 20, "height": 25, "rotation": 0,
                                                     "rectanglelabels": ["red"]})]}
    latest = {"id": 12, "completed_by": 2, "was_cancelled": False, "ground_truth": False,
              "updated_at": "2024-03-02T09:00:00.000000Z", "result": [
                  ls_region("r1", "rectanglelabels", {"x": 10, "y": 10, "width": 20, "height": 25, "rotation": 0,
                                                      "rectanglelabels": ["red"]}),
                  {"id": "r1", "from_name": "occlusion", "to_name": "image", "type": "choices",
                   "value": {"choices": ["partly"]}},
                  {"id": "r1", "from_name": "note", "to_name": "image", "type": "textarea",
                   "value": {"text": ["behind a post"]}},
                  {"id": "whole", "from_name": "weather", "to_name": "image", "type": "choices",
                   "value": {"choices": ["rain"]}},
                  ls_region("p1", "polygonlabels", {"points": [[50, 50], [80, 55], [60, 90]],
                                                    "polygonlabels": ["blue"]}),
                  ls_region("b1", "brushlabels", {"format": "rle", "rle": encode_brush_rle(mask.ravel()),
                                                  "brushlabels": ["blue"]}),
                  ls_region("k1", "keypointlabels", {"x": 5, "y": 5, "width": 1, "keypointlabels": ["red"]}),
              ]}
    export = [{"id": 1, "data": {"image": "/data/local-files/?d=a.png"}, "annotations": [latest, first]}]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(export))
    images = read_export(path)
    out = capsys.readouterr().out
    assert "2 submitted annotations, 0 marked as ground truth: took the latest (annotation 12" in out
    assert "result of type 'choices' (from_name 'weather') skipped: it belongs to no region" in out
    assert "region 'k1' (keypointlabels" in out or "result of type 'keypointlabels'" in out
    boxes = [(b.label, b.x, b.y, b.w, b.h, b.attributes) for b in images[0].boxes]
    assert boxes == [("red", 10, 10, 20, 25, {"occlusion": ["partly"], "note": ["behind a post"]}),
                     ("blue", 50, 50, 30, 40, None),  # the polygon's enclosing box (percent)
                     ("blue", 10, 25, 20, 25, None)]  # the brush: 5..15 of 50 wide, 10..20 of 40 high
    # through the import: pixels, and the attributes kept on the annotation
    coco = labels_for_selection(images, [SelectedImage(1, "a.png", 5, W, H, None)],
                                [{"id": 1, "name": "red"}, {"id": 2, "name": "blue"}], path, "selected.csv")
    assert [(a["category_id"], a["bbox"], a.get("attributes")) for a in coco.annotations] == [
        (1, [5.0, 4.0, 10.0, 10.0], {"occlusion": ["partly"], "note": ["behind a post"]}),
        (2, [25.0, 20.0, 15.0, 16.0], None), (2, [5.0, 10.0, 10.0, 10.0], None)]
    # the ground-truth mark wins over the latest; "refuse" asks for one mark
    first["ground_truth"] = True
    path.write_text(json.dumps(export))
    assert [len(im.boxes) for im in read_export(path)] == [1]
    first["ground_truth"] = False
    path.write_text(json.dumps(export))
    with pytest.raises(InputError, match="2 submitted annotations and 0 marked as ground truth"):
        read_export(path, several="refuse")


def test_label_studio_rotated_rectangle_becomes_its_enclosing_box(tmp_path, capsys):
    # 20x10 px rectangle at (10, 10) of a 100x50 image, turned 90 degrees about its top-left corner:
    # it then covers x 0..10, y 10..30
    region = ls_region("r", "rectanglelabels", {"x": 10, "y": 20, "width": 20, "height": 20, "rotation": 90,
                                                "rectanglelabels": ["red"]}, W=100, H=50)
    export = [{"id": 1, "data": {"image": "a.png"}, "annotations": [{"id": 1, "result": [region]}]}]
    (tmp_path / "e.json").write_text(json.dumps(export))
    (box,) = read_export(tmp_path / "e.json")[0].boxes
    assert (box.x, box.y, box.w, box.h) == (pytest.approx(0), pytest.approx(20), pytest.approx(10),
                                            pytest.approx(40))
    assert read_export(tmp_path / "e.json", regions="skip")[0].boxes == []
    assert "region 'r' (rectanglelabels, rotated, label 'red') skipped" in capsys.readouterr().out


def test_a_selection_file_that_is_not_text_is_an_error_not_a_traceback(tmp_path, capsys):
    selected = tmp_path / "selected.csv"
    selected.write_bytes(b"rank,image\n\xff\xfe\x00binary")
    labeled = tmp_path / "labeled.json"
    labeled.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "red"}]}))
    (tmp_path / "export.json").write_text("[]")
    assert main(["import-labels", "--export", str(tmp_path / "export.json"), "--selected", str(selected),
                 "--labeled", str(labeled)]) == 2
    err = no_traceback(capsys)
    assert err.startswith(f"error: {selected}: not a readable selection CSV")
    selected.write_text("rank,image,image_id,score,width,height\n1,a.png,1,,64,64\n")
    assert main(["import-labels", "--export", str(tmp_path), "--selected", str(selected),  # a folder, not a file
                 "--labeled", str(labeled)]) == 2
    assert no_traceback(capsys).startswith(f"error: {tmp_path}: export file not found")
