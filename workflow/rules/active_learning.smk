# One active-learning cycle per strategy x seed x cycle:
# train -> score_uncertainty -> select_batch -> merge_labels -> next cycle's train,
# and evaluate on the test split at every cycle. Cycle c trains on cycle c-1's merged labels.
# active.oracle: human - select_batch -> export_for_annotation (tasks for people) and merge_labels waits
# for {RUN}/imported_labels.json from `python -m activedet import-labels` (docs/human-in-the-loop.md).


# Every cycle's model, by the trainer of its strategy (activedet.engine.trainers): the plain detector, MI-AOD
# (labeled + unlabeled images of the pool) or LL4AL. eval_model.pt (role eval_): with eval_detector: plain,
# the plain detector on an own-trainer strategy's labeled images, behind its learning curve. Cycle 0 of the
# plain strategies and of eval_model.pt is the shared initial model (share_initial_*).
rule train:
    input:
        labeled=labeled_before,
        pool=POOL_JSON,
        **PRETRAINED_INPUT,
    output:
        model=f"{RUN}/{{role}}model.pt",
        summary=f"{RUN}/{{role}}train.json",
    log:
        f"{RUN}/logs/{{role}}train.log",
    benchmark:
        f"{RUN}/benchmarks/{{role}}train.tsv"
    wildcard_constraints:
        role="(eval_)?",
    params:
        p=lambda w: step_json("train", None if w.role else w.strategy),
        strategy=train_strategy_arg,
        images=POOL_IMAGES,
    threads: config["resources"]["train"]["threads"]
    resources:
        **res("train"),
    shell:
        "{ACTIVEDET} train --params {params.p} --images {params.images:q} --labeled {input.labeled:q}"
        " --pool {input.pool:q} {params.strategy}--out {output.model:q} --summary {output.summary:q}"
        " --seed {wildcards.seed} --threads {threads} {BACKBONE_ARG} > {log:q} 2>&1"


# Cycle 0 of every strategy that trains the plain detector starts from the same split, seed and
# recipe, so one model serves them all: trained once per seed, then copied into each strategy's run.
rule train_initial_detector:
    input:
        labeled=f"{EXP}/splits/seed{{seed}}/labeled.json",
        pool=POOL_JSON,
        **PRETRAINED_INPUT,
    output:
        model=f"{EXP}/initial/seed{{seed}}/model.pt",
        summary=f"{EXP}/initial/seed{{seed}}/train.json",
        metrics=f"{EXP}/initial/seed{{seed}}/metrics.json",
    log:
        f"{EXP}/initial/seed{{seed}}/train.log",
    benchmark:
        f"{EXP}/initial/seed{{seed}}/benchmark.tsv"
    params:
        p=step_json("train"),
        images=POOL_IMAGES,
        test=TEST_JSON,
        test_images=TEST_IMAGES,
    threads: config["resources"]["train"]["threads"]
    resources:
        **res("train"),
    shell:
        "({ACTIVEDET} train --params {params.p} --images {params.images:q} --labeled {input.labeled:q}"
        " --out {output.model:q} --summary {output.summary:q} --seed {wildcards.seed} --threads {threads} {BACKBONE_ARG}"
        " && {ACTIVEDET} evaluate --model {output.model:q} --images {params.test_images:q} --annotations {params.test:q}"
        " --out {output.metrics:q} --threads {threads}) > {log:q} 2>&1"


rule share_initial_detector:
    input:
        model=f"{EXP}/initial/seed{{seed}}/model.pt",
        summary=f"{EXP}/initial/seed{{seed}}/train.json",
        metrics=f"{EXP}/initial/seed{{seed}}/metrics.json",
    output:
        model=f"{EXP}/runs/{{strategy}}/seed{{seed}}/cycle0/model.pt",
        summary=f"{EXP}/runs/{{strategy}}/seed{{seed}}/cycle0/train.json",
        metrics=f"{EXP}/runs/{{strategy}}/seed{{seed}}/cycle0/metrics.json",
    log:
        f"{EXP}/runs/{{strategy}}/seed{{seed}}/cycle0/logs/share_initial.log",
    benchmark:
        f"{EXP}/runs/{{strategy}}/seed{{seed}}/cycle0/benchmarks/share_initial.tsv"
    wildcard_constraints:
        strategy=PLAIN_STRATEGIES,
    resources:
        **res("light"),
    shell:
        "(cp {input.model:q} {output.model:q} && cp {input.summary:q} {output.summary:q}"
        " && cp {input.metrics:q} {output.metrics:q}) > {log:q} 2>&1"


