"""Paper figures and tables: Fig. 7 counts, Table 5 timing, Fig. 6 heatmap mapping, Fig. 5 beside the paper,
Table 2's adversarial classifier and readers, and the `paper` target on a finished tiny experiment."""
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from activedet import params as P
from activedet.paper.classification import active as A
from activedet.paper.classification import data as D
from activedet.paper.classification.model import build_classifier
from activedet.paper.classification.train import discrepancy, set_phase, train_step
from activedet.io import InputError
from activedet.paper.reports import curves as C
from activedet.paper.reports import heatmaps as H
from activedet.paper.reports import timing as T
from activedet.paper.reports import true_positives as TP

from helpers.pipeline import BIN, ROOT, TINY, job_counts, run


# ---------------------------------------------------------------- Fig. 7: true positives
def test_true_positives_of_one_image_by_the_voc_rule():
    gt = [[0, 0, 10, 10], [20, 20, 30, 30], [40, 0, 50, 10], [0, 40, 10, 50]]
    gt_labels = [1, 1, 2, 2]
    difficult = [False, False, False, True]
    dets = [([0, 0, 10, 8], 0.9, 1),     # IoU 0.8 with box 0: true positive
            ([0, 0, 10, 7], 0.8, 1),     # box 0 again: a duplicate, not a hit
            ([20, 20, 30, 30], 0.7, 2),  # box 1 exactly but the wrong class
            ([40, 0, 50, 5], 0.6, 2),    # IoU exactly 0.5 with box 2: not above the threshold
            ([20, 20, 30, 30], 0.3, 1),  # box 1 exactly but below the score threshold
            ([0, 40, 10, 50], 0.95, 2)]  # the difficult box: neither hit nor miss
    c = TP.count_image([d[0] for d in dets], [d[1] for d in dets], [d[2] for d in dets], gt, gt_labels, difficult,
                       score_threshold=0.5, iou_threshold=0.5)
    assert c == {"n_tp": 1, "n_detections": 4, "n_gt": 3}
    # at score >= 0.3 the low-scored exact box of class 1 counts too
    c = TP.count_image([d[0] for d in dets], [d[1] for d in dets], [d[2] for d in dets], gt, gt_labels, difficult,
                       score_threshold=0.3, iou_threshold=0.5)
    assert c == {"n_tp": 2, "n_detections": 5, "n_gt": 3}
    # the higher score takes the box first, whatever the order given
    c = TP.count_image([[0, 0, 10, 7], [0, 0, 10, 10]], [0.6, 0.9], [0, 0], [[0, 0, 10, 10]], [0])
    assert c["n_tp"] == 1
    assert TP.count_image([], [], [], [], [])["n_tp"] == 0


def test_fig7_counts_over_a_selection_and_mean_std_over_seeds(tmp_path):
    gt = {"annotations": [{"image_id": 1, "bbox": [0, 0, 10, 10], "category_id": 7},
                          {"image_id": 2, "bbox": [5, 5, 10, 10], "category_id": 7},
                          {"image_id": 3, "bbox": [0, 0, 4, 4], "category_id": 7}]}  # image 3 not selected
    dets = [{"image_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9, "category_id": 7},
            {"image_id": 2, "bbox": [30, 30, 5, 5], "score": 0.9, "category_id": 7},
            {"image_id": 3, "bbox": [0, 0, 4, 4], "score": 0.9, "category_id": 7}]
    c = TP.count_selection(dets, gt, [1, 2], 0.5, 0.5)
    assert (c["n_tp"], c["n_detections"], c["n_gt"], c["n_selected"]) == (1, 2, 2, 2)
    assert [p["n_tp"] for p in c["per_image"]] == [1, 0]
    files = []
    for seed, tp in ((0, 1), (1, 3)):
        f = tmp_path / f"s{seed}.json"
        f.write_text(json.dumps({"strategy": "miaod", "seed": seed, "cycle": 0, "n_labeled": 10, "n_selected": 8,
                                 "n_gt": 10, "n_detections": 4, "n_tp": tp, "score_threshold": 0.5,
                                 "iou_threshold": 0.5}))
        files.append(f)
    paths = TP.write(files, tmp_path / "paper")
    table = pd.read_csv(tmp_path / "paper" / "miaod_fig7.csv")
    assert table.loc[0, "true positives"] == "2.0 ± 1.4"  # mean and sample std of 1 and 3
    assert table.loc[0, "TP / detections (%)"] == "50.0 ± 35.4"
    assert all(p.is_file() for p in paths)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(InputError, match="bad.json"):
        TP.collect([bad])


# ---------------------------------------------------------------- Table 5: time per cycle
def _bench(path: Path, seconds: float):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"s\th:m:s\tmax_rss\n{seconds}\t0:00:00\t1.0\n")


