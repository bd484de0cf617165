"""A real SLURM: a one-node cluster on 127.0.0.1 (.ci/slurm-up), the tiny pipeline through the shipped
profile workflow/profiles/slurm, the same results as a local run, the daemons stopped by their PIDs.

Needs Debian's slurm-wlm and munge (.ci/slurm-install, run by .ci/run) and root or passwordless sudo;
skipped otherwise, and where an /etc/slurm/slurm.conf exists that .ci/slurm-up did not write.
"""
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from helpers.pipeline import BIN, ROOT, env, workdir

CONF = Path("/etc/slurm/slurm.conf")
MARK = "# activedet single-node test cluster"

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def why_not_runnable() -> str | None:
    missing = [t for t in ("slurmctld", "slurmd", "munged", "sinfo", "sbatch", "squeue") if shutil.which(t) is None]
    if missing:
        return f"SLURM not installed ({', '.join(missing)} missing; .ci/slurm-install installs it)"
    if os.geteuid() != 0 and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode != 0:
        return "starting SLURM daemons needs root or passwordless sudo"
    if CONF.exists() and MARK not in CONF.read_text(errors="replace"):
        return f"{CONF} exists and belongs to another SLURM; not replacing it"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed"
    return None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = why_not_runnable()
    if reason:
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm")
    up = subprocess.run([ROOT / ".ci" / "slurm-up", state], capture_output=True, text=True)
    pids = {}
    if (state / "pids").exists():
        pids = {name: int(pid) for name, pid in (line.split() for line in (state / "pids").read_text().splitlines())}
    try:
        assert up.returncode == 0, f"slurm-up failed:\n{up.stdout}\n{up.stderr}"
        assert set(pids) == {"munged", "slurmctld", "slurmd"}
        yield pids
    finally:
        subprocess.run([ROOT / ".ci" / "slurm-down", state], capture_output=True, text=True)
        for name, pid in pids.items():  # stopped by their PIDs, not by name
            for _ in range(100):
                if not Path(f"/proc/{pid}").exists():
                    break
                time.sleep(0.1)
            assert not Path(f"/proc/{pid}").exists(), f"{name} ({pid}) still runs"
        assert not (CONF.exists() and MARK in CONF.read_text(errors="replace"))


# One strategy that needs a model, three cycles: cycle 1 has both an evaluation and a scoring job,
# which the profile groups into one SLURM job. Training and scoring ask for a GPU as on a GPU cluster:
# .ci/slurm-up gives the node two stand-in GPUs, and the jobs run on the CPU (device: cpu).
PARAMS = {"active.strategies": ["entropy"], "active.cycles": 3,
          "resources.train": {"threads": 1, "mem_mb": 1000, "runtime": 10, "gpu": 1},
          "resources.score": {"threads": 1, "mem_mb": 1000, "runtime": 10, "gpu": 1}}


def slurm_job(job_id: str) -> dict:
    """``scontrol show job`` as a dict (finished jobs stay listed for MinJobAge, 600 s here)."""
    out = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True).stdout
    return dict(field.split("=", 1) for field in out.split() if "=" in field)


