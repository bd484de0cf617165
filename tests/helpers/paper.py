"""The paper configurations' workflow copy and fake VOC / COCO trees of the real sizes, for dry runs."""
import json
import shutil
import zlib
from pathlib import Path

import yaml

from helpers.pipeline import ROOT
from helpers.voc import obj, random_jpeg, write_set, write_voc

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


def write_instances(root: Path, split: str, images: list, annotations: list, categories: list) -> None:
    """root/<split>/ and root/annotations/instances_<split>.json."""
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": categories}))


def fake_coco(root: Path, sizes=(("train2017", 117266), ("val2017", 5000))) -> Path:
    """COCO 2017's image counts, one box each (a dry run reads the annotation files; no image is opened)."""
    for split, n in sizes:
        images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 640, "height": 480} for i in range(1, n + 1)]
        anns = [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 10, 10]} for i in range(1, n + 1)]
        write_instances(root, split, images, anns, [{"id": 1, "name": "person"}])
    return root


def roots_file(tmp_path: Path, kind: str, tiny: bool = False) -> Path:
    """roots.yaml for a VOC or COCO tree under tmp_path: the real sizes without images (dry runs), or
    ``tiny`` real trees with images (tiny_voc, tiny_coco; end-to-end runs)."""
    if kind == "voc":
        root = (tiny_voc if tiny else fake_voc)(tmp_path / "VOCdevkit")
        roots = {"dataset": {"pool_images": str(root), "test_images": str(root)}}
    else:
        root = (tiny_coco if tiny else fake_coco)(tmp_path / "coco")
        roots = {"dataset": {"pool_images": str(root / "train2017"),
                             "pool_annotations": str(root / "annotations" / "instances_train2017.json"),
                             "test_images": str(root / "val2017"),
                             "test_annotations": str(root / "annotations" / "instances_val2017.json")}}
    path = tmp_path / f"roots_{kind}.yaml"
    path.write_text(yaml.safe_dump(roots))
    return path


# Tiny real trees for end-to-end runs (tests/test_paper_end_to_end.py): distinct random JPEGs (the dataset
# check refuses duplicate images), one or two boxes of five VOC classes each.
TINY_CLASSES = ("person", "car", "dog", "cat", "bird")


def _tiny_boxes(rng, i):
    boxes = []
    for k in range(1 + i % 2):
        x, y = int(rng.integers(0, 60)), int(rng.integers(0, 40))
        boxes.append((TINY_CLASSES[(i + k) % len(TINY_CLASSES)], x + 1, y + 1, x + 40, y + 40))
    return boxes


def tiny_voc(root: Path, sizes=((("VOC2007", "trainval"), 10), (("VOC2012", "trainval"), 6),
                                (("VOC2007", "test"), 6))) -> Path:
    """A VOCdevkit with the three sets the VOC paper configurations read, real XML and JPEG files."""
    import numpy as np
    rng = np.random.default_rng(0)
    for (year, set_name), n in sizes:
        names = [f"{year[-4:]}_{set_name}_{i:03d}" for i in range(n)]
        for i, name in enumerate(names):
            write_voc(root, year, name, size=(120, 90), objects=[obj(*b) for b in _tiny_boxes(rng, i)], image=True)
        write_set(root, year, set_name, names)
    return root


def tiny_coco(root: Path, sizes=(("train2017", 16), ("val2017", 6))) -> Path:
    """COCO 2017's layout with real JPEGs and instances_*.json of the five classes."""
    import numpy as np
    rng = np.random.default_rng(0)
    categories = [{"id": i + 1, "name": c} for i, c in enumerate(TINY_CLASSES)]
    for split, n in sizes:
        images, annotations = [], []
        for i in range(n):
            name = f"{i + 1:012d}.jpg"
            random_jpeg(root / split / name, (120, 90), zlib.crc32(f"{split}/{name}".encode()))
            images.append({"id": i + 1, "file_name": name, "width": 120, "height": 90})
            for c, x1, y1, x2, y2 in _tiny_boxes(rng, i):
                annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "iscrowd": 0,
                                    "category_id": TINY_CLASSES.index(c) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                    "area": (x2 - x1) * (y2 - y1)})
        write_instances(root, split, images, annotations, categories)
    return root


def imagenet_stand_ins(d: Path) -> dict[str, Path]:
    """Randomly initialised torchvision backbones saved where configs/paper/weights.yaml names the ImageNet
    files (no download here): the run loads them exactly as it would the real ones. VGG16 without its
    classifier (the SSD backbone reads the convolutions only; 58 MB instead of 528 MB)."""
    import torch
    import torchvision
    files = {}
    for arch, rel in yaml.safe_load((PAPER / "weights.yaml").read_text())["imagenet_weights"].items():
        torch.manual_seed(0)
        if arch.startswith("resnet50"):
            state = torchvision.models.resnet50().state_dict()
        else:
            state = {k: v for k, v in torchvision.models.vgg16().state_dict().items() if k.startswith("features.")}
        path = d / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, path)
        files[arch] = path
    return files
