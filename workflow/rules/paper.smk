# The papers' figures and tables of an experiment, ours beside the published numbers, in {EXP}/paper/:
#   snakemake --cores all paper        (make paper)   builds every one the experiment's runs allow
# MI-AOD Fig. 5 (curves), Table 5 (time per cycle), Fig. 6 (heatmaps; needs an MI-AOD run), Fig. 7 (true
# positives among the selected images), Table 2 (IUL for image classification; its own small runs), MGRAL
# Fig. 3 (curves of all strategies) and Fig. 4 (first-cycle selections), plus Tables 1, 3, 4 (rule
# paper_tables) when the experiment runs their variants; README.md gathers them all.

PAPER = f"{EXP}/paper"
PAPER_CFG = config["paper_reports"]
SELECTING_CYCLES = list(range(ACTIVE["cycles"] - 1))
TABLE2 = PAPER_CFG["table2"]
# Tables other rule files build that belong to the paper target: MGRAL's (mgral.smk, included before this file).
PAPER_EXTRA = list(mgral_outputs()) if "mgral_outputs" in globals() else []


def paper_seed(section):
    """The section's seed, or the first of active.seeds (activedet.params.check_experiment refused others)."""
    seed = PAPER_CFG[section]["seed"]
    return ACTIVE["seeds"][0] if seed is None else seed


FIG6 = PAPER_CFG["fig6"]
FIG6_ON = FIG6["strategy"] in ACTIVE["strategies"] and bool(SELECTING_CYCLES)  # strategy, cycle: checked
FIG6_RUN = f"{EXP}/runs/{FIG6['strategy']}/seed{paper_seed('fig6')}/cycle{FIG6['cycle']}" if FIG6_ON else None


def paper_files():
    """(figures, tables): the PNGs and the Markdown tables the paper target builds, in reading order."""
    figures = [f"{PAPER}/miaod_fig5.png"]
    tables = [f"{PAPER}/miaod_fig5.md"]
    if FIG6_ON:
        figures.append(f"{PAPER}/miaod_fig6.png")
        tables.append(f"{PAPER}/miaod_fig6.md")
    if SELECTING_CYCLES:
        figures.append(f"{PAPER}/miaod_fig7.png")
        tables.append(f"{PAPER}/miaod_fig7.md")
    figures.append(f"{PAPER}/miaod_table2.png")
    tables += [f"{PAPER}/miaod_table2.md", f"{PAPER}/miaod_table5.md"]
    tables += [f"{EXP}/tables/{t}.md" for t in PAPER_TABLES]
    figures.append(f"{PAPER}/mgral_fig3.png")
    tables.append(f"{PAPER}/mgral_fig3.md")
    if SELECTING_CYCLES:
        figures.append(f"{PAPER}/mgral_fig4.png")
        tables.append(f"{PAPER}/mgral_fig4.md")
    tables += [f for f in PAPER_EXTRA if f.endswith(".md")]
    return figures, tables


def paper_outputs():
    """Every file of the paper target (CSVs included)."""
    figures, tables = paper_files()
    csvs = [t[:-3] + ".csv" for t in tables]
    return figures + tables + csvs + [f for f in PAPER_EXTRA if not f.endswith(".md")] + [f"{PAPER}/README.md"]


rule paper_fig5:
    input:
        curves=f"{EXP}/curves.csv",
    output:
        figure=f"{PAPER}/miaod_fig5.png",
        table=f"{PAPER}/miaod_fig5.csv",
        markdown=f"{PAPER}/miaod_fig5.md",
    log:
        f"{PAPER}/logs/miaod_fig5.log",
    benchmark:
        f"{PAPER}/benchmarks/miaod_fig5.tsv"
    params:
        p=step_json("paper-fig5"),
        out=PAPER,
    resources:
        **res("light"),
    shell:
        "{ACTIVEDET} paper-fig5 --params {params.p} --curves {input.curves:q} --out-dir {params.out:q} > {log:q} 2>&1"


