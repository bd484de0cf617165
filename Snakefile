# activedet: active learning for object detection, one DAG per experiment.
#   snakemake --cores all                                   the default experiment (params.yaml)
#   snakemake --cores all --configfile configs/X.yaml       another configuration
#   snakemake --configfile configs/paper/voc_retinanet.yaml configs/paper/roots_voc.yaml   a paper's (docs/paper-scale.md)
#   snakemake --workflow-profile workflow/profiles/slurm    on a SLURM cluster
import os
import sys

from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


# `dvc exp run -S paper_config=NAME`: a paper configuration over params.yaml (the command line's --config and
# --configfile still take precedence). DVC names its outputs after params.yaml's experiment and dataset.name,
# so they must be the configuration's.
if config.get("paper_config"):
    import yaml as _yaml

    _paper_file = f"configs/paper/{config['paper_config']}.yaml"
    if not os.path.isfile(_paper_file):
        sys.exit(f"error: params.yaml: paper_config: no configuration {_paper_file}")
    _ours = (config.get("experiment"), config.get("dataset", {}).get("name"))
    with open(_paper_file, encoding="utf-8") as _f:
        _paper = _yaml.safe_load(_f)
    _theirs = (_paper.get("experiment"), _paper.get("dataset", {}).get("name"))
    if _ours != _theirs:
        sys.exit(f"error: params.yaml: paper_config {config['paper_config']} needs experiment: {_theirs[0]} and "
                 f"dataset.name: {_theirs[1]} in params.yaml too (dvc.yaml names its outputs after them; e.g. "
                 f"dvc exp run -S paper_config={config['paper_config']} -S experiment={_theirs[0]} "
                 f"-S dataset.name={_theirs[1]})")

    configfile: _paper_file


# The paper configurations train from ImageNet weights (detector.backbone_weights: imagenet), whose files
# configs/paper/weights.yaml names per detector.arch: refuse to plan without them rather than silently train
# from scratch. Random initialisation is a choice said by name (backbone_weights: random).
_detector = config.get("detector") or {}
if _detector.get("backbone_weights") == "imagenet":
    import yaml as _yaml

    _weights_file = "configs/paper/weights.yaml"
    _arch = _detector.get("arch", "tiny")
    with open(_weights_file, encoding="utf-8") as _f:
        _weights = (_yaml.safe_load(_f) or {}).get("imagenet_weights") or {}
    if not _weights.get(_arch):
        sys.exit(f"error: {_weights_file}: imagenet_weights names no file for detector.arch {_arch} "
                 f"(detector.backbone_weights: imagenet)")
    if not os.path.isfile(_weights[_arch]):
        sys.exit(f"error: {_weights_file}: detector.backbone_weights: imagenet needs the ImageNet weights of "
                 f"{_arch}, imagenet_weights.{_arch}: {_weights[_arch]}, which does not exist. Make the file once "
                 f"(the command is in {_weights_file}; docs/paper-scale.md), link your copy there or edit the path; "
                 f"to train from random initialisation instead, say so: --config 'detector={{backbone_weights: random}}'")
    config["detector"]["backbone_weights"] = _weights[_arch]


# The experiment's folder, results/<experiment>/: results of different parameter sets never share one.
# - own data (any dataset but the embedded digit scenes) left on experiment: default gets the dataset's name;
# - human mode (active.oracle: human) runs apart from the oracle's results: <experiment>_human;
# - `dvc exp run` (DVC sets DVC_EXP_NAME) writes to <experiment>-<hash of the params>, so experiments with
#   different params never overwrite each other and a re-run of the same params resumes in its own folder.
_dataset = config.get("dataset") or {}
if config.get("experiment", "default") == "default" and _dataset.get("format", "digit_scenes") != "digit_scenes":
    config["experiment"] = _dataset.get("name") or "own_data"
if (config.get("active") or {}).get("oracle") == "human" and not str(config["experiment"]).endswith("_human"):
    config["experiment"] = f"{config['experiment']}_human"
if os.environ.get("DVC_EXP_NAME"):
    import hashlib as _hashlib
    import json as _json

    # resources and the output folder change where and how fast, not what is computed
    _what = {k: v for k, v in config.items() if k not in ("resources", "output_dir", "experiment")}
    _digest = _hashlib.sha256(_json.dumps(_what, sort_keys=True, default=str).encode()).hexdigest()[:8]
    config["experiment"] = f"{config['experiment']}-{_digest}"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/active_learning.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/mgral.smk"
include: "workflow/rules/paper.smk"
include: "workflow/rules/dvc.smk"


# Seconds of work each: on a cluster they run on the submit host instead of as SLURM jobs.
localrules:
    all,
    init_split,
    share_initial_detector,
    select_batch,
    merge_labels,
    report,
    paper_tables,
    dvc_outputs,


onstart:
    print(f"activedet: experiment {config['experiment']}: results go to {EXP}/, each job's log under "
          f"{EXP}/.../logs/, the full commands to .snakemake/log/", file=sys.stderr)


rule all:
    input:
        report_outputs(),
        mgral_outputs(),
    default_target: True
