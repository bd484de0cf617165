"""Human in the loop: select-images -> annotation files -> (simulated) annotator -> import-labels -> merge.

The round trips check that labels coming back through Label Studio, CVAT or COCO
exports give exactly the labeled set of the ground-truth oracle path
(``merge_labels``); the format tests check the written files against the
structure the tools document; bad exports must fail with a message naming the
file, the image and the problem, and change nothing.
"""
from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from activedet.cli import main
from activedet.data.coco import CocoData, load_coco, validate_coco
from activedet.data.splits import check_partition, merge_labels
from activedet.hitl import cvat, label_studio
from activedet.hitl.boxes import Box, SelectedImage
from activedet.hitl.export import PACKAGE_FILES, read_selected_csv, write_annotation_package
from activedet.hitl.folder import folder_with_labeled, list_images
from activedet.hitl.importer import (labels_for_selection, merge_imported, next_backup_path, read_export,
                                     resolve_reference)
from activedet.io import InputError
from activedet.strategies import STRATEGIES

TINY = {"dataset": {"digit_scenes": {"n_pool": 40, "n_test": 4}},
        "detector": {"channels": [8, 16, 16, 16], "fpn_channels": 16, "head_convs": 1, "head_channels": 16},
        "train": {"epochs": 1, "min_iterations": 12, "batch_size": 8, "warmup_iterations": 2, "checkpoint_every": 0},
        "device": "cpu", "num_threads": 1}
BUDGET = 6
MGRAL_TINY = {"records": 2, "proxy_iterations": 4, "agent_iterations": 3, "sequence_length": 8, "max_fallbacks": 1}


class World:
    """A tiny pool, its initial labeled split and a detector trained on it (built once per module)."""

    def __init__(self, root: Path):
        self.ds = root / "ds"
        self.images = self.ds / "pool" / "images"
        self.pool_json = self.ds / "pool.json"
        self.labeled = root / "labeled.json"
        self.model = root / "model.pt"
        p = json.dumps(TINY)
        assert main(["make-dataset", "--params", p, "--out", str(self.ds)]) == 0
        assert main(["init-split", "--params", p, "--pool", str(self.pool_json), "--size", "10", "--seed", "0",
                     "--out", str(self.labeled)]) == 0
        assert main(["train", "--params", p, "--images", str(self.images), "--labeled", str(self.labeled),
                     "--out", str(self.model)]) == 0
        # MI-AOD selects with its own detector (two instance classifiers)
        self.miaod_model = root / "miaod.pt"
        assert main(["train-miaod", "--params", p, "--images", str(self.images), "--labeled", str(self.labeled),
                     "--pool", str(self.pool_json), "--out", str(self.miaod_model)]) == 0
        # LL4AL selects with its detector's loss-prediction module
        self.ll4al_model = root / "ll4al.pt"
        assert main(["train-ll4al", "--params", p, "--images", str(self.images), "--labeled", str(self.labeled),
                     "--out", str(self.ll4al_model)]) == 0
        self.pool = load_coco(self.pool_json)

    def select(self, out: Path, labeled: Path, strategy: str = "random", budget: int = BUDGET) -> list[SelectedImage]:
        model = {"miaod": self.miaod_model, "ll4al": self.ll4al_model}.get(STRATEGIES[strategy].trainer, self.model)
        # MGRAL trains its lookup table and agent inside select-images: a small table and few iterations
        options = ["--params", json.dumps({"strategies": {"mgral": MGRAL_TINY}})] if strategy == "mgral" else []
        assert main(["select-images", "--images", str(self.images), "--labeled", str(labeled), "--model",
                     str(model), "--strategy", strategy, "--budget", str(budget), "--out", str(out),
                     "--device", "cpu", "--batch-size", "16", *options]) == 0
        return read_selected_csv(out / "selected.csv")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    return World(tmp_path_factory.mktemp("hitl"))


