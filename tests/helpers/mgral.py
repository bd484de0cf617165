"""The tiny MGRAL settings of the end-to-end tests (seconds per step on a CPU), and one tiny cycle's setup."""
import json
from dataclasses import dataclass
from pathlib import Path

TINY = {"dataset": {"digit_scenes": {"n_pool": 40, "n_test": 12}},
        "detector": {"channels": [8, 16, 16, 16], "fpn_channels": 16, "head_convs": 1, "head_channels": 16},
        "train": {"epochs": 1, "min_iterations": 26, "batch_size": 4, "warmup_iterations": 2, "checkpoint_every": 0},
        "strategies": {"mgral": {"records": 2, "proxy_iterations": 4, "agent_iterations": 3, "sequence_length": 8,
                                 "max_fallbacks": 1}},
        "device": "cpu", "num_threads": 1}


@dataclass
class TinyCycle:
    """Paths of one tiny MGRAL cycle made through the CLI; ``common`` the arguments its MGRAL steps share."""
    data: Path
    run: Path
    images: str
    pool: str
    labeled: str
    model: str
    scores: str
    records: list[str]
    table: str
    common: list[str]


def tiny_mgral_cycle(tmp_path: Path, records: int = 2, budget: int = 6) -> TinyCycle:
    """Dataset (40 pool images), a 10-image labeled set, its detector, MGRAL's embeddings, ``records``
    lookup records and their table: cycle 0 of seed 0 up to the agent's training, each step asserted to exit 0."""
    from activedet.cli import main

    ps = json.dumps(TINY)
    data, run = tmp_path / "ds", tmp_path / "run"
    assert main(["make-dataset", "--params", ps, "--out", str(data)]) == 0
    images, pool = str(data / "pool" / "images"), str(data / "pool.json")
    labeled, model, scores = str(run / "labeled.json"), str(run / "model.pt"), str(run / "scores.parquet")
    assert main(["init-split", "--params", ps, "--pool", pool, "--size", "10", "--seed", "0", "--out", labeled]) == 0
    assert main(["train", "--params", ps, "--images", images, "--labeled", labeled, "--out", model]) == 0
    assert main(["score", "--params", ps, "--strategy", "mgral", "--model", model, "--images", images,
                 "--pool", pool, "--labeled", labeled, "--out", scores]) == 0
    common = ["--params", ps, "--images", images, "--labeled", labeled, "--pool", pool, "--budget", str(budget),
              "--seed", "0", "--model", model, "--cycle", "0"]
    paths = [str(run / "lookup" / f"record{r}.json") for r in range(records)]
    for r, path in enumerate(paths):
        assert main(["lookup-record", *common, "--record", str(r), "--out", path]) == 0
    table = str(run / "lookup_table.parquet")
    assert main(["lookup-table", "--records", *paths, "--out", table]) == 0
    return TinyCycle(data, run, images, pool, labeled, model, scores, paths, table, common)