ruleorder: share_initial_detector > train
ruleorder: share_initial_detector > evaluate


# At cycle 0 that plain detector is the shared initial one (same split, seed and recipe).
rule share_initial_eval_detector:
    input:
        model=f"{EXP}/initial/seed{{seed}}/model.pt",
        summary=f"{EXP}/initial/seed{{seed}}/train.json",
        metrics=f"{EXP}/initial/seed{{seed}}/metrics.json",
    output:
        model=f"{EXP}/runs/{{strategy}}/seed{{seed}}/cycle0/eval_model.pt",
        summary=f"{EXP}/runs/{{strategy}}/seed{{seed}}/cycle0/eval_train.json",
        metrics=f"{EXP}/runs/{{strategy}}/seed{{seed}}/cycle0/metrics.json",
    log:
        f"{EXP}/runs/{{strategy}}/seed{{seed}}/cycle0/logs/share_initial_eval.log",
    benchmark:
        f"{EXP}/runs/{{strategy}}/seed{{seed}}/cycle0/benchmarks/share_initial_eval.tsv"
    wildcard_constraints:
        strategy=EVAL_PLAIN_STRATEGIES,
    resources:
        **res("light"),
    shell:
        "(cp {input.model:q} {output.model:q} && cp {input.summary:q} {output.summary:q}"
        " && cp {input.metrics:q} {output.metrics:q}) > {log:q} 2>&1"


ruleorder: share_initial_eval_detector > train
ruleorder: share_initial_eval_detector > evaluate


# A twin (TWIN_OF, common.smk): model, scores, selection and labeled set are its twin's, copied (selected.json
# keeps the name of the strategy that computed it); its learning curve comes from its own evaluation
# detector (rule train, eval_model.pt) on those labeled sets.
rule share_twin_run:
    input:
        source=twin_source,
    output:
        shared=f"{RUN}/{{twin_file}}",
    log:
        f"{RUN}/logs/share_twin_{{twin_file}}.log",
    benchmark:
        f"{RUN}/benchmarks/share_twin_{{twin_file}}.tsv"
    wildcard_constraints:
        strategy=TWIN_STRATEGIES,
        twin_file=TWIN_FILES,
    resources:
        **res("light"),
    shell:
        "cp {input.source:q} {output.shared:q} > {log:q} 2>&1"


ruleorder: share_twin_run > train
ruleorder: share_twin_run > score_uncertainty
ruleorder: share_twin_run > select_batch
ruleorder: share_twin_run > merge_labels


rule evaluate:
    input:
        model=eval_model,
        test=TEST_JSON,
    output:
        metrics=f"{RUN}/metrics.json",
    log:
        f"{RUN}/logs/evaluate.log",
    benchmark:
        f"{RUN}/benchmarks/evaluate.tsv"
    params:
        images=TEST_IMAGES,
        device=config["device"],
    threads: config["resources"]["score"]["threads"]
    resources:
        **res("score"),
    shell:
        "{ACTIVEDET} evaluate --model {input.model:q} --images {params.images:q} --annotations {input.test:q}"
        " --out {output.metrics:q} --device {params.device} --threads {threads} > {log:q} 2>&1"


rule score_uncertainty:
    input:
        unpack(score_inputs),
    output:
        scores=f"{RUN}/scores.parquet",
        timing=f"{RUN}/score.json",
    log:
        f"{RUN}/logs/score.log",
    benchmark:
        f"{RUN}/benchmarks/score.tsv"
    params:
        p=lambda w: step_json("score", w.strategy),
        images=POOL_IMAGES,
        model=lambda w, input: f"--model {shlex.quote(input.model)}" if "model" in input.keys() else "",
    threads: config["resources"]["score"]["threads"]
    resources:
        **res("score"),
    shell:
        "{ACTIVEDET} score --params {params.p} --strategy {wildcards.strategy} {params.model}"
        " --images {params.images:q} --pool {input.pool:q} --labeled {input.labeled:q} --out {output.scores:q}"
        " --timing {output.timing:q} --threads {threads} > {log:q} 2>&1"


