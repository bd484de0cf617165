# Tables and figures of an experiment.


rule report:
    input:
        metrics=run_files("metrics.json"),
        pool=POOL_JSON,
    output:
        curves=f"{EXP}/curves.csv",
        summary=f"{EXP}/summary.csv",
        times=f"{EXP}/time_per_step.csv",
        figure=f"{EXP}/figures/learning_curves.png",
        metrics=f"{EXP}/metrics.json",
    log:
        f"{EXP}/logs/report.log",
    benchmark:
        f"{EXP}/benchmarks/report.tsv"
    params:
        p=param_json("active", "variants", "dataset.on_box_outside"),
        exp=EXP,
    resources:
        **res("light"),
    shell:
        "{ACTIVEDET} report --params {params.p} --experiment-dir {params.exp:q} --pool {input.pool:q}"
        " --metrics {output.metrics:q} > {log:q} 2>&1"


rule paper_tables:
    input:
        curves=f"{EXP}/curves.csv",
    output:
        tables=expand(f"{EXP}/tables/{{table}}.{{ext}}", table=PAPER_TABLES, ext=["csv", "md"]),
    log:
        f"{EXP}/logs/paper_tables.log",
    benchmark:
        f"{EXP}/benchmarks/paper_tables.tsv"
    params:
        tables=" ".join(PAPER_TABLES),
        out=f"{EXP}/tables",
    resources:
        **res("light"),
    shell:
        "{ACTIVEDET} paper-tables --curves {input.curves:q} --out-dir {params.out:q} --tables {params.tables} > {log:q} 2>&1"