def by_file_name(coco: CocoData) -> dict:
    """Image size and boxes per file name: what a labeled set says, independent of ids."""
    anns = coco.annotations_by_image()
    return {im["file_name"]: (float(im["width"]), float(im["height"]),
                              sorted((a["category_id"], tuple(round(v, 4) for v in a["bbox"])) for a in anns[im["id"]]))
            for im in coco.images}


def oracle_merge(world: World, selection: list[SelectedImage]) -> CocoData:
    pool_id = {im["file_name"]: im["id"] for im in world.pool.images}
    return merge_labels(load_coco(world.labeled), [pool_id[s.image] for s in selection], world.pool, len(selection))


def backups(labeled: Path) -> list[Path]:
    return sorted(labeled.parent.glob(f"{labeled.stem}.v*{labeled.suffix}"))


# ------------------------------------------------------------------ the folder image list
def test_folder_lists_images_recursively_and_gives_fresh_ids(tmp_path):
    root = tmp_path / "imgs"
    for rel, size in (("a.png", (30, 20)), ("sub/deeper/b.JPG", (17, 33)), ("c.jpeg", (8, 8)),
                      (".cache/d.png", (5, 5)), ("sub/e.webp", (12, 9))):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, "gray").save(root / rel)
    (root / "notes.txt").write_text("not an image")
    assert list_images(root) == ["a.png", "c.jpeg", "sub/deeper/b.JPG", "sub/e.webp"]

    labeled, _ = validate_coco({"images": [{"id": 7, "file_name": "c.jpeg", "width": 8, "height": 8}],
                                "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [1, 1, 3, 3]}],
                                "categories": [{"id": 1, "name": "x"}]}, "labeled.json")
    combined, new_ids = folder_with_labeled(root, labeled)
    assert new_ids == [8, 9, 10]
    new = {im["file_name"]: (im["id"], im["width"], im["height"]) for im in combined.images if im["id"] in new_ids}
    assert new == {"a.png": (8, 30, 20), "sub/deeper/b.JPG": (9, 17, 33), "sub/e.webp": (10, 12, 9)}
    assert combined.annotations == labeled.annotations and combined.categories == labeled.categories

    (root / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="broken.png.*unreadable"):
        folder_with_labeled(root, labeled)


def test_image_references_of_the_tools_resolve_to_the_selected_path():
    names = ["sub/a b.png", "sub/c.png", "other/c2.png", "x/dup.png", "y/dup.png"]
    assert resolve_reference("sub/a b.png", names) == "sub/a b.png"
    assert resolve_reference("/data/local-files/?d=sub/a%20b.png", names) == "sub/a b.png"
    assert resolve_reference("http://host:8080/images/sub/c.png", names) == "sub/c.png"
    assert resolve_reference("/data/upload/3/1a2b3c4d-c2.png", names) == "other/c2.png"
    assert resolve_reference("c.png", names) == "sub/c.png"  # a tool that flattened the folders
    assert resolve_reference("dup.png", names) is None  # names two selected images
    assert resolve_reference("sub/zzz.png", names) is None


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
def test_round_trip_through_label_studio_equals_the_oracle_merge(world, tmp_path, strategy):
    labeled = tmp_path / "labeled.json"
    shutil.copy(world.labeled, labeled)
    before = labeled.read_bytes()
    out = tmp_path / "annotate"
    selection = world.select(out, labeled, strategy)
    assert all((out / f).is_file() for f in PACKAGE_FILES)
    assert [s.rank for s in selection] == list(range(1, BUDGET + 1))
    labeled_names = {im["file_name"] for im in load_coco(labeled).images}
    assert len({s.image for s in selection}) == BUDGET and not labeled_names & {s.image for s in selection}

    export = tmp_path / "export.json"
    assert main(["simulate-annotator", "--tasks", str(out / "label_studio_tasks.json"),
                 "--ground-truth", str(world.pool_json), "--out", str(export)]) == 0
    assert main(["import-labels", "--export", str(export), "--selected", str(out / "selected.csv"),
                 "--labeled", str(labeled)]) == 0

    merged = load_coco(labeled)
    assert by_file_name(merged) == by_file_name(oracle_merge(world, selection))
    # the new images carry the ids of selected.csv; the previous version is kept byte for byte
    ids = {im["file_name"]: im["id"] for im in merged.images}
    assert all(ids[s.image] == s.image_id for s in selection)
    assert backups(labeled) == [tmp_path / "labeled.v1.json"]
    assert (tmp_path / "labeled.v1.json").read_bytes() == before