rule select_batch:
    input:
        scores=f"{RUN}/scores.parquet",
    output:
        selected=f"{RUN}/selected.json",
    log:
        f"{RUN}/logs/select.log",
    benchmark:
        f"{RUN}/benchmarks/select.tsv"
    params:
        p=lambda w: step_json("select", w.strategy),
        budget=ACTIVE["budget"],
    resources:
        **res("light"),
    shell:
        "{ACTIVEDET} select --params {params.p} --strategy {wildcards.strategy} --scores {input.scores:q}"
        " --budget {params.budget} --seed {wildcards.seed} --cycle {wildcards.cycle} --out {output.selected:q}"
        " > {log:q} 2>&1"


if HUMAN:
    # People label the selection: export_for_annotation writes the tasks, import-labels writes
    # imported_labels.json, merge-imported adds it (the merge invariants minus "equals the ground truth").
    MERGE_SHELL = (
        "{ACTIVEDET} merge-imported --params {params.p} --labeled {input.labeled:q} --selected {input.selected:q}"
        " --pool {input.pool:q} --imported {input.imported:q} --budget {params.budget} --out {output.labeled:q} > {log:q} 2>&1"
    )
else:
    MERGE_SHELL = (
        "{ACTIVEDET} merge --params {params.p} --labeled {input.labeled:q} --selected {input.selected:q}"
        " --pool {input.pool:q} --budget {params.budget} --out {output.labeled:q} > {log:q} 2>&1"
    )


rule merge_labels:
    input:
        unpack(merge_inputs),
    output:
        labeled=f"{RUN}/labeled.json",
    log:
        f"{RUN}/logs/merge.log",
    benchmark:
        f"{RUN}/benchmarks/merge.tsv"
    params:
        p=step_json("merge"),
        budget=ACTIVE["budget"],
    resources:
        **res("light"),
    shell:
        MERGE_SHELL


if HUMAN:

    rule export_for_annotation:
        input:
            selected=f"{RUN}/selected.json",
            model=f"{RUN}/model.pt",
            labeled=labeled_before,
            pool=POOL_JSON,
        output:
            readme=f"{RUN}/annotation/README.txt",
            selected=f"{RUN}/annotation/selected.csv",
            tasks=f"{RUN}/annotation/label_studio_tasks.json",
            config=f"{RUN}/annotation/label_studio_config.xml",
            cvat=f"{RUN}/annotation/cvat_annotations.xml",
            predictions=f"{RUN}/annotation/predictions.json",
            sheet=f"{RUN}/annotation/selected.png",
        log:
            f"{RUN}/logs/export_for_annotation.log",
        benchmark:
            f"{RUN}/benchmarks/export_for_annotation.tsv"
        params:
            images=POOL_IMAGES,
            device=config["device"],
            out=lambda w: f"{run_dir(w)}/annotation",
            imported=lambda w: f"{run_dir(w)}/imported_labels.json",
        threads: config["resources"]["score"]["threads"]
        resources:
            **res("score"),
        shell:
            "{ACTIVEDET} export-selection --selected {input.selected:q} --pool {input.pool:q} --images {params.images:q}"
            " --model {input.model:q} --labeled {input.labeled:q} --imported {params.imported:q} --out {params.out:q}"
            " --device {params.device} --threads {threads} > {log:q} 2>&1"

    localrules:
        await_imported_labels,

    # Stands in for the people until `import-labels` has written {RUN}/imported_labels.json (see
    # merge_inputs): fails printing the annotation README with the import command to run.
    rule await_imported_labels:
        input:
            readme=f"{RUN}/annotation/README.txt",
        output:
            pending=f"{RUN}/imported_labels.pending",
        log:
            f"{RUN}/logs/await_imported_labels.log",
        resources:
            **res("light"),
        shell:
            "(echo 'activedet: {wildcards.strategy}/seed{wildcards.seed}/cycle{wildcards.cycle} waits for labels"
            " from people (active.oracle: human). Annotate, import, then run snakemake again:'; echo;"
            " cat {input.readme:q}) | tee {log:q} >&2; exit 1"