def test_table5_from_benchmark_files(tmp_path):
    exp = tmp_path / "exp"
    rows = []
    # random shares its cycle-0 model (initial/seed<s>/benchmark.tsv); MI-AOD trains its own
    for seed, shared in ((0, 10.0), (1, 14.0)):
        _bench(exp / "initial" / f"seed{seed}" / "benchmark.tsv", shared)
        for strategy in ("random", "miaod"):
            for cycle in (0, 1):
                d = exp / "runs" / strategy / f"seed{seed}" / f"cycle{cycle}" / "benchmarks"
                k = 2.0 if strategy == "miaod" else 1.0
                if strategy == "miaod" or cycle > 0:
                    _bench(d / "train.tsv", k * (20 + seed))
                _bench(d / "evaluate.tsv", 100.0)  # never part of a cycle's time
                if cycle == 0:  # the last cycle only trains
                    _bench(d / "score.tsv", k * 3)
                    _bench(d / "select.tsv", 1.0)
                    _bench(d / "merge.tsv", 1.0)
                    if strategy == "miaod":  # a method's own extra job (as MGRAL's lookup records) counts too
                        _bench(d / "lookup_record0.tsv", 5.0)
                rows.append({"strategy": strategy, "seed": seed, "cycle": cycle, "n_labeled": 10 + 10 * cycle,
                             "fraction": 0.05 * (cycle + 1), "map50": 0.1})
    curves = pd.DataFrame(rows)
    times = T.cycle_times(exp, curves).set_index(["strategy", "seed", "cycle"])
    assert times.loc[("random", 0, 0), "cycle_s"] == 10 + 3 + 1 + 1
    assert times.loc[("random", 0, 0), "note"] == T.SHARED_NOTE
    assert times.loc[("random", 1, 1), "cycle_s"] == 21
    assert times.loc[("miaod", 1, 0), "cycle_s"] == 42 + 6 + 1 + 1 + 5
    assert times.loc[("miaod", 1, 0), "other_s"] == 5
    assert times.loc[("miaod", 0, 1), "note"] == ""
    table = T.build_table(times.reset_index())
    ours = table[table["source"].str.startswith("ours (miaod,")].iloc[0]
    assert ours["unit"] == "seconds"
    # our 5% and 10% share the paper's columns (seconds there, hours in the paper's rows)
    assert not [c for c in table.columns if c.startswith("ours")]
    assert ours["5%"] == f"{54.0:.1f} ± {np.std([53, 55], ddof=1):.1f}"
    assert table[table["source"].str.startswith("ours (random,")].iloc[0]["5%"].endswith(" *")
    ratio = table[(table["source"] == "ours (miaod)") & (table["unit"] == "x random")].iloc[0]
    assert ratio["10%"] == f"{np.mean([40 / 20, 42 / 21]):.2f} ± 0.00"
    paper = table[(table["source"] == "paper") & (table["method"] == "MI-AOD")].iloc[0]
    assert paper["5%"] == f"{1.03 / 0.77:.2f}"  # the paper's hours relative to its random
    assert len(table[table["source"].str.startswith("paper (")]) == 3


