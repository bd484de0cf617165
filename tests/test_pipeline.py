"""The Snakemake DAG, a tiny end-to-end run, schema errors, and DVC re-running only what changed."""
import json
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from helpers.pipeline import BIN, ROOT, TINY, job_counts, rule_wildcards, run, train_counts, workdir


@pytest.mark.parametrize("params_file", [ROOT / "params.yaml", TINY], ids=["params.yaml", "params_tiny.yaml"])
def test_every_dvc_param_is_written_in_the_params_file(params_file):
    """DVC refuses to run a stage whose params are missing from params.yaml (schema defaults do not count)."""
    p = yaml.safe_load(Path(params_file).read_text())
    missing = []
    for stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].values():
        for key in stage.get("params", []):
            node = p
            for part in key.split("."):
                if not isinstance(node, dict) or part not in node:
                    missing.append(key)
                    break
                node = node[part]
    assert not missing


def test_dry_run_of_default_params_lists_every_cycle_job(tmp_path):
    d = workdir(tmp_path, ROOT / "params.yaml")
    p = yaml.safe_load((ROOT / "params.yaml").read_text())["active"]
    out = run([BIN / "snakemake", "-n"], d).stdout
    counts = job_counts(out)
    trained = train_counts(out, lambda s: s)  # params.yaml names no variants
    seeds = len(p["seeds"])
    runs = len(p["strategies"]) * seeds
    plain = [s for s in p["strategies"] if s not in ("miaod", "ll4al")]
    # plain-detector strategies share one cycle-0 model per seed; MI-AOD and LL4AL train their own every cycle
    assert counts["train_initial_detector"] == seeds
    assert counts["share_initial_detector"] == len(plain) * seeds
    assert sum(trained[s] for s in plain) == len(plain) * seeds * (p["cycles"] - 1)
    assert trained["miaod"] == seeds * p["cycles"]
    assert trained["ll4al"] == seeds * p["cycles"]
    assert counts["train"] == sum(trained.values())  # one training rule for every trainer
    assert counts["evaluate"] == runs * p["cycles"] - len(plain) * seeds
    for rule in ("score_uncertainty", "merge_labels"):
        assert counts[rule] == runs * (p["cycles"] - 1)
    # MGRAL selects with its own rules: records fan out, then the table, the agent and its selection
    mgral = [s for s in p["strategies"] if s == "mgral"]
    records = yaml.safe_load((ROOT / "params.yaml").read_text())["strategies"]["mgral"]["records"]
    selections = len(mgral) * seeds * (p["cycles"] - 1)
    assert counts["select_batch"] == runs * (p["cycles"] - 1) - selections
    assert counts["build_lookup_table"] == records * selections
    for rule in ("gather_lookup_table", "train_agent", "select_batch_mgral"):
        assert counts[rule] == selections
    assert counts["mgral_compute"] == 1
    assert counts["init_split"] == len(p["seeds"])
    assert counts["report"] == 1


def test_dry_run_shows_cycle_chain(tmp_path):
    d = workdir(tmp_path, extra={"active.cycles": 3, "active.strategies": ["random"]})
    out = run([BIN / "snakemake", "-n", "-p", "results/tiny/runs/random/seed0/cycle2/model.pt"], d).stdout
    # cycle 2 trains on cycle 1's merged labels, which come from cycle 0's selection
    assert "results/tiny/runs/random/seed0/cycle1/labeled.json" in out
    assert "results/tiny/runs/random/seed0/cycle0/selected.json" in out
    assert "results/tiny/splits/seed0/labeled.json" in out


