# The dataset: generated (digit scenes) or converted (PASCAL VOC) where the format generates, the user's
# files as they are otherwise; the check of every image before the first job; the initial labeled split
# of each seed. No rule writes a file the user provides: a missing one is a missing input, named by
# `snakemake -n` (common.smk), never generated in its place.


if DATASET["format"] == "digit_scenes":

    rule make_dataset:
        output:
            pool=POOL_JSON,
            test=TEST_JSON,
            pool_images=directory(POOL_IMAGES),
            test_images=directory(TEST_IMAGES),
        log:
            f"{DATA}/make_dataset.log",
        benchmark:
            f"{DATA}/make_dataset.tsv"
        params:
            p=step_json("make-dataset"),
            out=DATA,
        resources:
            **res("light"),
        shell:
            "{ACTIVEDET} make-dataset --params {params.p} --out {params.out:q} > {log:q} 2>&1"


if DATASET["format"] == "voc":

    # PASCAL VOC XML + ImageSets -> the COCO JSON every step reads (pool: e.g. VOC07+12 trainval; test: VOC07 test).
    # Seconds of XML parsing: on a cluster it runs on the submit host.
    from activedet.data.voc import image_set_file, parse_image_sets

    rule voc_to_coco:
        input:
            # both splits' lists: class names read from the XML files come from both (dataset.classes null)
            image_sets=lambda w: [str(image_set_file(DATASET[f"{split}_images"], e)) for split in ("pool", "test")
                                  for e in parse_image_sets(DATASET[f"{split}_annotations"])],
        output:
            json=f"{DATA}/{{split}}.json",
        log:
            f"{DATA}/voc_to_coco_{{split}}.log",
        benchmark:
            f"{DATA}/voc_to_coco_{{split}}.tsv"
        wildcard_constraints:
            split="pool|test",
        params:
            p=step_json("voc-to-coco"),
            root=lambda w: DATASET[f"{w.split}_images"],
            sets=lambda w: DATASET[f"{w.split}_annotations"],
            # classes read from the XML files: from both splits, so pool and test get the same category ids
            other_root=lambda w: DATASET[f"{'test' if w.split == 'pool' else 'pool'}_images"],
            other_sets=lambda w: DATASET[f"{'test' if w.split == 'pool' else 'pool'}_annotations"],
        resources:
            **res("light"),
        shell:
            "{ACTIVEDET} voc-to-coco --params {params.p} --root {params.root:q} --sets {params.sets:q}"
            " --class-sets {params.other_root:q} {params.other_sets:q} --out {output.json:q} > {log:q} 2>&1"

    localrules:
        voc_to_coco,


# The first job of every chain (init_split needs its report): every pool and test image decodes to its
# annotated size, and no image is in the data twice (by path or content). DVC's dataset stage outputs
# the report, whose content digests its active_learning stage depends on.
rule check_dataset:
    input:
        pool=POOL_JSON,
        test=TEST_JSON,
    output:
        report=f"{EXP}/checks/dataset.json",
    log:
        f"{EXP}/checks/check_dataset.log",
    benchmark:
        f"{EXP}/checks/check_dataset.tsv"
    params:
        p=step_json("check-dataset"),
        pool_images=POOL_IMAGES,
        test_images=TEST_IMAGES,
    threads: config["resources"]["score"]["threads"]
    resources:
        **res("light"),
    shell:
        "{ACTIVEDET} check-dataset --params {params.p} --pool {input.pool:q} --pool-images {params.pool_images:q}"
        " --test {input.test:q} --test-images {params.test_images:q} --out {output.report:q}"
        " --threads {threads} > {log:q} 2>&1"


# `snakemake dataset` (DVC's dataset stage): the data, generated or converted where the format generates,
# and checked.
rule dataset:
    input:
        f"{EXP}/checks/dataset.json",


rule init_split:
    input:
        pool=POOL_JSON,
        checked=f"{EXP}/checks/dataset.json",
    output:
        labeled=f"{EXP}/splits/seed{{seed}}/labeled.json",
    log:
        f"{EXP}/splits/seed{{seed}}/init_split.log",
    benchmark:
        f"{EXP}/splits/seed{{seed}}/init_split.tsv"
    params:
        p=step_json("init-split"),
        size=ACTIVE["initial_labeled"],
    resources:
        **res("light"),
    shell:
        "{ACTIVEDET} init-split --params {params.p} --pool {input.pool:q} --size {params.size}"
        " --seed {wildcards.seed} --out {output.labeled:q} > {log:q} 2>&1"


localrules:
    dataset,