# ---------------------------------------------------------------- Fig. 6: heatmaps
def brute_force_heatmap(values, level_shapes, per_location, centers, size):
    H_, W_ = size
    heat = np.zeros(size)
    start = 0
    for (h, w), a in zip(level_shapes, per_location):
        for py in range(H_):
            for px in range(W_):
                best, best_d = None, None
                for i in range(h):
                    for j in range(w):
                        k = start + (i * w + j) * a
                        cx, cy = centers[k]
                        d = (abs(py + 0.5 - cy), abs(px + 0.5 - cx))
                        if best is None or d < best_d or (d == best_d and (i, j) < best):
                            best, best_d = (i, j), d
                i, j = best
                k = start + (i * w + j) * a
                heat[py, px] += float(values[k:k + a].sum())
        start += h * w * a
    return heat


def test_heatmap_maps_each_anchor_to_the_pixels_nearest_its_centre():
    # level 0: 2x2 locations, stride 4, 2 anchors each; level 1: one location, 3 anchors; torchvision-style
    # centres at multiples of the stride
    shapes, per_location = [(2, 2), (1, 1)], [2, 3]
    centers = []
    for (h, w), a, s in zip(shapes, per_location, (4, 8)):
        for i in range(h):
            for j in range(w):
                centers += [(j * s, i * s)] * a
    centers = torch.tensor(centers, dtype=torch.float64)
    values = torch.arange(1, 12, dtype=torch.float64)
    heat = H.anchor_heatmap(values, shapes, [8, 3], centers, (8, 8))
    assert heat.numpy() == pytest.approx(brute_force_heatmap(values.numpy(), shapes, per_location,
                                                             centers.numpy(), (8, 8)))
    # location (0, 0) of level 0 holds anchors 1 + 2; pixel rows/columns 0..1 are nearest to centre 0
    assert heat[0, 0] == 3 + (9 + 10 + 11)
    assert heat[7, 7] == 7 + 8 + 30
    with pytest.raises(ValueError):
        H.anchor_heatmap(values[:-1], shapes, [8, 3], centers, (8, 8))


def test_heatmap_on_the_tiny_detectors_own_anchors():
    from activedet.models import build_model

    p = P.load(str(TINY))
    p["detector"]["backbone_weights"] = None  # the pipeline's pretrained file is not part of this test
    model = build_model(p, 3, "miaod").eval()
    images = torch.zeros(1, 3, 64, 64)
    out = model(images, branches=("cls",), return_features=True)
    shapes = [tuple(f.shape[-2:]) for f in out["features"]]
    sizes = out["level_sizes"]
    anchors = model.anchors(images)
    centers = (anchors[:, :2] + anchors[:, 2:]) / 2
    # one anchor of level 1 (stride 8) at row 2, column 3: the pixels nearest centre (24, 16)
    per_location = sizes[1] // (shapes[1][0] * shapes[1][1])
    k = sizes[0] + (2 * shapes[1][1] + 3) * per_location
    values = torch.zeros(sum(sizes))
    values[k] = 1.0
    heat = H.anchor_heatmap(values, shapes, sizes, centers, (64, 64))
    cx, cy = centers[k].tolist()
    rows, cols = torch.nonzero(heat, as_tuple=True)
    assert heat.sum() == 64  # an 8x8 block ...
    assert (rows.min().item(), rows.max().item()) == (cy - 4, cy + 3)  # ... around the anchor's centre
    assert (cols.min().item(), cols.max().item()) == (cx - 4, cx + 3)
    maps = H.image_heatmaps(model, torch.rand(2, 3, 64, 64))
    assert set(maps) == {"iul", "iur", "ycls"} and maps["iul"].shape == (2, 64, 64)
    assert all((m >= 0).all() for m in maps.values())