@pytest.mark.parametrize("fmt", ["cvat", "coco"])
def test_round_trip_through_cvat_and_coco_exports(world, tmp_path, fmt):
    labeled = tmp_path / "labeled.json"
    shutil.copy(world.labeled, labeled)
    out = tmp_path / "annotate"
    selection = world.select(out, labeled)
    export = tmp_path / ("annotations.xml" if fmt == "cvat" else "export.json")
    assert main(["simulate-annotator", "--tasks", str(out / "label_studio_tasks.json"), "--ground-truth",
                 str(world.pool_json), "--out", str(export), "--format", fmt]) == 0
    assert main(["import-labels", "--export", str(export), "--selected", str(out / "selected.csv"),
                 "--labeled", str(labeled), "--format", fmt]) == 0
    assert by_file_name(load_coco(labeled)) == by_file_name(oracle_merge(world, selection))


def test_a_second_import_appends_and_keeps_every_version(world, tmp_path):
    labeled = tmp_path / "labeled.json"
    shutil.copy(world.labeled, labeled)
    versions = [labeled.read_bytes()]
    for cycle in range(2):
        out = tmp_path / f"cycle{cycle}"
        world.select(out, labeled)
        export = tmp_path / f"export{cycle}.json"
        assert main(["simulate-annotator", "--tasks", str(out / "label_studio_tasks.json"),
                     "--ground-truth", str(world.pool_json), "--out", str(export)]) == 0
        assert main(["import-labels", "--export", str(export), "--selected", str(out / "selected.csv"),
                     "--labeled", str(labeled)]) == 0
        versions.append(labeled.read_bytes())
    assert len(load_coco(labeled).images) == 10 + 2 * BUDGET
    assert [p.name for p in backups(labeled)] == ["labeled.v1.json", "labeled.v2.json"]
    assert [p.read_bytes() for p in backups(labeled)] == versions[:2]
    assert next_backup_path(labeled).name == "labeled.v3.json"
    # importing the same labels again is refused: the images are labeled now
    assert main(["import-labels", "--export", str(tmp_path / "export1.json"), "--selected",
                 str(tmp_path / "cycle1" / "selected.csv"), "--labeled", str(labeled)]) == 2
    assert labeled.read_bytes() == versions[-1] and len(backups(labeled)) == 2


# ------------------------------------------------------------------ the files against the tools' formats
@pytest.fixture
def package(tmp_path):
    """An annotation package of two images in subfolders with known detections."""
    images = tmp_path / "images"
    sizes = {"sub/a.png": (80, 60), "b/c d.png": (50, 70)}
    for name, size in sizes.items():
        (images / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, "white").save(images / name)
    selection = [SelectedImage(1, "sub/a.png", 11, 80, 60, 0.9), SelectedImage(2, "b/c d.png", 12, 50, 70, None)]
    categories = [{"id": 3, "name": "cat"}, {"id": 5, "name": "dog & <fox>"}]
    detections = [
        {"image_id": 11, "category_id": 3, "bbox": [10.0, 5.0, 20.0, 30.0], "score": 0.8},
        {"image_id": 11, "category_id": 5, "bbox": [70.0, 50.0, 20.0, 20.0], "score": 0.6},  # reaches past the image
        {"image_id": 11, "category_id": 5, "bbox": [1.0, 1.0, 5.0, 5.0], "score": 0.1},  # below min_score
        {"image_id": 12, "category_id": 5, "bbox": [0.0, 0.0, 50.0, 70.0], "score": 0.99},
        {"image_id": 99, "category_id": 3, "bbox": [0.0, 0.0, 5.0, 5.0], "score": 0.99},  # not selected
    ]
    out = tmp_path / "out"
    write_annotation_package(out, images, selection, detections, categories, strategy="entropy",
                             import_command="python -m activedet import-labels ...", min_score=0.3)
    return out, selection, categories, sizes


