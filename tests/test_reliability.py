"""Reliability: bad input fails clearly and keeps earlier outputs, atomic writes, merge invariants, safe loading,
and a pipeline killed with SIGKILL at several points resumes to the results of an uninterrupted run."""
from __future__ import annotations

import copy
import errno
import glob
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import assume, given, settings, strategies as st
from PIL import Image

from activedet import io as aio
from activedet.cli import main
from activedet.data.splits import initial_split, merge_labels, unlabeled_ids
from activedet.io import InputError, atomic_path, write_json, write_text

from helpers.pipeline import BIN, env, workdir
from helpers.splits import check_invariants, make_pool

TINY = {"dataset": {"input_size": [32, 32]},
        "detector": {"channels": [8, 16, 16, 16], "fpn_channels": 16, "head_convs": 1, "head_channels": 16},
        "train": {"epochs": 1, "min_iterations": 4, "batch_size": 4, "warmup_iterations": 1, "checkpoint_every": 0},
        "device": "cpu", "num_threads": 1}
TINY_JSON = json.dumps(TINY)
# MGRAL's steps on the same data: a 2-record table, a few proxy and agent iterations
MGRAL_JSON = json.dumps({**TINY, "strategies": {"mgral": {"records": 2, "proxy_iterations": 2, "agent_iterations": 2,
                                                          "sequence_length": 4, "max_fallbacks": 1}}})
EARLIER = b"an output of an earlier run that must survive\n"


# ------------------------------------------------------------------ a small COCO dataset made in tmp_path
def base_coco(n_categories: int = 2) -> dict:
    """8 images of 32x32; images 7 and 8 have no boxes (valid)."""
    boxes = [(1, 1, [2, 2, 10, 10]), (1, 2, [14, 14, 12, 12]), (2, 1, [4, 4, 8, 8]), (3, 2, [0, 0, 16, 16]),
             (4, 1, [10, 10, 10, 10]), (5, 2, [5, 5, 20, 20]), (6, 1, [1, 1, 30, 30])]
    return {"info": {"description": "reliability tests"},
            "images": [{"id": i, "file_name": f"img{i}.png", "width": 32, "height": 32} for i in range(1, 9)],
            "annotations": [{"id": k + 1, "image_id": im, "category_id": min(c, n_categories), "bbox": b}
                            for k, (im, c, b) in enumerate(boxes)],
            "categories": [{"id": c, "name": "ab"[c - 1]} for c in range(1, n_categories + 1)]}