def test_eval_detector_plain_scores_with_the_own_model_and_evaluates_the_plain_one(tmp_path):
    variants = {"miaod_pe": {"strategy": "miaod", "options": {"eval_detector": "plain"}},
                "ll4al_pe": {"strategy": "ll4al", "options": {"eval_detector": "plain"}}}
    d = workdir(tmp_path, extra={"active.cycles": 3, "active.seeds": [0, 1],
                                 "active.strategies": ["random", "miaod", "miaod_pe", "ll4al_pe"],
                                 "variants": variants})
    dry = run([BIN / "snakemake", "-n"], d).stdout
    counts = job_counts(dry)
    trained = train_counts(dry, lambda s: variants[s]["strategy"] if s in variants else s)
    # two plain-evaluated variants x 2 seeds: a plain detector at cycles 1, 2; cycle 0 is the shared initial one
    assert trained["eval_detector"] == 2 * 2 * 2
    assert counts["share_initial_eval_detector"] == 2 * 2
    # miaod_pe differs from miaod only in eval_detector: it copies miaod's models, scores and selections
    # (share_twin_run) and trains no MI-AOD model of its own. ll4al_pe has no twin in the run: its own models
    # only score the pool, so none is trained at the last cycle.
    assert trained["miaod"] == 2 * 3 and trained["ll4al"] == 2 * 2
    shared = sorted((w["strategy"], w["seed"], w["cycle"], w["twin_file"]) for w in rule_wildcards(dry, "share_twin_run"))
    assert shared == [("miaod_pe", s, c, f) for s in "01" for c in "01"
                      for f in ("labeled.json", "model.pt", "selected.json")]  # model.pt: the selection sheets
    # evaluate: random and miaod own models (minus random's shared cycle 0), the variants at cycles 1, 2
    assert counts["evaluate"] == (2 * 3 - 2) + 2 * 3 + 2 * 2 * 2
    out = run([BIN / "snakemake", "-n", "-p", "results/tiny/runs/miaod_pe/seed0/cycle1/metrics.json",
               "results/tiny/runs/miaod_pe/seed0/cycle1/selected.json"], d).stdout
    assert "--model results/tiny/runs/miaod_pe/seed0/cycle1/eval_model.pt" in out  # evaluated: plain detector
    assert ("cp results/tiny/runs/miaod/seed0/cycle1/selected.json results/tiny/runs/miaod_pe/seed0/cycle1/selected.json"
            in out)  # selected: MI-AOD's own selection, from its twin
    assert "--labeled results/tiny/runs/miaod_pe/seed0/cycle0/labeled.json" in out  # on its own (copied) labels
    own = run([BIN / "snakemake", "-n", "-p", "results/tiny/runs/miaod/seed0/cycle1/metrics.json"], d).stdout
    assert "eval_model.pt" not in own
    ll4al = run([BIN / "snakemake", "-n", "-p", "results/tiny/runs/ll4al_pe/seed0/cycle1/selected.json"], d).stdout
    assert "--model results/tiny/runs/ll4al_pe/seed0/cycle1/model.pt" in ll4al  # scored: LL4AL's own model


@pytest.mark.slow
def test_a_twin_copies_what_its_own_run_would_have_computed(tmp_path):
    """miaod_pe beside miaod (its twin: copies) and alone (its own MI-AOD trainings): the same labeled sets,
    selections, MI-AOD models and learning curve."""
    import torch

    variants = {"miaod_pe": {"strategy": "miaod", "options": {"eval_detector": "plain"}}}
    runs = {}
    # only the files compared below (half the jobs of the whole run: no report, stop set or reference)
    targets = [f"results/tiny/runs/miaod_pe/seed0/{f}" for f in (
        "cycle0/model.pt", "cycle0/selected.json", "cycle0/labeled.json", "cycle0/metrics.json",
        "cycle1/metrics.json", "cycle1/eval_model.pt")]
    for name, strategies in (("twin", ["miaod", "miaod_pe"]), ("alone", ["miaod_pe"])):
        (tmp_path / name).mkdir()
        d = workdir(tmp_path / name, extra={"active.cycles": 2, "active.strategies": strategies, "variants": variants})
        run([BIN / "snakemake", "--cores", "2", *targets], d)
        # the twin's files are up to date
        assert "Nothing to be done" in run([BIN / "snakemake", "-n", *targets], d).stdout
        runs[name] = d / "results" / "tiny" / "runs" / "miaod_pe" / "seed0"
    assert (runs["twin"].parent.parent / "miaod").is_dir() and not (runs["alone"].parent.parent / "miaod").exists()
    assert not (runs["twin"] / "cycle0" / "logs" / "train.log").exists()  # no MI-AOD training of its own
    assert (runs["alone"] / "cycle0" / "logs" / "train.log").is_file()
    for c in range(2):
        twin, alone = runs["twin"] / f"cycle{c}", runs["alone"] / f"cycle{c}"
        if c == 0:
            assert (twin / "labeled.json").read_bytes() == (alone / "labeled.json").read_bytes()
            a, b = (json.loads((x / "selected.json").read_text()) for x in (twin, alone))
            # a shared selection names the run that computed it; seconds: how long that took
            assert (a.pop("strategy"), b.pop("strategy")) == ("miaod", "miaod_pe")
            assert a.pop("seconds") >= 0 and b.pop("seconds") >= 0 and a == b
            a, b = (torch.load(x / "model.pt", map_location="cpu", weights_only=True)["model"] for x in (twin, alone))
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        a, b = (json.loads((x / "metrics.json").read_text()) for x in (twin, alone))
        assert a.pop("seconds") >= 0 and b.pop("seconds") >= 0 and a == b
    a, b = (torch.load(x / "cycle1" / "eval_model.pt", map_location="cpu", weights_only=True)["model"]
            for x in (runs["twin"], runs["alone"]))  # the plain detector behind the curve, on the same labels
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_every_params_argument_of_an_experiment_with_variants_validates(tmp_path):
    """What the CLI checks first: a job given active.strategies with variant names also needs the variants."""
    from activedet import params as P

    variants = {"miaod_l2": {"strategy": "miaod", "options": {"lambda": 2.0}}}
    d = workdir(tmp_path, extra={"active.strategies": ["random", "miaod_l2"], "variants": variants})
    out = run([BIN / "snakemake", "-n", "-p", "--forceall"], d).stdout
    checked = set()
    for line in out.splitlines():
        if " -m activedet " not in line or "--params" not in line:
            continue
        words = shlex.split(line)
        step, value = words[words.index("-m") + 2], words[words.index("--params") + 1]
        P.validate(json.loads(value), f"{step} --params")
        checked.add(step)
    assert {"report", "train", "score", "select"} <= checked
    assert any(" -m activedet train " in line and "--strategy miaod_l2" in line for line in out.splitlines())


