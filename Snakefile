# activedet: active learning for object detection, one DAG per experiment.
#   snakemake --cores all                                   the default experiment (params.yaml)
#   snakemake --cores all --configfile configs/X.yaml       another configuration
#   snakemake --workflow-profile workflow/profiles/slurm    on a SLURM cluster
from snakemake.utils import min_version

min_version("8.0")


configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/active_learning.smk"
include: "workflow/rules/report.smk"


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
    default_target: True
