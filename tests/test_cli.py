"""make-dataset -> train -> evaluate through the CLI; checkpoints; resumable training."""
import json
import subprocess
import sys

import pytest
import torch

from activedet import params as P
from activedet.cli import main
from activedet.data.coco import load_coco
from activedet.data.dataset import DetectionDataset
from activedet.engine import train as train_mod

TINY = {"dataset": {"digit_scenes": {"n_pool": 40, "n_test": 12}},
        "detector": {"channels": [8, 16, 16, 16], "fpn_channels": 16, "head_convs": 1, "head_channels": 16},
        "train": {"epochs": 1, "min_iterations": 12, "batch_size": 8, "warmup_iterations": 2, "checkpoint_every": 0},
        "device": "cpu", "num_threads": 1}


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "ds"
    assert main(["make-dataset", "--params", json.dumps(TINY), "--out", str(out)]) == 0
    return out


def test_train_then_evaluate_through_the_cli(tiny_data, tmp_path):
    model = tmp_path / "run" / "model.pt"
    cmd = [sys.executable, "-m", "activedet"]
    subprocess.run(cmd + ["train", "--params", json.dumps(TINY), "--images", str(tiny_data / "pool" / "images"),
                          "--labeled", str(tiny_data / "pool.json"), "--out", str(model),
                          "--summary", str(tmp_path / "run" / "train.json")], check=True, capture_output=True)
    ckpt = torch.load(model, weights_only=True)
    assert {"model", "optimizer", "lr_scheduler", "epoch", "params"} <= set(ckpt)
    assert ckpt["iteration"] == 12 and ckpt["n_images"] == 40
    assert [c["name"] for c in ckpt["categories"]] == [str(d) for d in range(10)]
    summary = json.loads((tmp_path / "run" / "train.json").read_text())
    assert summary["iterations"] == 12 and summary["images_per_second"] > 0
    assert not (tmp_path / "run" / "model.pt.resume").exists()

    metrics = tmp_path / "run" / "metrics.json"
    preds = tmp_path / "run" / "predictions.json"
    subprocess.run(cmd + ["evaluate", "--model", str(model), "--images", str(tiny_data / "test" / "images"),
                          "--annotations", str(tiny_data / "test.json"), "--out", str(metrics),
                          "--predictions", str(preds), "--device", "cpu"], check=True, capture_output=True)
    m = json.loads(metrics.read_text())
    for key in ("map50", "map50_voc07", "map50_area", "coco_ap", "coco_ap50"):
        assert 0.0 <= m[key] <= 1.0
    assert m["n_labeled"] == 40 and m["n_images"] == 12
    dets = json.loads(preds.read_text())
    test_ids = {im["id"] for im in json.loads((tiny_data / "test.json").read_text())["images"]}
    assert all(d["image_id"] in test_ids and d["category_id"] in range(1, 11) for d in dets)


def test_cli_errors_name_the_file_and_exit_2(tmp_path, capsys):
    missing = tmp_path / "nope.json"
    assert main(["train", "--params", json.dumps(TINY), "--images", str(tmp_path), "--labeled", str(missing),
                 "--out", str(tmp_path / "m.pt")]) == 2
    assert str(missing) in capsys.readouterr().err
    assert main(["train", "--params", '{"train": {"lrr": 1}}', "--images", str(tmp_path), "--labeled", str(missing),
                 "--out", str(tmp_path / "m.pt")]) == 2
    assert "train.lrr" in capsys.readouterr().err
    assert not (tmp_path / "m.pt").exists()


def test_interrupted_training_resumes_to_identical_weights(tiny_data, tmp_path, monkeypatch):
    p = P.load({**TINY, "train": {**TINY["train"], "checkpoint_every": 5}})
    ds = DetectionDataset(load_coco(tiny_data / "pool.json"), tiny_data / "pool" / "images")
    train_mod.train_detector(p, ds, tmp_path / "a.pt", seed=3, log=lambda m: None)

    real_save = train_mod.save_checkpoint
    calls = []

    def save_then_die(path, ckpt):
        real_save(path, ckpt)
        calls.append(ckpt["iteration"])
        if len(calls) == 2:  # killed right after the state at iteration 10 was written
            raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "save_checkpoint", save_then_die)
    state = tmp_path / "b.pt.resume"
    with pytest.raises(KeyboardInterrupt):
        train_mod.train_detector(p, ds, tmp_path / "b.pt", seed=3, state_path=state, log=lambda m: None)
    assert calls == [5, 10] and state.exists() and not (tmp_path / "b.pt").exists()
    monkeypatch.setattr(train_mod, "save_checkpoint", real_save)
    logs = []
    train_mod.train_detector(p, ds, tmp_path / "b.pt", seed=3, state_path=state, log=logs.append)
    assert any("resumed" in m and "iteration 10" in m for m in logs)
    a = torch.load(tmp_path / "a.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not state.exists()


def test_same_seed_same_weights_different_seed_different(tiny_data, tmp_path):
    p = P.load(TINY)
    ds = DetectionDataset(load_coco(tiny_data / "pool.json"), tiny_data / "pool" / "images")
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train_mod.train_detector(p, ds, tmp_path / f"{name}.pt", seed=seed, log=lambda m: None)
    w = {n: torch.load(tmp_path / f"{n}.pt", weights_only=True)["model"] for n in "abc"}
    assert all(torch.equal(w["a"][k], w["b"][k]) for k in w["a"])
    assert not all(torch.equal(w["a"][k], w["c"][k]) for k in w["a"])