rule paper_mgral_fig3:
    input:
        curves=f"{EXP}/curves.csv",
    output:
        figure=f"{PAPER}/mgral_fig3.png",
        table=f"{PAPER}/mgral_fig3.csv",
        markdown=f"{PAPER}/mgral_fig3.md",
    log:
        f"{PAPER}/logs/mgral_fig3.log",
    benchmark:
        f"{PAPER}/benchmarks/mgral_fig3.tsv"
    params:
        p=step_json("paper-mgral-fig3"),
        out=PAPER,
    resources:
        **res("light"),
    shell:
        "{ACTIVEDET} paper-mgral-fig3 --params {params.p} --curves {input.curves:q} --out-dir {params.out:q} > {log:q} 2>&1"


# Reads the benchmark files of every job of the experiment; curves.csv exists once they have all run.
rule paper_table5:
    input:
        curves=f"{EXP}/curves.csv",
    output:
        table=f"{PAPER}/miaod_table5.csv",
        steps=f"{PAPER}/miaod_table5_steps.csv",
        markdown=f"{PAPER}/miaod_table5.md",
    log:
        f"{PAPER}/logs/miaod_table5.log",
    benchmark:
        f"{PAPER}/benchmarks/miaod_table5.tsv"
    params:
        exp=EXP,
        out=PAPER,
    resources:
        **res("light"),
    shell:
        "{ACTIVEDET} paper-table5 --experiment-dir {params.exp:q} --curves {input.curves:q} --out-dir {params.out:q}"
        " > {log:q} 2>&1"


if FIG6_ON:

    rule paper_fig6:
        input:
            model=f"{FIG6_RUN}/model.pt",
            selected=f"{FIG6_RUN}/selected.json",
            pool=POOL_JSON,
        output:
            figure=f"{PAPER}/miaod_fig6.png",
            table=f"{PAPER}/miaod_fig6.csv",
            markdown=f"{PAPER}/miaod_fig6.md",
        log:
            f"{PAPER}/logs/miaod_fig6.log",
        benchmark:
            f"{PAPER}/benchmarks/miaod_fig6.tsv"
        params:
            images=POOL_IMAGES,
            n=FIG6["n_images"],
            device=config["device"],
            out=PAPER,
        threads: config["resources"]["score"]["threads"]
        resources:
            **res("score"),
        shell:
            "{ACTIVEDET} paper-fig6 --model {input.model:q} --selected {input.selected:q} --pool {input.pool:q}"
            " --images {params.images:q} --n-images {params.n} --out-dir {params.out:q} --device {params.device}"
            " --threads {threads} > {log:q} 2>&1"


# Figs. 7 and 4 need a cycle that selects (active.cycles >= 2).
if SELECTING_CYCLES:

    localrules:
        paper_fig7,
        paper_mgral_fig4,

    rule paper_count_tp:
        input:
            model=f"{RUN}/model.pt",
            selected=f"{RUN}/selected.json",
            pool=POOL_JSON,
        output:
            counts=f"{PAPER}/fig7/{{strategy}}/seed{{seed}}/cycle{{cycle}}.json",
        log:
            f"{PAPER}/fig7/{{strategy}}/seed{{seed}}/cycle{{cycle}}.log",
        benchmark:
            f"{PAPER}/fig7/{{strategy}}/seed{{seed}}/cycle{{cycle}}.tsv"
        params:
            p=step_json("paper-count-tp"),
            images=POOL_IMAGES,
            device=config["device"],
        threads: config["resources"]["score"]["threads"]
        resources:
            **res("score"),
        shell:
            "{ACTIVEDET} paper-count-tp --params {params.p} --model {input.model:q} --selected {input.selected:q}"
            " --pool {input.pool:q} --images {params.images:q} --out {output.counts:q} --device {params.device}"
            " --threads {threads} > {log:q} 2>&1"


    rule paper_fig7:
        input:
            counts=expand(f"{PAPER}/fig7/{{strategy}}/seed{{seed}}/cycle{{cycle}}.json",
                          strategy=ACTIVE["strategies"], seed=ACTIVE["seeds"], cycle=SELECTING_CYCLES),
        output:
            figure=f"{PAPER}/miaod_fig7.png",
            table=f"{PAPER}/miaod_fig7.csv",
            counts=f"{PAPER}/miaod_fig7_counts.csv",
            markdown=f"{PAPER}/miaod_fig7.md",
        log:
            f"{PAPER}/logs/miaod_fig7.log",
        benchmark:
            f"{PAPER}/benchmarks/miaod_fig7.tsv"
        params:
            out=PAPER,
        resources:
            **res("light"),
        shell:
            "{ACTIVEDET} paper-fig7 --counts {input.counts:q} --out-dir {params.out:q} > {log:q} 2>&1"


    rule paper_mgral_fig4:
        input:
            # the drawn seed first: its selections are the images of the figure; the table covers every seed
            selected=[f"{EXP}/runs/{s}/seed{seed}/cycle0/selected.json" for s in ACTIVE["strategies"]
                      for seed in sorted(ACTIVE["seeds"], key=lambda k: k != paper_seed("fig4"))],
            pool=POOL_JSON,
        output:
            figure=f"{PAPER}/mgral_fig4.png",
            table=f"{PAPER}/mgral_fig4.csv",
            images=f"{PAPER}/mgral_fig4_images.csv",
            markdown=f"{PAPER}/mgral_fig4.md",
        log:
            f"{PAPER}/logs/mgral_fig4.log",
        benchmark:
            f"{PAPER}/benchmarks/mgral_fig4.tsv"
        params:
            p=step_json("paper-fig4"),
            images=POOL_IMAGES,
            out=PAPER,
        resources:
            **res("light"),
        shell:
            "{ACTIVEDET} paper-fig4 --params {params.p} --selected {input.selected:q} --pool {input.pool:q}"
            " --images {params.images:q} --out-dir {params.out:q} > {log:q} 2>&1"