def test_share_in_boxes_by_hand():
    heat = torch.ones(4, 4, dtype=torch.float64)
    assert H.share_in_boxes(heat, torch.tensor([[0.0, 0.0, 2.0, 2.0]], dtype=torch.float64)) == 0.25
    heat[0, 0] = 13.0  # 13 of 28 on the box's pixel (0, 0), 3 more on its other three pixels
    assert H.share_in_boxes(heat, torch.tensor([[0.0, 0.0, 2.0, 2.0]], dtype=torch.float64)) == pytest.approx(16 / 28)
    assert np.isnan(H.share_in_boxes(heat, torch.zeros(0, 4, dtype=torch.float64)))


# ---------------------------------------------------------------- Fig. 5 / MGRAL Fig. 3
def fake_curves():
    rows = []
    for strategy, base in (("random", 0.30), ("miaod", 0.40)):
        for seed in (0, 1):
            for c, n in enumerate((827, 1240)):
                rows.append({"strategy": strategy, "seed": seed, "cycle": c, "n_labeled": n, "fraction": n / 16551,
                             "map50": base + 0.1 * c + 0.02 * seed, "coco_ap": 0.1})
    return pd.DataFrame(rows)


def test_fig5_ours_beside_the_paper_in_the_matching_panel_or_apart(tmp_path):
    report = C.build(fake_curves(), C.PANELS, "voc_retinanet", "VOC", "t", "c")
    ours = report.long[(report.long["panel"] == "voc_retinanet") & report.long["source"].str.startswith("ours")]
    # 827 of 16551 images (4.997%) is the paper's 5% column
    mi = ours[(ours["method"] == "miaod") & (ours["x"] == 5.0)].iloc[0]
    assert mi["x_exact"] == round(100 * 827 / 16551, 4)
    assert (mi["mean"], mi["std"], mi["n_seeds"]) == pytest.approx((41.0, np.std([40, 42], ddof=1), 2))
    assert "| MI-AOD | ours (2 seeds) | 41.0 ± 1.4 | 51.0 ± 1.4 |" in report.markdown
    assert "| MI-AOD | ours (2 seeds) |" in report.markdown and "41.0 ± 1.4" in report.markdown
    assert "| MI-AOD | MI-AOD Fig. 5(a) | 47.18 |" in report.markdown
    assert set(report.long["panel"]) == {"voc_retinanet", "voc_ssd", "coco_retinanet"}
    apart = C.build(fake_curves(), C.PANELS, None, "digit scenes", "t", "c")
    assert set(apart.long.loc[apart.long["source"].str.startswith("ours"), "panel"]) == {"ours"}
    assert "Ours: digit scenes (a different dataset" in apart.markdown
    # MGRAL Fig. 3: MGRAL's curve is Table III's 200-record row
    mg = C.paper_curves(C.MGRAL_PANELS["voc_ssd"])
    assert mg[(mg["method"] == "mgral") & (mg["x"] == 10000)]["value"].tolist() == [75.85]
    curves_csv = tmp_path / "curves.csv"
    fake_curves().to_csv(curves_csv, index=False)
    for path in C.write_fig5(curves_csv, tmp_path / "paper", "voc_ssd", "VOC"):
        assert path.stat().st_size > 500


@pytest.mark.parametrize("setting,paper_config,fmt,name,arch,expected", [
    ("auto", None, "digit_scenes", "digit_scenes", "tiny", None),
    ("auto", None, "voc", "voc0712", "resnet50_fpn", "voc_retinanet"),
    ("auto", None, "voc", "voc0712", "ssd300_vgg16", "voc_ssd"),
    ("auto", None, "coco", "coco2017", "resnet50_fpn", "coco_retinanet"),
    ("auto", None, "coco", "mydata", "resnet50_fpn", None),
    ("auto", "voc_mgral", "voc", "voc0712", "ssd300_vgg16", "voc_ssd"),
    ("none", "voc_retinanet", "voc", "voc0712", "resnet50_fpn", None),
    ("coco_retinanet", None, "digit_scenes", "d", "tiny", "coco_retinanet"),
])
def test_fig5_setting(setting, paper_config, fmt, name, arch, expected):
    assert C.resolve_setting(setting, paper_config, fmt, name, arch) == expected


