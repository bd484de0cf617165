"""Every path the docs describe works as written (issue 21): paper configurations that refuse to start without
their ImageNet weights, own-data and human-mode runs in experiments of their own, DVC experiments in folders of
their own, readable consoles, a CLI with the pipeline's thread count, and the smaller points of the README."""
from __future__ import annotations

import argparse
import re
import types
from pathlib import Path

import pytest
import torch

from activedet import cli
from activedet.data.coco import CocoData
from activedet.hitl.boxes import SelectedImage
from activedet.hitl.importer import MAX_REPORTED, _check_not_labeled
from activedet.io import InputError

from helpers.pipeline import BIN, ROOT, job_counts, run, workdir

# the README and the manual it links (docs/*.md): what a reader of the docs is told
README = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


# ------------------------------------------------------------------ 21.7: the CLI's threads are the pipeline's
def _pipeline_threads(tmp_path, rule: str) -> int:
    """The --threads that the default experiment's dry run passes to the first job of ``rule``."""
    tmp_path.mkdir()
    d = workdir(tmp_path, ROOT / "params.yaml")
    out = run([BIN / "snakemake", "-n", "-p", "--cores", "4"], d).stdout
    for block in out.split("\n\n"):
        if re.search(rf"^(local)?rule {rule}:", block, re.M) and "--threads" in block:
            return int(re.search(r"--threads (\d+)", block).group(1))
    raise AssertionError(f"no {rule} job with --threads in the dry run")


def test_cli_walkthrough_trains_and_selects_on_the_pipelines_thread_count(tmp_path, monkeypatch):
    """README's walkthrough (train, select-images without --threads) runs on the threads the pipeline's jobs get:
    mAP@0.5 differs with the thread count (0.214 vs 0.237 in issue 21)."""
    train_threads = _pipeline_threads(tmp_path / "a", "train_initial_detector")
    score_threads = _pipeline_threads(tmp_path / "b", "score_uncertainty")
    seen = {}

    def fake_train(p, ds, out, seed, state_path=None):
        seen["train"] = torch.get_num_threads()
        return {}

    def fake_select(*a, **k):
        seen["select-images"] = torch.get_num_threads()
        return {"selected": 0, "unlabeled": 0, "import_command": ""}

    import activedet.engine.train
    import activedet.hitl.select_images

    monkeypatch.setattr(activedet.engine.train, "train_detector", fake_train)
    monkeypatch.setattr(activedet.hitl.select_images, "select_from_folder", fake_select)
    import activedet.cli.train
    import activedet.engine.trainers

    monkeypatch.setattr(activedet.cli.train, "load_coco", lambda *a, **k: types.SimpleNamespace(annotations=[1]))
    monkeypatch.setattr(activedet.engine.trainers, "detector_dataset", lambda *a, **k: None)
    before = torch.get_num_threads()
    calls = {
        "train": ["train", "--params", str(ROOT / "params.yaml"), "--images", "i", "--labeled", "l.json",
                  "--out", str(tmp_path / "m.pt")],
        "select-images": ["select-images", "--images", "i", "--labeled", "l.json", "--model", "m.pt",
                          "--strategy", "entropy", "--budget", "1", "--out", str(tmp_path / "r")],
    }
    try:
        for argv in calls.values():
            torch.set_num_threads(3)  # what the old default (torch's own) left here: neither 1 nor the pipeline's
            assert cli.main(argv) == 0
        assert seen == {"train": train_threads, "select-images": score_threads}
        torch.set_num_threads(3)
        assert cli.main(calls["train"] + ["--threads", "2"]) == 0  # an explicit count still wins
        assert seen["train"] == 2
    finally:
        torch.set_num_threads(before)


def test_docs_say_what_determinism_covers():
    assert re.search(r"same seed.{0,80}same (torch )?thread count", README, re.S | re.I)


# ------------------------------------------------------------------ 21.9: smaller points
def test_a_refused_import_says_how_many_problems_it_did_not_list(tmp_path):
    n = MAX_REPORTED + 75
    labeled = CocoData("l.json", [{"id": i, "file_name": f"im{i}.png", "width": 8, "height": 8} for i in range(n)],
                       [], [{"id": 1, "name": "a"}], {})
    selection = [SelectedImage(i + 1, f"im{i}.png", 1000 + i, 8, 8, None) for i in range(n)]
    with pytest.raises(InputError) as e:
        _check_not_labeled(labeled, selection, "l.json")
    msg = str(e.value)
    assert f"{n} selected image(s)" in msg
    assert msg.count("already labeled") == MAX_REPORTED
    assert msg.rstrip().endswith("... and 75 more")