# MI-AOD Table 2: active image classification, one job per method and seed. CIFAR-10 trains a ResNet-18
# (a training job: a GPU on a cluster); the digits analog takes seconds on a CPU (a light job).
TABLE2_RESOURCES = "train" if TABLE2["dataset"] == "cifar10" else "light"


rule paper_table2_run:
    output:
        run=f"{PAPER}/table2/{{method}}/seed{{seed}}.csv",
    log:
        f"{PAPER}/table2/{{method}}/seed{{seed}}.log",
    benchmark:
        f"{PAPER}/table2/{{method}}/seed{{seed}}.tsv"
    wildcard_constraints:
        method="random|iul_random|entropy|iul",
    params:
        p=step_json("paper-table2-run"),
    threads: config["resources"][TABLE2_RESOURCES]["threads"]
    resources:
        **res(TABLE2_RESOURCES),
    shell:
        "{ACTIVEDET} paper-table2-run --params {params.p} --method {wildcards.method} --seed {wildcards.seed}"
        " --out {output.run:q} --threads {threads} > {log:q} 2>&1"


rule paper_table2:
    input:
        runs=expand(f"{PAPER}/table2/{{method}}/seed{{seed}}.csv", method=TABLE2["methods"], seed=TABLE2["seeds"]),
    output:
        figure=f"{PAPER}/miaod_table2.png",
        table=f"{PAPER}/miaod_table2.csv",
        runs=f"{PAPER}/miaod_table2_runs.csv",
        markdown=f"{PAPER}/miaod_table2.md",
    log:
        f"{PAPER}/logs/miaod_table2.log",
    benchmark:
        f"{PAPER}/benchmarks/miaod_table2.tsv"
    params:
        out=PAPER,
    resources:
        **res("light"),
    shell:
        "{ACTIVEDET} paper-table2 --runs {input.runs:q} --out-dir {params.out:q} > {log:q} 2>&1"


rule paper:
    input:
        lambda w: [f for f in paper_outputs() if f != f"{PAPER}/README.md"],
    output:
        index=f"{PAPER}/README.md",
    log:
        f"{PAPER}/logs/paper.log",
    benchmark:
        f"{PAPER}/benchmarks/paper.tsv"
    params:
        figures=lambda w: paper_files()[0],
        tables=lambda w: paper_files()[1],
        title=shlex.quote(f"Paper figures and tables: experiment {config['experiment']}"),
    resources:
        **res("light"),
    shell:
        "{ACTIVEDET} paper-index --figures {params.figures:q} --tables {params.tables:q} --title {params.title}"
        " --out {output.index:q} > {log:q} 2>&1"


localrules:
    paper,
    paper_fig5,
    paper_mgral_fig3,
    paper_table5,
    paper_table2,
