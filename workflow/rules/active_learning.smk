# One active-learning cycle per strategy x seed x cycle:
# train_detector -> score_uncertainty -> select_batch -> merge_labels -> next cycle's train_detector,
# and evaluate on the test split at every cycle. Cycle c trains on cycle c-1's merged labels.


rule train_detector:
    input:
        labeled=labeled_before,
        pool=POOL_JSON,
    output:
        model=f"{RUN}/model.pt",
        summary=f"{RUN}/train.json",
    log:
        f"{RUN}/logs/train.log",
    benchmark:
        f"{RUN}/benchmarks/train.tsv"
    params:
        p=param_json("device", "num_threads", "dataset.input_size", "dataset.keep_ratio",
                     "dataset.on_box_outside", "dataset.cache_images", "detector", "train"),
        images=POOL_IMAGES,
    threads: config["resources"]["train"]["threads"]
    resources:
        **res("train"),
    shell:
        "{ACTIVEDET} train --params {params.p} --images {params.images} --labeled {input.labeled}"
        " --out {output.model} --summary {output.summary} --seed {wildcards.seed} --threads {threads} > {log} 2>&1"


rule evaluate:
    input:
        model=f"{RUN}/model.pt",
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
        "{ACTIVEDET} evaluate --model {input.model} --images {params.images} --annotations {input.test}"
        " --out {output.metrics} --device {params.device} --threads {threads} > {log} 2>&1"


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
        p=lambda w: param_json("device", "num_threads", "dataset.input_size", "dataset.keep_ratio",
                               "dataset.on_box_outside", "dataset.cache_images", f"strategies.{w.strategy}"),
        images=POOL_IMAGES,
        model=lambda w, input: f"--model {input.model}" if "model" in input.keys() else "",
    threads: config["resources"]["score"]["threads"]
    resources:
        **res("score"),
    shell:
        "{ACTIVEDET} score --params {params.p} --strategy {wildcards.strategy} {params.model}"
        " --images {params.images} --pool {input.pool} --labeled {input.labeled} --out {output.scores}"
        " --timing {output.timing} --threads {threads} > {log} 2>&1"


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
        p=lambda w: param_json(f"strategies.{w.strategy}"),
        budget=ACTIVE["budget"],
    resources:
        **res("light"),
    shell:
        "{ACTIVEDET} select --params {params.p} --strategy {wildcards.strategy} --scores {input.scores}"
        " --budget {params.budget} --seed {wildcards.seed} --cycle {wildcards.cycle} --out {output.selected}"
        " > {log} 2>&1"


rule merge_labels:
    input:
        labeled=labeled_before,
        selected=f"{RUN}/selected.json",
        pool=POOL_JSON,
    output:
        labeled=f"{RUN}/labeled.json",
    log:
        f"{RUN}/logs/merge.log",
    benchmark:
        f"{RUN}/benchmarks/merge.tsv"
    params:
        p=param_json("dataset.on_box_outside"),
        budget=ACTIVE["budget"],
    resources:
        **res("light"),
    shell:
        "{ACTIVEDET} merge --params {params.p} --labeled {input.labeled} --selected {input.selected}"
        " --pool {input.pool} --budget {params.budget} --out {output.labeled} > {log} 2>&1"
