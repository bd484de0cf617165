"""The paper configurations (configs/paper/) as Snakemake plans them on fake VOC / COCO trees: cycles,
the papers' labeled-set sizes, job counts, the SLURM profile's resources; DVC's paper_config switch;
and the VOC conversion rule on real XML files."""
import json
import re

import pytest
import yaml

from activedet import params as P
from activedet.strategies import STRATEGIES

from helpers.paper import PAPER, fake_voc, roots_file, workflow_copy
from helpers.pipeline import BIN, ROOT, job_counts, run, train_counts
from helpers.voc import obj, write_set, write_voc

# name: (labeled images per trained model as the papers give them, root kind)
EXPECTED = {
    "voc_retinanet": ([827, 1240, 1653, 2066, 2479, 2892, 3305], "voc"),       # 5% + 2.5% to 20% of 16551
    "voc_ssd": ([1000 * k for k in range(1, 11)], "voc"),                       # 1k + 1k, 10 cycles
    "coco_retinanet": ([2345 * k for k in range(1, 6)], "coco"),               # 2% + 2% to 10% of 117266
    "voc_mgral": ([1000 * k for k in range(1, 11)], "voc"),
    "coco_mgral": ([2345 * k for k in range(1, 6)], "coco"),
}


def jobs(stdout: str) -> list[dict]:
    """The dry run's jobs: rule, wildcards, resources and shell command of each."""
    out = []
    for block in re.split(r"\n(?=\s*(?:\[.*\]\s*)?rule \w+:)", stdout):
        m = re.search(r"^\s*(?:\[.*\]\s*)?rule (\w+):", block, re.M)
        if not m:
            continue
        job = {"rule": m.group(1), "wildcards": {}, "resources": {}, "shell": "", "output": ""}
        o = re.search(r"output: (.*)", block)
        if o:
            job["output"] = o.group(1)
        w = re.search(r"wildcards: (.*)", block)
        if w:
            job["wildcards"] = dict(kv.split("=", 1) for kv in w.group(1).split(", "))
        r = re.search(r"resources: (.*)", block)
        if r:
            job["resources"] = dict(kv.split("=", 1) for kv in r.group(1).split(", "))
        s = re.search(r"Shell command: (.*)", block)
        if s:
            job["shell"] = s.group(1)
        out.append(job)
    return out


def labeled_sizes(plan: list[dict], params: dict) -> dict[tuple, list[int]]:
    """Labeled images each trained model of a (strategy, seed) chain sees, followed through the DAG:
    init-split --size for cycle 0, then + merge --budget of cycle c-1 for cycle c."""
    init = {j["wildcards"]["seed"]: int(re.search(r"--size (\d+)", j["shell"]).group(1))
            for j in plan if j["rule"] == "init_split"}
    budget = {(j["wildcards"]["strategy"], j["wildcards"]["seed"], int(j["wildcards"]["cycle"])):
              int(re.search(r"--budget (\d+)", j["shell"]).group(1)) for j in plan if j["rule"] == "merge_labels"}
    trained = {}  # the jobs writing a run's model.pt (trained, or the shared cycle-0 model)
    for j in plan:
        m = re.search(r"/runs/([^/]+)/seed(\d+)/cycle(\d+)/model\.pt", j["output"])
        if m:
            trained.setdefault((m.group(1), m.group(2)), set()).add(int(m.group(3)))
    sizes = {}
    for (strategy, seed), cycles in trained.items():
        assert sorted(cycles) == list(range(len(cycles))), (strategy, seed, cycles)
        n, chain = init[seed], []
        for c in sorted(cycles):
            if c > 0:
                n += budget[(strategy, seed, c - 1)]
            chain.append(n)
        sizes[(strategy, seed)] = chain
    return sizes