def write_png(path: Path, w: int = 32, h: int = 32, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def write_coco(root: Path, data: dict, name: str = "pool.json", images: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if images:
        for im in data["images"]:
            write_png(root / "images" / im["file_name"], im["width"], im["height"], seed=im["id"])
    (root / name).write_text(json.dumps(data), encoding="utf-8")
    return root / name


def earlier(path: Path) -> str:
    """An output a previous run left at ``path``: a failing step must leave it byte-identical."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(EARLIER)
    return str(path)


def snapshot(*roots: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for r in roots for p in sorted(Path(r).rglob("*")) if p.is_file()}


def temp_files(root: Path) -> list[str]:
    return [str(p) for p in Path(root).rglob(".*.tmp")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The base dataset (also its test split) and a tiny detector trained on all 8 images."""
    root = tmp_path_factory.mktemp("trained")
    pool = write_coco(root, base_coco())
    model = root / "model.pt"
    assert main(["train", "--params", TINY_JSON, "--images", str(root / "images"), "--labeled", str(pool),
                 "--out", str(model), "--summary", str(root / "train.json")]) == 0
    return root


# ------------------------------------------------------------------ item 1: one case per bad input
CASES = {}


def case(name):
    def register(fn):
        CASES[name] = fn
        return fn
    return register


def _init_split(tmp, data, size=4, params=None, name="pool.json"):
    pool = write_coco(tmp / "data", data, name=name, images=False)
    out = earlier(tmp / "results" / "splits" / "labeled.json")
    argv = ["init-split", "--pool", str(pool), "--size", str(size), "--seed", "0", "--out", out]
    return (argv + ["--params", params] if params else argv), str(pool)


def _train(tmp, data, params=TINY_JSON):
    labeled = write_coco(tmp / "data", data, name="labeled.json")
    out, summary = earlier(tmp / "run" / "model.pt"), earlier(tmp / "run" / "train.json")
    return ["train", "--params", params, "--images", str(tmp / "data" / "images"), "--labeled", str(labeled),
            "--out", out, "--summary", summary], str(labeled)


def _mutated(fn):
    data = base_coco()
    fn(data)
    return data


@case("missing image file (train)")
def _(tmp, trained):
    argv, labeled = _train(tmp, base_coco())
    (tmp / "data" / "images" / "img3.png").unlink()
    return argv, [labeled, "image id 3", "img3.png", "not found"]


@case("missing image file of the unlabeled pool (score)")
def _(tmp, trained):
    pool = write_coco(tmp / "data", base_coco())
    labeled = write_coco(tmp / "data", {**base_coco(), "images": base_coco()["images"][:4],
                                        "annotations": [a for a in base_coco()["annotations"] if a["image_id"] <= 4]},
                         name="labeled.json", images=False)
    (tmp / "data" / "images" / "img8.png").unlink()
    return ["score", "--params", TINY_JSON, "--strategy", "entropy", "--model", str(trained / "model.pt"),
            "--images", str(tmp / "data" / "images"), "--pool", str(pool), "--labeled", str(labeled),
            "--out", earlier(tmp / "run" / "scores.parquet"), "--timing", earlier(tmp / "run" / "score.json")], \
        [str(pool), "image id 8", "img8.png", "not found"]


@case("corrupt image file (train)")
def _(tmp, trained):
    argv, labeled = _train(tmp, base_coco())
    (tmp / "data" / "images" / "img2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3)
    return argv, [labeled, "image id 2", "img2.png", "unreadable or corrupt"]


@case("truncated image file (evaluate)")
def _(tmp, trained):
    test = write_coco(tmp / "data", base_coco(), name="test.json")
    png = tmp / "data" / "images" / "img5.png"
    png.write_bytes(png.read_bytes()[:120])
    return ["evaluate", "--model", str(trained / "model.pt"), "--images", str(tmp / "data" / "images"),
            "--annotations", str(test), "--out", earlier(tmp / "run" / "metrics.json"), "--device", "cpu"], \
        [str(test), "image id 5", "unreadable or corrupt"]


@case("image size differs from the annotation (train)")
def _(tmp, trained):
    argv, labeled = _train(tmp, base_coco())
    write_png(tmp / "data" / "images" / "img4.png", 40, 32)
    return argv, [labeled, "image id 4", "40x32"]


@case("malformed JSON (init-split)")
def _(tmp, trained):
    argv, pool = _init_split(tmp, base_coco())
    Path(pool).write_text('{\n "images": [],\n "annotations": [,]\n}\n')
    return argv, [pool, "malformed JSON at line 3"]


@case("malformed XML (import-labels, CVAT export)")
def _(tmp, trained):
    labeled = write_coco(tmp / "data", {**base_coco(), "images": base_coco()["images"][:6],
                                        "annotations": [a for a in base_coco()["annotations"] if a["image_id"] <= 6]},
                         name="labeled.json")
    (tmp / "round1").mkdir()
    (tmp / "round1" / "selected.csv").write_text("rank,image,image_id,score,width,height\n1,img7.png,7,0.5,32,32\n")
    export = tmp / "round1" / "export.xml"
    export.write_text('<?xml version="1.0"?>\n<annotations>\n  <image id="0" name="img7.png" width="32" height="32">\n'
                      '    <box label="a" xtl="1" ytl="1" xbr="9" ybr="9"\n</annotations>\n')
    return ["import-labels", "--export", str(export), "--selected", str(tmp / "round1" / "selected.csv"),
            "--labeled", str(labeled)], [str(export), "malformed XML at line 5"]


@case("XML with an entity declaration (refused, never expanded)")
def _(tmp, trained):
    args, _ = CASES["malformed XML (import-labels, CVAT export)"](tmp, trained)
    export = Path(args[2])
    export.write_text('<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
                      '<annotations>&x;</annotations>\n')
    return args, [str(export), "DTD or entity declarations is refused"]


@case("annotation refers to an unknown image")
def _(tmp, trained):
    argv, pool = _init_split(tmp, _mutated(lambda d: d["annotations"][4].update(image_id=99)))
    return argv, [pool, "annotation id 5", "unknown image id 99"]


@case("annotation refers to an unknown category")
def _(tmp, trained):
    argv, pool = _init_split(tmp, _mutated(lambda d: d["annotations"][2].update(category_id=7)))
    return argv, [pool, "annotation id 3", "unknown category id 7", "known: [1, 2]"]


@case("box with zero width")
def _(tmp, trained):
    argv, pool = _init_split(tmp, _mutated(lambda d: d["annotations"][1].update(bbox=[3, 3, 0, 5])))
    return argv, [pool, "annotation id 2", "zero or negative size"]


@case("box with negative height")
def _(tmp, trained):
    argv, pool = _init_split(tmp, _mutated(lambda d: d["annotations"][6].update(bbox=[3, 3, 5, -2])))
    return argv, [pool, "annotation id 7", "zero or negative size"]


@case("box outside the image, on_box_outside: error (refused)")
def _(tmp, trained):
    argv, pool = _init_split(tmp, _mutated(lambda d: d["annotations"][4].update(bbox=[25, 25, 10, 10])),
                             params='{"dataset": {"on_box_outside": "error"}}')
    return argv, [pool, "annotation id 5", "outside image 4 of size 32x32", "on_box_outside: clip"]


@case("box entirely outside the image, on_box_outside: clip (refused)")
def _(tmp, trained):
    argv, pool = _init_split(tmp, _mutated(lambda d: d["annotations"][4].update(bbox=[40, 4, 5, 5])))
    return argv, [pool, "annotation id 5", "entirely outside image 4"]


@case("duplicate image ids")
def _(tmp, trained):
    argv, pool = _init_split(tmp, _mutated(lambda d: d["images"][3].update(id=2)))
    return argv, [pool, "duplicate image id 2"]


@case("duplicate annotation ids")
def _(tmp, trained):
    argv, pool = _init_split(tmp, _mutated(lambda d: d["annotations"][3].update(id=1)))
    return argv, [pool, "duplicate annotation id 1"]


@case("empty dataset (no images)")
def _(tmp, trained):
    argv, pool = _init_split(tmp, {**base_coco(), "images": [], "annotations": []})
    return argv, [pool, "the dataset has no images"]


@case("no categories")
def _(tmp, trained):
    argv, pool = _init_split(tmp, {**base_coco(), "annotations": [], "categories": []})
    return argv, [pool, "no categories"]


@case("labeled set without a single box (train)")
def _(tmp, trained):
    argv, labeled = _train(tmp, {**base_coco(), "annotations": []})
    return argv, [labeled, "no boxes at all"]


@case("file_name escaping the images folder with ../")
def _(tmp, trained):
    argv, pool = _init_split(tmp, _mutated(lambda d: d["images"][1].update(file_name="../../secret.png")))
    return argv, [pool, "image id 2", "'../../secret.png' escapes the images folder"]


@case("absolute file_name")
def _(tmp, trained):
    argv, pool = _init_split(tmp, _mutated(lambda d: d["images"][5].update(file_name="/etc/passwd")))
    return argv, [pool, "image id 6", "'/etc/passwd' escapes the images folder"]


@case("budget larger than the unlabeled pool (select)")
def _(tmp, trained):
    scores = tmp / "run" / "scores.parquet"
    scores.parent.mkdir(parents=True)
    pd.DataFrame({"image_id": range(1, 9), "labeled": [True] * 5 + [False] * 3,
                  "score": [np.nan] * 5 + [0.1, 0.2, 0.3]}).to_parquet(scores, index=False)
    return ["select", "--strategy", "entropy", "--scores", str(scores), "--budget", "4", "--seed", "0",
            "--cycle", "0", "--out", earlier(tmp / "run" / "selected.json")], \
        [str(scores), "active.budget (4) is larger than the unlabeled pool (3 images left)"]


@case("initial labeled set larger than the pool (init-split)")
def _(tmp, trained):
    argv, pool = _init_split(tmp, base_coco(), size=9)
    return argv, [pool, "active.initial_labeled (9) is larger than the pool (8 images)"]


@case("unknown strategy name (--strategy)")
def _(tmp, trained):
    argv = CASES["budget larger than the unlabeled pool (select)"](tmp, trained)[0]
    argv[argv.index("--budget") + 1] = "2"
    argv[argv.index("--strategy") + 1] = "entropi"
    return argv, ["unknown strategy 'entropi'", "known: cdal, coreset, ebal, entropy"]


@case("unknown strategy name (params.yaml)")
def _(tmp, trained):
    params = tmp / "params.yaml"
    params.write_text("active:\n  strategies: [random, entropi]\n")
    argv, pool = _init_split(tmp, base_coco(), params=str(params))
    return argv, [str(params), "active.strategies: unknown strategy entropi"]


@case("wrong types in params.yaml")
def _(tmp, trained):
    params = tmp / "params.yaml"
    params.write_text("train:\n  lr: fast\n  batch_size: 2.5\nactive:\n  budget: ten\n")
    argv, _ = _train(tmp, base_coco(), params=str(params))
    return argv, [str(params), "train.lr: 'fast' is not of type 'number'", "train.batch_size: 2.5 is not of type",
                  "active.budget: 'ten' is not of type 'integer'"]


@case("unknown key in params.yaml")
def _(tmp, trained):
    params = tmp / "params.yaml"
    params.write_text("train:\n  lrr: 0.1\n")
    argv, _ = _train(tmp, base_coco(), params=str(params))
    return argv, [str(params), "unknown key train.lrr"]


@case("malformed YAML in params.yaml")
def _(tmp, trained):
    params = tmp / "params.yaml"
    params.write_text("train:\n  lr: [0.1\n  epochs: 3\n")
    argv, _ = _train(tmp, base_coco(), params=str(params))
    return argv, [str(params), "malformed YAML"]


@case("code in params.yaml is not evaluated (python tag)")
def _(tmp, trained):
    params = tmp / "params.yaml"
    params.write_text(f"train: !!python/object/apply:os.system ['touch {tmp / 'pwned'}']\n")
    argv, _ = _train(tmp, base_coco(), params=str(params))
    return argv, [str(params), "refused YAML tag", "python/object/apply:os.system", "never evaluated"]


@case("checkpoint with pickled code (evaluate)")
def _(tmp, trained):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp / 'pwned'}",))

    model = tmp / "run" / "model.pt"
    model.parent.mkdir(parents=True)
    torch.save({"model": {}, "params": Evil(), "categories": []}, model)
    test = write_coco(tmp / "data", base_coco(), name="test.json", images=False)
    return ["evaluate", "--model", str(model), "--images", str(tmp / "data" / "images"), "--annotations", str(test),
            "--out", earlier(tmp / "run" / "metrics.json"), "--device", "cpu"], \
        [str(model), "refused", "weights_only=True", "GLOBAL"]


@case("corrupt checkpoint (score)")
def _(tmp, trained):
    model = tmp / "run" / "model.pt"
    model.parent.mkdir(parents=True)
    model.write_bytes((trained / "model.pt").read_bytes()[:500])
    pool = write_coco(tmp / "data", base_coco(), images=False)
    return ["score", "--params", TINY_JSON, "--strategy", "entropy", "--model", str(model), "--images",
            str(tmp / "data" / "images"), "--pool", str(pool), "--labeled", str(pool),
            "--out", earlier(tmp / "run" / "scores.parquet")], [str(model), "not a readable checkpoint"]


@case("test split with a class the model does not know (evaluate)")
def _(tmp, trained):
    data = base_coco()
    data["categories"].append({"id": 3, "name": "c"})
    data["annotations"][0]["category_id"] = 3
    test = write_coco(tmp / "data", data, name="test.json")
    return ["evaluate", "--model", str(trained / "model.pt"), "--images", str(tmp / "data" / "images"),
            "--annotations", str(test), "--out", earlier(tmp / "run" / "metrics.json"), "--device", "cpu"], \
        [str(test), "category ids [3] are not among the model's classes"]


def _merge(tmp, selected_ids, budget):
    pool = write_coco(tmp / "data", base_coco(), images=False)
    labeled = tmp / "data" / "labeled.json"
    labeled.write_text(json.dumps({**base_coco(), "images": base_coco()["images"][:4],
                                   "annotations": [a for a in base_coco()["annotations"] if a["image_id"] <= 4]}))
    selected = tmp / "run" / "selected.json"
    selected.parent.mkdir(parents=True)
    selected.write_text(json.dumps({"selected": [{"image_id": i} for i in selected_ids]}))
    return ["merge", "--labeled", str(labeled), "--selected", str(selected), "--pool", str(pool),
            "--budget", str(budget), "--out", earlier(tmp / "run" / "labeled.json")]


@case("merge: an image selected twice")
def _(tmp, trained):
    argv = _merge(tmp, [5, 6, 5], 3)
    return argv, [f"{argv[4]}: selection names images more than once: [5]"]


@case("merge: selection smaller than the budget")
def _(tmp, trained):
    argv = _merge(tmp, [5, 6], 3)
    return argv, [f"{argv[4]}: selection has 2 images but the budget is 3"]


@case("merge: selection holds an already labeled image")
def _(tmp, trained):
    argv = _merge(tmp, [5, 2], 2)
    return argv, [f"{argv[4]}: selection contains already labeled images: [2]"]


@case("merge: selection outside the pool")
def _(tmp, trained):
    argv = _merge(tmp, [5, 42], 2)
    return argv, [f"{argv[4]}: selection contains images not in the pool: [42]"]


@case("merge: labeled set differs from the ground truth")
def _(tmp, trained):
    argv = _merge(tmp, [5, 6], 2)
    labeled = Path(argv[argv.index("--labeled") + 1])
    data = json.loads(labeled.read_text())
    data["annotations"][2]["bbox"] = [5, 4, 8, 8]  # image 2's box moved by a pixel
    labeled.write_text(json.dumps(data))
    return argv, [str(labeled), "annotations of image 2 differ from the pool's ground truth"]


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_fails_with_a_clear_message_and_keeps_earlier_outputs(name, tmp_path, trained, capsys):
    argv, fragments = CASES[name](tmp_path, trained)
    capsys.readouterr()
    before = snapshot(tmp_path, trained)
    assert any(v == EARLIER for v in before.values()) or argv[0] == "import-labels"  # an earlier output to keep
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"
    # nothing created, changed or deleted: earlier outputs byte-identical, no temp files, no side effects
    assert snapshot(tmp_path, trained) == before
    assert not (tmp_path / "pwned").exists()


def test_the_table_covers_every_bad_input_of_the_issue():
    """The table covers every bad input of the issue (a guard against a case silently dropped)."""
    needed = ["missing image", "corrupt image", "malformed JSON", "malformed XML", "unknown image",
              "unknown category", "zero width", "negative height", "outside the image", "duplicate image ids",
              "empty dataset", "escaping the images folder", "absolute file_name", "budget larger",
              "initial labeled set larger", "unknown strategy", "wrong types in params.yaml"]
    for n in needed:
        assert any(n in c for c in CASES), n


# ------------------------------------------------------------------ valid inputs that must work
def test_box_outside_is_clipped_with_a_warning_by_default(tmp_path, capsys):
    data = _mutated(lambda d: d["annotations"][4].update(bbox=[25, 25, 10, 10]))
    argv, pool = _init_split(tmp_path, data, size=8)
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"warning: {pool}: annotation id 5: box [25, 25, 10, 10] clipped to image 4 of size 32x32" in out
    labeled = json.loads(Path(argv[-1]).read_text())
    assert next(a for a in labeled["annotations"] if a["id"] == 5)["bbox"] == [25.0, 25.0, 7.0, 7.0]


def test_single_class_dataset_with_empty_images_runs_a_whole_cycle(tmp_path, capsys):
    """One category, two images without boxes: split, train, evaluate, score, select, merge, train again."""
    root = tmp_path / "data"
    pool = write_coco(root, base_coco(n_categories=1))
    images, run = str(root / "images"), tmp_path / "run"
    assert main(["init-split", "--pool", str(pool), "--size", "5", "--seed", "1", "--out", str(run / "l0.json")]) == 0
    assert main(["train", "--params", TINY_JSON, "--images", images, "--labeled", str(run / "l0.json"),
                 "--out", str(run / "m0.pt")]) == 0
    ckpt = torch.load(run / "m0.pt", weights_only=True)
    assert ckpt["categories"] == [{"id": 1, "name": "a"}] and ckpt["n_images"] == 5
    assert main(["evaluate", "--model", str(run / "m0.pt"), "--images", images, "--annotations", str(pool),
                 "--out", str(run / "metrics.json"), "--device", "cpu"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert all(0.0 <= metrics[k] <= 1.0 for k in ("map50", "map50_area", "coco_ap", "coco_ap50"))
    assert main(["score", "--params", TINY_JSON, "--strategy", "entropy", "--model", str(run / "m0.pt"),
                 "--images", images, "--pool", str(pool), "--labeled", str(run / "l0.json"),
                 "--out", str(run / "scores.parquet")]) == 0
    assert main(["select", "--strategy", "entropy", "--scores", str(run / "scores.parquet"), "--budget", "3",
                 "--seed", "0", "--cycle", "0", "--out", str(run / "selected.json")]) == 0
    assert main(["merge", "--labeled", str(run / "l0.json"), "--selected", str(run / "selected.json"),
                 "--pool", str(pool), "--budget", "3", "--out", str(run / "l1.json")]) == 0
    merged = json.loads((run / "l1.json").read_text())
    assert sorted(im["id"] for im in merged["images"]) == list(range(1, 9))
    key = lambda a: (a["id"], a["image_id"], a["category_id"], [float(v) for v in a["bbox"]])  # noqa: E731
    assert sorted(map(key, merged["annotations"])) == sorted(map(key, base_coco(n_categories=1)["annotations"]))
    assert main(["train", "--params", TINY_JSON, "--images", images, "--labeled", str(run / "l1.json"),
                 "--out", str(run / "m1.pt")]) == 0
    assert torch.load(run / "m1.pt", weights_only=True)["n_images"] == 8  # images 7 and 8 have no boxes


# ------------------------------------------------------------------ item 2: atomic writes
@pytest.fixture
def failing_replace(monkeypatch):
    """Make the final rename of an atomic write fail for the file names in ``names`` (all when empty)."""
    real = os.replace
    names: set[str] = set()

    def replace(src, dst, *a, **kw):
        if not names or Path(dst).name in names:
            raise OSError(errno.ENOSPC, "No space left on device (simulated)", str(dst))
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(os, "replace", replace)
    return names


@pytest.mark.parametrize("writer", ["write_json", "write_text", "atomic_path"])
@pytest.mark.parametrize("exists", [True, False])
def test_atomic_write_failing_at_the_rename_keeps_the_old_file(tmp_path, failing_replace, writer, exists):
    target = tmp_path / "sub" / "labeled.json"
    if exists:
        earlier(target)
    with pytest.raises(OSError, match="simulated"):
        if writer == "write_json":
            write_json(target, {"images": list(range(1000))})
        elif writer == "write_text":
            write_text(target, "x" * 100_000)
        else:
            with atomic_path(target) as tmp:
                tmp.write_bytes(b"new")
    assert (target.read_bytes() == EARLIER) if exists else not target.exists()
    assert list(target.parent.iterdir()) == ([target] if exists else [])


def test_atomic_write_failing_mid_write_keeps_the_old_file(tmp_path):
    target = Path(earlier(tmp_path / "scores.parquet"))

    class Killed(Exception):
        pass

    with pytest.raises(Killed):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half a ")
            raise Killed
    assert target.read_bytes() == EARLIER and list(tmp_path.iterdir()) == [target]
    write_json(target, {"ok": 1})  # and a later write goes through
    assert json.loads(target.read_text()) == {"ok": 1} and list(tmp_path.iterdir()) == [target]
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~aio._UMASK)


ARTIFACT_POOL: list[str] = []  # the artifacts' pool, for argv builders that write an input first
REPORT_PARAMS = '{"active": {"strategies": ["random"], "seeds": [0], "cycles": 1}}'
# MI-AOD Table 2 on the digits: one cycle of a few iterations
TABLE2_JSON = json.dumps({"device": "cpu", "num_threads": 1, "paper_reports": {"table2": {
    "cycles": 1, "epochs": 1, "min_iterations": 2, "methods": ["iul"], "seeds": [0]}}})


@pytest.fixture(scope="module")
def artifacts(trained, tmp_path_factory):
    """Every kind of pipeline file, made once by the CLI: the inputs of the writer audit."""
    d = tmp_path_factory.mktemp("artifacts")
    pool, images, model = str(trained / "pool.json"), str(trained / "images"), str(trained / "model.pt")
    a = {"pool": pool, "images": images, "model": model, "labeled": str(d / "labeled.json")}
    steps = [
        ["init-split", "--pool", pool, "--size", "4", "--seed", "0", "--out", a["labeled"]],
        ["score", "--params", TINY_JSON, "--strategy", "entropy", "--model", model, "--images", images, "--pool", pool,
         "--labeled", a["labeled"], "--out", str(d / "scores.parquet")],
        ["select", "--strategy", "entropy", "--scores", str(d / "scores.parquet"), "--budget", "2", "--seed", "0",
         "--cycle", "0", "--out", str(d / "selected.json")],
        ["evaluate", "--model", model, "--images", images, "--annotations", pool, "--device", "cpu",
         "--out", str(d / "exp" / "runs" / "random" / "seed0" / "cycle0" / "metrics.json")],
        # the seed's initial labeled set, whose boxes the report counts (annotation cost)
        ["init-split", "--pool", pool, "--size", "4", "--seed", "0",
         "--out", str(d / "exp" / "splits" / "seed0" / "labeled.json")],
        ["report", "--params", REPORT_PARAMS, "--experiment-dir", str(d / "exp"), "--pool", pool],
        ["select-images", "--images", images, "--labeled", a["labeled"], "--model", model, "--strategy", "entropy",
         "--budget", "2", "--out", str(d / "round1"), "--device", "cpu"],
        ["simulate-annotator", "--tasks", str(d / "round1" / "label_studio_tasks.json"), "--ground-truth", pool,
         "--out", str(d / "round1" / "export.json")],
        # human mode of the pipeline: tasks for the cycle's selection, labels imported beside the labeled set
        ["export-selection", "--selected", str(d / "selected.json"), "--pool", pool, "--images", images, "--model",
         model, "--labeled", a["labeled"], "--imported", str(d / "imported.json"), "--out", str(d / "annotation"),
         "--device", "cpu"],
        ["simulate-annotator", "--tasks", str(d / "annotation" / "label_studio_tasks.json"), "--ground-truth", pool,
         "--out", str(d / "annotation" / "export.json")],
        ["import-labels", "--export", str(d / "annotation" / "export.json"), "--selected",
         str(d / "annotation" / "selected.csv"), "--labeled", a["labeled"], "--imported-out", str(d / "imported.json")],
    ]
    # MGRAL: embeddings, two records, the table, the agent of a cycle whose next cycle is evaluated too
    mgral_run = d / "mgral_exp" / "runs" / "mgral" / "seed0"
    mgral_cycle = ["--params", MGRAL_JSON, "--images", images, "--labeled", a["labeled"], "--pool", pool,
                   "--budget", "2", "--seed", "0", "--model", model]
    steps += [
        ["score", "--params", MGRAL_JSON, "--strategy", "mgral", "--model", model, "--images", images, "--pool", pool,
         "--labeled", a["labeled"], "--out", str(d / "mgral_scores.parquet")],
        *[["lookup-record", *mgral_cycle, "--cycle", "0", "--record", str(r), "--out", str(d / f"record{r}.json")]
          for r in range(2)],
        ["lookup-table", "--records", str(d / "record0.json"), str(d / "record1.json"),
         "--out", str(d / "lookup_table.parquet")],
        ["train-agent", *mgral_cycle, "--cycle", "0", "--scores", str(d / "mgral_scores.parquet"), "--table",
         str(d / "lookup_table.parquet"), "--out", str(d / "agent.pt"), "--scores-out",
         str(d / "agent_scores.parquet"), "--compute", str(mgral_run / "cycle0" / "agent_compute.json")],
        *[["evaluate", "--model", model, "--images", images, "--annotations", pool, "--device", "cpu",
           "--out", str(mgral_run / f"cycle{c}" / "metrics.json")] for c in range(2)],
    ]
    # paper reports: an MI-AOD model (Fig. 6), true-positive counts (Fig. 7), a Table 2 run, a table to index
    steps += [
        ["train-miaod", "--params", TINY_JSON, "--images", images, "--labeled", a["labeled"], "--pool", pool,
         "--out", str(d / "miaod.pt")],
        ["paper-count-tp", "--model", model, "--selected", str(d / "selected.json"), "--pool", pool, "--images",
         images, "--out", str(d / "tp_counts.json"), "--device", "cpu"],
        ["paper-table2-run", "--params", TABLE2_JSON, "--method", "iul", "--seed", "0",
         "--out", str(d / "table2_run.csv")],
    ]
    for argv in steps:
        assert main(argv) == 0, argv
    (d / "table.md").write_text("## a table\n\n| a |\n|---|\n| 1 |\n", encoding="utf-8")
    # a VOCdevkit of one VOC2007 image for voc-to-coco
    from helpers.voc import obj, write_set, write_voc

    write_voc(d / "VOCdevkit", "VOC2007", "000005", size=(32, 32), objects=[obj("chair", 2, 2, 20, 20)])
    write_set(d / "VOCdevkit", "VOC2007", "trainval", ["000005"])
    a.update(miaod=str(d / "miaod.pt"), tp_counts=str(d / "tp_counts.json"), table2_run=str(d / "table2_run.csv"),
             table_md=str(d / "table.md"), voc=str(d / "VOCdevkit"))
    a.update(mgral_cycle=mgral_cycle, mgral_scores=str(d / "mgral_scores.parquet"), mgral_exp=str(d / "mgral_exp"),
             records=[str(d / "record0.json"), str(d / "record1.json")], table=str(d / "lookup_table.parquet"))
    a.update(scores=str(d / "scores.parquet"), selected=str(d / "selected.json"), exp=str(d / "exp"),
             round=str(d / "round1"), imported=str(d / "imported.json"), curves=str(d / "exp" / "curves.csv"))
    return a


def _audit_argv(step: str, a: dict, out: Path) -> list[str]:
    """The CLI step writing into the folder ``out``."""
    return {
        "make-dataset": ["make-dataset", "--params", '{"dataset": {"digit_scenes": {"n_pool": 2, "n_test": 2}}}',
                         "--out", str(out)],
        "init-split": ["init-split", "--pool", a["pool"], "--size", "3", "--seed", "1",
                       "--out", str(out / "labeled.json")],
        "train": ["train", "--params", TINY_JSON, "--images", a["images"], "--labeled", a["labeled"],
                  "--out", str(out / "model.pt"), "--summary", str(out / "train.json")],
        "train-miaod": ["train-miaod", "--params", TINY_JSON, "--images", a["images"], "--labeled", a["labeled"],
                        "--pool", a["pool"], "--out", str(out / "model.pt"), "--summary", str(out / "train.json")],
        "train-ll4al": ["train-ll4al", "--params", TINY_JSON, "--images", a["images"], "--labeled", a["labeled"],
                        "--out", str(out / "model.pt"), "--summary", str(out / "train.json")],
        "evaluate": ["evaluate", "--model", a["model"], "--images", a["images"], "--annotations", a["pool"],
                     "--out", str(out / "metrics.json"), "--predictions", str(out / "predictions.json"),
                     "--device", "cpu"],
        "score": ["score", "--params", TINY_JSON, "--strategy", "entropy", "--model", a["model"], "--images",
                  a["images"], "--pool", a["pool"], "--labeled", a["labeled"], "--out", str(out / "scores.parquet"),
                  "--timing", str(out / "score.json")],
        "select": ["select", "--strategy", "entropy", "--scores", a["scores"], "--budget", "2", "--seed", "0",
                   "--cycle", "0", "--out", str(out / "selected.json")],
        "merge": ["merge", "--labeled", a["labeled"], "--selected", a["selected"], "--pool", a["pool"],
                  "--budget", "2", "--out", str(out / "labeled.json")],
        "merge-imported": ["merge-imported", "--labeled", a["labeled"], "--selected", a["selected"], "--pool",
                           a["pool"], "--imported", a["imported"], "--budget", "2", "--out", str(out / "labeled.json")],
        "report": ["report", "--params", REPORT_PARAMS,
                   "--experiment-dir", a["exp"], "--pool", a["pool"], "--out-dir", str(out),
                   "--metrics", str(out / "metrics.json")],
        "select-images": ["select-images", "--images", a["images"], "--labeled", a["labeled"], "--model", a["model"],
                          "--strategy", "entropy", "--budget", "2", "--out", str(out), "--device", "cpu"],
        "combine-curves": ["combine-curves", "--curves", a["curves"], "--out-dir", str(out)],
        "paper-tables": ["paper-tables", "--curves", a["curves"], "--out-dir", str(out), "--tables", "miaod_table1"],
        "simulate-annotator": ["simulate-annotator", "--tasks", str(Path(a["round"]) / "label_studio_tasks.json"),
                               "--ground-truth", a["pool"], "--out", str(out / "export.json")],
        "import-labels": ["import-labels", "--export", str(Path(a["round"]) / "export.json"),
                          "--selected", str(Path(a["round"]) / "selected.csv"), "--labeled", str(out / "labeled.json")],
        "export-selection": ["export-selection", "--selected", a["selected"], "--pool", a["pool"], "--images",
                             a["images"], "--model", a["model"], "--labeled", a["labeled"], "--imported",
                             str(out / "imported_labels.json"), "--out", str(out), "--device", "cpu"],
        "lookup-record": ["lookup-record", *a["mgral_cycle"], "--cycle", "0", "--record", "0",
                          "--out", str(out / "record.json")],
        "lookup-table": ["lookup-table", "--records", *a["records"], "--out", str(out / "lookup_table.parquet")],
        "train-agent": ["train-agent", *a["mgral_cycle"], "--cycle", "0", "--scores", a["mgral_scores"],
                        "--table", a["table"], "--out", str(out / "agent.pt"),
                        "--scores-out", str(out / "agent_scores.parquet"), "--compute", str(out / "agent_compute.json")],
        "mgral-time": ["mgral-time", *a["mgral_cycle"], "--iterations", "2", "--out-dir", str(out)],
        "mgral-diagnose": ["mgral-diagnose", *a["mgral_cycle"], "--cycle", "0", "--scores", a["mgral_scores"],
                           "--table", a["table"], "--val-annotations", a["pool"], "--val-images", a["images"],
                           "--batches", "3", "--noise-batches", "1", "--bootstrap", "10", "--work-dir",
                           str(out / "work"), "--out-csv", str(out / "diagnose.csv"),
                           "--out-json", str(out / "diagnose.json")],
        "mgral-compute": ["mgral-compute", "--experiment-dir", a["mgral_exp"], "--strategies", "mgral", "--seeds", "0",
                          "--cycles", "2", "--out-dir", str(out)],
        "voc-to-coco": ["voc-to-coco", "--root", a["voc"], "--sets", "VOC2007/trainval",
                        "--out", str(out / "voc_pool.json")],
        "paper-fig5": ["paper-fig5", "--curves", a["curves"], "--out-dir", str(out)],
        "paper-mgral-fig3": ["paper-mgral-fig3", "--curves", a["curves"], "--out-dir", str(out)],
        "paper-table5": ["paper-table5", "--experiment-dir", a["exp"], "--curves", a["curves"], "--out-dir", str(out)],
        "paper-fig6": ["paper-fig6", "--model", a["miaod"], "--selected", a["selected"], "--pool", a["pool"],
                       "--images", a["images"], "--n-images", "2", "--out-dir", str(out), "--device", "cpu"],
        "paper-count-tp": ["paper-count-tp", "--model", a["model"], "--selected", a["selected"], "--pool", a["pool"],
                           "--images", a["images"], "--out", str(out / "tp_counts.json"), "--device", "cpu"],
        "paper-fig7": ["paper-fig7", "--counts", a["tp_counts"], "--out-dir", str(out)],
        "paper-fig4": ["paper-fig4", "--params", '{"paper_reports": {"fig4": {"n_images": 2}}}',
                       "--selected", a["selected"], "--pool", a["pool"], "--images", a["images"],
                       "--out-dir", str(out)],
        "paper-table2-run": ["paper-table2-run", "--params", TABLE2_JSON, "--method", "iul", "--seed", "0",
                             "--out", str(out / "table2_run.csv")],
        "paper-table2": ["paper-table2", "--runs", a["table2_run"], "--out-dir", str(out)],
        "paper-index": ["paper-index", "--figures", str(out / "fig.png"), "--tables", a["table_md"],
                        "--out", str(out / "README.md")],
        "pretrain": ["pretrain", "--params", PRETRAIN_JSON, "--out", str(out / "backbone.pt"),
                     "--detector", str(out / "glyph_detector.pt"), "--summary", str(out / "pretrain.json")],
        "check-dataset": ["check-dataset", "--pool", a["pool"], "--pool-images", a["images"], "--test", a["pool"],
                          "--test-images", a["images"], "--params", '{"dataset": {"duplicate_images": "warn"}}',
                          "--out", str(out / "dataset.json")],
        "stop-set": ["stop-set", "--pool", a["pool"], "--labeled", a["labeled"], "--size", "2", "--seed", "0",
                     "--out", str(out / "stop_set.json")],
        "predict-stop-set": ["predict-stop-set", "--model", a["model"], "--images", a["images"], "--pool", a["pool"],
                             "--stop-set", _stop_set(out), "--out", str(out / "stop_predictions.json"),
                             "--device", "cpu"],
        "selection-sheet": ["selection-sheet", "--model", a["model"], "--selected", a["selected"], "--pool", a["pool"],
                            "--images", a["images"], "--out", str(out / "selection.png"), "--device", "cpu"],
        "resolve-params": ["resolve-params", "--out", str(out / "resolved_params.yaml")],
    }[step]


# The tiny detector pre-trained for two iterations on a handful of glyph scenes.
PRETRAIN_JSON = json.dumps({**TINY, "pretrain": {"images": 4, "iterations": 2, "glyphs_per_class": 1}})


def _stop_set(out: Path) -> str:
    """A stop set of the artifacts' pool, beside (not in) the audited folder."""
    path = out.parent / "stop_set_input.json"
    if not path.exists():
        from activedet.data.coco import load_coco

        ids = [im["id"] for im in load_coco(ARTIFACT_POOL[0]).images][:2] if ARTIFACT_POOL else []
        path.write_text(json.dumps({"seed": 0, "image_ids": ids}))
    return str(path)


AUDIT = [("make-dataset", "pool.json"), ("make-dataset", "000001.png"), ("init-split", "labeled.json"),
         ("train", "model.pt"), ("train", "train.json"), ("train-miaod", "model.pt"), ("train-miaod", "train.json"),
         ("train-ll4al", "model.pt"), ("train-ll4al", "train.json"),
         ("evaluate", "metrics.json"), ("evaluate", "predictions.json"), ("score", "scores.parquet"),
         ("score", "score.json"), ("select", "selected.json"), ("merge", "labeled.json"),
         ("merge-imported", "labeled.json"), ("report", "curves.csv"), ("report", "summary.csv"),
         ("report", "time_per_step.csv"), ("report", "learning_curves.png"), ("report", "metrics.json"),
         ("combine-curves", "curves.csv"), ("combine-curves", "summary.csv"), ("combine-curves", "time_per_step.csv"),
         ("combine-curves", "learning_curves.png"),
         ("select-images", "selected.csv"), ("select-images", "label_studio_tasks.json"),
         ("select-images", "label_studio_config.xml"), ("select-images", "cvat_annotations.xml"),
         ("select-images", "predictions.json"), ("select-images", "selected.png"), ("select-images", "README.txt"),
         ("export-selection", "selected.png"), ("paper-tables", "miaod_table1.csv"),
         ("paper-tables", "miaod_table1.md"), ("simulate-annotator", "export.json"),
         ("import-labels", "labeled.v1.json"), ("import-labels", "labeled.json"),
         ("lookup-record", "record.json"), ("lookup-table", "lookup_table.parquet"), ("train-agent", "agent.pt"),
         ("train-agent", "agent_scores.parquet"), ("train-agent", "agent_compute.json"),
         ("mgral-time", "mgral_time.csv"), ("mgral-time", "mgral_time.md"), ("mgral-diagnose", "diagnose.csv"),
         ("mgral-diagnose", "diagnose.json"), ("mgral-diagnose", "retrained.pt"),
         ("mgral-compute", "mgral_compute.csv"),
         ("mgral-compute", "mgral_compute.md"), ("voc-to-coco", "voc_pool.json"),
         *[(step, f"{stem}.{ext}") for step, stem in (("paper-fig5", "miaod_fig5"),
                                                      ("paper-mgral-fig3", "mgral_fig3"),
                                                      ("paper-fig6", "miaod_fig6"), ("paper-fig7", "miaod_fig7"),
                                                      ("paper-fig4", "mgral_fig4"), ("paper-table2", "miaod_table2"))
           for ext in ("png", "csv", "md")],
         ("paper-fig7", "miaod_fig7_counts.csv"), ("paper-fig4", "mgral_fig4_images.csv"),
         ("paper-table2", "miaod_table2_runs.csv"), ("paper-table5", "miaod_table5.csv"),
         ("paper-table5", "miaod_table5_steps.csv"), ("paper-table5", "miaod_table5.md"),
         ("paper-count-tp", "tp_counts.json"), ("paper-table2-run", "table2_run.csv"), ("paper-index", "README.md"),
         ("pretrain", "backbone.pt"), ("pretrain", "glyph_detector.pt"), ("pretrain", "pretrain.json"),
         ("check-dataset", "dataset.json"), ("stop-set", "stop_set.json"),
         ("predict-stop-set", "stop_predictions.json"), ("selection-sheet", "selection.png"),
         ("resolve-params", "resolved_params.yaml")]


@pytest.mark.parametrize("step,name", AUDIT, ids=[f"{s}:{n}" for s, n in AUDIT])
def test_every_writer_replaces_its_file_atomically(step, name, tmp_path, artifacts, failing_replace, capsys):
    """A step whose final rename of ``name`` fails leaves the old bytes there and no temp file behind.

    A writer that wrote to its target directly would finish the step and change the target: this is
    the audit that every file the package produces goes through io.atomic_path / write_json."""
    out = tmp_path / "out"
    if step == "import-labels":
        out.mkdir()
        (out / "labeled.json").write_bytes(Path(artifacts["labeled"]).read_bytes())
    sentinel = {"learning_curves.png": out / "figures" / name, "retrained.pt": out / "work" / name,
                "000001.png": out / "pool" / "images" / name}.get(name, out / name)
    # make-dataset refuses a pool.json it did not write (a user's data), so none lies there before it
    if name != "labeled.v1.json" and not (step == "import-labels" and name == "labeled.json") \
            and (step, name) != ("make-dataset", "pool.json"):
        earlier(sentinel)
        if step in ("select-images", "export-selection"):  # an earlier package of activedet's own, not a user's
            from activedet.io import OWNED_MANIFEST  # written directly: every os.replace fails in this test

            (sentinel.parent / OWNED_MANIFEST).write_text(json.dumps({"files": [sentinel.name]}))
    failing_replace.add(name)
    ARTIFACT_POOL[:] = [artifacts["pool"]]
    try:  # the CLI turns an OSError into "error: ..." and exit 2; either way the write must have failed
        rc = main(_audit_argv(step, artifacts, out))
    except OSError as e:
        assert "simulated" in str(e)
    else:
        assert rc == 2 and "simulated" in capsys.readouterr().err
    if step == "import-labels":  # the labeled file is untouched whichever of its two writes failed
        assert (out / "labeled.json").read_bytes() == Path(artifacts["labeled"]).read_bytes()
        assert not (out / "labeled.v1.json").exists() or name == "labeled.json"
    elif sentinel.exists():
        assert sentinel.read_bytes() == EARLIER
    assert temp_files(tmp_path) == []


def test_audit_covers_every_cli_step_that_writes():
    from activedet.cli import build_parser

    commands = set(build_parser()._subparsers._group_actions[0].choices)
    assert {s for s, _ in AUDIT} == commands  # a new command must join the audit


# ------------------------------------------------------------------ item 5: safe loading
def test_checkpoint_loading_refuses_code_and_runs_nothing(tmp_path):
    from activedet.engine.train import load_checkpoint, load_model

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    torch.save({"model": {}, "x": Evil()}, tmp_path / "evil.pt")
    for load in (load_checkpoint, load_model):
        with pytest.raises(InputError, match="refused"):
            load(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()
    torch.save({"iteration": 3}, tmp_path / "state.pt")
    with pytest.raises(InputError, match="not an activedet checkpoint"):
        load_model(tmp_path / "state.pt")


def test_unreadable_resume_state_restarts_training(trained, tmp_path):
    """A resume state that cannot be read is ignored (with a log line), never a crash or a half restore."""
    from activedet import params as P
    from activedet.data.coco import load_coco
    from activedet.data.dataset import DetectionDataset
    from activedet.engine.train import train_detector

    p = P.load(TINY)
    ds = DetectionDataset(load_coco(trained / "pool.json"), trained / "images", (32, 32))
    state = tmp_path / "m.pt.resume"
    state.write_bytes(b"garbage")
    logs = []
    train_detector(p, ds, tmp_path / "m.pt", seed=0, state_path=state, log=logs.append)
    assert any("ignoring the resume state" in m and str(state) in m for m in logs)
    train_detector(p, ds, tmp_path / "ref.pt", seed=0, log=lambda m: None)
    a, b = (torch.load(tmp_path / f, weights_only=True)["model"] for f in ("m.pt", "ref.pt"))
    assert all(torch.equal(a[k], b[k]) for k in a) and not state.exists()


# MI-AOD killed inside its unlabeled phases: phases label 6, min 2, max 2, label 6, min 2, max 2, label 6 (26
# iterations, a resume state after every one); 2 images per batch, so the labeled and the unlabeled stream
# (4 images each) are at different positions whenever a min or max phase has run.
MIAOD_KILL = {**TINY, "train": {**TINY["train"], "min_iterations": 26, "batch_size": 2, "checkpoint_every": 1}}
KILL_AFTER_STATE = """
import os, signal, sys
import activedet.engine.miaod as m
real, target = m.save_checkpoint, (int(sys.argv[1]), int(sys.argv[2]))
def save(path, ckpt):  # SIGKILL right after the resume state of the target point is on disk
    real(path, ckpt)
    if str(path).endswith(".resume") and (ckpt["phase"], ckpt["iteration"]) == target:
        os.kill(os.getpid(), signal.SIGKILL)
m.save_checkpoint = save
from activedet.cli import main
sys.exit(main(sys.argv[3:]))
"""


@pytest.fixture(scope="module")
def miaod_reference(tmp_path_factory):
    """8 images: 4 labeled, the other 4 MI-AOD's unlabeled images; the uninterrupted training's weights."""
    root = tmp_path_factory.mktemp("miaod_kill")
    data = base_coco()
    pool = write_coco(root, data)
    labeled = {**data, "images": data["images"][:4], "annotations": [a for a in data["annotations"] if a["image_id"] <= 4]}
    (root / "labeled.json").write_text(json.dumps(labeled))
    argv = lambda out: ["train-miaod", "--params", json.dumps(MIAOD_KILL), "--images", str(root / "images"),  # noqa: E731
                        "--labeled", str(root / "labeled.json"), "--pool", str(pool), "--out", str(out),
                        "--summary", f"{out}.json"]
    assert main(argv(root / "reference.pt")) == 0
    return root, argv


@pytest.mark.parametrize("phase, iteration, where", [(4, 17, "inside the second min phase"),
                                                      (2, 9, "inside the first max phase"),
                                                      (2, 8, "at the start of the first max phase"),
                                                      (6, 21, "in the last label phase, after both rounds")])
def test_miaod_killed_in_its_unlabeled_phases_resumes_to_the_uninterrupted_weights(
        miaod_reference, tmp_path, phase, iteration, where):
    import activedet

    root, argv = miaod_reference
    out = tmp_path / "model.pt"
    e = env()
    e["PYTHONPATH"] = os.pathsep.join([str(Path(activedet.__file__).parents[1]), e.get("PYTHONPATH", "")])
    killed = subprocess.run([str(BIN / "python"), "-c", KILL_AFTER_STATE, str(phase), str(iteration), *argv(out)],
                            env=e, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    state = torch.load(f"{out}.resume", weights_only=True)
    assert (state["phase"], state["iteration"]) == (phase, iteration) and not out.exists()
    assert ("optimizer" in state) == (iteration != 8)  # inside a phase the state carries its momentum buffers
    logs = []
    from activedet.engine import miaod as engine

    real_train = engine.train_miaod
    with pytest.MonkeyPatch.context() as mp:  # the CLI's run, with the trainer's log lines captured
        mp.setattr(engine, "train_miaod", lambda *a, **k: real_train(*a, **{**k, "log": logs.append}))
        assert main(argv(out)) == 0
    assert any(f"resumed from {out}.resume at phase {phase}" in m for m in logs), logs
    assert not Path(f"{out}.resume").exists()
    got, want = (torch.load(f, weights_only=True) for f in (out, root / "reference.pt"))
    assert got["model"].keys() == want["model"].keys()
    for k in want["model"]:  # bit for bit
        assert torch.equal(got["model"][k], want["model"][k]), (where, k)
    assert got["history"] == want["history"]


# ------------------------------------------------------------------ item 4: merge invariants (property)
BROKEN = ["duplicate", "too_few", "too_many", "already_labeled", "outside_pool", "tampered_box", "dropped_box"]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(3, 30), pool_seed=st.integers(0, 2**16), split_seed=st.integers(0, 2**16),
       kind=st.sampled_from(BROKEN), data=st.data())
def test_broken_merges_are_refused_and_change_nothing(n, pool_seed, split_seed, kind, data):
    pool = make_pool(n, seed=pool_seed)
    initial = data.draw(st.integers(1, n - 1), label="initial")
    labeled = copy.deepcopy(initial_split(pool, initial, split_seed))
    unl = unlabeled_ids(pool, labeled)
    budget = data.draw(st.integers(1, len(unl)), label="budget")
    selected = data.draw(st.lists(st.sampled_from(unl), min_size=budget, max_size=budget, unique=True), label="sel")
    merged = merge_labels(labeled, selected, pool, budget)  # the valid merge passes with every invariant
    check_invariants(pool, labeled, merged, selected, budget)

    if kind == "duplicate":
        assume(budget >= 2)
        bad, match = selected[:-1] + selected[:1], "more than once"
    elif kind == "too_few":
        bad, match = selected[:-1], f"has {budget - 1} images but the budget is {budget}"
    elif kind == "too_many":
        assume(len(unl) > budget)
        bad, match = selected + [next(i for i in unl if i not in selected)], "but the budget is"
    elif kind == "already_labeled":
        bad, match = selected[:-1] + [labeled.image_ids[0]], "already labeled"
    elif kind == "outside_pool":
        bad, match = selected[:-1] + [max(pool.image_ids) + 1], "not in the pool"
    else:
        assume(labeled.annotations)
        labeled = copy.deepcopy(labeled)
        if kind == "tampered_box":
            a = labeled.annotations[data.draw(st.integers(0, len(labeled.annotations) - 1), label="box")]
            a["bbox"] = [a["bbox"][0] + 0.5, *a["bbox"][1:]]
        else:
            labeled.annotations.pop(data.draw(st.integers(0, len(labeled.annotations) - 1), label="box"))
        bad, match = selected, "differ from the pool's ground truth"
    pool_before, labeled_before = copy.deepcopy(pool.to_dict()), copy.deepcopy(labeled.to_dict())
    with pytest.raises(InputError, match=match):
        merge_labels(labeled, bad, pool, budget)
    assert pool.to_dict() == pool_before and labeled.to_dict() == labeled_before


# ------------------------------------------------------------------ item 3: kill -9 and resume
KILL_PARAMS = {"active.cycles": 2, "active.strategies": ["random", "entropy"],
               "train.min_iterations": 40, "train.checkpoint_every": 4}
RUNS = "results/tiny/runs"
KILL_POINTS = [  # (step, file whose appearance triggers the SIGKILL)
    # the shared cycle-0 training always runs first, so the later cycle-0 kill points still lie ahead of it
    ("training, with its resume state saved", "results/tiny/initial/seed0/model.pt.resume"),
    ("scoring", f"{RUNS}/*/seed0/cycle0/scores.parquet"),
    ("selection", f"{RUNS}/*/seed0/cycle0/selected.json"),
    ("merge", f"{RUNS}/*/seed0/cycle0/labeled.json"),
    ("report", "results/tiny/curves.csv"),
]


def _snakemake(d: Path, *args: str, **kw) -> subprocess.Popen:
    with open(d / "snakemake.err", "a") as err:  # Snakemake logs to stderr
        return subprocess.Popen([str(BIN / "snakemake"), *args], cwd=d, env=env(), stdout=subprocess.DEVNULL,
                                stderr=err, **kw)


def _results(d: Path) -> dict:
    """What must not depend on interruptions: curves, selections, merged labels, metrics and weights."""
    exp = d / "results" / "tiny"
    out = {"curves": pd.read_csv(exp / "curves.csv")[["strategy", "seed", "cycle", "n_labeled", "map50",
                                                       "map50_area", "coco_ap"]].to_dict("records")}
    for f in sorted(exp.glob("runs/*/seed0/cycle*/*")):
        key = str(f.relative_to(exp))
        if f.name == "selected.json":
            out[key] = [(s["image_id"], s["rank"], s["score"]) for s in json.loads(f.read_text())["selected"]]
        elif f.name in ("labeled.json",):
            out[key] = json.loads(f.read_text())
        elif f.name == "metrics.json":
            out[key] = {k: v for k, v in json.loads(f.read_text()).items() if k != "seconds"}
        elif f.name == "model.pt":
            out[key] = {k: v.numpy().tobytes() for k, v in torch.load(f, weights_only=True)["model"].items()}
        elif f.name == "scores.parquet":
            out[key] = pd.read_parquet(f)[["image_id", "labeled", "score"]].to_json()
    return out


@pytest.mark.slow
def test_pipeline_killed_at_several_points_resumes_to_the_uninterrupted_results(tmp_path):
    (tmp_path / "ref").mkdir()
    (tmp_path / "killed").mkdir()
    ref = workdir(tmp_path / "ref", extra=KILL_PARAMS)
    d = workdir(tmp_path / "killed", extra=KILL_PARAMS)
    # the uninterrupted run goes on beside the interrupted one (each job uses one thread)
    reference = _snakemake(ref, "--cores", "1", start_new_session=True)
    procs = [reference]
    resumed_state = None
    try:
        for step, pattern in KILL_POINTS:
            before = set(glob.glob(str(d / pattern)))
            p = _snakemake(d, "--cores", "1", "--rerun-incomplete", start_new_session=True)
            procs.append(p)
            new: set[str] = set()
            deadline = time.monotonic() + 300
            while not new and p.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
                new = set(glob.glob(str(d / pattern))) - before
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)  # the Snakemake process group: Snakemake and its running job
            p.wait()
            assert new, f"the pipeline ended before the kill point '{step}' ({p.returncode}): " \
                        f"{(d / 'snakemake.err').read_text()[-3000:]}"
            assert p.returncode == -signal.SIGKILL
            if pattern.endswith(".resume"):
                resumed_state = Path(sorted(new)[0])
                assert resumed_state.exists()  # training was killed while its resume state existed
            # no half-written file is ever visible under its final name
            for f in (d / "results").rglob("*.json"):
                json.loads(f.read_text())
            # the lock a killed Snakemake leaves behind is removed the documented way
            assert subprocess.run([str(BIN / "snakemake"), "--unlock"], cwd=d, env=env(),
                                  capture_output=True).returncode == 0
        final = _snakemake(d, "--cores", "1", "--rerun-incomplete", start_new_session=True)
        procs.append(final)
        assert final.wait(timeout=600) == 0, (d / "snakemake.err").read_text()[-3000:]
        assert reference.wait(timeout=600) == 0, (ref / "snakemake.err").read_text()[-3000:]
    finally:
        for proc in procs:  # a failed assertion must not leave a pipeline running
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    # the killed training job resumed from its state instead of starting over
    log = (resumed_state.parent / "train.log").read_text()  # train_initial_detector's log
    assert f"resumed from {resumed_state.relative_to(d)} at iteration" in log, log
    assert not resumed_state.exists()
    got, want = _results(d), _results(ref)
    assert sorted(got) == sorted(want) and len(want) == 1 + 2 * 7  # curves; per strategy 5 files + 2
    for key in want:
        assert got[key] == want[key], key
