# MGRAL (strategies.mgral): per selecting cycle, after the plain detector of the cycle and the pool's
# embeddings (score_uncertainty with --strategy mgral):
#   build_lookup_table (one job per record) -> gather_lookup_table -> train_agent -> select_batch_mgral
# Records are independent jobs, so they run side by side locally and as separate jobs on a cluster.

MGRAL_STRATEGIES = "|".join(n for n in STRATEGY_NAMES if base_of(n) == "mgral")
MGRAL_RUNS = [s for s in ACTIVE["strategies"] if base_of(s) == "mgral"]


def mgral_record_files(w):
    """The record JSONs of a cycle's lookup table: strategies.mgral.records (or the variant's)."""
    n = resolve(w.strategy, config)[1]["records"]
    return [f"{run_dir(w)}/lookup/record{r}.json" for r in range(n)]


def mgral_params(w):
    return step_json("train-agent", w.strategy)


def mgral_outputs():
    """The compute table of the experiment's MGRAL runs (rule all)."""
    return [f"{EXP}/tables/mgral_compute.csv", f"{EXP}/tables/mgral_compute.md"] if MGRAL_RUNS else []


rule build_lookup_table:
    input:
        model=f"{RUN}/model.pt",
        labeled=labeled_before,
        pool=POOL_JSON,
    output:
        record=f"{RUN}/lookup/record{{record}}.json",
    log:
        f"{RUN}/logs/lookup_record{{record}}.log",
    benchmark:
        f"{RUN}/benchmarks/lookup_record{{record}}.tsv"
    wildcard_constraints:
        strategy=MGRAL_STRATEGIES,
        record=r"\d+",
    params:
        p=mgral_params,
        images=POOL_IMAGES,
        budget=ACTIVE["budget"],
    threads: config["resources"]["train"]["threads"]
    resources:
        **res("train"),
    shell:
        "{ACTIVEDET} lookup-record --params {params.p} --strategy {wildcards.strategy} --model {input.model:q}"
        " --images {params.images:q} --labeled {input.labeled:q} --pool {input.pool:q} --budget {params.budget}"
        " --seed {wildcards.seed} --cycle {wildcards.cycle} --record {wildcards.record} --out {output.record:q}"
        " --threads {threads} > {log:q} 2>&1"


rule gather_lookup_table:
    input:
        records=mgral_record_files,
    output:
        table=f"{RUN}/lookup_table.parquet",
    log:
        f"{RUN}/logs/lookup_table.log",
    benchmark:
        f"{RUN}/benchmarks/lookup_table.tsv"
    wildcard_constraints:
        strategy=MGRAL_STRATEGIES,
    resources:
        **res("light"),
    shell:
        "{ACTIVEDET} lookup-table --records {input.records:q} --out {output.table:q} > {log:q} 2>&1"


rule train_agent:
    input:
        table=f"{RUN}/lookup_table.parquet",
        scores=f"{RUN}/scores.parquet",
        model=f"{RUN}/model.pt",
        labeled=labeled_before,
        pool=POOL_JSON,
    output:
        agent=f"{RUN}/agent.pt",
        scores=f"{RUN}/agent_scores.parquet",
        compute=f"{RUN}/agent_compute.json",
    log:
        f"{RUN}/logs/train_agent.log",
    benchmark:
        f"{RUN}/benchmarks/train_agent.tsv"
    wildcard_constraints:
        strategy=MGRAL_STRATEGIES,
    params:
        p=mgral_params,
        images=POOL_IMAGES,
        budget=ACTIVE["budget"],
    threads: config["resources"]["train"]["threads"]
    resources:
        **res("train"),
    shell:
        "{ACTIVEDET} train-agent --params {params.p} --strategy {wildcards.strategy} --model {input.model:q}"
        " --images {params.images:q} --labeled {input.labeled:q} --pool {input.pool:q} --budget {params.budget}"
        " --seed {wildcards.seed} --cycle {wildcards.cycle} --scores {input.scores:q} --table {input.table:q}"
        " --out {output.agent:q} --scores-out {output.scores:q} --compute {output.compute:q} --threads {threads}"
        " > {log:q} 2>&1"


# MGRAL selects the top-b of the agent's scores; select_batch keeps serving every other strategy.
rule select_batch_mgral:
    input:
        scores=f"{RUN}/agent_scores.parquet",
    output:
        selected=f"{RUN}/selected.json",
    log:
        f"{RUN}/logs/select.log",
    benchmark:
        f"{RUN}/benchmarks/select.tsv"
    wildcard_constraints:
        strategy=MGRAL_STRATEGIES,
    params:
        p=lambda w: step_json("select", w.strategy),
        budget=ACTIVE["budget"],
    resources:
        **res("light"),
    shell:
        "{ACTIVEDET} select --params {params.p} --strategy {wildcards.strategy} --scores {input.scores:q}"
        " --budget {params.budget} --seed {wildcards.seed} --cycle {wildcards.cycle} --out {output.selected:q}"
        " > {log:q} 2>&1"


ruleorder: select_batch_mgral > select_batch


rule mgral_compute:
    input:
        compute=expand(f"{EXP}/runs/{{strategy}}/seed{{seed}}/cycle{{cycle}}/agent_compute.json",
                       strategy=MGRAL_RUNS, seed=ACTIVE["seeds"], cycle=range(ACTIVE["cycles"] - 1)),
        metrics=expand(f"{EXP}/runs/{{strategy}}/seed{{seed}}/cycle{{cycle}}/metrics.json",
                       strategy=MGRAL_RUNS, seed=ACTIVE["seeds"], cycle=range(ACTIVE["cycles"])),
    output:
        csv=f"{EXP}/tables/mgral_compute.csv",
        md=f"{EXP}/tables/mgral_compute.md",
    log:
        f"{EXP}/logs/mgral_compute.log",
    benchmark:
        f"{EXP}/benchmarks/mgral_compute.tsv"
    params:
        exp=EXP,
        strategies=" ".join(MGRAL_RUNS),
        seeds=" ".join(str(s) for s in ACTIVE["seeds"]),
        cycles=ACTIVE["cycles"],
        out=f"{EXP}/tables",
    resources:
        **res("light"),
    shell:
        "{ACTIVEDET} mgral-compute --experiment-dir {params.exp:q} --strategies {params.strategies}"
        " --seeds {params.seeds} --cycles {params.cycles} --out-dir {params.out:q} > {log:q} 2>&1"


localrules:
    gather_lookup_table,
    select_batch_mgral,
    mgral_compute,