def test_label_studio_tasks_and_config_follow_the_documented_format(package):
    out, selection, categories, sizes = package
    config = ET.parse(out / "label_studio_config.xml").getroot()
    assert config.tag == "View"
    image_tag = config.find("Image")
    rect_tag = config.find("RectangleLabels")
    assert image_tag.get("name") == "image" and image_tag.get("value") == "$image"
    assert rect_tag.get("toName") == image_tag.get("name")
    assert [lab.get("value") for lab in rect_tag.findall("Label")] == [c["name"] for c in categories]

    tasks = json.loads((out / "label_studio_tasks.json").read_text())
    assert isinstance(tasks, list) and len(tasks) == len(selection)
    n_regions = []
    for task, sel in zip(tasks, selection):
        assert set(task) == {"data", "predictions"}
        assert task["data"]["image"].startswith("/data/local-files/?d=")
        assert resolve_reference(task["data"]["image"], list(sizes)) == sel.image
        (prediction,) = task["predictions"]
        assert {"model_version", "result"} <= set(prediction)
        assert ("score" in prediction) == (sel.score is not None)
        width, height = sizes[sel.image]
        for item in prediction["result"]:
            assert {"id", "from_name", "to_name", "type", "original_width", "original_height", "value",
                    "score"} <= set(item)
            assert item["from_name"] == rect_tag.get("name") and item["to_name"] == image_tag.get("name")
            assert item["type"] == "rectanglelabels"
            assert (item["original_width"], item["original_height"]) == (width, height)
            v = item["value"]
            assert set(v) == {"x", "y", "width", "height", "rotation", "rectanglelabels"}
            assert v["rotation"] == 0 and len(v["rectanglelabels"]) == 1
            assert v["rectanglelabels"][0] in {c["name"] for c in categories}
            for start, size in (("x", "width"), ("y", "height")):
                assert 0 <= v[start] <= 100 and 0 < v[size] <= 100 and v[start] + v[size] <= 100 + 1e-9
            assert 0.3 <= item["score"] <= 1
        n_regions.append(len(prediction["result"]))
    assert n_regions == [2, 1]  # the low-score and the unselected image's detections are left out
    # the box reaching past the image is clipped to it: 70..80 x 50..60 of an 80x60 image
    clipped = tasks[0]["predictions"][0]["result"][1]["value"]
    assert (clipped["x"], clipped["y"], clipped["width"], clipped["height"]) == \
        pytest.approx((87.5, 250 / 3, 12.5, 50 / 3))
    assert tasks[0]["predictions"][0]["result"][0]["value"]["x"] == pytest.approx(12.5)


def test_cvat_file_follows_cvat_for_images_1_1(package):
    out, selection, categories, sizes = package
    root = ET.parse(out / "cvat_annotations.xml").getroot()
    assert root.tag == "annotations"
    assert [child.tag for child in root][:2] == ["version", "meta"]
    assert root.findtext("version") == "1.1"
    task = root.find("meta/task")
    assert task.findtext("size") == str(len(selection)) and task.findtext("mode") == "annotation"
    assert [lab.findtext("name") for lab in task.findall("labels/label")] == [c["name"] for c in categories]
    images = root.findall("image")
    # ids are the index in the lexical order of names, as CVAT numbers a task's frames
    assert [(im.get("id"), im.get("name")) for im in images] == [("0", "b/c d.png"), ("1", "sub/a.png")]
    boxes = 0
    for im in images:
        width, height = sizes[im.get("name")]
        assert (int(im.get("width")), int(im.get("height"))) == (width, height)
        for box in im:
            assert box.tag == "box"
            assert {"label", "xtl", "ytl", "xbr", "ybr", "occluded", "source"} <= set(box.attrib)
            assert box.get("occluded") == "0" and box.get("source") == "auto"
            assert box.get("label") in {c["name"] for c in categories}
            xtl, ytl, xbr, ybr = (float(box.get(k)) for k in ("xtl", "ytl", "xbr", "ybr"))
            assert 0 <= xtl < xbr <= width and 0 <= ytl < ybr <= height
            boxes += 1
    assert boxes == 3
    # and the parser reads back what the writer wrote
    parsed = {im.ref: [(b.label, b.x, b.y, b.w, b.h) for b in im.boxes]
              for im in cvat.parse_annotations(out / "cvat_annotations.xml")}
    assert parsed["sub/a.png"] == [("cat", 10.0, 5.0, 20.0, 30.0), ("dog & <fox>", 70.0, 50.0, 10.0, 10.0)]