@pytest.mark.parametrize("name", list(EXPECTED))
def test_dry_run_of_each_paper_configuration_plans_the_papers_labeled_sizes(tmp_path, name):
    params = yaml.safe_load((PAPER / f"{name}.yaml").read_text())
    if "mgral" in params["active"]["strategies"] and "mgral" not in STRATEGIES:
        pytest.skip("the mgral strategy is not registered yet")
    expected, kind = EXPECTED[name]
    d = workflow_copy(tmp_path)
    roots = roots_file(tmp_path, kind)
    out = run([BIN / "snakemake", "-n", "-p", "--configfile", f"configs/paper/{name}.yaml", str(roots)], d).stdout
    plan = jobs(out)
    p = P.load({**params, "detector": {**params["detector"], "backbone_weights": "random"}})  # strategies, seeds
    sizes = labeled_sizes(plan, p)
    # every strategy and seed: one trained model per cycle with the paper's labeled-set sizes
    assert set(sizes) == {(s, str(seed)) for s in p["active"]["strategies"] for seed in p["active"]["seeds"]}
    assert all(chain == expected for chain in sizes.values()), sizes
    counts = job_counts(out)
    runs = len(p["active"]["strategies"]) * len(p["active"]["seeds"])
    assert counts["evaluate"] + counts.get("share_initial_detector", 0) == runs * len(expected)
    assert counts["merge_labels"] == runs * (len(expected) - 1)
    if kind == "voc":
        assert counts["voc_to_coco"] == 2  # pool (VOC07+12 trainval) and test (VOC07 test)
        assert "--sets VOC2007/trainval,VOC2012/trainval" in out and "--sets VOC2007/test" in out
    print(name, "dry-run job counts:", json.dumps(counts))


def test_voc_pool_smaller_than_the_plan_is_refused(tmp_path):
    d = workflow_copy(tmp_path)
    root = fake_voc(tmp_path / "VOCdevkit", {("VOC2007", "trainval"): 3000, ("VOC2012", "trainval"): 0,
                                             ("VOC2007", "test"): 10})
    roots = tmp_path / "roots.yaml"
    roots.write_text(yaml.safe_dump({"dataset": {"pool_images": str(root), "test_images": str(root)}}))
    p = run([BIN / "snakemake", "-n", "--configfile", "configs/paper/voc_retinanet.yaml", str(roots)], d, check=False)
    assert p.returncode != 0
    assert "= 3305 exceeds the pool (3000 images)" in p.stdout + p.stderr
    p = run([BIN / "snakemake", "-n", "--configfile", "configs/paper/voc_retinanet.yaml"], d, check=False)
    assert p.returncode != 0 and "dataset.pool_images must be set when dataset.format is voc" in p.stdout + p.stderr


def test_slurm_profile_dry_run_requests_a_gpu_for_training_jobs(tmp_path):
    d = workflow_copy(tmp_path)
    roots = roots_file(tmp_path, "voc")
    out = run([BIN / "snakemake", "-n", "--workflow-profile", "workflow/profiles/slurm", "--logger-activedet-jobs",
               "--configfile", "configs/paper/voc_retinanet.yaml", str(roots)], d)
    out = out.stdout + out.stderr  # the profile's console (logger activedet) prints every job with that option
    plan = jobs(out)
    by_rule = {}
    for j in plan:
        by_rule.setdefault(j["rule"], []).append(j["resources"])
    for rule in ("train_initial_detector", "train"):
        assert by_rule[rule] and all(r["gpu"] == "1" and r["runtime"] == "360" for r in by_rule[rule]), rule
    for rule in ("evaluate", "score_uncertainty"):
        assert all(r["gpu"] == "1" for r in by_rule[rule]), rule
    for rule in ("init_split", "select_batch", "merge_labels", "voc_to_coco"):  # localrules: no GPU
        assert all(r["gpu"] == "0" for r in by_rule[rule]), rule
    # the profile's placeholders and its grouping of a cycle's evaluation and scoring into one job
    assert all(r["slurm_partition"] == "CHANGE_ME" for rs in by_rule.values() for r in rs)
    assert "Group job posttrain_miaod_0_1 " in out and "Group job posttrain_random_3_5 " in out
    profile = yaml.safe_load((ROOT / "workflow" / "profiles" / "slurm" / "config.yaml").read_text())
    assert profile["executor"] == "slurm" and profile["rerun-incomplete"] is True and profile["retries"] >= 1
    assert profile["set-resource-scopes"] == {"gpu": "local"} and profile["resources"] == {"gpu": 1}
    assert not any("gres" in str(v) or "gpus" in str(v) for v in profile["default-resources"].values())