def _subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield from action.choices.items()


def test_help_has_no_rest_markup_and_strategy_options_list_the_names():
    from activedet.strategies import STRATEGIES

    parser = cli.build_parser()
    assert "``" not in parser.format_help()
    for name, sp in _subparsers(parser):
        text = sp.format_help()
        assert "``" not in text, name
        if name in ("select-images", "score", "select"):
            strategy_help = " ".join(text.split("--strategy STRATEGY", 2)[-1].split())
            for s in STRATEGIES:
                assert s in strategy_help, (name, s)


def test_folders_the_docs_suggest_are_ignored_by_git(tmp_path):
    import subprocess

    paths = ["walk/labeled.json", "dvc_plots/index.html", "data/walk/pool.json", "round1/selected.csv",
             "results/x/curves.csv", "mydata.yaml"]
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=ROOT, capture_output=True,
                             text=True).stdout.split()
    assert set(ignored) == set(paths) - {"mydata.yaml"}


def test_readme_mentions_graphviz_the_mgral_key_and_the_cpu_wheels():
    assert re.search(r"graphviz", README, re.I) and "--dag | dot" in README
    keys = [line for line in README.splitlines() if line.startswith("| strategies compared |")]
    assert keys and "mgral" in keys[0]
    assert "https://download.pytorch.org/whl/cpu" in README
    assert re.search(r"torch==2\.14\.1.{0,40}torchvision==0\.29\.1", README)


# ------------------------------------------------------------------ 21.2: paper configurations need their weights
# (roots_*, weights and shrink* are overrides passed after a configuration, not configurations)
PAPER = ROOT / "configs" / "paper"
PAPER_CONFIGS = sorted(p.stem for p in PAPER.glob("*.yaml") if not p.stem.startswith(("roots_", "weights", "shrink")))


@pytest.mark.parametrize("name", PAPER_CONFIGS)
def test_paper_configuration_refuses_to_plan_without_its_imagenet_weights(tmp_path, name):
    import yaml

    from helpers.paper import workflow_copy

    d = workflow_copy(tmp_path)
    weights = yaml.safe_load((PAPER / "weights.yaml").read_text())["imagenet_weights"]
    arch = yaml.safe_load((PAPER / f"{name}.yaml").read_text())["detector"]["arch"]
    (d / weights[arch]).unlink()
    roots = "roots_voc.yaml" if name.startswith("voc") else "roots_coco.yaml"
    p = run([BIN / "snakemake", "-n", "--configfile", f"configs/paper/{name}.yaml", f"configs/paper/{roots}"], d,
            check=False)
    assert p.returncode != 0
    err = p.stdout + p.stderr
    assert "configs/paper/weights.yaml" in err and "detector.backbone_weights" in err and weights[arch] in err
    assert "backbone_weights: random" in err  # how to ask for random initialisation


@pytest.mark.parametrize("name", ["voc_ssd", "voc_retinanet"])
def test_paper_configuration_trains_from_its_weights_or_from_random_init_when_asked(tmp_path, name):
    import json
    import shlex

    import yaml

    from helpers.paper import roots_file, workflow_copy

    d = workflow_copy(tmp_path)
    roots = roots_file(tmp_path, "voc")
    arch = yaml.safe_load((PAPER / f"{name}.yaml").read_text())["detector"]["arch"]
    path = yaml.safe_load((PAPER / "weights.yaml").read_text())["imagenet_weights"][arch]

    def weights_of_training_jobs(*extra):
        out = run([BIN / "snakemake", "-n", "-p", "--configfile", f"configs/paper/{name}.yaml", str(roots), *extra],
                  d).stdout
        found = set()
        for line in out.splitlines():
            if " train --params " in line or " train-miaod --params " in line:
                p = json.loads(shlex.split(line.split(" --params ", 1)[1])[0])
                found.add(p["detector"]["backbone_weights"])
        return found

    assert weights_of_training_jobs() == {path}
    assert weights_of_training_jobs("--config", "detector={backbone_weights: random}") == {None}