def test_predictions_selection_and_contact_sheet(package):
    out, selection, categories, sizes = package
    preds = json.loads((out / "predictions.json").read_text())
    coco, _ = validate_coco(preds, "predictions.json")
    assert {im["file_name"] for im in coco.images} == set(sizes)
    assert len(coco.annotations) == 4 and all("score" in a for a in coco.annotations)  # every detection, none of id 99
    assert read_selected_csv(out / "selected.csv") == selection
    with Image.open(out / "selected.png") as sheet:
        assert sheet.width > 2 * 200 and sheet.height > 200
        # the detection boxes are drawn in colour on the white images
        pixels = np.asarray(sheet.convert("RGB")).astype(int)
        assert (pixels.max(axis=-1) != pixels.min(axis=-1)).any()
    assert "python -m activedet import-labels" in (out / "README.txt").read_text()


def test_label_studio_percentages_come_back_as_the_same_pixels(package, tmp_path):
    out, selection, categories, sizes = package
    truth = {"sub/a.png": [Box("cat", 10.25, 5.5, 20.125, 30.0625), Box("dog & <fox>", 0.0, 0.0, 80.0, 60.0)],
             "b/c d.png": [Box("cat", 49.0, 69.0, 1.0, 1.0)]}
    # tasks that kept only the image URL (no file_name): the path comes from the quoted ?d= parameter
    tasks = [label_studio.export_task(k, {"image": label_studio.image_url(s.image)}, truth[s.image], s.width, s.height)
             for k, s in enumerate(selection, start=1)]
    assert "c%20d.png" in tasks[1]["data"]["image"]
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    coco = labels_for_selection(read_export(export), selection, categories, export, "selected.csv")
    category = {c["name"]: c["id"] for c in categories}
    by_id = {s.image_id: s.image for s in selection}
    got = sorted((by_id[a["image_id"]], a["category_id"], a["bbox"]) for a in coco.annotations)
    want = sorted((name, category[b.label], [b.x, b.y, b.w, b.h]) for name, boxes in truth.items() for b in boxes)
    assert got == want
    assert [(im["id"], im["file_name"], im["width"], im["height"]) for im in coco.images] == \
        [(11, "sub/a.png", 80, 60), (12, "b/c d.png", 50, 70)]


# ------------------------------------------------------------------ bad imports change nothing
def _first_task_with_boxes(tasks):
    return next(t for t in tasks if t["annotations"][0]["result"])


def _unknown_label(tasks):
    t = _first_task_with_boxes(tasks)
    t["annotations"][0]["result"][0]["value"]["rectanglelabels"] = ["cat"]
    return t["data"]["file_name"], "unknown label 'cat'"


def _missing_image(tasks):
    t = tasks.pop(2)
    return t["data"]["file_name"], "missing from the export"


def _wrong_size(tasks):
    t = _first_task_with_boxes(tasks)
    for item in t["annotations"][0]["result"]:
        item["original_width"] = 128
    return t["data"]["file_name"], "wrong image size"


def _box_outside(tasks):
    t = _first_task_with_boxes(tasks)
    t["annotations"][0]["result"][0]["value"].update(x=90.0, width=20.0)
    return t["data"]["file_name"], "outside the image of size 64x64"


