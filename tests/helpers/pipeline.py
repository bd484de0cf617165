"""The repository, the venv's bin folder, the tiny params, and running Snakemake/DVC on a copy of the workflow."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TINY = ROOT / "tests" / "data" / "params_tiny.yaml"


def config_params(*names: str) -> dict:
    """params.yaml with configs/<name> merged in, in order, as Snakemake merges --configfile files (its own
    ``snakemake.utils.update_config``: key by key at every level), validated and completed by ``params.load``."""
    from snakemake.utils import update_config

    from activedet import params as P

    merged = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name in names:
        update_config(merged, yaml.safe_load((ROOT / "configs" / name).read_text()))
    return P.load(merged)


def env():
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e.setdefault("MPLBACKEND", "Agg")
    return e


def run(cmd, cwd, check=True):
    p = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
    return p


def workdir(tmp_path, params=TINY, extra: dict | None = None) -> Path:
    """A copy of the workflow (schema symlink resolved) with the given params as params.yaml."""
    d = tmp_path / "wf"
    d.mkdir()
    shutil.copy(ROOT / "Snakefile", d)
    shutil.copytree(ROOT / "workflow", d / "workflow", symlinks=False)
    shutil.copy(ROOT / "dvc.yaml", d)
    shutil.copytree(ROOT / "configs", d / "configs")  # dvc.yaml depends on configs/paper
    shutil.copytree(ROOT / "src", d / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    p = yaml.safe_load(Path(params).read_text())
    for key, value in (extra or {}).items():
        node = p
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    (d / "params.yaml").write_text(yaml.safe_dump(p))
    return d


def job_counts(stdout: str) -> dict:
    counts, table = {}, False
    for line in stdout.splitlines():
        parts = line.split()
        if parts[:2] == ["job", "count"]:
            table = True
            continue
        if table and len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
        elif table and counts and not parts:
            break
    return counts


def rule_wildcards(stdout: str, rule: str) -> list[dict]:
    """The wildcards of every job of ``rule`` in a dry run's job blocks (``snakemake -n`` without --quiet)."""
    jobs, current = [], None
    for line in stdout.splitlines():
        if line.startswith("rule ") or line.startswith("localrule "):
            current = line.split()[1].rstrip(":")
        elif current == rule and line.strip().startswith("wildcards:"):
            pairs = (p.split("=", 1) for p in line.split(":", 1)[1].split(", "))
            jobs.append({k.strip(): v.strip() for k, v in pairs})
    return jobs


def train_counts(stdout: str, base_of) -> dict:
    """Jobs of the one training rule per kind of model: the strategy's base (``base_of(name)``) for its own
    model, ``eval_detector`` for an eval_model.pt."""
    counts = {}
    for w in rule_wildcards(stdout, "train"):
        kind = "eval_detector" if w.get("role") else base_of(w["strategy"])
        counts[kind] = counts.get(kind, 0) + 1
    return counts