# ---------------------------------------------------------------- Table 2: IUL for image classification
def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, module):
    return {k for k, v in module.state_dict().items() if not torch.equal(before[k], v)}


@pytest.mark.parametrize("phase", ["max", "min", "label"])
def test_adversarial_steps_train_only_their_part(phase):
    torch.manual_seed(0)
    model = build_classifier("small_cnn", 1, 10)
    x_l, y_l, x_u = torch.rand(8, 1, 8, 8), torch.randint(0, 10, (8,)), torch.rand(8, 1, 8, 8)
    opt = torch.optim.SGD(set_phase(model, phase), lr=0.1)
    feats, heads = _state(model.features), _state(model.heads)
    with torch.no_grad():
        model.eval()
        d_before = discrepancy(*model(x_u)).mean().item()
    set_phase(model, phase)
    train_step(model, opt, phase, x_l, y_l, x_u, lam=50.0)
    changed_f, changed_h = _changed(feats, model.features), _changed(heads, model.heads)
    if phase == "max":  # only the heads, and not even the features' BatchNorm statistics
        assert changed_h == set(heads) and changed_f == set()
    elif phase == "min":
        trained = {k for k in feats if "running" not in k and "num_batches" not in k}
        assert changed_h == set() and trained <= changed_f
    else:
        assert changed_h == set(heads) and changed_f
    with torch.no_grad():
        model.eval()
        d_after = discrepancy(*model(x_u)).mean().item()
    if phase == "max":
        assert d_after > d_before  # the heads moved apart on the unlabeled images
    elif phase == "min":
        assert d_after < d_before  # the features moved to make them agree


def test_discrepancy_by_hand():
    l1 = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    l2 = torch.tensor([[0.0, 0.0], [0.0, 2.0]])
    p = 1 / (1 + np.exp(-2))
    assert discrepancy(l1, l2).tolist() == pytest.approx([0.0, ((p - (1 - p)) * 2) / 2])


def tiny_table2_cfg(**over):
    cfg = P.load({"paper_reports": {"table2": {"cycles": 2, "min_iterations": 4, "epochs": 1, **over}}})
    return cfg["paper_reports"]["table2"]


def test_table2_run_sizes_and_determinism():
    cfg = tiny_table2_cfg()
    data = D.load(cfg)
    assert len(data.y_pool) == 1437 and len(data.y_test) == 360  # sklearn's 1797 digits, 20% held out
    a = A.run(cfg, data, "iul", 0, torch.device("cpu"), log=lambda *_: None)
    b = A.run(cfg, data, "iul", 0, torch.device("cpu"), log=lambda *_: None)
    assert a["n_labeled"].tolist() == [29, 58]  # 2% of the pool, +2%
    assert a["accuracy"].tolist() == b["accuracy"].tolist()
    assert a["iul"].all() and (a["selection"] == "discrepancy").all()
    with pytest.raises(InputError, match="unknown method"):
        A.run(cfg, data, "iul_max", 0, torch.device("cpu"))
    with pytest.raises(InputError, match="exceeds the pool"):
        A.sizes(100, {**cfg, "initial_fraction": 0.5, "budget_fraction": 0.5, "cycles": 3})


def test_top_b_takes_the_highest_scores_ties_by_index():
    assert A.top_b(np.array([0.1, 0.5, 0.5, 0.9]), np.array([7, 3, 2, 9]), 3).tolist() == [9, 2, 3]


def _cifar_bin(folder: Path, n: int):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in D.CIFAR_TRAIN + [D.CIFAR_TEST]:
        rec = rng.integers(0, 256, (n, D.CIFAR_RECORD), dtype=np.uint8)
        rec[:, 0] = np.arange(n) % 10
        rec.tofile(folder / f"{name}.bin")


