# Tables and figures of an experiment, and what `snakemake --report results/<experiment>/report.html` shows
# (`make report`): every output wrapped in report() below, with its caption from workflow/report/.

report: "../report/workflow.rst"

REPORT_DIR = "../report"
COST = config["cost"]
STOP = config["stopping"]
# The 100%-labeled reference is trained only when asked for and no number is given (cost.reference_map50).
TRAIN_REFERENCE = COST["train_reference"] and COST["reference_map50"] is None
LAST_CYCLE = ACTIVE["cycles"] - 1


def sheet_files():
    """The selection contact sheets: every cycle that selects (all but the last)."""
    return expand(f"{EXP}/runs/{{strategy}}/seed{{seed}}/cycle{{cycle}}/selected.png",
                  strategy=ACTIVE["strategies"], seed=ACTIVE["seeds"], cycle=range(LAST_CYCLE))


def reference_files():
    return expand(f"{EXP}/reference/seed{{seed}}/metrics.json", seed=ACTIVE["seeds"]) if TRAIN_REFERENCE else []


def report_figure(name, caption, category, **kw):
    return report(f"{EXP}/figures/{name}.png", caption=f"{REPORT_DIR}/{caption}.rst", category=category, **kw)


def report_table(name, caption, category):
    return report(f"{EXP}/{name}", caption=f"{REPORT_DIR}/{caption}.rst", category=category)


rule report:
    input:
        metrics=run_files("metrics.json"),
        labeled=expand(
            f"{EXP}/runs/{{strategy}}/seed{{seed}}/cycle{{cycle}}/labeled.json",
            strategy=ACTIVE["strategies"], seed=ACTIVE["seeds"], cycle=range(LAST_CYCLE)),
        splits=expand(f"{EXP}/splits/seed{{seed}}/labeled.json", seed=ACTIVE["seeds"]),
        stop_sets=expand(f"{EXP}/splits/seed{{seed}}/stop_set.json", seed=ACTIVE["seeds"]),
        stop_predictions=run_files("stop_predictions.json"),
        sheets=sheet_files(),
        reference=reference_files(),
        pool=POOL_JSON,
    output:
        curves=report_table("curves.csv", "curves", "2. Tables"),
        summary=report_table("summary.csv", "summary", "2. Tables"),
        times=report_table("time_per_step.csv", "time_per_step", "4. Compute"),
        per_class=report_table("per_class_ap.csv", "per_class_ap", "3. Per-class AP"),
        stopping=report_table("stopping.csv", "stopping", "5. Stopping"),
        figure=report_figure("learning_curves", "learning_curves", "1. Learning curves"),
        cost_figure=report_figure("learning_curves_cost", "learning_curves_cost", "1. Learning curves"),
        per_class_figure=report_figure("per_class_ap", "per_class_ap", "3. Per-class AP"),
        compute_figure=report_figure("compute_per_step", "time_per_step", "4. Compute"),
        stopping_figure=report_figure("stopping", "stopping", "5. Stopping"),
        dvc_plot=f"{EXP}/plots/map50_by_strategy.csv",
        metrics=f"{EXP}/metrics.json",
    log:
        f"{EXP}/logs/report.log",
    benchmark:
        f"{EXP}/benchmarks/report.tsv"
    params:
        p=step_json("report"),
        exp=EXP,
    resources:
        **res("light"),
    shell:
        "{ACTIVEDET} report --params {params.p} --experiment-dir {params.exp:q} --pool {input.pool:q}"
        " --metrics {output.metrics:q} --stopping > {log:q} 2>&1"


# Seconds of work each: on a cluster they run on the submit host.
localrules:
    resolved_params,
    stop_set,


# Every parameter after validation, defaults filled in: what the report shows as the experiment's settings.
rule resolved_params:
    output:
        report(f"{EXP}/resolved_params.yaml", caption=f"{REPORT_DIR}/resolved_params.rst", category="6. Parameters"),
    log:
        f"{EXP}/logs/resolved_params.log",
    params:
        p=step_json("resolve-params"),
    resources:
        **res("light"),
    shell:
        "{ACTIVEDET} resolve-params --params {params.p} --out {output:q} > {log:q} 2>&1"