def test_paper_config_switch_for_dvc(tmp_path):
    d = workflow_copy(tmp_path)
    roots = yaml.safe_load(roots_file(tmp_path, "voc").read_text())["dataset"]
    params = yaml.safe_load((d / "params.yaml").read_text())
    params["paper_config"] = "voc_retinanet"
    params["dataset"].update(roots)
    (d / "params.yaml").write_text(yaml.safe_dump(params))
    # DVC names its outputs after params.yaml's experiment and dataset.name: they must be the configuration's
    p = run([BIN / "snakemake", "-n"], d, check=False)
    assert p.returncode != 0
    assert ("paper_config voc_retinanet needs experiment: voc_retinanet and dataset.name: voc0712 in params.yaml"
            in p.stdout + p.stderr)
    params.update(experiment="voc_retinanet")
    params["dataset"]["name"] = "voc0712"
    (d / "params.yaml").write_text(yaml.safe_dump(params))
    dry = run([BIN / "snakemake", "-n"], d).stdout
    via_switch = job_counts(dry)
    params.update(paper_config=None)
    (d / "params.yaml").write_text(yaml.safe_dump(params))
    via_configfile = job_counts(run([BIN / "snakemake", "-n", "--quiet", "rules", "--configfile",
                                     "configs/paper/voc_retinanet.yaml"], d).stdout)
    assert via_switch == via_configfile and train_counts(dry, lambda s: s)["miaod"] == 5 * 7
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert "paper_config" in dvc["active_learning"]["params"] and "paper_config" in dvc["dataset"]["params"]


def test_voc_conversion_rule_writes_the_pool_and_test_json(tmp_path):
    root = tmp_path / "VOCdevkit"
    write_voc(root, "VOC2007", "000001", objects=[obj("dog", 10, 20, 200, 300), obj("cat", 1, 1, 50, 50, 1)])
    write_voc(root, "VOC2012", "2008_000001", objects=[])
    write_voc(root, "VOC2007", "000002", objects=[obj("person", 5, 5, 100, 100)])
    write_set(root, "VOC2007", "trainval", ["000001"])
    write_set(root, "VOC2012", "trainval", ["2008_000001"])
    write_set(root, "VOC2007", "test", ["000002"])
    d = workflow_copy(tmp_path)
    roots = tmp_path / "roots.yaml"
    roots.write_text(yaml.safe_dump({"dataset": {"pool_images": str(root), "test_images": str(root)}}))
    # a plan of 2 cycles fits this 2-image pool
    small = tmp_path / "small.yaml"
    small.write_text(yaml.safe_dump({"active": {"initial_labeled": 1, "budget": 1, "cycles": 2}}))
    run([BIN / "snakemake", "--cores", "1", "data/voc0712/pool.json", "data/voc0712/test.json",
         "--configfile", "configs/paper/voc_retinanet.yaml", str(roots), str(small)], d)
    pool = json.loads((d / "data" / "voc0712" / "pool.json").read_text())
    test = json.loads((d / "data" / "voc0712" / "test.json").read_text())
    assert [im["file_name"] for im in pool["images"]] == ["VOC2007/JPEGImages/000001.jpg",
                                                          "VOC2012/JPEGImages/2008_000001.jpg"]
    assert [a["difficult"] for a in pool["annotations"]] == [0, 1]
    assert [im["file_name"] for im in test["images"]] == ["VOC2007/JPEGImages/000002.jpg"]
    assert (d / "data" / "voc0712" / "voc_to_coco_pool.log").exists()