def _not_selected(tasks):
    tasks[0]["data"]["file_name"] = tasks[0]["data"]["image"] = "999999.png"
    return "999999.png", "is not one of the 6 selected images"


def _twice(tasks):
    tasks.append(json.loads(json.dumps(tasks[0])))
    return tasks[0]["data"]["file_name"], "annotated again"


@pytest.fixture(scope="module")
def good_export(world, tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    world.select(d / "annotate", world.labeled)
    assert main(["simulate-annotator", "--tasks", str(d / "annotate" / "label_studio_tasks.json"),
                 "--ground-truth", str(world.pool_json), "--out", str(d / "export.json")]) == 0
    return d / "annotate" / "selected.csv", json.loads((d / "export.json").read_text())


@pytest.mark.parametrize("break_export", [_unknown_label, _missing_image, _wrong_size, _box_outside, _not_selected,
                                          _twice], ids=lambda f: f.__name__.strip("_"))
@pytest.mark.parametrize("imported_out", [False, True], ids=["merge", "imported-out"])
def test_bad_exports_name_file_image_and_problem_and_change_nothing(world, good_export, tmp_path, capsys,
                                                                     break_export, imported_out):
    selected_csv, tasks = good_export
    tasks = json.loads(json.dumps(tasks))
    image, problem = break_export(tasks)
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    labeled = tmp_path / "labeled.json"
    shutil.copy(world.labeled, labeled)
    before = labeled.read_bytes()
    args = ["import-labels", "--export", str(export), "--selected", str(selected_csv), "--labeled", str(labeled)]
    if imported_out:
        args += ["--imported-out", str(tmp_path / "imported_labels.json")]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert str(export) in err and image in err and problem in err and "nothing was imported" in err
    assert labeled.read_bytes() == before
    assert backups(labeled) == [] and not (tmp_path / "imported_labels.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.json", "labeled.json"]  # no stray temp files


def test_cvat_documents_with_a_dtd_or_tracks_are_refused(tmp_path):
    bomb = tmp_path / "bomb.xml"
    bomb.write_text('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xx">]><annotations>&x;</annotations>')
    with pytest.raises(InputError, match="DTD"):
        cvat.parse_annotations(bomb)
    video = tmp_path / "video.xml"
    video.write_text('<annotations><version>1.1</version><track id="0" label="a"/></annotations>')
    with pytest.raises(InputError, match="CVAT for video"):
        cvat.parse_annotations(video)


def test_several_label_studio_annotations_refused_unless_one_is_marked_ground_truth(world, good_export, tmp_path, capsys):
    selected_csv, tasks = good_export
    tasks = json.loads(json.dumps(tasks))
    second = json.loads(json.dumps(tasks[0]["annotations"][0]))
    second["result"] = []
    tasks[0]["annotations"].append(second)
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    labeled = tmp_path / "labeled.json"
    shutil.copy(world.labeled, labeled)
    args = ["import-labels", "--export", str(export), "--selected", str(selected_csv), "--labeled", str(labeled),
            "--imported-out", str(tmp_path / "imported.json"), "--several-annotations", "refuse"]
    assert main(args) == 2 and "mark exactly one as ground truth" in capsys.readouterr().err
    tasks[0]["annotations"][0]["ground_truth"] = True
    export.write_text(json.dumps(tasks))
    assert main(args) == 0
    assert len(json.loads((tmp_path / "imported.json").read_text())["images"]) == BUDGET


def test_select_images_refuses_a_budget_above_the_unlabeled_images(world, tmp_path, capsys):
    assert main(["select-images", "--images", str(world.images), "--labeled", str(world.labeled), "--model",
                 str(world.model), "--strategy", "random", "--budget", "31", "--out", str(tmp_path / "o"),
                 "--device", "cpu"]) == 2
    assert "larger than the unlabeled images" in capsys.readouterr().err and not (tmp_path / "o").exists()


# ------------------------------------------------------------------ the pipeline's human mode
def test_merge_imported_keeps_the_invariants_and_refuses_stale_labels(world, tmp_path):
    labeled = load_coco(world.labeled)
    unlabeled = [i for i in world.pool.image_ids if i not in set(labeled.image_ids)]
    chosen = unlabeled[:BUDGET]
    imported = world.pool.subset(chosen)  # people who label exactly like the ground truth
    merged = merge_imported(labeled, chosen, world.pool, imported, BUDGET)
    check_partition(merged, world.pool, len(labeled.images) + BUDGET)  # equals the oracle's labels here
    assert len({a["id"] for a in merged.annotations}) == len(merged.annotations)

    with pytest.raises(InputError, match="imported for another selection"):
        merge_imported(labeled, unlabeled[1:BUDGET + 1], world.pool, imported, BUDGET)
    with pytest.raises(InputError, match="budget"):
        merge_imported(labeled, chosen[:-1], world.pool, world.pool.subset(chosen[:-1]), BUDGET)
    wrong = world.pool.subset(chosen)
    wrong.images[0] = dict(wrong.images[0], file_name="elsewhere.png")
    with pytest.raises(InputError, match="elsewhere.png"):
        merge_imported(labeled, chosen, world.pool, wrong, BUDGET)


def _rule_blocks(stdout: str, rule: str) -> list[str]:
    """The dry-run blocks (``rule NAME:`` / ``localrule NAME:`` and its indented lines) of one rule."""
    blocks, current = [], None
    for line in stdout.splitlines():
        if line.startswith(("rule ", "localrule ")):
            current = [line] if line.split()[1] == f"{rule}:" else None
            if current is not None:
                blocks.append(current)
        elif current is not None:
            current.append(line)
    return ["\n".join(b) for b in blocks]


def test_pipeline_human_mode_merge_waits_for_imported_labels(tmp_path):
    from helpers.pipeline import BIN, job_counts, run, workdir

    d = workdir(tmp_path, extra={"active.oracle": "human", "active.cycles": 3,
                                 "active.strategies": ["random", "entropy"]})
    out = run([BIN / "snakemake", "-n", "-p"], d).stdout
    counts = job_counts(out)
    assert counts["merge_labels"] == counts["export_for_annotation"] == counts["await_imported_labels"] == 2 * 2
    merges = _rule_blocks(out, "merge_labels")
    assert len(merges) == 4
    for block in merges:
        run_dir = block.split("output: ")[1].split("/labeled.json")[0]
        assert f"{run_dir}/imported_labels.pending" in block.split("input: ")[1].splitlines()[0]
        assert "merge-imported" in block and "--pool" in block
    awaiting = _rule_blocks(out, "await_imported_labels")
    assert all("waits for labels from people" in b and "annotation/README.txt" in b for b in awaiting)

    # once import-labels has written a cycle's labels, that merge reads them and nothing awaits them
    cycle0 = d / "results" / "tiny_human" / "runs" / "random" / "seed0" / "cycle0"  # human mode: an experiment apart
    cycle0.mkdir(parents=True)
    (cycle0 / "imported_labels.json").write_text("{}")
    out = run([BIN / "snakemake", "-n", "-p"], d).stdout
    assert job_counts(out)["await_imported_labels"] == 3
    (merge0,) = [b for b in _rule_blocks(out, "merge_labels")
                 if b.split("output: ")[1].startswith("results/tiny_human/runs/random/seed0/cycle0/")]
    assert "random/seed0/cycle0/imported_labels.json" in merge0.split("input: ")[1].splitlines()[0]

    # the oracle mode has neither the export nor the waiting
    (tmp_path / "oracle").mkdir()
    d2 = workdir(tmp_path / "oracle", extra={"active.cycles": 3, "active.strategies": ["random"]})
    counts = job_counts(run([BIN / "snakemake", "-n", "--quiet", "rules"], d2).stdout)
    assert counts["merge_labels"] == 2
    assert "await_imported_labels" not in counts and "export_for_annotation" not in counts
