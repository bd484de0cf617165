"""mgral-diagnose: the offline check of MGRAL's reward (table estimate, proxy reward, true gain)."""
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from activedet.cli import main
from activedet.mgral.diagnose import spearman_ci, summarize

from helpers.mgral import tiny_mgral_cycle


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
def test_mgral_diagnose_rates_random_batches_three_ways(tmp_path, capsys):
    c = tiny_mgral_cycle(tmp_path)
    data, run = c.data, c.run
    argv = ["mgral-diagnose", *c.common, "--scores", c.scores, "--table", c.table,
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
    # a held-out proxy teacher, the true gains reused from the first run: same batches and true mAPs, no retraining
    # (the work folder's retrained detector stays as the first run left it)
    retrained = (run / "work" / "retrained.pt").stat().st_mtime_ns
    held = argv[:-4] + ["--proxy-teacher", "heldout", "--proxy-iterations", "2", "--true-gains", str(run / "diag.csv"),
                        "--out-csv", str(run / "held.csv"), "--out-json", str(run / "held.json")]
    assert main(held) == 0
    h, hs = pd.read_csv(run / "held.csv"), json.loads((run / "held.json").read_text())
    assert list(h["image_ids"]) == list(df["image_ids"]) and np.allclose(h["true_map50"], df["true_map50"])
    assert (run / "work" / "retrained.pt").stat().st_mtime_ns == retrained
    assert (run / "work" / "proxy_teacher.pt").is_file() and hs["proxy_teacher"] == "heldout"
    assert hs["true_gains_reused"] and hs["proxy_iterations"] == 2 and 0 <= hs["proxy_teacher_map50"] <= 1
    assert summary["proxy_teacher"] == "cycle" and not summary["true_gains_reused"]
    # true gains of other batches (another seed draws other batches), or a file that is no diagnostic: exit 2
    other = [a if a != "0" or held[i - 1] != "--seed" else "1" for i, a in enumerate(held)]
    capsys.readouterr()
    assert main(other[:-4] + ["--out-csv", str(run / "y.csv"), "--out-json", str(run / "y.json")]) == 2
    assert "rated other batches than this one (batch 0)" in capsys.readouterr().err
    assert main(held[:-4] + ["--true-gains", str(run / "labeled.json"), "--out-csv", str(run / "y.csv"),
                             "--out-json", str(run / "y.json")]) == 2
    assert "labeled.json: not a CSV file (" in capsys.readouterr().err
    (run / "other.csv").write_text("batch,image_ids\n0,1 2 3\n")
    assert main(held[:-4] + ["--true-gains", str(run / "other.csv"), "--out-csv", str(run / "y.csv"),
                             "--out-json", str(run / "y.json")]) == 2
    assert "other.csv: not an mgral-diagnose table (no column true_map50)" in capsys.readouterr().err
    assert not (run / "y.csv").exists()