# ------------------------------------------------------------------ 21.3 / 21.4: own data and human mode apart
def _readme_block(after: str, lang: str) -> str:
    """The first ```lang block of the docs after the heading ``after``."""
    text = README.split(after, 1)[1]
    return text.split(f"```{lang}\n", 1)[1].split("```", 1)[0]


def _planned_outputs(stdout: str) -> list[str]:
    return [p.strip() for line in stdout.splitlines() if line.strip().startswith("output:")
            for p in line.split(":", 1)[1].split(",")]


def _default_experiment(d: Path) -> dict:
    """Stand-ins for a finished default experiment's files, with their content."""
    files = {"curves.csv": "strategy,map50\n", "runs/random/seed0/cycle1/model.pt": "weights"}
    for name, text in files.items():
        (d / "results" / "default" / name).parent.mkdir(parents=True, exist_ok=True)
        (d / "results" / "default" / name).write_text(text)
    return {name: (d / "results" / "default" / name).read_text() for name in files}


def test_the_docs_own_data_example_plans_its_own_experiment(tmp_path):
    import json

    d = workdir(tmp_path, ROOT / "params.yaml")
    before = _default_experiment(d)
    example = _readme_block("## Your own data", "yaml")
    # the example's folders, made real under tmp_path: two images, a pool and a test file, the weights file
    data = tmp_path / "mydata"
    (data / "images").mkdir(parents=True)
    from PIL import Image

    for i in (1, 2, 3, 4):  # distinct images: a test image may not be a pool image (one image, one identity)
        Image.new("RGB", (32, 32), (40 * i, 0, 0)).save(data / "images" / f"{i}.png")
    for name, ids in (("pool.json", (1, 2)), ("test.json", (3, 4))):
        coco = {"images": [{"id": i, "file_name": f"{i}.png", "width": 32, "height": 32} for i in ids],
                "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 8, 8], "area": 64,
                                 "iscrowd": 0} for i in ids],
                "categories": [{"id": 1, "name": "thing"}]}
        (data / name).write_text(json.dumps(coco))
    weights = re.search(r"backbone_weights: (\S+)", example)
    if weights:
        (tmp_path / "models").mkdir()
        (tmp_path / "models" / Path(weights.group(1)).name).write_bytes(b"")
        example = example.replace(str(Path(weights.group(1)).parent), str(tmp_path / "models"))
    example = example.replace("/data/mydata", str(data))
    example += "active: {initial_labeled: 1, budget: 1, cycles: 2}\n"  # two images: the pool-size check passes
    (d / "mydata.yaml").write_text(example)
    command = re.search(r"`(snakemake --cores all\s+--configfile mydata\.yaml)`", README).group(1).split()
    out = run([BIN / "snakemake", *command[1:], "-n"], d).stdout
    outputs = _planned_outputs(out)
    assert outputs and not [o for o in outputs if o.startswith("results/default/")]
    assert all(o.startswith("results/mydata/") for o in outputs if o.startswith("results/")), outputs
    # left on experiment: default, own data is named after its dataset
    (d / "mydata.yaml").write_text(re.sub(r"^experiment: .*\n", "", example, flags=re.M))
    outputs = _planned_outputs(run([BIN / "snakemake", *command[1:], "-n"], d).stdout)
    assert outputs and all(o.startswith("results/mydata/") for o in outputs if o.startswith("results/"))
    assert {name: (d / "results" / "default" / name).read_text() for name in before} == before


def test_the_docs_human_mode_runs_in_an_experiment_of_its_own(tmp_path):
    d = workdir(tmp_path, ROOT / "params.yaml")
    before = _default_experiment(d)
    assert "--config 'active={oracle: human}'" in README
    out = run([BIN / "snakemake", "-n", "--config", "active={oracle: human}"], d).stdout
    outputs = _planned_outputs(out)
    assert outputs and not [o for o in outputs if o.startswith("results/default/")]
    assert any("results/default_human/runs/" in o and o.endswith("imported_labels.pending") for o in outputs)
    assert {name: (d / "results" / "default" / name).read_text() for name in before} == before


