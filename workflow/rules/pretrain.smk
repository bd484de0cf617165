# The pretrained backbone of the embedded default (detector.backbone_weights: glyph_scenes): a letter
# detector trained once per experiment on glyph scenes (printed letters, no pool image or label), whose
# stem, stages and FPN every strategy, seed and cycle starts from.


rule pretrain_backbone:
    output:
        backbone=f"{EXP}/pretrained/backbone.pt",
        detector=f"{EXP}/pretrained/glyph_detector.pt",
        summary=f"{EXP}/pretrained/pretrain.json",
    log:
        f"{EXP}/pretrained/pretrain.log",
    benchmark:
        f"{EXP}/pretrained/benchmark.tsv"
    params:
        p=step_json("pretrain"),
    threads: config["resources"]["pretrain"]["threads"]
    resources:
        **res("pretrain"),
    shell:
        "{ACTIVEDET} pretrain --params {params.p} --out {output.backbone:q} --detector {output.detector:q}"
        " --summary {output.summary:q} --threads {threads} > {log:q} 2>&1"
