"""The pretrained backbone of the embedded default: glyph scenes, pre-training, loading, frozen stages."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from activedet import params as P
from activedet.data.dataset import DetectionDataset
from activedet.data.digit_scenes import generate
from activedet.data.glyph_scenes import LETTERS, GlyphScenes, make_glyph_scenes, render_glyph_cells
from activedet.engine.pretrain import pretrain_backbone
from activedet.engine.train import load_checkpoint, load_model, train_detector
from activedet.io import InputError
from activedet.models import build_model
from activedet.models.backbones import TinyBackboneFPN, load_pretrained_backbone

SMALL = {"detector": {"channels": [8, 16, 16, 16], "fpn_channels": 16, "head_convs": 1, "head_channels": 16},
         "train": {"batch_size": 4, "warmup_iterations": 1, "checkpoint_every": 0},
         "pretrain": {"images": 12, "iterations": 3, "glyphs_per_class": 2, "seed": 0},
         "device": "cpu"}


def small_params(**over) -> dict:
    p = P.load(json.dumps(SMALL))
    for key, value in over.items():
        node = p
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    return p


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    d = tmp_path_factory.mktemp("pre")
    torch.set_num_threads(1)
    summary = pretrain_backbone(small_params(), d / "backbone.pt", d / "glyph_detector.pt", log=lambda m: None)
    return d, summary


def test_letters_share_no_class_with_the_digits():
    assert len(LETTERS) == len(set(LETTERS)) == 20
    assert not set(LETTERS) & set("0123456789BDGIJOQSZbgloqsz")  # no digit and no letter that reads as one


def test_glyph_cells_look_like_the_sklearn_digits_and_are_deterministic():
    cells, labels = render_glyph_cells(3, seed=5)
    assert cells.shape == (60, 8, 8) and labels.tolist() == [k for k in range(20) for _ in range(3)]
    assert cells.min() >= 0 and np.allclose(cells.reshape(60, -1).max(axis=1), 1.0)  # peak 1, as load_source_digits
    # values are multiples of 1/16 of the peak's count: 4x4 block counts, as the UCI digits were made
    again, _ = render_glyph_cells(3, seed=5)
    assert np.array_equal(cells, again)
    other, _ = render_glyph_cells(3, seed=6)
    assert not np.array_equal(cells, other)


def test_glyph_scenes_boxes_lie_inside_and_hold_ink():
    images, boxes, labels = make_glyph_scenes(12, seed=1, image_size=64, glyphs_per_class=2)
    assert images.shape == (12, 64, 64, 3) and images.dtype == np.uint8
    assert sum(len(b) for b in boxes) > 0
    for b, k in zip(boxes, labels):
        assert len(b) == len(k) and ((k >= 0) & (k < 20)).all()
        assert (b[:, :2] >= 0).all() and (b[:, 2:] <= 64).all() and (b[:, 2:] > b[:, :2]).all()
    ds = GlyphScenes(4, seed=1, image_size=64, glyphs_per_class=2)
    img, target = ds[0]
    assert img.shape == (3, 64, 64) and torch.equal(target["boxes"], torch.from_numpy(boxes[0]))


def test_pretraining_writes_the_backbone_file(pretrained):
    d, summary = pretrained
    state = torch.load(d / "backbone.pt", weights_only=True)
    assert state["letters"] == LETTERS and state["iterations"] == 3 and summary["iterations"] == 3
    model = torch.load(d / "glyph_detector.pt", weights_only=True)["model"]
    # the file holds the letter detector's stem, stages and FPN exactly, and no head
    assert set(state["backbone"]) == {k[len("backbone."):] for k in model if k.startswith("backbone.")}
    for k, v in state["backbone"].items():
        assert torch.equal(v, model[f"backbone.{k}"])


def test_pretraining_is_deterministic_and_reads_no_pool(tmp_path):
    """Same params, same thread count -> byte-identical files, whatever pool lies beside them."""
    cmd = [sys.executable, "-m", "activedet", "pretrain", "--params", json.dumps(SMALL), "--threads", "1"]
    outs = []
    for name, with_labels in (("a", True), ("b", False)):
        d = tmp_path / name
        generate(d / "data", n_pool=6, n_test=2)
        if not with_labels:  # the same pool with every annotation stripped
            pool = json.loads((d / "data" / "pool.json").read_text())
            pool["annotations"] = []
            (d / "data" / "pool.json").write_text(json.dumps(pool))
        subprocess.run(cmd + ["--out", "backbone.pt", "--detector", "det.pt"], cwd=d, check=True,
                       capture_output=True)
        outs.append((d / "backbone.pt").read_bytes())
    assert outs[0] == outs[1]


def _pool(tmp_path):
    generate(tmp_path / "data", n_pool=16, n_test=2)
    from activedet.data.coco import load_coco

    pool = load_coco(tmp_path / "data" / "pool.json")
    return pool, DetectionDataset(pool, tmp_path / "data" / "pool" / "images", (64, 64))


def test_every_cycle_starts_from_the_pretrained_backbone(pretrained, tmp_path):
    d, _ = pretrained
    _, ds = _pool(tmp_path)
    pre = torch.load(d / "backbone.pt", weights_only=True)["backbone"]
    p = small_params(**{"detector.backbone_weights": str(d / "backbone.pt"), "detector.frozen_stages": 1,
                        "train.min_iterations": 20, "train.epochs": 1e-9})
    train_detector(p, ds, tmp_path / "cycle0.pt", seed=0, log=lambda m: None)
    cycle0 = load_checkpoint(tmp_path / "cycle0.pt")["model"]
    # the next cycle, trained for one iteration at a vanishing learning rate: its backbone is the
    # pretrained one (not the previous cycle's), and the frozen stages never moved in either
    p1 = small_params(**{"detector.backbone_weights": str(d / "backbone.pt"), "detector.frozen_stages": 1,
                         "train.min_iterations": 1, "train.max_iterations": 1, "train.lr": 1e-12})
    train_detector(p1, ds, tmp_path / "cycle1.pt", seed=0, log=lambda m: None)
    cycle1 = load_checkpoint(tmp_path / "cycle1.pt")["model"]
    moved = 0
    for k, v in pre.items():
        if not v.is_floating_point():
            continue
        frozen = k.startswith(("stem.", "stage1."))
        if frozen or "running_" not in k:  # one training step updates the unfrozen BatchNorm statistics
            assert torch.allclose(cycle1[f"backbone.{k}"], v, atol=1e-6), k
        if frozen:
            assert torch.equal(cycle0[f"backbone.{k}"], v), k  # frozen: weights and BN statistics
        elif not torch.allclose(cycle0[f"backbone.{k}"], v, atol=1e-4):
            moved += 1
    assert moved > 0  # cycle 0 trained its unfrozen stages, and cycle 1 did not inherit them
    # the checkpoint rebuilds without reading the backbone file again
    (d / "backbone.pt").rename(d / "away.pt")
    try:
        model, ckpt = load_model(tmp_path / "cycle1.pt")
    finally:
        (d / "away.pt").rename(d / "backbone.pt")
    assert ckpt["params"]["detector"]["backbone_weights"] == str(d / "backbone.pt")
    assert torch.equal(model.state_dict()["backbone.stage3.0.0.weight"], cycle1["backbone.stage3.0.0.weight"])


def test_frozen_stages_keep_weights_and_batchnorm_statistics():
    torch.manual_seed(0)
    net = TinyBackboneFPN((8, 16, 16, 16), 16, frozen_stages=1)
    assert not any(p.requires_grad for p in net.stem.parameters())
    assert not any(p.requires_grad for p in net.stage1.parameters())
    assert all(p.requires_grad for p in net.stage2.parameters())
    net.train()
    assert not net.stem.training and not net.stage1.training and net.stage2.training
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net(torch.rand(2, 3, 64, 64)).__getitem__(0).sum().backward()
    after = net.state_dict()
    assert torch.equal(before["stem.1.running_mean"], after["stem.1.running_mean"])
    assert not torch.equal(before["stage2.0.1.running_mean"], after["stage2.0.1.running_mean"])
    unfrozen = TinyBackboneFPN((8, 16, 16, 16), 16, frozen_stages=-1)
    assert all(p.requires_grad for p in unfrozen.parameters())


def test_bad_backbone_files_are_refused_naming_the_file(pretrained, tmp_path):
    d, _ = pretrained
    net = TinyBackboneFPN((8, 16, 16, 16), 16)
    with pytest.raises(InputError, match="missing.pt: pretrained backbone not found"):
        load_pretrained_backbone(net, tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="junk.pt: not a readable pretrained backbone"):
        load_pretrained_backbone(net, tmp_path / "junk.pt")
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="other.pt: not a pretrained backbone of activedet"):
        load_pretrained_backbone(net, tmp_path / "other.pt")
    with pytest.raises(InputError, match="made for detector.channels"):
        load_pretrained_backbone(TinyBackboneFPN((16, 32, 64, 96), 32), d / "backbone.pt")
    # through the CLI: error line, exit 2, no traceback
    cmd = [sys.executable, "-m", "activedet", "train", "--params", json.dumps(SMALL), "--images", "x",
           "--labeled", "x.json", "--out", str(tmp_path / "m.pt"), "--backbone-weights", str(tmp_path / "junk.pt")]
    pool, _ = _pool(tmp_path)
    cmd[cmd.index("x")] = str(tmp_path / "data" / "pool" / "images")
    cmd[cmd.index("x.json")] = str(tmp_path / "data" / "pool.json")
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 2 and "junk.pt: not a readable pretrained backbone" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "m.pt").exists()


def test_glyph_scenes_keyword_needs_the_file():
    p = small_params(**{"detector.backbone_weights": "glyph_scenes"})
    with pytest.raises(InputError, match="--backbone-weights"):
        build_model(p, 10)