# ------------------------------------------------------------------ 21.8 / 17.5: readable consoles
def test_logger_plugin_shows_progress_time_left_and_failed_jobs_logs_not_commands(tmp_path):
    """A real Snakemake run with --logger activedet: one job done, one failing with a log of its own."""
    (tmp_path / "Snakefile").write_text('''
rule all:
    input: "b.txt"

rule a:
    output: "a.txt"
    params: big="'" + "x" * 3000 + "'"
    shell: "echo {params.big} > {output}"

rule b:
    input: "a.txt"
    output: "b.txt"
    log: "logs/b.log"
    params: big="'" + "y" * 3000 + "'"
    shell: "(echo line one; echo the real reason; exit 3) > {log} 2>&1; echo {params.big} > /dev/null"
''')
    p = run([BIN / "snakemake", "--cores", "1", "--logger", "activedet", "--printshellcmds"], tmp_path, check=False)
    console = p.stdout + p.stderr
    assert p.returncode != 0
    assert "x" * 300 not in console  # no shell command on the console (an error quoting one is cut) ...
    assert max(len(line) for line in console.splitlines()) < 400
    (log,) = (tmp_path / ".snakemake" / "log").glob("*.snakemake.log")
    assert "x" * 3000 in log.read_text()  # ... but in Snakemake's log file
    assert re.search(r"\[1/3 steps, 33%, \d+ s elapsed, about \d+ s left\] a", console)
    assert "error: job b failed; its log: logs/b.log" in console
    assert "    the real reason" in console  # the failed job's log, not its command


def test_progress_line_estimates_the_time_left_from_the_finished_steps():
    from snakemake_logger_plugin_activedet import format_seconds, progress_line

    assert progress_line(10, 40, 600.0) == "[10/40 steps, 25%, 10 min 00 s elapsed, about 30 min 00 s left]"
    assert progress_line(40, 40, 7260.0, "report") == "[40/40 steps, 100%, 2 h 01 min elapsed] report"
    assert format_seconds(59.4) == "59 s"