def snakemake(d: Path, *args) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    p = subprocess.run([BIN / "snakemake", *args], cwd=d, env=env(), capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    assert p.returncode == 0, f"snakemake {' '.join(args)} failed:\n{p.stdout[-4000:]}\n{p.stderr[-6000:]}"
    return p, seconds


def test_tiny_pipeline_through_the_slurm_profile_equals_a_local_run(tmp_path, cluster):
    (tmp_path / "local").mkdir()
    (tmp_path / "slurm").mkdir()
    local = workdir(tmp_path / "local", extra=PARAMS)
    on_slurm = workdir(tmp_path / "slurm", extra=PARAMS)
    _, local_s = snakemake(local, "--cores", "2")

    # The shipped profile, with this cluster's partition and account and the settings a cluster without
    # accounting needs (squeue instead of sacct, short first status check; docs/pipeline.md#a-one-node-slurm-for-the-test).
    profile = on_slurm / "workflow" / "profiles" / "slurm" / "config.yaml"
    settings = yaml.safe_load(profile.read_text())
    assert settings["executor"] == "slurm" and settings["retries"] >= 1 and settings["rerun-incomplete"]
    assert "slurm_extra" not in settings["default-resources"]
    settings["default-resources"].update(slurm_partition="debug", slurm_account="activedet")
    settings.update({"slurm-status-command": "squeue", "slurm-init-seconds-before-status-checks": 2,
                     "seconds-between-status-checks": 2, "slurm-keep-successful-logs": True, "latency-wait": 5})
    profile.write_text(yaml.safe_dump(settings))
    run, slurm_s = snakemake(on_slurm, "--workflow-profile", "workflow/profiles/slurm")
    print(f"tiny pipeline: local {local_s:.0f} s, through SLURM {slurm_s:.0f} s")

    # Every job but the localrules went through sbatch; evaluation + scoring of cycle 1 were one job.
    log = run.stdout + run.stderr
    submitted = {}  # slurm_logs folder (rule or group) -> SLURM job ids
    for m in re.finditer(r"submitted with SLURM jobid (\d+) \(log: .*/slurm_logs/([^/]+)/", log):
        submitted.setdefault(m.group(2), []).append(m.group(1))
    assert {"rule_make_dataset", "rule_train_initial_detector", "rule_train"} <= set(submitted), submitted
    assert not any(p.startswith(("rule_select_batch", "rule_merge_labels", "rule_init_split", "rule_report"))
                   for p in submitted)
    # the backbone's pre-training, the data and its check, the 100%-labeled reference, train_initial, 2 x train,
    # score@0, [evaluate+score]@1, evaluate@2, the stopping signal's predictions at each cycle, the selection
    # sheets of cycles 0 and 1
    counts = {name: len(ids) for name, ids in submitted.items()}
    assert counts == {"rule_pretrain_backbone": 1, "rule_make_dataset": 1, "rule_check_dataset": 1,
                      "rule_train_reference": 1, "rule_train_initial_detector": 1, "rule_train": 2,
                      "group_posttrain_entropy_0_0_score_uncertainty": 1,
                      "group_posttrain_entropy_0_1_evaluate_score_uncertainty": 1,
                      "group_posttrain_entropy_0_2_evaluate": 1, "rule_predict_stop_set": 3,
                      "rule_selection_sheet": 2}, str(counts)
    # GPU and wall time from the rules' resources: one GPU per training job, and one (not two) for the
    # group, whose jobs run one after the other within the sum of their runtimes
    (group,) = submitted["group_posttrain_entropy_0_1_evaluate_score_uncertainty"]
    assert slurm_job(group)["TresPerJob"] == "gres:gpu:1" and slurm_job(group)["TimeLimit"] == "00:20:00"
    for job in submitted["rule_train"] + submitted["rule_train_initial_detector"]:
        info = slurm_job(job)
        assert info["TresPerJob"] == "gres:gpu:1" and info["TimeLimit"] == "00:10:00", info
        assert info["JobState"] == "COMPLETED"
    assert "TresPerJob" not in slurm_job(submitted["rule_make_dataset"][0])  # light job: no GPU

    # Same results: labeled sets, selections, weights and the learning curve.
    runs_l, runs_s = local / "results" / "tiny", on_slurm / "results" / "tiny"
    for path in sorted(runs_l.rglob("labeled.json")):
        assert json.loads(path.read_text()) == json.loads((runs_s / path.relative_to(runs_l)).read_text()), path
    selections = sorted(runs_l.rglob("selected.json"))
    assert len(selections) == 2
    for path in selections:
        ours = json.loads(path.read_text())
        theirs = json.loads((runs_s / path.relative_to(runs_l)).read_text())
        assert ours["selected"] == theirs["selected"], path
    models = sorted(runs_l.rglob("model.pt"))
    assert len(models) == 5  # initial + 3 cycles + the 100%-labeled reference (cost.train_reference)
    for path in models:
        a = torch.load(path, weights_only=True)["model"]
        b = torch.load(runs_s / path.relative_to(runs_l), weights_only=True)["model"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), path
    # the pretrained backbone every training started from: the same bytes on both sides
    backbone = Path("pretrained") / "backbone.pt"
    assert (runs_l / backbone).read_bytes() == (runs_s / backbone).read_bytes()
    cols = ["strategy", "seed", "cycle", "n_labeled", "map50", "map50_area", "coco_ap"]
    pd.testing.assert_frame_equal(pd.read_csv(runs_l / "curves.csv")[cols], pd.read_csv(runs_s / "curves.csv")[cols])
