"""The loop's rules (activedet.cycle): what a strategy sees, the budget check, MI-AOD's unlabeled draw and
selected.json."""
import json

import numpy as np
import pandas as pd
import pytest

from activedet.cycle import Selection, check_budget, draw_unlabeled, select_batch, visible_pool
from activedet.data.coco import CocoData
from activedet.io import InputError
from activedet.params import load


def coco(ids, boxed=()):
    images = [{"id": i, "file_name": f"{i}.png", "width": 10, "height": 10} for i in ids]
    annotations = [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 2, 2]} for i in boxed]
    return CocoData("x.json", images, annotations, [{"id": 1, "name": "a"}], {})


def test_a_strategy_sees_the_labeled_boxes_and_no_unlabeled_one():
    pool = coco(range(1, 7), boxed=range(1, 7))  # the oracle's ground truth
    labeled = coco([1, 2], boxed=[1, 2])
    seen = visible_pool(pool, labeled)
    assert seen.image_ids == pool.image_ids
    assert sorted(a["image_id"] for a in seen.annotations) == [1, 2]


def test_budget_check_messages():
    check_budget(3, 3, "s.parquet")
    with pytest.raises(InputError, match="--budget must be at least 1, got 0"):
        check_budget(0, 5, "s.parquet")
    with pytest.raises(InputError, match=r"s.parquet: active.budget \(4\) is larger than the unlabeled pool "
                                         r"\(3 images left\)"):
        check_budget(4, 3, "s.parquet")
    with pytest.raises(InputError, match=r"--budget \(4\) is larger than the unlabeled images of d \(3\)"):
        check_budget(4, 3, "d", what="the unlabeled images of d")
    check_budget(10**6, None, "d")  # the budget alone: any size from 1 up passes
    with pytest.raises(InputError, match="--budget must be at least 1, got 0"):
        check_budget(0, None, "d")


def test_unlabeled_draw_is_fixed_by_seed_and_size_and_carries_no_box():
    pool = coco(range(1, 21), boxed=range(1, 21))
    labeled = coco([1, 2, 3, 4], boxed=[1, 2, 3, 4])
    a = draw_unlabeled(pool, labeled, 1.5, seed=3)
    assert a.image_ids == draw_unlabeled(pool, labeled, 1.5, seed=3).image_ids
    assert len(a.image_ids) == 6 and not set(a.image_ids) & {1, 2, 3, 4} and a.annotations == []
    assert a.image_ids == sorted(a.image_ids)
    assert draw_unlabeled(pool, labeled, 100.0, seed=3).image_ids == list(range(5, 21))  # at most all of them
    with pytest.raises(InputError, match="no unlabeled images left"):
        draw_unlabeled(coco([1, 2]), coco([1, 2], boxed=[1]), 1.0, seed=0)


def test_selection_round_trip_in_rank_order(tmp_path):
    scores = pd.DataFrame({"image_id": [5, 6, 7, 8], "score": [0.1, np.nan, 0.9, 0.5],
                           "labeled": [False, False, False, True]})
    sel = select_batch(load({}), "entropy", scores, 2, seed=1, cycle=0, where="s.parquet")
    assert sel.image_ids == [7, 5] and sel.scores == [0.9, 0.1] and (sel.seed, sel.cycle, sel.budget) == (1, 0, 2)
    sel.write(tmp_path / "selected.json")
    raw = json.loads((tmp_path / "selected.json").read_text())
    assert raw["selected"] == [{"image_id": 7, "rank": 1, "score": 0.9}, {"image_id": 5, "rank": 2, "score": 0.1}]
    # ranks, not the order in the file, give the order
    raw["selected"].reverse()
    (tmp_path / "reversed.json").write_text(json.dumps(raw))
    back = Selection.read(tmp_path / "reversed.json")
    assert back.image_ids == [7, 5] and back.strategy == "entropy" and back.to_dict()["selected"] == \
        sel.to_dict()["selected"]
    nan = Selection.from_scores("entropy", [6], scores)
    assert nan.scores == [None]


def test_a_malformed_selection_names_the_file(tmp_path):
    bad = tmp_path / "selected.json"
    bad.write_text(json.dumps({"selected": [{"rank": 1}]}))
    with pytest.raises(InputError, match=f"{bad}: expected"):
        Selection.read(bad)
