"""Tests for activedet.data.splits: the initial draw and the label merge with its invariants."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings, strategies as st

from activedet.data.coco import CocoData
from activedet.data.splits import check_partition, initial_split, merge_labels, unlabeled_ids
from activedet.io import InputError

from helpers.splits import check_invariants, gt_of, make_pool


# ------------------------------------------------------------ initial split
def test_initial_split_deterministic_and_seed_dependent():
    pool = make_pool(50)
    a, b = initial_split(pool, 10, seed=3), initial_split(pool, 10, seed=3)
    assert a.image_ids == b.image_ids
    c = initial_split(pool, 10, seed=4)
    assert c.image_ids != a.image_ids


def test_initial_split_depends_only_on_ids_not_order():
    pool = make_pool(40)
    shuffled = CocoData(pool.path, list(reversed(pool.images)), pool.annotations, pool.categories, pool.info)
    assert initial_split(pool, 7, 1).image_ids == initial_split(shuffled, 7, 1).image_ids


@pytest.mark.parametrize("size", [1, 9, 30])
def test_initial_split_size_and_subset(size):
    pool = make_pool(30)
    s = initial_split(pool, size, seed=0)
    assert len(s.image_ids) == size == len(set(s.image_ids))
    assert set(s.image_ids) <= set(pool.image_ids)
    assert s.image_ids == sorted(s.image_ids)
    assert gt_of(s, s.image_ids) == gt_of(pool, s.image_ids)
    assert {a["image_id"] for a in s.annotations} <= set(s.image_ids)
    check_partition(s, pool, size)


def test_initial_split_too_large():
    pool = make_pool(5)
    with pytest.raises(InputError, match=r"\(6\) is larger than the pool \(5 images\)"):
        initial_split(pool, 6, seed=0)


def test_initial_split_size_zero():
    with pytest.raises(InputError, match="at least 1"):
        initial_split(make_pool(5), 0, seed=0)


# --------------------------------------------------------------- merging
def test_merge_adds_exactly_the_selection():
    pool = make_pool(20)
    labeled = initial_split(pool, 5, seed=0)
    unl = unlabeled_ids(pool, labeled)
    assert len(unl) == 15
    selected = unl[3:7]
    before = copy.deepcopy(labeled)
    merged = merge_labels(labeled, selected, pool, budget=4)
    check_invariants(pool, labeled, merged, selected, 4)
    assert labeled.image_ids == before.image_ids  # input not modified
    assert merged.categories == labeled.categories


def test_merge_duplicate_selection():
    pool = make_pool(20)
    labeled = initial_split(pool, 5, seed=0)
    u = unlabeled_ids(pool, labeled)
    with pytest.raises(InputError, match=f"more than once: \\[{u[0]}\\]"):
        merge_labels(labeled, [u[0], u[1], u[0]], pool, budget=3)


@pytest.mark.parametrize("n_selected", [2, 4])
def test_merge_wrong_count(n_selected):
    pool = make_pool(20)
    labeled = initial_split(pool, 5, seed=0)
    u = unlabeled_ids(pool, labeled)
    with pytest.raises(InputError, match=f"has {n_selected} images but the budget is 3"):
        merge_labels(labeled, u[:n_selected], pool, budget=3)


def test_merge_already_labeled():
    pool = make_pool(20)
    labeled = initial_split(pool, 5, seed=0)
    u = unlabeled_ids(pool, labeled)
    again = labeled.image_ids[2]
    with pytest.raises(InputError, match=f"already labeled images: \\[{again}\\]"):
        merge_labels(labeled, [u[0], again], pool, budget=2)


def test_merge_not_in_pool():
    pool = make_pool(20)
    labeled = initial_split(pool, 5, seed=0)
    u = unlabeled_ids(pool, labeled)
    with pytest.raises(InputError, match=r"not in the pool: \[99999\]"):
        merge_labels(labeled, [u[0], 99999], pool, budget=2)


def test_merge_labeled_set_outside_pool():
    pool = make_pool(20)
    other = make_pool(3, id_offset=10_000)
    with pytest.raises(InputError, match="not in the pool"):
        merge_labels(other, unlabeled_ids(pool, other)[:2], pool, budget=2)


def test_merge_detects_tampered_labeled_annotations():
    pool = make_pool(20, seed=1)
    labeled = copy.deepcopy(initial_split(pool, 5, seed=0))  # as if read back from its file
    victim = next(a for a in labeled.annotations)
    victim["bbox"] = [victim["bbox"][0] + 1, *victim["bbox"][1:]]
    u = unlabeled_ids(pool, labeled)
    with pytest.raises(InputError, match=f"annotations of image {victim['image_id']} differ"):
        merge_labels(labeled, u[:2], pool, budget=2)


def test_check_partition_errors():
    pool = make_pool(10)
    labeled = initial_split(pool, 4, seed=0)
    with pytest.raises(InputError, match="has 4 images, expected 5"):
        check_partition(labeled, pool, 5)
    twice = CocoData("l.json", labeled.images + labeled.images[:1], labeled.annotations, labeled.categories, {})
    with pytest.raises(InputError, match="twice"):
        check_partition(twice, pool)
    outside = make_pool(2, id_offset=50_000)
    with pytest.raises(InputError, match="outside the pool"):
        check_partition(outside, pool)
    dropped = CocoData("l.json", labeled.images, [], labeled.categories, {})
    assert labeled.annotations
    with pytest.raises(InputError, match="differ from the pool"):
        check_partition(dropped, pool)


def test_merge_until_pool_exhausted():
    pool = make_pool(12)
    labeled = initial_split(pool, 2, seed=0)
    for _ in range(5):
        u = unlabeled_ids(pool, labeled)
        merged = merge_labels(labeled, u[:2], pool, budget=2)
        check_invariants(pool, labeled, merged, u[:2], 2)
        labeled = merged
    assert unlabeled_ids(pool, labeled) == []
    assert gt_of(labeled, pool.image_ids) == gt_of(pool, pool.image_ids)


# ------------------------------------------------------------ property test
@st.composite
def scenario(draw):
    n = draw(st.integers(min_value=1, max_value=40))
    pool_seed = draw(st.integers(min_value=0, max_value=2**16))
    initial = draw(st.integers(min_value=1, max_value=n))
    split_seed = draw(st.integers(min_value=0, max_value=2**16))
    n_merges = draw(st.integers(min_value=0, max_value=4))
    return n, pool_seed, initial, split_seed, n_merges


@settings(max_examples=50, deadline=None)
@given(scenario(), st.data())
def test_merge_invariants_property(sc, data):
    n, pool_seed, initial, split_seed, n_merges = sc
    pool = make_pool(n, seed=pool_seed)
    labeled = initial_split(pool, initial, split_seed)
    assert len(labeled.image_ids) == initial
    check_partition(labeled, pool, initial)
    for _ in range(n_merges):
        unl = unlabeled_ids(pool, labeled)
        if not unl:
            break
        budget = data.draw(st.integers(min_value=1, max_value=len(unl)), label="budget")
        selected = data.draw(st.lists(st.sampled_from(unl), min_size=budget, max_size=budget, unique=True),
                             label="selected")
        merged = merge_labels(labeled, selected, pool, budget)
        check_invariants(pool, labeled, merged, selected, budget)
        # a broken selection is refused
        if len(unl) > budget:
            with pytest.raises(InputError):
                merge_labels(merged, selected, pool, budget)  # already labeled
        labeled = merged
