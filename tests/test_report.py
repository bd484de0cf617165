"""The experiment report: annotation cost (boxes, seconds), labels to reach a share of the 100%-labeled mAP,
the stopping signal, fixed strategy colours, and the DVC plot (one line per strategy, rendered)."""
from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from activedet import stopping as stop
from activedet.paper.reports.common import colour
from activedet.report import area_over_range, labels_to_reach, write_report

from helpers.pipeline import BIN, ROOT
COST = {"seconds_per_image": 1.0, "seconds_per_box": 10.0, "reference_map50": 0.5}
STOPPING = {"score_threshold": 0.5, "iou_threshold": 0.5, "threshold": 0.9, "window": 1, "flat_tolerance": 0.01}
CATS = [{"id": 1, "name": "one"}, {"id": 2, "name": "two"}]


def _labeled(path: Path, images: int, boxes: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ims = [{"id": i, "file_name": f"{i}.png", "width": 64, "height": 64} for i in range(images)]
    anns = [{"id": k + 1, "image_id": k % images, "category_id": 1, "bbox": [0, 0, 5, 5], "area": 25, "iscrowd": 0}
            for k in range(boxes)]
    path.write_text(json.dumps({"images": ims, "annotations": anns, "categories": CATS}))


DET = {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9}


def experiment(root: Path) -> Path:
    """Two strategies, one seed, three cycles, a pool of 100 images; labels (images, boxes) after each merge:
    random 10/20 -> 15/30 -> 20/35, entropy 10/20 -> 15/45 -> 20/60; mAP@0.5 random .2 .3 .4, entropy .2 .4 .5."""
    exp = root / "exp"
    _labeled(exp / "splits" / "seed0" / "labeled.json", 10, 20)
    (exp / "splits" / "seed0" / "stop_set.json").write_text(json.dumps({"image_ids": [1, 2]}))
    plan = {"random": ([(15, 30), (20, 35)], [0.2, 0.3, 0.4]), "entropy": ([(15, 45), (20, 60)], [0.2, 0.4, 0.5])}
    for strategy, (merges, maps) in plan.items():
        for c in range(3):
            d = exp / "runs" / strategy / "seed0" / f"cycle{c}"
            d.mkdir(parents=True)
            n = 10 + 5 * c
            d.joinpath("metrics.json").write_text(json.dumps({
                "n_labeled": n, "map50": maps[c], "map50_area": maps[c], "coco_ap": 0.1, "coco_ap50": 0.2,
                "per_class_ap50": {"1": maps[c], "2": 0.0}}))
            if c < 2:
                _labeled(d / "labeled.json", *merges[c])
            # stop-set predictions: nothing at cycle 0, the same box on image 1 from cycle 1 on
            d.joinpath("stop_predictions.json").write_text(json.dumps([] if c == 0 else [DET]))
    return exp


def test_curves_and_summary_carry_boxes_seconds_and_labels_to_reach_hand_computed(tmp_path):
    exp = experiment(tmp_path)
    out = write_report(exp, ["random", "entropy"], [0], 3, 100, cost=COST, stopping=STOPPING, categories=CATS)
    curves = pd.read_csv(exp / "curves.csv").set_index(["strategy", "cycle"])
    assert curves.loc["random", "n_boxes"].tolist() == [20, 30, 35]
    assert curves.loc["entropy", "n_boxes"].tolist() == [20, 45, 60]
    # boxes per image of the batch a cycle selected (the last cycle selects nothing)
    assert curves.loc["random", "selected_boxes_per_image"].tolist()[:2] == [2.0, 1.0]
    assert curves.loc["entropy", "selected_boxes_per_image"].tolist()[:2] == [5.0, 3.0]
    assert math.isnan(curves.loc[("entropy", 2), "selected_boxes_per_image"])
    # 1 s per image + 10 s per box
    assert curves.loc["random", "annotation_s"].tolist() == [210, 315, 370]
    assert curves.loc["entropy", "annotation_s"].tolist() == [210, 465, 620]
    assert (curves["measured_annotation_s"] == 0).all()

    s = pd.read_csv(exp / "summary.csv").set_index("strategy")
    # over the boxes both cover (20..35): random .2 .3 .4 at 20 30 35; entropy .2 at 20, .32 at 35 (interpolated)
    assert s.loc["random", "alc_boxes"] == pytest.approx((10 * 0.25 + 5 * 0.35) / 15, abs=1e-5)
    assert s.loc["entropy", "alc_boxes"] == pytest.approx(15 * (0.2 + 0.32) / 2 / 15, abs=1e-5)
    # over the seconds both cover (210..370)
    assert s.loc["random", "alc_seconds"] == pytest.approx((105 * 0.25 + 55 * 0.35) / 160, abs=1e-5)
    e370 = 0.2 + 0.2 * 160 / 255
    assert s.loc["entropy", "alc_seconds"] == pytest.approx((0.2 + e370) / 2, abs=1e-5)
    # 90% of 0.5 = 0.45: entropy crosses halfway from cycle 1 (0.4) to cycle 2 (0.5); 95% three quarters;
    # random never gets there
    assert s.loc["entropy", ["images_to_90", "boxes_to_90", "seconds_to_90"]].tolist() == pytest.approx([17.5, 52.5, 542.5])
    assert s.loc["entropy", ["images_to_95", "boxes_to_95", "seconds_to_95"]].tolist() == pytest.approx([18.75, 56.25, 581.25])
    assert s.loc["random", ["images_to_90", "boxes_to_90", "seconds_to_90"]].isna().all()
    assert (s["reference_source"] == "cost.reference_map50").all()
    # stopping: agreement 0.5 at cycle 1 (image 1 changed, image 2 empty twice), 1.0 at cycle 2 -> stop at 2;
    # the test curves flatten at their last cycle
    assert s.loc["random", "stop_cycle"] == 2 and s.loc["random", "flat_cycle"] == 2
    stops = out["stopping"].set_index(["strategy", "cycle"])
    assert math.isnan(stops.loc[("random", 0), "agreement"])
    assert stops.loc[("random", 1), "agreement"] == pytest.approx(0.5)
    assert stops.loc["random", "says_stop"].tolist() == [False, False, True]
    per_class = pd.read_csv(exp / "per_class_ap.csv")
    assert set(per_class["class"]) == {"one", "two"} and len(per_class) == 2 * 3 * 2
    for name in ("learning_curves", "learning_curves_cost", "per_class_ap", "compute_per_step", "stopping"):
        with Image.open(exp / "figures" / f"{name}.png") as im:
            assert im.size[0] > 300


def test_without_a_100_percent_reference_the_best_mean_map_stands_in_and_says_so(tmp_path):
    exp = experiment(tmp_path)
    write_report(exp, ["random", "entropy"], [0], 3, 100, cost={**COST, "reference_map50": None})
    s = pd.read_csv(exp / "summary.csv").set_index("strategy")
    assert (s["reference_map50"] == 0.5).all() and s["reference_source"].str.contains("no 100%").all()
    assert s.loc["entropy", "images_to_90"] == pytest.approx(17.5)
    # a trained reference (rule train_reference) wins over the stand-in
    (exp / "reference" / "seed0").mkdir(parents=True)
    (exp / "reference" / "seed0" / "metrics.json").write_text(json.dumps({"map50": 0.8}))
    write_report(exp, ["random", "entropy"], [0], 3, 100, cost={**COST, "reference_map50": None})
    s = pd.read_csv(exp / "summary.csv").set_index("strategy")
    assert (s["reference_map50"] == 0.8).all() and (s["reference_source"] == "trained on 100% of the pool").all()
    assert s["images_to_90"].isna().all()  # 0.72 is never reached


def test_measured_annotation_time_replaces_the_cost_model_for_its_batch(tmp_path):
    exp = experiment(tmp_path)
    imported = exp / "runs" / "entropy" / "seed0" / "cycle0" / "imported_labels.json"
    imported.write_text(json.dumps({"info": {"annotation_seconds": 100.0}, "images": [], "annotations": [],
                                    "categories": CATS}))
    write_report(exp, ["random", "entropy"], [0], 3, 100, cost=COST)
    curves = pd.read_csv(exp / "curves.csv").set_index(["strategy", "cycle"])
    # cycle 0's batch took 100 measured seconds instead of the model's 5 + 250; cycle 1's batch is estimated
    assert curves.loc["entropy", "annotation_s"].tolist() == [210, 310, 310 + 5 + 150]
    assert curves.loc["entropy", "measured_annotation_s"].tolist() == [0, 100, 100]
    assert curves.loc["random", "annotation_s"].tolist() == [210, 315, 370]


def test_area_and_crossing_helpers():
    x, y = np.array([0.0, 10.0]), np.array([0.0, 1.0])
    assert area_over_range(x, y, 0, 10) == pytest.approx(0.5)
    assert area_over_range(x, y, 5, 10) == pytest.approx(0.75)
    assert math.isnan(area_over_range(x, y, 5, 11))
    assert labels_to_reach(x, y, 0.25) == pytest.approx(2.5)
    assert labels_to_reach(x, y, 0.0) == 0.0
    assert math.isnan(labels_to_reach(x, y, 1.5))


# ------------------------------------------------------------------ stopping on constructed predictions
def _det(image, cat, box, score=0.9):
    return {"image_id": image, "category_id": cat, "bbox": box, "score": score}


def test_agreement_of_constructed_predictions_is_the_hand_computed_f1():
    previous = [_det(1, 1, [0, 0, 10, 10]), _det(3, 1, [0, 0, 10, 10]), _det(1, 2, [20, 20, 5, 5], score=0.3)]
    current = [_det(1, 1, [0, 0, 10, 10]), _det(1, 2, [30, 30, 10, 10]),  # image 1: one of 1 + 2 boxes agree
               _det(3, 1, [6, 6, 10, 10])]  # image 3: IoU 16/184 < 0.5, no agreement
    per_image = stop.image_agreements(previous, current, [1, 2, 3])
    assert per_image.tolist() == pytest.approx([2 / 3, 1.0, 0.0])  # image 2: nothing in both -> full agreement
    assert stop.agreement(previous, current, [1, 2, 3]) == pytest.approx((2 / 3 + 1) / 3)
    # the same class is required, and one box matches only one box
    assert stop.agreement([_det(1, 1, [0, 0, 10, 10])], [_det(1, 2, [0, 0, 10, 10])], [1]) == 0.0
    assert stop.agreement([_det(1, 1, [0, 0, 10, 10])], [_det(1, 1, [0, 0, 10, 10])] * 2, [1]) == pytest.approx(2 / 3)


def test_stop_cycle_and_flat_cycle_known_answers():
    agreements = [float("nan"), 0.5, 0.95, 0.87, 0.97, 0.99]
    assert stop.stop_cycle(agreements, 0.9, 2) == 3  # (0.95 + 0.87) / 2 = 0.91
    assert stop.stop_cycle(agreements, 0.9, 1) == 2
    assert stop.stop_cycle(agreements, 0.99, 2) is None
    assert stop.flat_cycle([0.1, 0.3, 0.5, 0.505, 0.49], 0.01) == 2


def test_stop_set_is_fixed_by_the_seed_and_leaves_out_the_labeled_images():
    a = stop.stop_set_ids(range(100), range(10), 20, seed=3)
    assert a == stop.stop_set_ids(range(100), range(10), 20, seed=3)
    assert len(a) == 20 and not set(a) & set(range(10)) and a == sorted(a)
    assert a != stop.stop_set_ids(range(100), range(10), 20, seed=4)
    assert stop.stop_set_ids(range(12), range(10), 20, seed=0) == [10, 11]


# ------------------------------------------------------------------ colours and the DVC plot
def test_a_strategy_keeps_its_colour_whatever_its_position(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from activedet import report

    drawn = {}
    original = report._save

    def capture(fig, path):
        drawn[Path(path).name] = {line.get_label(): matplotlib.colors.to_hex(line.get_color())
                                  for line in fig.axes[0].get_lines()}
        original(fig, path)

    exp = experiment(tmp_path)
    try:
        report._save = capture
        write_report(exp, ["random", "entropy"], [0], 3, 100, cost=COST)
        first = drawn["learning_curves.png"]
        write_report(exp, ["entropy", "random"], [0], 3, 100, cost=COST)
        second = drawn["learning_curves.png"]
    finally:
        report._save = original
    assert first == second == {"random": colour("random"), "entropy": colour("entropy")}
    assert first["random"] != first["entropy"]


def test_one_seed_figures_do_not_claim_mean_and_std(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from activedet import report

    titles = []
    original = report._save

    def capture(fig, path):
        titles.extend([ax.get_title() for ax in fig.axes] + [fig._suptitle.get_text() if fig._suptitle else ""])
        original(fig, path)

    try:
        report._save = capture
        write_report(experiment(tmp_path), ["random", "entropy"], [0], 3, 100, cost=COST)
    finally:
        report._save = original
    assert titles and not any("std" in t for t in titles)
    assert any("1 seed" in t for t in titles)


def _tool_python(name: str) -> Path:
    tools = Path(os.environ.get("ACTIVEDET_TOOLS") or Path(os.environ.get("XDG_CACHE_HOME")
                                                           or Path.home() / ".cache") / "activedet-tools")
    python = tools / name / "bin" / "python"
    if not (python.is_file() and (python.parents[1] / ".installed").is_file()):  # a complete install has its stamp
        p = subprocess.run([str(ROOT / ".ci" / "tools-install"), name], capture_output=True, text=True, timeout=900)
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    return python


RENDER = r'''
import json, sys
import vl_convert as vlc
spec = json.load(open(sys.argv[1]))
open(sys.argv[2], "wb").write(vlc.vegalite_to_png(vl_spec=spec, scale=1))
'''


@pytest.mark.slow
def test_dvc_plot_draws_one_line_per_strategy(tmp_path):
    """dvc plots show fills dvc.yaml's plot with the report's table; Vega-Lite renders one line per strategy."""
    exp = experiment(tmp_path)
    write_report(exp, ["random", "entropy"], [0], 3, 100, cost=COST)
    repo = tmp_path / "repo"
    (repo / "workflow").mkdir(parents=True)
    (repo / "workflow" / "dvc").mkdir()
    (repo / "workflow" / "dvc" / "strategy_lines.json").write_bytes(
        (ROOT / "workflow" / "dvc" / "strategy_lines.json").read_bytes())
    # dvc.yaml's plot definition, as written (the stage's other outputs are not needed for plots show)
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["active_learning"]
    plots = [p for p in stage["plots"] if "map50_by_strategy" in next(iter(p))]
    assert len(plots) == 1
    ((path, options),) = plots[0].items()
    path = path.replace("${output_dir}", "results").replace("${experiment}", "default")
    # the table where dvc.yaml reads it (rule dvc_outputs copies the report's plots/map50_by_strategy.csv there)
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_bytes((exp / "plots" / "map50_by_strategy.csv").read_bytes())
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"report": {"cmd": "true", "plots": [{path: options}]}}}))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    for cmd in (["git", "init", "-q"], [str(BIN / "dvc"), "init", "-q"]):
        subprocess.run(cmd, cwd=repo, check=True, env=env)
    p = subprocess.run([str(BIN / "dvc"), "plots", "show", "--json"], cwd=repo, capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    (entry,) = json.loads(p.stdout)["data"][path]
    spec = entry["content"]
    assert spec["encoding"]["color"]["field"] == "strategy"
    values = pd.DataFrame(spec["data"]["values"])
    for strategy, g in values.groupby("strategy"):
        assert g["n_labeled"].astype(float).tolist() == [10.0, 15.0, 20.0]
    # rendered: the two strategies' lines are drawn in two different colours of Vega's category scheme
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "render.py").write_text(RENDER)
    r = subprocess.run([str(_tool_python("vl-convert")), str(tmp_path / "render.py"), str(tmp_path / "spec.json"),
                        str(tmp_path / "plot.png")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    pixels = np.asarray(Image.open(tmp_path / "plot.png").convert("RGB")).reshape(-1, 3)
    tableau = {"#4c78a8": (76, 120, 168), "#f58518": (245, 133, 24), "#e45756": (228, 87, 86)}
    counts = {name: int((np.abs(pixels.astype(int) - rgb).sum(axis=1) < 30).sum()) for name, rgb in tableau.items()}
    assert counts["#4c78a8"] > 50 and counts["#f58518"] > 50, counts  # two strategies, two lines
    assert counts["#e45756"] < 10, counts  # no third series


def _seed_file(curves: pd.DataFrame, seed: int, path: Path, shift: float = 0.0) -> Path:
    """``curves`` as if run with ``seed`` alone, every mAP@0.5 moved by ``shift``."""
    c = curves.assign(seed=seed, map50=curves["map50"] + shift)
    path.parent.mkdir(parents=True, exist_ok=True)
    c.to_csv(path, index=False, float_format="%.6g")
    return path


def test_combined_seeds_give_the_report_of_one_run_of_all_seeds(tmp_path, capsys):
    from activedet.cli import main

    exp = experiment(tmp_path)
    write_report(exp, ["random", "entropy"], [0], 3, 100, cost=COST)
    curves = pd.read_csv(exp / "curves.csv")
    seed0 = _seed_file(curves, 0, tmp_path / "s0" / "curves.csv")
    seed1 = _seed_file(curves, 1, tmp_path / "s1" / "curves.csv", shift=0.1)
    # seed 0 again, from a run that also ran seed 1: a repeated seed is a check, kept once
    both = tmp_path / "s01" / "curves.csv"
    both.parent.mkdir()
    pd.concat([pd.read_csv(seed0), pd.read_csv(seed1)]).to_csv(both, index=False)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"cost": COST}))
    out = tmp_path / "combined"
    assert main(["combine-curves", "--params", str(params), "--curves", str(seed0), str(both),
                 "--out-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"checked: random seed 0: {both} equals {seed0} at every cycle" in printed
    assert f"checked: entropy seed 0: {both} equals {seed0} at every cycle" in printed
    combined = pd.read_csv(out / "curves.csv")
    assert list(zip(combined["strategy"], combined["seed"], combined["cycle"])) == [
        (s, seed, c) for s in ("random", "entropy") for seed in (0, 1) for c in range(3)]
    s = pd.read_csv(out / "summary.csv").set_index("strategy")
    assert s["n_seeds"].tolist() == [2, 2]
    # random .2 .3 .4 and .3 .4 .5; entropy .2 .4 .5 and .3 .5 .6 at fractions .10 .15 .20
    assert s.loc["random", ["map50_c0_mean", "map50_c2_mean"]].tolist() == pytest.approx([0.25, 0.45])
    assert s.loc["random", "map50_c1_std"] == pytest.approx(np.std([0.3, 0.4], ddof=1), abs=1e-6)
    # ALC = trapezoid over the fraction / its span; entropy - random is +0.075 on both seeds
    assert s.loc["random", "alc_mean"] == pytest.approx((0.25 + 0.35 + 0.35 + 0.45) / 4, abs=1e-6)
    assert s.loc["entropy", "alc_diff_vs_random"] == pytest.approx(0.075, abs=1e-6)
    assert s.loc["entropy", ["alc_diff_ci95_low", "alc_diff_ci95_high"]].tolist() == pytest.approx([0.075, 0.075], abs=1e-6)
    assert (out / "time_per_step.csv").is_file()
    for figure in ("learning_curves.png", "learning_curves_cost.png"):
        with Image.open(out / "figures" / figure) as im:
            assert im.width > 300


@pytest.mark.parametrize("case", ["differs", "cycles", "column", "twice"])
def test_combine_curves_refuses_what_is_not_one_experiment(tmp_path, capsys, case):
    from activedet.cli import main

    exp = experiment(tmp_path)
    write_report(exp, ["random", "entropy"], [0], 3, 100, cost=COST)
    curves = pd.read_csv(exp / "curves.csv")
    first = _seed_file(curves, 0, tmp_path / "a" / "curves.csv")
    if case == "differs":  # seed 0 again with another result at cycle 1
        bad = curves.copy()
        bad.loc[(bad["strategy"] == "entropy") & (bad["cycle"] == 1), "map50"] = 0.45
        second, message = _seed_file(bad, 0, tmp_path / "b" / "curves.csv"), "entropy seed 0 cycle 1 differs from"
    elif case == "cycles":  # a run of fewer cycles
        second = _seed_file(curves[curves["cycle"] < 2], 1, tmp_path / "b" / "curves.csv")
        message = "random seed 1 has cycles [0, 1], but"
    elif case == "column":
        second = _seed_file(curves.drop(columns="map50_area"), 1, tmp_path / "b" / "curves.csv")
        message = "not a curves.csv of activedet (no column map50_area)"
    else:
        second = _seed_file(pd.concat([curves, curves.iloc[:1]]), 1, tmp_path / "b" / "curves.csv")
        message = "random seed 1 cycle 0 appears twice"
    out = tmp_path / "combined"
    assert main(["combine-curves", "--curves", str(first), str(second), "--out-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {second}: ") and message in err, err
    assert not out.exists()  # nothing is written before every file has been checked
