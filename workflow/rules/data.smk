# The embedded dataset and the initial labeled split of each seed.


rule make_dataset:
    output:
        pool=f"{config['data_dir']}/{{dataset}}/pool.json",
        test=f"{config['data_dir']}/{{dataset}}/test.json",
        pool_images=directory(f"{config['data_dir']}/{{dataset}}/pool/images"),
        test_images=directory(f"{config['data_dir']}/{{dataset}}/test/images"),
    log:
        f"{config['data_dir']}/{{dataset}}/make_dataset.log",
    params:
        p=param_json("dataset.digit_scenes"),
        out=lambda w: f"{config['data_dir']}/{w.dataset}",
    resources:
        **res("light"),
    shell:
        "{ACTIVEDET} make-dataset --params {params.p} --out {params.out} > {log} 2>&1"


rule init_split:
    input:
        pool=POOL_JSON,
    output:
        labeled=f"{EXP}/splits/seed{{seed}}/labeled.json",
    log:
        f"{EXP}/splits/seed{{seed}}/init_split.log",
    params:
        p=param_json("dataset.on_box_outside"),
        size=ACTIVE["initial_labeled"],
    resources:
        **res("light"),
    shell:
        "{ACTIVEDET} init-split --params {params.p} --pool {input.pool} --size {params.size}"
        " --seed {wildcards.seed} --out {output.labeled} > {log} 2>&1"