# The stopping signal's stop set: unlabeled pool images fixed per seed (outside its initial labeled set).
rule stop_set:
    input:
        pool=POOL_JSON,
        labeled=f"{EXP}/splits/seed{{seed}}/labeled.json",
    output:
        stop_set=f"{EXP}/splits/seed{{seed}}/stop_set.json",
    log:
        f"{EXP}/splits/seed{{seed}}/stop_set.log",
    params:
        p=step_json("stop-set"),
        size=STOP["stop_set_size"],
    resources:
        **res("light"),
    shell:
        "{ACTIVEDET} stop-set --params {params.p} --pool {input.pool:q} --labeled {input.labeled:q}"
        " --size {params.size} --seed {wildcards.seed} --out {output.stop_set:q} > {log:q} 2>&1"


# The cycle's model behind the learning curve on the stop set: what the stopping signal compares.
rule predict_stop_set:
    input:
        model=eval_model,
        pool=POOL_JSON,
        stop_set=f"{EXP}/splits/seed{{seed}}/stop_set.json",
    output:
        predictions=f"{RUN}/stop_predictions.json",
    log:
        f"{RUN}/logs/predict_stop_set.log",
    benchmark:
        f"{RUN}/benchmarks/predict_stop_set.tsv"
    params:
        images=POOL_IMAGES,
        device=config["device"],
    threads: config["resources"]["score"]["threads"]
    resources:
        **res("score"),
    shell:
        "{ACTIVEDET} predict-stop-set --model {input.model:q} --images {params.images:q} --pool {input.pool:q}"
        " --stop-set {input.stop_set:q} --out {output.predictions:q} --device {params.device}"
        " --threads {threads} > {log:q} 2>&1"


# A contact sheet of the images a cycle selected, with the boxes of the model that scored them.
rule selection_sheet:
    input:
        model=f"{RUN}/model.pt",
        selected=f"{RUN}/selected.json",
        pool=POOL_JSON,
    output:
        sheet=report(f"{RUN}/selected.png", caption=f"{REPORT_DIR}/selected.rst", category="7. Selections",
                     subcategory="{strategy}", labels={"strategy": "{strategy}", "seed": "{seed}", "cycle": "{cycle}"}),
    log:
        f"{RUN}/logs/selection_sheet.log",
    params:
        images=POOL_IMAGES,
        device=config["device"],
        title=lambda w: f"{w.strategy}, seed {w.seed}, cycle {w.cycle}: selected images (rank order) with the model's boxes",
    threads: config["resources"]["score"]["threads"]
    resources:
        **res("score"),
    shell:
        "{ACTIVEDET} selection-sheet --model {input.model:q} --selected {input.selected:q} --pool {input.pool:q}"
        " --images {params.images:q} --out {output.sheet:q} --title {params.title:q} --device {params.device}"
        " --threads {threads} > {log:q} 2>&1"


# cost.train_reference: the plain detector on 100% of the pool, once per seed - the target of summary.csv's
# "labels to reach 90% / 95%" columns.
rule train_reference:
    input:
        pool=POOL_JSON,
        test=TEST_JSON,
        checked=f"{EXP}/checks/dataset.json",  # no training before every image is known to decode
        **PRETRAINED_INPUT,
    output:
        model=f"{EXP}/reference/seed{{seed}}/model.pt",
        summary=f"{EXP}/reference/seed{{seed}}/train.json",
        metrics=f"{EXP}/reference/seed{{seed}}/metrics.json",
    log:
        f"{EXP}/reference/seed{{seed}}/train.log",
    benchmark:
        f"{EXP}/reference/seed{{seed}}/benchmark.tsv"
    params:
        p=step_json("train"),
        images=POOL_IMAGES,
        test_images=TEST_IMAGES,
    threads: config["resources"]["train"]["threads"]
    resources:
        **res("train"),
    shell:
        "({ACTIVEDET} train --params {params.p} --images {params.images:q} --labeled {input.pool:q}"
        " --out {output.model:q} --summary {output.summary:q} --seed {wildcards.seed} --threads {threads} {BACKBONE_ARG}"
        " && {ACTIVEDET} evaluate --model {output.model:q} --images {params.test_images:q} --annotations {input.test:q}"
        " --out {output.metrics:q} --threads {threads}) > {log:q} 2>&1"


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
