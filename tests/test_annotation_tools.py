"""The annotation tools for real: a Label Studio server and Datumaro's CVAT reader and writer.

Each tool runs in a virtual environment of its own (``.ci/tools-install``, cached under ``$ACTIVEDET_TOOLS``)
so that its pins never touch the project's; the test installs it there when CI has not. Our files go in
through the tool's own API or importer, the tool's own exporter writes what comes back, and ``import-labels``
must turn that into exactly the labeled set of the ground-truth oracle.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from activedet.cli import main
from activedet.data.coco import load_coco
from activedet.data.splits import merge_labels
from activedet.hitl import label_studio
from activedet.hitl.boxes import Box, SelectedImage
from activedet.hitl.export import write_annotation_package

from helpers.pipeline import ROOT

TOOLS = Path(os.environ.get("ACTIVEDET_TOOLS") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
             / "activedet-tools")
TINY = {"dataset": {"digit_scenes": {"n_pool": 30, "n_test": 4}}}
N_SELECTED = 6
LEAD_TIME = 12.5  # seconds the simulated annotator spends per task

pytestmark = pytest.mark.slow


def tool_python(name: str) -> Path:
    """The interpreter of a tool's own venv, installed by .ci/tools-install when missing."""
    python = TOOLS / name / "bin" / "python"
    if not (python.is_file() and (python.parents[1] / ".installed").is_file()):  # a complete install has its stamp
        p = subprocess.run([str(ROOT / ".ci" / "tools-install"), name], capture_output=True, text=True, timeout=900)
        if p.returncode != 0:
            pytest.fail(f".ci/tools-install {name} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return python


class Selection:
    """A tiny pool, its initial labeled set, six selected images and pre-annotations made from their ground
    truth shifted by a pixel (what a good model would propose)."""

    def __init__(self, root: Path):
        self.root = root
        self.ds = root / "ds"
        self.images = self.ds / "pool" / "images"
        self.labeled = root / "labeled.json"
        p = json.dumps(TINY)
        assert main(["make-dataset", "--params", p, "--out", str(self.ds)]) == 0
        assert main(["init-split", "--params", p, "--pool", str(self.ds / "pool.json"), "--size", "8", "--seed", "0",
                     "--out", str(self.labeled)]) == 0
        self.pool = load_coco(self.ds / "pool.json")
        labeled_ids = set(load_coco(self.labeled).image_ids)
        free = [i for i in self.pool.image_ids if i not in labeled_ids]
        ids = sorted(int(i) for i in np.random.default_rng(0).choice(free, N_SELECTED, replace=False))
        by_id = {im["id"]: im for im in self.pool.images}
        self.selection = [SelectedImage(r, by_id[i]["file_name"], i, int(by_id[i]["width"]), int(by_id[i]["height"]),
                                        1.0 / r) for r, i in enumerate(ids, start=1)]
        self.names = {c["id"]: c["name"] for c in self.pool.categories}
        anns = self.pool.annotations_by_image()
        self.truth = {s.image: [Box(self.names[a["category_id"]], *a["bbox"]) for a in anns[s.image_id]]
                      for s in self.selection}
        assert sum(map(len, self.truth.values())) > 0
        dets = [{"image_id": s.image_id, "category_id": a["category_id"], "score": 0.9,
                 "bbox": [a["bbox"][0] + 1, a["bbox"][1] + 1, a["bbox"][2] - 1, a["bbox"][3] - 1]}
                for s in self.selection for a in anns[s.image_id]]
        self.package = root / "package"
        self.files = write_annotation_package(self.package, self.images, self.selection, dets, self.pool.categories,
                                              strategy="entropy", import_command="-")

    def oracle(self):
        merged = merge_labels(load_coco(self.labeled), [s.image_id for s in self.selection], self.pool, N_SELECTED)
        return by_file_name(merged)

    def import_labels(self, export: Path, tmp: Path, fmt: str = "auto") -> tuple[dict, dict]:
        """import-labels into a copy of the labeled set; the merged set by file name and the imported file."""
        labeled = tmp / "labeled.json"
        shutil.copy(self.labeled, labeled)
        assert main(["import-labels", "--export", str(export), "--selected", str(self.files["selected.csv"]),
                     "--labeled", str(labeled), "--format", fmt]) == 0
        imported = tmp / "imported.json"
        assert main(["import-labels", "--export", str(export), "--selected", str(self.files["selected.csv"]),
                     "--labeled", str(self.labeled), "--format", fmt, "--imported-out", str(imported)]) == 0
        return by_file_name(load_coco(labeled)), json.loads(imported.read_text())


def by_file_name(coco) -> dict:
    anns = coco.annotations_by_image()
    return {im["file_name"]: sorted((a["category_id"], tuple(round(v, 2) for v in a["bbox"])) for a in anns[im["id"]])
            for im in coco.images}


@pytest.fixture(scope="module")
def sel(tmp_path_factory) -> Selection:
    return Selection(tmp_path_factory.mktemp("tools"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


LS_CLIENT = r'''
import json, sys
from label_studio_sdk import LabelStudio

a = json.load(open(sys.argv[1]))
client = LabelStudio(base_url=a["url"], api_key=a["token"])
project = client.projects.create(title="activedet round trip", label_config=open(a["config"]).read())
tasks = json.load(open(a["tasks"]))
client.projects.import_tasks(project.id, request=tasks)
done, predicted = 0, {}
for t in client.tasks.list(project=project.id):
    # the pre-annotations as Label Studio stored them
    predicted[t.data["file_name"]] = [len(p.result) for p in client.predictions.list(task=t.id)]
    answer = a["answers"][t.data["file_name"]]
    # an annotator submits the boxes (the pre-annotations corrected to the truth) after lead_time seconds
    client.annotations.create(id=t.id, result=answer, lead_time=a["lead_time"], was_cancelled=False)
    done += 1
with open(a["out"], "wb") as f:
    for chunk in client.projects.exports.download_sync(project.id, export_type="JSON", download_all_tasks=True):
        f.write(chunk)
print(json.dumps({"project": project.id, "annotated": done, "predicted": predicted}))
'''


def test_label_studio_server_round_trip_gives_the_ground_truth(sel, tmp_path):
    python = tool_python("label-studio")
    port, token = free_port(), "activedet0123456789abcdef0123456789abcdef"
    data = tmp_path / "ls-data"
    env = {**os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(data), "DJANGO_DB": "sqlite",
           "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
           "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(sel.images), "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
           "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true", "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
           "LATEST_VERSION_CHECK": "false"}  # no call to pypi.org
    env.pop("PYTHONPATH", None)  # the server runs on its own packages only
    log = open(tmp_path / "label-studio.log", "w")
    server = subprocess.Popen([str(python.parent / "label-studio"), "start", "--no-browser", "--internal-host",
                               "127.0.0.1", "--port", str(port), "--data-dir", str(data), "--username",
                               "annotator@example.com", "--password", "activedet-test", "--user-token", token],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 600  # the first start migrates the SQLite database (about a minute)
        while True:
            assert server.poll() is None, (tmp_path / "label-studio.log").read_text()[-4000:]
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < deadline, "Label Studio did not answer in 600 s:\n" + \
                (tmp_path / "label-studio.log").read_text()[-4000:]
            time.sleep(2)
        answers = {s.image: [label_studio.region(b, s.width, s.height, f"t{s.rank}-{k}")
                             for k, b in enumerate(sel.truth[s.image])] for s in sel.selection}
        export = tmp_path / "label_studio_export.json"
        args = tmp_path / "client.json"
        args.write_text(json.dumps({"url": url, "token": token, "config": str(sel.files["label_studio_config.xml"]),
                                    "tasks": str(sel.files["label_studio_tasks.json"]), "answers": answers,
                                    "lead_time": LEAD_TIME, "out": str(export)}))
        script = tmp_path / "client.py"
        script.write_text(LS_CLIENT)
        p = subprocess.run([str(python), str(script), str(args)], capture_output=True, text=True, timeout=300,
                           env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        answer = json.loads(p.stdout.strip().splitlines()[-1])
        assert answer["annotated"] == N_SELECTED
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the workers it started, by its PID
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
    assert server.poll() is not None

    tasks = json.loads(export.read_text())
    assert len(tasks) == N_SELECTED
    # our pre-annotations went in through the API: one prediction per task with every box
    ours = {t["data"]["file_name"]: [len(t["predictions"][0]["result"])]
            for t in json.loads(sel.files["label_studio_tasks.json"].read_text())}
    assert answer["predicted"] == ours
    for t in tasks:
        assert t["annotations"][0]["lead_time"] == pytest.approx(LEAD_TIME)
    merged, imported = sel.import_labels(export, tmp_path)
    assert merged == sel.oracle()
    # Label Studio's measured annotation time is kept with the imported labels
    assert imported["info"]["annotation_seconds"] == pytest.approx(N_SELECTED * LEAD_TIME)
    assert sorted(im["annotation_seconds"] for im in imported["images"]) == [pytest.approx(LEAD_TIME)] * N_SELECTED


DM_READ = r'''
import json, sys
import datumaro as dm

ds = dm.Dataset.import_from(sys.argv[1], "cvat")
labels = ds.categories()[dm.AnnotationType.label]
out = {}
for item in ds:
    out[item.id] = sorted([labels[a.label].name, *[round(v, 2) for v in a.get_bbox()]]
                          for a in item.annotations if a.type == dm.AnnotationType.bbox)
print(json.dumps(out))
'''

DM_WRITE = r'''
import json, sys
import datumaro as dm

a = json.load(open(sys.argv[1]))
names = a["labels"]
items = []
for name, boxes in a["images"].items():
    items.append(dm.DatasetItem(id=name.rsplit(".", 1)[0], media=dm.Image.from_file(path=a["root"] + "/" + name),
                                annotations=[dm.Bbox(x, y, w, h, label=names.index(l)) for l, x, y, w, h in boxes]))
ds = dm.Dataset.from_iterable(items, categories=names)
ds.export(a["out"], "cvat", save_media=False)
'''


def test_datumaro_reads_our_cvat_xml_with_every_box(sel, tmp_path):
    python = tool_python("datumaro")
    folder = tmp_path / "cvat"
    folder.mkdir()
    shutil.copy(sel.files["cvat_annotations.xml"], folder / "annotations.xml")
    for s in sel.selection:  # Datumaro reads a CVAT task archive: annotations.xml beside images/<name>
        (folder / "images" / s.image).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(sel.images / s.image, folder / "images" / s.image)
    script = tmp_path / "read.py"
    script.write_text(DM_READ)
    p = subprocess.run([str(python), str(script), str(folder)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    theirs = json.loads(p.stdout.strip().splitlines()[-1])
    # what we wrote: the pre-annotations (truth shifted by a pixel), 2-decimal pixels
    ours = {s.image.rsplit(".", 1)[0]: sorted([b.label, round(b.x + 1, 2), round(b.y + 1, 2), round(b.w - 1, 2),
                                              round(b.h - 1, 2)] for b in sel.truth[s.image])
            for s in sel.selection}
    assert theirs == ours


def test_our_importer_reads_a_cvat_export_written_by_datumaro(sel, tmp_path):
    python = tool_python("datumaro")
    args = tmp_path / "write.json"
    args.write_text(json.dumps({"root": str(sel.images), "out": str(tmp_path / "dm"),
                                "labels": [sel.names[i] for i in sorted(sel.names)],
                                "images": {s.image: [[b.label, b.x, b.y, b.w, b.h] for b in sel.truth[s.image]]
                                           for s in sel.selection}}))
    script = tmp_path / "write.py"
    script.write_text(DM_WRITE)
    p = subprocess.run([str(python), str(script), str(args)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    (xml,) = (tmp_path / "dm").rglob("*.xml")
    merged, _ = sel.import_labels(xml, tmp_path, fmt="cvat")
    assert merged == sel.oracle()
