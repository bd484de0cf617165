"""Every paper configuration (configs/paper/) run end to end through Snakemake, with its own detector, on a
tiny VOC / COCO tree the test writes, shrunk by configs/paper/shrink.yaml (and shrink_retinanet.yaml for the
RetinaNet image size) and nothing else, through the `paper` target. The dry runs of tests/test_paper_configs.py
check the plans at full size; these check that the plans run."""
import shutil
import time

import pytest
import torch
import yaml

from activedet.checkpoint import load_checkpoint
from helpers.paper import PAPER, imagenet_stand_ins, roots_file, workflow_copy
from helpers.pipeline import BIN, ROOT, run

# CI runs voc_mgral: SSD300-VGG16 with its own head, loss and MI-AOD head (code no other test runs end to end),
# the VOC reader, MGRAL and every baseline. The other four pair the same parts with RetinaNet-R50-FPN, whose
# RetinaNet class and MI-AOD head the default pipeline's tests run on the tiny backbone, and the COCO reader
# (minutes each, mostly job start-up; with coco_mgral too, CI took over 30 minutes). -m slow runs all five.
CI_CONFIGS = ["voc_mgral"]
CONFIGS = [name if name in CI_CONFIGS else pytest.param(name, marks=pytest.mark.paper_full)
           for name in ["voc_retinanet", "voc_ssd", "coco_retinanet", "voc_mgral", "coco_mgral"]]
SHRINK = yaml.safe_load((PAPER / "shrink.yaml").read_text())
SHRINK_RETINANET = yaml.safe_load((PAPER / "shrink_retinanet.yaml").read_text())

# The keys the override files may set: scale only. A method, detector or recipe key here would mean the run no
# longer checks the configuration a cluster user submits.
SCALE_KEYS = {
    "train": {"epochs", "min_iterations", "max_iterations", "batch_size", "warmup_iterations", "checkpoint_every"},
    "active": {"initial_labeled", "budget", "cycles", "seeds"},
    "stopping": {"stop_set_size"},
    "strategies": {"miaod": {"topk"}, "mgral": {"records", "agent_iterations", "proxy_iterations", "embedding_dim"}},
    "paper_reports": {"table2": {"epochs", "min_iterations", "cycles", "seeds", "eval_batch_size"}},
    "dataset": {"input_size"},
    "resources": {"train": {"threads"}, "score": {"threads"}},
}


def _within(keys: dict, allowed, where=""):
    """Every key of ``keys`` is in ``allowed`` (a dict of sections or a set of leaf keys), recursively."""
    for k, v in keys.items():
        assert k in allowed, f"{where}{k} is not a scale key"
        if isinstance(allowed, dict):
            assert isinstance(v, dict), f"{where}{k} must be a section"
            _within(v, allowed[k], f"{where}{k}.")


def test_every_paper_configuration_is_run_end_to_end():
    names = {p if isinstance(p, str) else p.values[0] for p in CONFIGS}
    assert names == {p.stem for p in PAPER.glob("*.yaml") if not p.stem.startswith(("roots_", "weights", "shrink"))}


def test_shrink_files_change_scale_only():
    _within(SHRINK, SCALE_KEYS)
    _within(SHRINK_RETINANET, {"dataset": {"input_size"}})
    # and a key outside the scale set is caught
    with pytest.raises(AssertionError, match="detector is not a scale key"):
        _within({"detector": {"arch": "tiny"}}, SCALE_KEYS)
    with pytest.raises(AssertionError, match="strategies.mgral.temperature is not a scale key"):
        _within({"strategies": {"mgral": {"temperature": 2.0}}}, SCALE_KEYS)


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_paper_configuration_runs_end_to_end_shrunk(tmp_path, name):
    cfg = yaml.safe_load((PAPER / f"{name}.yaml").read_text())
    arch, kind = cfg["detector"]["arch"], cfg["dataset"]["format"]
    d = workflow_copy(tmp_path)
    weights = imagenet_stand_ins(d)
    roots = roots_file(tmp_path, kind, tiny=True)
    files = [f"configs/paper/{name}.yaml", str(roots), "configs/paper/shrink.yaml"]
    if arch == "resnet50_fpn":
        files.append("configs/paper/shrink_retinanet.yaml")
    t0 = time.time()
    run([BIN / "snakemake", "--cores", "2", "paper", "--configfile", *files], d)
    print(f"{name}: paper target in {time.time() - t0:.0f} s")
    # everything the paper target names was built: a second plan has nothing to do
    again = run([BIN / "snakemake", "-n", "paper", "--configfile", *files], d)
    assert "Nothing to be done" in again.stdout + again.stderr

    exp = d / "results" / cfg["experiment"]
    paper = exp / "paper"
    readme = (paper / "README.md").read_text()
    for report in ("miaod_fig5", "miaod_fig7", "miaod_table2", "miaod_table5", "mgral_fig3", "mgral_fig4"):
        assert (paper / f"{report}.md").stat().st_size > 0 and report in readme, report
    if "miaod" in cfg["active"]["strategies"]:
        assert (paper / "miaod_fig6.png").is_file()

    # every strategy ran its cycles with the shrunk labeled sizes, on the configuration's detector
    a = SHRINK["active"]
    sizes = [a["initial_labeled"] + c * a["budget"] for c in range(a["cycles"])]
    for strategy in cfg["active"]["strategies"]:
        for cycle, n in enumerate(sizes):
            run_dir = exp / "runs" / strategy / "seed0" / f"cycle{cycle}"
            assert (run_dir / "metrics.json").is_file(), run_dir
            ck = load_checkpoint(run_dir / "model.pt")
            assert ck["params"]["detector"]["arch"] == arch and ck["n_images"] == n, (strategy, cycle)
            assert ck.get("method") == ("miaod" if strategy == "miaod" else None), (strategy, cycle)
        assert len(yaml.safe_load((exp / "runs" / strategy / "seed0" / "cycle0" / "selected.json").read_text())
                   ["selected"]) == a["budget"]
    if "mgral" in cfg["active"]["strategies"]:
        mgral = exp / "runs" / "mgral" / "seed0" / "cycle0"
        assert (mgral / "lookup_table.parquet").is_file() and (mgral / "agent.pt").is_file()

    # the backbone started from the "ImageNet" file: RetinaNet's frozen stem equals it exactly; SSD's VGG
    # (all trained, as the paper) stays within the two shrunk SGD steps of it
    state = load_checkpoint(exp / "runs" / "random" / "seed0" / "cycle1" / "model.pt")["model"]
    imagenet = load_checkpoint(weights[arch])
    if arch == "resnet50_fpn":
        stem = next(v for k, v in state.items() if k.endswith("body.conv1.weight"))
        assert torch.equal(stem, imagenet["conv1.weight"])
    else:
        first = next(v for k, v in state.items() if k.endswith("features.0.weight") or k.endswith(".0.weight")
                     and v.shape == imagenet["features.0.weight"].shape)
        ref = imagenet["features.0.weight"]
        assert (first - ref).abs().max() < 0.05 * ref.abs().max()
    # the run's job seconds, kept in the test's folder: where a slow run's time went
    run([BIN / "python", "-m", "bench.job_table", str(exp), "--out", str(tmp_path / f"{name}_job_seconds.csv")], ROOT)
    shutil.rmtree(d / "results")  # about 3 GB of ResNet-50 checkpoints per configuration; kept when a check fails