def test_cifar10_reader_binary_python_and_errors(tmp_path):
    _cifar_bin(tmp_path / "bin" / "cifar-10-batches-bin", 3)
    d = D.load_cifar10(tmp_path / "bin")
    assert d.x_pool.shape == (15, 3, 32, 32) and d.x_test.shape == (3, 3, 32, 32)
    assert d.y_pool.tolist() == [0, 1, 2] * 5
    # the python version: pickled dicts of numpy arrays, read without running pickled code
    py = tmp_path / "py" / "cifar-10-batches-py"
    py.mkdir(parents=True)
    for name in D.CIFAR_TRAIN + [D.CIFAR_TEST]:
        with open(py / name, "wb") as f:
            pickle.dump({b"data": np.full((2, 3072), 7, dtype=np.uint8), b"labels": [1, 9]}, f, protocol=2)
    d = D.load_cifar10(tmp_path / "py")
    assert d.x_pool.shape == (10, 3, 32, 32) and d.y_test.tolist() == [1, 9] and int(d.x_pool.max()) == 7

    class Evil:
        def __reduce__(self):
            return (shutil.rmtree, (str(tmp_path / "bin"),))

    with open(py / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f)
    with pytest.raises(InputError, match="test_batch.*refused global shutil.rmtree"):
        D.load_cifar10(tmp_path / "py")
    assert (tmp_path / "bin").is_dir()
    with open(tmp_path / "bin" / "cifar-10-batches-bin" / "test_batch.bin", "ab") as f:
        f.write(b"x")
    with pytest.raises(InputError, match="test_batch.bin: .* not a whole number"):
        D.load_cifar10(tmp_path / "bin")
    with pytest.raises(InputError, match="CIFAR-10 not found.*nothing is downloaded"):
        D.load_cifar10(tmp_path / "nowhere")
    with pytest.raises(InputError, match="cifar10_root is not set"):
        D.load({"dataset": "cifar10", "cifar10_root": ""})


def test_table2_config_for_cifar10_validates():
    over = yaml.safe_load((ROOT / "configs" / "miaod_table2_cifar10.yaml").read_text())
    p = P.load(over)
    t2 = p["paper_reports"]["table2"]
    assert (t2["dataset"], t2["arch"], t2["augment"]) == ("cifar10", "resnet18", True)
    assert A.sizes(50000, t2) == (1000, 1000)  # the paper's 2% + 2% of CIFAR-10's 50000
    assert p["resources"]["train"]["gpu"] == 1


# ---------------------------------------------------------------- the paper target
def paper_workdir(root: Path) -> Path:
    """The workflow with the tiny params, MI-AOD among the strategies and a tiny Table 2."""
    d = root / "wf"
    d.mkdir(parents=True)
    shutil.copy(ROOT / "Snakefile", d)
    shutil.copytree(ROOT / "workflow", d / "workflow", symlinks=False)
    shutil.copytree(ROOT / "configs", d / "configs")
    p = yaml.safe_load(TINY.read_text())
    p["active"].update(strategies=["random", "miaod"], cycles=2)
    p["paper_reports"] = {"fig6": {"n_images": 2}, "fig4": {"n_images": 3},
                          "table2": {"seeds": [0, 1], "cycles": 2, "epochs": 1, "min_iterations": 3,
                                     "methods": ["random", "iul_random"]}}
    (d / "params.yaml").write_text(yaml.safe_dump(p))
    return d


PAPER_FILES = ["README.md", "miaod_fig5.png", "miaod_fig5.csv", "miaod_fig5.md", "mgral_fig3.png", "mgral_fig3.md",
               "miaod_table5.csv", "miaod_table5.md", "miaod_fig6.png", "miaod_fig6.md", "miaod_fig7.png",
               "miaod_fig7.md", "miaod_table2.png", "miaod_table2.md", "mgral_fig4.png", "mgral_fig4.md"]


