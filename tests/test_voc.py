"""PASCAL VOC reader on XML + ImageSets files written here: VOC07+12 as one pool, 1-based boxes,
difficult objects (kept, not trained on, ignored by the metric), empty images, unicode names, and
errors that name the XML file; the voc-to-coco step; a COCO train2017-style file through the COCO path."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from activedet.cli import main
from activedet.data.coco import load_coco
from activedet.data.dataset import DetectionDataset
from activedet.data.voc import VOC_CLASSES, count_images, read_voc
from activedet.engine.train import load_batch
from activedet.evaluation import evaluate_detections
from activedet.evaluation.voc import voc_map
from activedet.io import InputError

from helpers.voc import obj, write_set, write_voc


@pytest.fixture
def voc(tmp_path):
    root = tmp_path / "VOCdevkit"
    write_voc(root, "VOC2007", "000005", objects=[obj("chair", 263, 211, 324, 339), obj("chair", 165, 264, 253, 372),
                                                   obj("chair", 5, 244, 67, 374, difficult=1)])
    write_voc(root, "VOC2007", "000007", size=(500, 333), objects=[obj("car", 141, 50, 500, 330)])
    write_set(root, "VOC2007", "trainval", ["000005", "000007"])
    # VOC2012 names images of 2007 its own way: '2007_000005' is another image than VOC2007's '000005'
    write_voc(root, "VOC2012", "2007_000005", objects=[obj("dog", 1, 1, 500, 375)])
    write_voc(root, "VOC2012", "2008_000002", objects=[])  # an image without objects
    write_set(root, "VOC2012", "trainval", ["2007_000005", "2008_000002"])
    write_voc(root, "VOC2007", "000001", objects=[obj("person", 8, 12, 352, 498)], size=(353, 500))
    write_set(root, "VOC2007", "test", ["000001"])
    return root


def test_voc07_and_voc12_trainval_are_one_pool(voc):
    pool = read_voc(voc, "VOC2007/trainval,VOC2012/trainval")
    assert [im["id"] for im in pool.images] == [1, 2, 3, 4]
    assert [im["file_name"] for im in pool.images] == [
        "VOC2007/JPEGImages/000005.jpg", "VOC2007/JPEGImages/000007.jpg",
        "VOC2012/JPEGImages/2007_000005.jpg", "VOC2012/JPEGImages/2008_000002.jpg"]
    assert [(im["width"], im["height"]) for im in pool.images] == [(500, 375), (500, 333), (500, 375), (500, 375)]
    assert [c["name"] for c in pool.categories] == list(VOC_CLASSES)
    assert [c["id"] for c in pool.categories] == list(range(1, 21))
    by_image = pool.annotations_by_image()
    assert [len(by_image[i]) for i in (1, 2, 3, 4)] == [3, 1, 1, 0]
    assert count_images(voc, "VOC2007/trainval,VOC2012/trainval") == 4
    assert count_images(voc, ["VOC2007/test"]) == 1
    assert count_images(voc, "VOC2012/val") is None  # list not there: no size known yet
    test = read_voc(voc, "VOC2007/test")
    assert [im["file_name"] for im in test.images] == ["VOC2007/JPEGImages/000001.jpg"]


def test_one_based_inclusive_boxes_become_continuous_coco_boxes(voc):
    pool = read_voc(voc, "VOC2007/trainval,VOC2012/trainval")
    boxes = {(a["image_id"], a["category_id"]): a["bbox"] for a in pool.annotations if not a["difficult"]}
    chair, car, dog = (VOC_CLASSES.index(n) + 1 for n in ("chair", "car", "dog"))
    assert pool.annotations[0]["bbox"] == [262, 210, 62, 129]            # 263..324 x 211..339: 62 x 129 pixels
    assert boxes[(2, car)] == [140, 49, 360, 281]                       # xmax = width: reaches the border exactly
    assert boxes[(3, dog)] == [0, 0, 500, 375]                          # the whole image is the whole image
    assert pool.annotations[0]["area"] == 62 * 129 and pool.annotations[0]["category_id"] == chair


def test_difficult_objects_are_kept_flagged_not_trained_on_and_ignored_by_the_metric(voc):
    pool = read_voc(voc, "VOC2007/trainval")
    flags = [a["difficult"] for a in pool.annotations if a["image_id"] == 1]
    assert flags == [0, 0, 1] and all(a["iscrowd"] == 0 for a in pool.annotations)
    # training: the dataset carries the flag, the batch loader drops the difficult box
    for im in pool.images:
        arr = np.zeros((int(im["height"]), int(im["width"]), 3), dtype=np.uint8)
        path = voc / im["file_name"]
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(path)
    ds = DetectionDataset(pool, voc, (375, 500), cache=False)
    assert ds[0][1]["difficult"].tolist() == [False, False, True]
    _, targets = load_batch(ds, [0], torch.device("cpu"))
    assert len(targets[0]["boxes"]) == 2
    assert targets[0]["boxes"].tolist() == [[262.0, 210.0, 324.0, 339.0], [164.0, 263.0, 253.0, 372.0]]
    # evaluation: a detection on the difficult chair is neither TP nor FP. Ranked: difficult (ignored),
    # a false positive, the two chairs -> precision 1/2 at recall 1/2, 2/3 at recall 1: 11-point AP = 2/3.
    # Were the difficult chair a positive: precision 1 up to recall 1/3, then at most 3/4: (4 + 7 * 3/4) / 11.
    gt = pool.subset([1]).to_dict()
    c = VOC_CLASSES.index("chair") + 1
    dets = [{"image_id": 1, "category_id": c, "bbox": [4, 243, 63, 131], "score": 0.95},
            {"image_id": 1, "category_id": c, "bbox": [400, 10, 50, 50], "score": 0.9},
            {"image_id": 1, "category_id": c, "bbox": [262, 210, 62, 129], "score": 0.8},
            {"image_id": 1, "category_id": c, "bbox": [164, 263, 89, 109], "score": 0.7}]
    assert voc_map(gt, dets)["per_class"] == {c: pytest.approx(2 / 3)}
    counted = {**gt, "annotations": [{**a, "difficult": 0} for a in gt["annotations"]]}
    assert voc_map(counted, dets)["per_class"] == {c: pytest.approx((4 + 7 * 0.75) / 11)}
    metrics = evaluate_detections(gt, dets)
    assert metrics["map50"] == pytest.approx(2 / 3)  # the learning-curve metric: VOC07 11-point mAP@0.5
    assert 0 <= metrics["coco_ap"] <= 1


def test_empty_images_and_unicode_names(tmp_path):
    root = tmp_path / "VOCdevkit"
    write_voc(root, "VOC2007", "straße_ü1", size=(40, 30), objects=[obj("cat", 3, 4, 20, 25)], image=True)
    write_voc(root, "VOC2007", "leer", size=(40, 30), objects=[], image=True)
    write_voc(root, "VOC2007", "写真", size=(40, 30), objects=[obj("bird", 1, 1, 40, 30, 1)], filename="写真.png",
              image=True)
    write_set(root, "VOC2007", "trainval", ["straße_ü1", "leer", "写真"])
    pool = read_voc(root, "VOC2007/trainval")
    assert [im["file_name"] for im in pool.images] == [
        "VOC2007/JPEGImages/straße_ü1.jpg", "VOC2007/JPEGImages/leer.jpg", "VOC2007/JPEGImages/写真.png"]
    assert pool.annotations_by_image()[2] == []
    ds = DetectionDataset(pool, root, (30, 40), cache=True)  # the images load under their unicode names
    assert [len(ds[i][1]["boxes"]) for i in range(3)] == [1, 0, 1]
    out = tmp_path / "pool.json"
    assert main(["voc-to-coco", "--root", str(root), "--sets", "VOC2007/trainval", "--out", str(out)]) == 0
    again = load_coco(out)
    assert again.images == pool.images and again.annotations == pool.annotations
    assert "写真" in out.read_text(encoding="utf-8")


def test_image_size_missing_from_the_xml_is_read_from_the_image(tmp_path):
    root = tmp_path / "VOCdevkit"
    write_voc(root, "VOC2012", "a", size=(0, 0), objects=[obj("cow", 2, 2, 30, 20)], image=False)
    write_set(root, "VOC2012", "trainval", ["a"])
    with pytest.raises(InputError, match=r"a.xml: no image size in <size> and image file .*a.jpg not found"):
        read_voc(root, "VOC2012/trainval")
    img = root / "VOC2012" / "JPEGImages" / "a.jpg"
    img.parent.mkdir(parents=True)
    Image.new("RGB", (64, 48)).save(img)
    assert (read_voc(root, "VOC2012/trainval").images[0]["width"], read_voc(root, "VOC2012/trainval").images[0]["height"]) == (64, 48)


def test_box_outside_the_image_is_clipped_with_a_warning_or_refused(tmp_path, capsys):
    root = tmp_path / "VOCdevkit"
    ann = write_voc(root, "VOC2007", "b", size=(100, 80), objects=[obj("horse", 10, 10, 120, 80)])
    write_set(root, "VOC2007", "trainval", ["b"])
    pool = read_voc(root, "VOC2007/trainval")
    assert pool.annotations[0]["bbox"] == [9, 9, 91, 71]
    assert f"warning: {ann}: object 1 (horse): box xmin=10 ymin=10 xmax=120 ymax=80 clipped" in capsys.readouterr().out
    with pytest.raises(InputError, match=rf"{ann}: object 1 \(horse\): .* lies outside the image of size 100x80"):
        read_voc(root, "VOC2007/trainval", on_box_outside="error")


@pytest.mark.parametrize("xml,fragment", [
    ("<annotation><size><width>10</width>", "malformed XML at line 1, column"),
    ("<annotation><size><width>10</width><height>10</height></size><object><name>unicorn</name><bndbox>"
     "<xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object></annotation>",
     "object 1: unknown class 'unicorn' (known: aeroplane, bicycle"),
    ("<annotation><size><width>10</width><height>10</height></size><object><name>cat</name><bndbox>"
     "<xmin>5</xmin><ymin>1</ymin><xmax>4</xmax><ymax>5</ymax></bndbox></object></annotation>",
     "object 1 (cat): box xmin=5 ymin=1 xmax=4 ymax=5 has zero or negative size"),
    ("<annotation><size><width>10</width><height>10</height></size><object><name>cat</name><bndbox>"
     "<xmin>1</xmin><ymin>1</ymin><xmax>4</xmax></bndbox></object></annotation>",
     "object 1 (cat): missing <ymax>"),
    ("<annotation><size><width>10</width><height>10</height></size><object><name>cat</name><bndbox>"
     "<xmin>1</xmin><ymin>one</ymin><xmax>4</xmax><ymax>5</ymax></bndbox></object></annotation>",
     "object 1 (cat): <ymin> is not a number: 'one'"),
    ("<annotation><size><width>10</width><height>10</height></size><object><name>cat</name><bndbox>"
     "<xmin>30</xmin><ymin>30</ymin><xmax>40</xmax><ymax>40</ymax></bndbox></object></annotation>",
     "lies entirely outside the image of size 10x10"),
    ('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "y">]><annotation/>', "XML with a DTD or entity declarations"),
    ("<annotation><filename>../../etc/passwd</filename></annotation>", "must be a file name inside JPEGImages"),
])
def test_bad_xml_is_refused_naming_the_file(tmp_path, xml, fragment):
    root = tmp_path / "VOCdevkit"
    ann = write_voc(root, "VOC2007", "bad", raw_xml=xml)
    write_set(root, "VOC2007", "trainval", ["bad"])
    with pytest.raises(InputError) as e:
        read_voc(root, "VOC2007/trainval")
    assert str(e.value).startswith(f"{ann}: ") and fragment in str(e.value), str(e.value)


def test_bad_image_sets_are_refused_naming_the_list(tmp_path, voc):
    with pytest.raises(InputError, match=r"VOC2012/ImageSets/Main/val.txt: VOC image set file not found"):
        read_voc(voc, "VOC2007/trainval,VOC2012/val")
    dup = write_set(voc, "VOC2007", "dup", ["000005", "000007", "000005"])
    with pytest.raises(InputError, match=rf"{dup}: line 3: image '000005' is listed twice"):
        read_voc(voc, "VOC2007/dup")
    with pytest.raises(InputError, match=r"VOC2007/Annotations/000005.xml: image VOC2007/JPEGImages/000005.jpg "
                                         r"is also listed by .* \(image sets VOC2007/trainval, VOC2007/trainval overlap\)"):
        read_voc(voc, "VOC2007/trainval,VOC2007/trainval")
    write_set(voc, "VOC2007", "missing", ["000099"])
    with pytest.raises(InputError, match=r"VOC2007/Annotations/000099.xml: annotation file not found"):
        read_voc(voc, "VOC2007/missing")
    with pytest.raises(InputError, match=r"expected <year folder>/<set name>"):
        read_voc(voc, "trainval")


def test_voc_to_coco_step_writes_the_json_or_fails_naming_the_xml(tmp_path, voc, capsys):
    out = tmp_path / "out" / "pool.json"
    assert main(["voc-to-coco", "--root", str(voc), "--sets", "VOC2007/trainval,VOC2012/trainval",
                 "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary == {"out": str(out), "images": 4, "objects": 5, "difficult": 1, "images_without_objects": 1}
    coco = load_coco(out)  # what every later step reads
    assert len(coco.images) == 4 and coco.annotations[2]["difficult"] == 1
    write_voc(voc, "VOC2007", "000007", raw_xml="<annotation><size>")
    out2 = tmp_path / "out" / "again.json"
    assert main(["voc-to-coco", "--root", str(voc), "--sets", "VOC2007/trainval", "--out", str(out2)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {voc / 'VOC2007' / 'Annotations' / '000007.xml'}: malformed XML")
    assert not out2.exists() and not list(out2.parent.glob(".again.json.*"))


def test_coco_train2017_style_file_through_the_coco_reader_and_pycocotools(tmp_path):
    """COCO itself goes through the existing COCO-JSON path: crowd boxes, empty images, unicode names."""
    images_dir = tmp_path / "train2017"
    images_dir.mkdir()
    images = [{"id": 139, "file_name": "000000000139.jpg", "width": 64, "height": 48},
              {"id": 285, "file_name": "bild_ä.jpg", "width": 32, "height": 32},
              {"id": 632, "file_name": "000000000632.jpg", "width": 40, "height": 40}]  # no annotations
    for im in images:
        Image.new("RGB", (im["width"], im["height"])).save(images_dir / im["file_name"])
    data = {"info": {"year": 2017}, "licenses": [], "images": images,
            "annotations": [{"id": 1, "image_id": 139, "category_id": 1, "bbox": [4.5, 6.0, 20.0, 10.0],
                             "area": 200.0, "iscrowd": 0, "segmentation": [[4.5, 6, 24.5, 6, 24.5, 16]]},
                            {"id": 2, "image_id": 139, "category_id": 64, "bbox": [30, 20, 20, 20], "area": 400.0,
                             "iscrowd": 1, "segmentation": {"counts": [0], "size": [48, 64]}},
                            {"id": 3, "image_id": 285, "category_id": 64, "bbox": [0, 0, 32, 32], "area": 1024.0,
                             "iscrowd": 0}],
            "categories": [{"id": 1, "name": "person", "supercategory": "person"},
                           {"id": 64, "name": "potted plant", "supercategory": "furniture"}]}
    path = tmp_path / "instances_train2017.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    coco = load_coco(path)
    ds = DetectionDataset(coco, images_dir, (32, 32), keep_ratio=True)
    assert [len(ds[i][1]["boxes"]) for i in range(3)] == [2, 1, 0]
    _, targets = load_batch(ds, [0, 1, 2], torch.device("cpu"))  # crowd regions are not trained on
    assert [len(t["boxes"]) for t in targets] == [1, 1, 0] and targets[0]["labels"].tolist() == [0]
    # COCO AP from pycocotools: the crowd region is ignored, the two objects found exactly -> AP 1
    dets = [{"image_id": 139, "category_id": 1, "bbox": [4.5, 6.0, 20.0, 10.0], "score": 0.9},
            {"image_id": 285, "category_id": 64, "bbox": [0, 0, 32, 32], "score": 0.8},
            {"image_id": 139, "category_id": 64, "bbox": [30, 20, 20, 20], "score": 0.7}]
    assert evaluate_detections(coco.to_dict(), dets)["coco_ap"] == pytest.approx(1.0)