@pytest.mark.parametrize("key,value,needle", [
    ("train.lrr", 0.1, "train.lrr"),
    ("active.budget", "ten", "active.budget"),
    ("active.strategies", ["random", "entropi"], "entropi"),
])
def test_params_errors_stop_before_any_job(tmp_path, key, value, needle):
    d = workdir(tmp_path, extra={key: value})
    p = run([BIN / "snakemake", "-n"], d, check=False)
    assert p.returncode != 0
    assert needle in p.stdout + p.stderr
    assert not (d / "results").exists()


def test_budget_larger_than_pool_is_refused(tmp_path):
    d = workdir(tmp_path, extra={"active.budget": 40, "active.cycles": 3})
    p = run([BIN / "snakemake", "-n"], d, check=False)
    assert p.returncode != 0 and "exceeds the pool" in p.stdout + p.stderr


# Opens the report's learning-curve figure the way its result button does (ToggleViewManager.handleImg of
# Snakemake's report app), waits for the <img> to load and writes what the browser decoded into the DOM.
PROBE = """<script>
(function () {
  var deadline = Date.now() + 20000;
  function done(text) { document.body.setAttribute("data-probe", text); }
  function tick() {
    if (typeof app === "undefined" || !app) { return Date.now() < deadline ? setTimeout(tick, 100) : done("no app"); }
    var path = Object.keys(results).find(function (p) { return p.endsWith("/figures/__FIGURE__"); });
    if (!path) { return done("no result " + Object.keys(results).join(" ")); }
    if (app.state.contentPath !== results[path].data_uri) {
      app.setView({content: "img", contentPath: results[path].data_uri, resultPath: path});
    }
    var img = document.querySelector("#app img[src^='data:image/png']");
    if (img && img.complete) { return done("loaded " + img.naturalWidth + "x" + img.naturalHeight); }
    if (Date.now() > deadline) { return done("timeout"); }
    setTimeout(tick, 100);
  }
  tick();
})();
</script>"""
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=30000", "--window-size=1600,1000"]


def open_report_figure(report: Path, figure: str, tmp_path: Path) -> tuple[str, np.ndarray]:
    """The report opened in headless chromium on one figure: what the DOM says of the <img> and a screenshot."""
    chromium = shutil.which("chromium")
    assert chromium, "chromium not installed (.ci/chromium-install)"
    probe = tmp_path / f"probe_{figure}.html"
    html = report.read_text(encoding="utf-8")
    assert "</body>" in html
    head, tail = html.rsplit("</body>", 1)  # the page's own end (the embedded scripts hold "</body>" strings too)
    probe.write_text(head + PROBE.replace("__FIGURE__", figure) + "</body>" + tail, encoding="utf-8")
    results = []
    for mode in ("--dump-dom", f"--screenshot={tmp_path / 'shot.png'}"):
        p = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}", mode,
                            probe.as_uri()], capture_output=True, text=True, timeout=180)
        assert p.returncode == 0, p.stderr[-3000:]
        results.append(p.stdout)
    dom = results[0]
    state = dom.split('data-probe="', 1)[1].split('"', 1)[0] if 'data-probe="' in dom else "no probe result"
    return state, np.asarray(Image.open(tmp_path / "shot.png").convert("RGB"))


def check_report_in_browser(d: Path, tmp_path: Path) -> None:
    """snakemake --report builds the HTML report; chromium renders its learning-curve figures."""
    from activedet.paper.reports.common import colour

    report = d / "results" / "tiny" / "report.html"
    run([BIN / "snakemake", "--report", str(report)], d)
    html = report.read_text(encoding="utf-8")
    for name in ("learning_curves.png", "learning_curves_cost.png", "per_class_ap.png", "compute_per_step.png",
                 "stopping.png", "summary.csv", "resolved_params.yaml", "selected.png"):
        assert name in html, name
    for figure in ("learning_curves.png", "learning_curves_cost.png"):
        state, shot = open_report_figure(report, figure, tmp_path)
        with Image.open(d / "results" / "tiny" / "figures" / figure) as im:
            assert state == f"loaded {im.width}x{im.height}", state  # decoded, not a broken image
        # the strategies' lines are on screen in their colours
        pixels = shot.reshape(-1, 3).astype(int)
        for strategy in ("entropy", "coreset"):
            rgb = np.array([int(colour(strategy)[k:k + 2], 16) for k in (1, 3, 5)])
            assert (np.abs(pixels - rgb).sum(axis=1) < 40).sum() > 30, (figure, strategy)


