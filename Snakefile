# activedet: active learning for object detection, one DAG per experiment.
#   snakemake --cores all                                   the default experiment (params.yaml)
#   snakemake --cores all --configfile configs/X.yaml       another configuration
#   snakemake --configfile configs/paper/voc_retinanet.yaml configs/paper/roots_voc.yaml   a paper's (README)
#   snakemake --workflow-profile workflow/profiles/slurm    on a SLURM cluster
import os
import sys

from snakemake.utils import min_version

min_version("8.0")


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


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/active_learning.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/mgral.smk"
include: "workflow/rules/paper.smk"


# Seconds of work each: on a cluster they run on the submit host instead of as SLURM jobs.
localrules:
    all,
    init_split,
    share_initial_detector,
    select_batch,
    merge_labels,
    report,
    paper_tables,


rule all:
    input:
        report_outputs(),
        mgral_outputs(),
    default_target: True
