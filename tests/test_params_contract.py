"""The params contract (issue 18): each step declares the params it reads (activedet.contract.STEP_PARAMS), the
workflow passes exactly those, and a step that reads a key it did not declare is caught (ACTIVEDET_AUDIT_PARAMS)."""
import json
import pickle
import shlex

import pytest
import yaml

from activedet import contract
from activedet import params as P
from activedet.cli import main
from activedet.cli.common import AUDIT_ENV
from activedet.strategies import STRATEGIES

from helpers.pipeline import BIN, run, workdir


def audits(folder):
    return [json.loads(f.read_text()) for f in sorted(folder.glob("*.json"))]


def test_undeclared_reads_by_hand():
    declared = ["dataset.input_size", "train", "strategies.entropy"]
    reads = ["dataset", "dataset.input_size", "train", "train.lr", "train.augment.scale", "strategies",
             "strategies.entropy.aggregate", "dataset.on_box_outside", "device", "strategies.random"]
    # "dataset" and "strategies" are read on the way to a declared key; the rest are not covered
    assert P.undeclared_reads(declared, reads) == ["dataset.on_box_outside", "device", "strategies.random"]
    assert P.undeclared_reads(declared, []) == []


def test_audited_params_record_reads_and_save_as_plain_dicts():
    reads = set()
    p = P.AuditedParams({"a": {"b": 1, "c": {"d": 2}}, "e": 3}, reads)
    assert p["a"]["c"]["d"] == 2 and p.get("e") == 3 and "zz" not in p["a"]
    assert reads == {"a", "a.c", "a.c.d", "e", "a.zz"}
    flat = P.plain({"params": p, "x": [1]})["params"]
    assert type(flat) is dict and type(flat["a"]["c"]) is dict and flat == {"a": {"b": 1, "c": {"d": 2}}, "e": 3}
    assert pickle.loads(pickle.dumps(flat)) == flat


def test_every_registered_strategy_has_a_schema_section():
    assert P.strategy_names() == sorted(STRATEGIES)


def test_step_params_add_the_strategy_options_where_the_step_reads_them():
    p = P.load({"variants": {"miaod_l2": {"strategy": "miaod", "options": {"lambda": 2.0}}}})
    assert contract.step_params("select", "miaod_l2", p) == ["strategies.miaod", "variants.miaod_l2"]
    assert contract.step_params("train", "miaod_l2", p) == list(contract.TRAIN_KEYS) + ["strategies.miaod",
                                                                                       "variants.miaod_l2"]
    # the plain detector's training reads no strategy option: every plain strategy shares one model recipe
    assert contract.step_params("train", "entropy", p) == list(contract.TRAIN_KEYS)
    assert contract.step_params("resolve-params", None, {"b": 1, "a": 2}) == ["a", "b"]


def _pool(path):
    images = [{"id": i, "file_name": f"{i}.png", "width": 32, "height": 32} for i in range(1, 7)]
    annotations = [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 5, 5]} for i in range(1, 7)]
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "a"}]}))
    return path


def test_a_step_that_reads_an_undeclared_key_is_caught(tmp_path, monkeypatch):
    pool = _pool(tmp_path / "pool.json")
    monkeypatch.setenv(AUDIT_ENV, str(tmp_path / "audit"))
    argv = ["init-split", "--params", json.dumps({"dataset": {"on_box_outside": "clip"}}), "--pool", str(pool),
            "--size", "3", "--seed", "0"]
    assert main(argv + ["--out", str(tmp_path / "a.json")]) == 0
    # The declared run: every key read is declared
    (a,) = audits(tmp_path / "audit")
    assert a["step"] == "init-split" and "dataset.duplicate_images" in a["reads"]
    assert P.undeclared_reads(a["declared"], a["reads"]) == []
    # The same step once it reads a key its declaration lacks: the audit names it
    for f in (tmp_path / "audit").glob("*.json"):
        f.unlink()
    declared = tuple(k for k in contract.STEP_PARAMS["init-split"] if k != "dataset.duplicate_images")
    monkeypatch.setitem(contract.STEP_PARAMS, "init-split", declared)
    assert main(argv + ["--out", str(tmp_path / "b.json")]) == 0
    (b,) = audits(tmp_path / "audit")
    assert P.undeclared_reads(b["declared"], b["reads"]) == ["dataset.duplicate_images"]


def _expected_json(config, keys):
    """What the workflow's param_json builds from the declared keys the config has."""
    out = {}
    for key in keys:
        *parents, leaf = key.split(".")
        src = config
        for part in parents:
            src = src.get(part, {})
        if leaf not in src:  # no empty parent either: the JSON (and the params tree a step rebuilds) stays as before
            continue
        dst = out
        for part in parents:
            dst = dst.setdefault(part, {})
        dst[leaf] = src[leaf]
    return out


def test_the_workflow_passes_each_step_exactly_what_the_library_declares(tmp_path):
    variants = {"miaod_pe": {"strategy": "miaod", "options": {"eval_detector": "plain"}}}
    strategies = sorted(STRATEGIES) + ["miaod_pe"]
    d = workdir(tmp_path, extra={"active.cycles": 2, "active.strategies": strategies, "variants": variants})
    config = P.load(yaml.safe_load((d / "params.yaml").read_text()))
    out = run([BIN / "snakemake", "-n", "-p", "--forceall"], d).stdout
    steps = set()
    for line in out.splitlines():
        if " -m activedet " not in line or "--params" not in line:
            continue
        words = shlex.split(line.split(" > ")[0])
        step = words[words.index("-m") + 2]
        strategy = words[words.index("--strategy") + 1] if "--strategy" in words else None
        passed = json.loads(words[words.index("--params") + 1])
        assert passed == _expected_json(config, contract.step_params(step, strategy, config)), (step, strategy)
        steps.add(step)
    assert {"make-dataset", "pretrain", "check-dataset", "init-split", "train", "score", "select", "merge",
            "report", "resolve-params", "lookup-record", "train-agent", "stop-set"} <= steps


@pytest.mark.slow
def test_no_step_of_a_pipeline_run_reads_an_undeclared_param(tmp_path):
    """Every strategy (and a variant) through two cycles on the tiny data, every step audited."""
    # another lambda: not a twin of miaod (share_twin_run), so the variant trains MI-AOD models of its own
    variants = {"miaod_pe": {"strategy": "miaod", "options": {"eval_detector": "plain", "lambda": 1.0}}}
    d = workdir(tmp_path, extra={"active.cycles": 2, "active.strategies": sorted(STRATEGIES) + ["miaod_pe"],
                                 "variants": variants, "stopping.stop_set_size": 5})
    audit = tmp_path / "audit"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(AUDIT_ENV, str(audit))
        run([BIN / "snakemake", "--cores", "2", "--quiet"], d)
    found = audits(audit)
    assert {a["step"] for a in found} >= {"make-dataset", "pretrain", "check-dataset", "init-split", "train", "score",
                                          "select", "merge", "report", "lookup-record", "train-agent", "stop-set"}
    assert {a["strategy"] for a in found if a["step"] == "train"} >= {None, "miaod", "ll4al", "miaod_pe"}
    undeclared = {(a["step"], a["strategy"]): P.undeclared_reads(a["declared"], a["reads"]) for a in found}
    assert {k: v for k, v in undeclared.items() if v} == {}
