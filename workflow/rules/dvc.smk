# What DVC tracks of an experiment, at fixed paths: dvc.yaml cannot name the experiment's folder, which under
# `dvc exp run` is named from the params (Snakefile). `dvc metrics show` / `dvc exp show` read the narrow
# metrics (each strategy's ALC), `dvc plots show` the learning curves; the full tables stay in the folder.
DVC_DIR = f"{config['output_dir']}/dvc"


# the backbone's copy for DVC, when the experiment pre-trains one
COPY_PRETRAINED = f"&& cp {shlex.quote(PRETRAINED)} {shlex.quote(DVC_DIR + '/pretrained/backbone.pt')}" if PRETRAINED else ""


rule dvc_outputs:
    input:
        metrics=f"{EXP}/metrics.json",
        curves=f"{EXP}/curves.csv",
        by_strategy=f"{EXP}/plots/map50_by_strategy.csv",
        figure=f"{EXP}/figures/learning_curves.png",
        **PRETRAINED_INPUT,
    output:
        metrics=f"{DVC_DIR}/metrics.json",
        curves=f"{DVC_DIR}/curves.csv",
        by_strategy=f"{DVC_DIR}/map50_by_strategy.csv",
        figure=f"{DVC_DIR}/learning_curves.png",
        folder=f"{DVC_DIR}/results_folder.txt",
        pretrained=directory(f"{DVC_DIR}/pretrained"),
    log:
        f"{EXP}/logs/dvc_outputs.log",
    params:
        exp=EXP,  # a params change re-runs the copy when another experiment's folder becomes the current one
    resources:
        **res("light"),
    shell:
        "(cp {input.metrics:q} {output.metrics:q} && cp {input.curves:q} {output.curves:q}"
        " && cp {input.by_strategy:q} {output.by_strategy:q}"
        " && cp {input.figure:q} {output.figure:q} && echo {params.exp:q} > {output.folder:q}"
        " && mkdir -p {output.pretrained:q} {COPY_PRETRAINED}) > {log:q} 2>&1"