def test_dry_run_of_the_paper_target_lists_every_report_job(tmp_path):
    d = paper_workdir(tmp_path)
    out = run([BIN / "snakemake", "-n", "paper", "--quiet", "rules"], d).stdout
    counts = job_counts(out)
    for rule in ("paper", "paper_fig5", "paper_mgral_fig3", "paper_table5", "paper_fig6", "paper_fig7",
                 "paper_mgral_fig4", "paper_table2", "report"):
        assert counts.get(rule) == 1, (rule, counts)
    assert counts["paper_count_tp"] == 2 * 1 * 1  # strategies x seeds x selecting cycles
    assert counts["paper_table2_run"] == 2 * 2  # methods x seeds
    # one cycle: nothing selects, so no Fig. 4, 6 or 7
    p = yaml.safe_load((d / "params.yaml").read_text())
    p["active"]["cycles"] = 1
    (d / "params.yaml").write_text(yaml.safe_dump(p))
    counts = job_counts(run([BIN / "snakemake", "-n", "paper", "--quiet", "rules"], d).stdout)
    assert "paper_fig6" not in counts and "paper_fig7" not in counts and "paper_mgral_fig4" not in counts
    assert counts["paper"] == 1 and counts["paper_fig5"] == 1
    p["active"]["cycles"] = 2
    p["paper_reports"]["fig6"]["cycle"] = 1
    (d / "params.yaml").write_text(yaml.safe_dump(p))
    bad = run([BIN / "snakemake", "-n", "paper"], d, check=False)
    assert bad.returncode != 0 and "paper_reports.fig6.cycle 1 selects no images" in bad.stdout + bad.stderr
    # Table 2 in the paper's setting: 4 methods x 5 seeds of CIFAR-10 training, a GPU each on a cluster
    p["paper_reports"]["fig6"]["cycle"] = 0
    (d / "params.yaml").write_text(yaml.safe_dump(p))
    out = run([BIN / "snakemake", "-n", "results/miaod_table2_cifar10/paper/miaod_table2.md",
               "--configfile", "configs/miaod_table2_cifar10.yaml"], d).stdout
    assert job_counts(out)["paper_table2_run"] == 20
    assert out.count("gpu=1") == 20


@pytest.fixture(scope="session")
def finished_tiny(tmp_path_factory):
    """A finished tiny experiment (random and MI-AOD, 2 cycles), run through the pipeline."""
    d = paper_workdir(tmp_path_factory.mktemp("paper"))
    run([BIN / "snakemake", "--cores", "2"], d)
    return d


@pytest.mark.slow
def test_paper_target_on_a_finished_tiny_experiment(finished_tiny):
    d = finished_tiny
    out = run([BIN / "snakemake", "-n", "paper", "--quiet", "rules"], d).stdout
    counts = job_counts(out)
    # only report jobs: the experiment itself is finished
    assert set(counts) - {"total"} == {"paper", "paper_fig5", "paper_mgral_fig3", "paper_table5", "paper_fig6",
                                       "paper_fig7", "paper_count_tp", "paper_mgral_fig4", "paper_table2",
                                       "paper_table2_run"}, counts
    run([BIN / "snakemake", "--cores", "2", "paper"], d)
    paper = d / "results" / "tiny" / "paper"
    for name in PAPER_FILES:
        assert (paper / name).is_file() and (paper / name).stat().st_size > 200, name
    index = (paper / "README.md").read_text()
    for name in PAPER_FILES[1:]:
        if name.endswith(".png"):
            assert f"({name})" in index
    assert "## MI-AOD Table 5: time per cycle" in index and "## MGRAL Fig. 4" in index
    fig7 = pd.read_csv(paper / "miaod_fig7_counts.csv")
    assert set(fig7["strategy"]) == {"random", "miaod"} and (fig7["n_selected"] == 8).all()
    assert (fig7["n_tp"] <= fig7["n_gt"]).all()
    t2 = pd.read_csv(paper / "miaod_table2_runs.csv")
    assert sorted(t2["n_labeled"].unique()) == [29, 58] and t2["seed"].nunique() == 2
    fig6 = pd.read_csv(paper / "miaod_fig6.csv")
    assert len(fig6) == 2 and (fig6["iul sum"] > 0).all()
    assert "Nothing to be done" in run([BIN / "snakemake", "-n", "paper"], d).stdout
