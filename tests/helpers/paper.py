"""The paper configurations' workflow copy and fake VOC / COCO trees of the real sizes, for dry runs."""
import json
import shutil
from pathlib import Path

import yaml

from helpers.pipeline import ROOT
from helpers.voc import write_set

PAPER = ROOT / "configs" / "paper"
VOC_SETS = {("VOC2007", "trainval"): 5011, ("VOC2012", "trainval"): 11540, ("VOC2007", "test"): 4952}


def workflow_copy(tmp_path: Path) -> Path:
    d = tmp_path / "wf"
    d.mkdir()
    shutil.copy(ROOT / "Snakefile", d)
    shutil.copytree(ROOT / "workflow", d / "workflow", symlinks=False)
    shutil.copytree(ROOT / "configs", d / "configs")
    shutil.copy(ROOT / "params.yaml", d)
    for path in yaml.safe_load((PAPER / "weights.yaml").read_text())["imagenet_weights"].values():
        (d / path).parent.mkdir(parents=True, exist_ok=True)
        (d / path).write_bytes(b"")  # a dry run checks the ImageNet weights exist, it does not read them
    return d


def fake_voc(root: Path, sizes=VOC_SETS) -> Path:
    """ImageSets lists of the real sizes (names only: a dry run reads no XML)."""
    for (year, name), n in sizes.items():
        write_set(root, year, name, [f"{year}_{name}_{i:06d}" for i in range(n)])
    return root


def fake_coco(root: Path, sizes=(("train2017", 117266), ("val2017", 5000))) -> Path:
    """COCO 2017's image counts, one box each (a dry run reads the annotation files; no image is opened)."""
    (root / "annotations").mkdir(parents=True)
    for split, n in sizes:
        (root / split).mkdir()
        images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 640, "height": 480} for i in range(1, n + 1)]
        anns = [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 10, 10]} for i in range(1, n + 1)]
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(
            {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}))
    return root


def roots_file(tmp_path: Path, kind: str) -> Path:
    if kind == "voc":
        root = fake_voc(tmp_path / "VOCdevkit")
        roots = {"dataset": {"pool_images": str(root), "test_images": str(root)}}
    else:
        root = fake_coco(tmp_path / "coco")
        roots = {"dataset": {"pool_images": str(root / "train2017"),
                             "pool_annotations": str(root / "annotations" / "instances_train2017.json"),
                             "test_images": str(root / "val2017"),
                             "test_annotations": str(root / "annotations" / "instances_val2017.json")}}
    path = tmp_path / f"roots_{kind}.yaml"
    path.write_text(yaml.safe_dump(roots))
    return path
