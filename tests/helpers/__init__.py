"""Code the test modules share (test modules never import each other): ``pipeline`` (the repository, the venv's
bin folder, Snakemake runs on a copy of the workflow), ``paper`` (paper configurations on fake VOC / COCO trees),
``voc`` (VOC XML and ImageSets writers) and ``splits`` (a synthetic pool and the label-merge invariants).

tests/conftest.py puts tests/ on sys.path, so a test module imports them as ``from helpers.pipeline import ...``."""
