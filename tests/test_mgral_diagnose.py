"""mgral-diagnose: the offline check of MGRAL's reward (table estimate, proxy reward, true gain)."""
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from activedet.cli import main
from activedet.mgral.diagnose import spearman_ci, summarize

from helpers.mgral import TINY


def test_spearman_by_hand_and_its_bootstrap_interval():
    # ranks 1..5 against 2,1,4,3,5: d = (1,1,1,1,0), rho = 1 - 6*4 / (5*24) = 0.8
    rho, lo, hi = spearman_ci([1, 2, 3, 4, 5], [2, 1, 4, 3, 5], n_boot=500, seed=0)
    assert rho == pytest.approx(0.8) and lo <= rho <= hi <= 1.0
    assert spearman_ci([1, 2, 3, 4], [4, 3, 2, 1], n_boot=200)[0] == pytest.approx(-1.0)
    assert np.isnan(spearman_ci([1, 2], [2, 1])[0])  # fewer than 3 pairs
    x = np.random.default_rng(1).normal(size=40)
    r, lo, hi = spearman_ci(x, x + np.random.default_rng(2).normal(size=40), n_boot=1000, seed=3)
    assert r == pytest.approx(spearmanr(x, x + np.random.default_rng(2).normal(size=40)).statistic)
    assert lo < r < hi and hi - lo < 0.6


def test_noise_floor_is_one_ratings_sd_from_paired_differences():
    df = pd.DataFrame({"table_estimate": [0.1, 0.2, 0.3, 0.4], "proxy_reward": [0.5, 0.6, 0.7, 0.8],
                       "proxy_reward_seed2": [0.52, 0.56, None, None], "true_gain": [0.0, 0.01, 0.02, 0.03],
                       "beyond_threshold": [False, True, False, False]})
    s = summarize(df, 0.5, 100, 0, {})
    # differences -0.02 and 0.04: sqrt(mean(d^2) / 2) = sqrt((0.0004 + 0.0016) / 4)
    assert s["proxy_noise"]["pairs"] == 2
    assert s["proxy_noise"]["sd_one_rating"] == pytest.approx(np.sqrt(0.002 / 4))
    assert s["table_vs_proxy"]["spearman"] == pytest.approx(1.0) and s["beyond_threshold"] == 1
    assert s["true_gain"]["mean"] == pytest.approx(0.015)


@pytest.mark.slow
def test_mgral_diagnose_rates_random_batches_three_ways(tmp_path):
    ps = json.dumps(TINY)
    data, run = tmp_path / "ds", tmp_path / "run"
    assert main(["make-dataset", "--params", ps, "--out", str(data)]) == 0
    images, pool = str(data / "pool" / "images"), str(data / "pool.json")
    labeled = str(run / "labeled.json")
    assert main(["init-split", "--params", ps, "--pool", pool, "--size", "10", "--seed", "0", "--out", labeled]) == 0
    model = str(run / "model.pt")
    assert main(["train", "--params", ps, "--images", images, "--labeled", labeled, "--out", model]) == 0
    common = ["--params", ps, "--images", images, "--labeled", labeled, "--pool", pool, "--budget", "6", "--seed", "0",
              "--model", model, "--cycle", "0"]
    assert main(["score", "--params", ps, "--strategy", "mgral", "--model", model, "--images", images,
                 "--pool", pool, "--labeled", labeled, "--out", str(run / "scores.parquet")]) == 0
    records = [str(run / f"record{r}.json") for r in range(2)]
    for r, path in enumerate(records):
        assert main(["lookup-record", *common, "--record", str(r), "--out", path]) == 0
    assert main(["lookup-table", "--records", *records, "--out", str(run / "table.parquet")]) == 0
    argv = ["mgral-diagnose", *common, "--scores", str(run / "scores.parquet"), "--table", str(run / "table.parquet"),
            "--val-annotations", str(data / "test.json"), "--val-images", str(data / "test" / "images"),
            "--batches", "3", "--noise-batches", "2", "--bootstrap", "50", "--work-dir", str(run / "work"),
            "--out-csv", str(run / "diag.csv"), "--out-json", str(run / "diag.json")]
    assert main(argv) == 0
    df = pd.read_csv(run / "diag.csv")
    summary = json.loads((run / "diag.json").read_text())
    assert len(df) == 3 and df["proxy_reward_seed2"].notna().sum() == 2
    labeled_ids = {im["id"] for im in json.loads((run / "labeled.json").read_text())["images"]}
    for ids in df["image_ids"]:
        batch = [int(i) for i in ids.split()]
        assert len(batch) == 6 == len(set(batch)) and not set(batch) & labeled_ids
    # the true gain: the retrained model's mAP on the validation split minus the cycle model's
    assert np.allclose(df["true_gain"], df["true_map50"] - summary["base_map50"])
    assert df[["table_estimate", "proxy_reward", "true_map50"]].apply(lambda c: c.between(0, 1)).all().all()
    assert summary["n_batches"] == 3 and summary["n_records"] == 2 and summary["n_val"] == 12
    assert set(summary) >= {"proxy_vs_true_gain", "table_vs_proxy", "table_vs_true_gain", "proxy_noise"}
    # the same seed: the same batches, proxy rewards and retrained detectors
    assert main(argv[:-4] + ["--out-csv", str(run / "again.csv"), "--out-json", str(run / "again.json")]) == 0
    again = pd.read_csv(run / "again.csv")
    pd.testing.assert_frame_equal(df.drop(columns="seconds"), again.drop(columns="seconds"))
    # too few batches for a rank correlation: an input error, nothing written
    assert main(argv[:-4] + ["--batches", "2", "--out-csv", str(run / "x.csv"), "--out-json", str(run / "x.json")]) == 2
    assert not (run / "x.csv").exists()
