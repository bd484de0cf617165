# The embedded dataset and the initial labeled split of each seed.


rule make_dataset:
    output:
        pool=f"{config['data_dir']}/{{dataset}}/pool.json",
        test=f"{config['data_dir']}/{{dataset}}/test.json",
        pool_images=directory(f"{config['data_dir']}/{{dataset}}/pool/images"),
        test_images=directory(f"{config['data_dir']}/{{dataset}}/test/images"),
    log:
        f"{config['data_dir']}/{{dataset}}/make_dataset.log",
    benchmark:
        f"{config['data_dir']}/{{dataset}}/make_dataset.tsv"
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
    benchmark:
        f"{EXP}/splits/seed{{seed}}/init_split.tsv"
    params:
        p=param_json("dataset.on_box_outside", "dataset.keep_unused_categories"),
        size=ACTIVE["initial_labeled"],
    resources:
        **res("light"),
    shell:
        "{ACTIVEDET} init-split --params {params.p} --pool {input.pool} --size {params.size}"
        " --seed {wildcards.seed} --out {output.labeled} > {log} 2>&1"


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
            json=f"{config['data_dir']}/{DATASET['name']}/{{split}}.json",
        log:
            f"{config['data_dir']}/{DATASET['name']}/voc_to_coco_{{split}}.log",
        benchmark:
            f"{config['data_dir']}/{DATASET['name']}/voc_to_coco_{{split}}.tsv"
        wildcard_constraints:
            split="pool|test",
        params:
            p=param_json("dataset.on_box_outside", "dataset.classes"),
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

    ruleorder: voc_to_coco > make_dataset

    localrules:
        voc_to_coco,