def test_make_reproduce_and_the_slurm_profile_use_the_readable_console():
    import yaml

    make = (ROOT / "Makefile").read_text()
    reproduce = make.split("\nreproduce:", 1)[1].split("\n\n", 1)[0]
    assert "$(SNAKEMAKE_LOG)" in reproduce and re.search(r"SNAKEMAKE_LOG := --logger activedet", make)
    profile = yaml.safe_load((ROOT / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["logger"] == ["activedet"]


def test_paper_dry_run_prints_a_summary_of_the_plan(tmp_path):
    """voc_mgral plans thousands of jobs: the profile's dry run prints the job counts, not every job."""
    from helpers.paper import roots_file, workflow_copy

    d = workflow_copy(tmp_path)
    roots = roots_file(tmp_path, "voc")
    p = run([BIN / "snakemake", "-n", "--workflow-profile", "workflow/profiles/slurm", "--configfile",
             "configs/paper/voc_mgral.yaml", str(roots)], d)
    console = p.stdout + p.stderr
    counts = job_counts(console)
    assert counts["build_lookup_table"] == 200 * 9 * 5 and counts["total"] > 9000
    assert len(console.splitlines()) < 80  # the job-count table (one line per rule), not one block per job


def test_dvc_metrics_are_one_alc_per_strategy(tmp_path):
    """`dvc metrics show` prints one column per flattened key: 8 strategies x 3 keys made rows 531 characters
    wide; each strategy's ALC alone keeps them narrow (the full table is summary.csv)."""
    import json

    import yaml

    strategies = yaml.safe_load((ROOT / "params.yaml").read_text())["active"]["strategies"]
    exp = tmp_path / "exp"

    def labeled(n):  # a labeled set of n images (the report counts its images and boxes: annotation cost)
        return json.dumps({"images": [{"id": i, "file_name": f"{i}.png", "width": 8, "height": 8}
                                      for i in range(1, n + 1)], "annotations": [],
                           "categories": [{"id": 1, "name": "a"}]})

    (exp / "splits" / "seed0").mkdir(parents=True)
    (exp / "splits" / "seed0" / "labeled.json").write_text(labeled(10))
    for i, s in enumerate(strategies):
        for c in range(2):
            d = exp / "runs" / s / "seed0" / f"cycle{c}"
            d.mkdir(parents=True)
            (d / "labeled.json").write_text(labeled(10 * (c + 2)))
            (d / "metrics.json").write_text(json.dumps({"n_labeled": 10 * (c + 1), "map50": 0.1 * c + 0.01 * i,
                                                        "map50_area": 0.0, "coco_ap": 0.0, "coco_ap50": 0.0}))
    pool = tmp_path / "pool.json"
    pool.write_text(json.dumps({"images": [{"id": i, "file_name": f"{i}.png", "width": 8, "height": 8}
                                           for i in range(1, 101)], "annotations": [],
                                "categories": [{"id": 1, "name": "a"}]}))
    params = {"active": {"strategies": strategies, "seeds": [0], "cycles": 2, "initial_labeled": 10, "budget": 10}}
    assert cli.main(["report", "--params", json.dumps(params), "--experiment-dir", str(exp), "--pool", str(pool),
                     "--metrics", str(tmp_path / "metrics.json")]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics == {s: {"alc": pytest.approx(0.05 + 0.01 * i)} for i, s in enumerate(strategies)}
    columns = [f"{s}.alc" for s in metrics]
    assert len("results/dvc/metrics.json") + sum(len(c) + 2 for c in columns) < 160


# ------------------------------------------------------------------ 21.5: DVC experiments apart
def _dvc_exp_folders(d: Path, **env) -> set[str]:
    import subprocess

    from helpers.pipeline import env as base_env

    e = {**base_env(), "DVC_EXP_NAME": "some-exp", **env}  # what `dvc exp run` sets for its stages
    p = subprocess.run([BIN / "snakemake", "-n", "--forceall"], cwd=d, env=e, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-2000:]
    out = p.stdout
    return {o.split("/")[1] for o in _planned_outputs(out) if o.startswith("results/") and "/dvc/" not in o}


def test_dvc_experiments_with_different_params_never_share_a_results_folder(tmp_path):
    import yaml

    d = workdir(tmp_path, ROOT / "params.yaml", extra={"active.cycles": 2})
    before = _default_experiment(d)
    first = _dvc_exp_folders(d)
    assert len(first) == 1 and first != {"default"} and next(iter(first)).startswith("default-")
    assert _dvc_exp_folders(d, DVC_EXP_NAME="another-name") == first  # same params: same folder (resumes)
    p = yaml.safe_load((d / "params.yaml").read_text())
    p["active"]["budget"] = 50  # what `dvc exp run -S active.budget=50` writes into params.yaml
    (d / "params.yaml").write_text(yaml.safe_dump(p))
    second = _dvc_exp_folders(d)
    assert len(second) == 1 and second != first and "default" not in second
    assert {name: (d / "results" / "default" / name).read_text() for name in before} == before
    # DVC tracks fixed paths, filled from whichever folder the run wrote
    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["active_learning"]
    tracked = [next(iter(o)) for kind in ("outs", "metrics", "plots") for o in stage.get(kind, [])]
    assert tracked and all(t.startswith("${output_dir}/dvc/") for t in tracked)
    assert "dvc_outputs" in stage["cmd"]


def test_the_docs_dvc_examples_give_their_job_counts(tmp_path):
    """The README's cheap DVC example and the expensive one say how many jobs they plan; a dry run agrees."""
    cheap = re.search(r"dvc exp run -S active\.cycles=2 -S 'active\.strategies=\[random,entropy\]'\s+# a cheap "
                      r"experiment: (\d+) jobs", README)
    costly = re.search(r"-S active\.budget=50\s+-S 'active\.seeds=\[0,1,2\]'` is (\d+) jobs", README)
    assert cheap and costly
    d = workdir(tmp_path, ROOT / "params.yaml")
    for values, expected in (("active: {cycles: 2, strategies: [random, entropy]}", cheap.group(1)),
                             ("active: {budget: 50, seeds: [0, 1, 2]}", costly.group(1))):
        (d / "values.yaml").write_text(values + "\n")
        counts = job_counts(run([BIN / "snakemake", "-n", "--quiet", "rules", "--configfile", "values.yaml"],
                                d).stdout)
        assert counts["total"] == int(expected), values