@pytest.mark.slow
def test_tiny_pipeline_end_to_end_and_dvc_reruns_only_affected_jobs(tmp_path):
    d = workdir(tmp_path, extra={"active.cycles": 2})
    run(["git", "init", "-q"], d)
    run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q", "--allow-empty", "-m", "init"], d)
    run([BIN / "dvc", "init", "-q"], d)
    run([BIN / "dvc", "repro", "-q"], d)
    exp = d / "results" / "tiny"
    curves = pd.read_csv(exp / "curves.csv")
    assert set(curves["strategy"]) == {"random", "entropy", "coreset"}
    assert sorted(curves["n_labeled"].unique()) == [10, 18]
    assert curves["map50"].between(0, 1).all()
    summary = pd.read_csv(exp / "summary.csv")
    assert list(summary["strategy"]) == ["random", "entropy", "coreset"]
    assert summary.loc[summary["strategy"] == "random", "alc_diff_vs_random"].item() == 0
    assert (exp / "figures" / "learning_curves.png").stat().st_size > 1000
    metrics = json.loads((exp / "metrics.json").read_text())
    assert set(metrics) == {"random", "entropy", "coreset"}
    # the same seed and the initial split: every strategy starts from the same labeled set
    labeled0 = json.loads((exp / "splits" / "seed0" / "labeled.json").read_text())
    assert len(labeled0["images"]) == 10
    # labeling cost: the boxes of the labeled sets, and the cost model's seconds (params_tiny: 1 s + 34.5 s/box)
    pool = json.loads((d / "data" / "digit_scenes_tiny" / "pool.json").read_text())
    boxes_of = {}
    for a in pool["annotations"]:
        boxes_of[a["image_id"]] = boxes_of.get(a["image_id"], 0) + 1
    for row in curves.itertuples():
        if row.cycle == 0:
            labeled = labeled0
        else:
            labeled = json.loads((exp / "runs" / row.strategy / "seed0" / "cycle0" / "labeled.json").read_text())
        n_boxes = sum(boxes_of.get(im["id"], 0) for im in labeled["images"])
        assert row.n_boxes == n_boxes
        assert row.annotation_s == pytest.approx(1.0 * row.n_labeled + 34.5 * n_boxes)
        if row.cycle == 0:
            selected = json.loads((exp / "runs" / row.strategy / "seed0" / "cycle0" / "selected.json").read_text())
            ids = [s["image_id"] for s in selected["selected"]]
            assert row.selected_boxes_per_image == pytest.approx(sum(boxes_of.get(i, 0) for i in ids) / len(ids))
    assert {"alc_boxes", "alc_seconds", "images_to_90", "boxes_to_95", "seconds_to_95", "stop_cycle",
            "flat_cycle"} <= set(summary.columns)
    # params_tiny trains the 100%-labeled reference
    assert summary["reference_source"].eq("trained on 100% of the pool").all()
    stops = pd.read_csv(exp / "stopping.csv")
    assert len(stops) == 3 * 2 and stops.loc[stops["cycle"] == 1, "agreement"].between(0, 1).all()
    check_report_in_browser(d, tmp_path)

    logs = d / ".snakemake" / "log"
    first_logs = set(logs.iterdir())
    # change a parameter that only the entropy strategy reads
    params = yaml.safe_load((d / "params.yaml").read_text())
    params.setdefault("strategies", {}).setdefault("entropy", {})["aggregate"] = "max"
    (d / "params.yaml").write_text(yaml.safe_dump(params))
    out = run([BIN / "dvc", "repro"], d).stdout
    assert "dataset" in out and "didn't change" in out  # the dataset stage is skipped
    # what the second Snakemake run executed, from its log
    (new_log,) = set(logs.iterdir()) - first_logs
    changed = {path.strip().split("runs/", 1)[1]
               for line in new_log.read_text().splitlines() if line.strip().startswith("output:")
               for path in line.split(":", 1)[1].split(",") if "runs/" in path}
    assert "entropy/seed0/cycle0/scores.parquet" in changed
    assert "entropy/seed0/cycle1/model.pt" in changed
    assert not any(c.startswith(("random/", "coreset/")) for c in changed), changed
    assert "entropy/seed0/cycle0/model.pt" not in changed  # training did not read that parameter
