"""k-center greedy's first step (each point's distance to its nearest labeled centre) as one block of
pool x centres distances vs row blocks of at most 2**22 distances: seconds, peak memory, and the picks
(all 100 as a SHA-1, equal for the two forms).

    python -m bench.kcenter_blocks --out docs/results/bench/kcenter_blocks.csv

Synthetic features of the two strategies that use it, 5% of the pool as centres, 100 picks: Core-set's pooled
features (192 floats, Euclidean) and CDAL's contextual vectors (10-class distributions, float64, symmetric
KL). Each measurement runs in a fresh process so that one's peak does not hide the next's.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

SIZES = (8000, 16000, 32000)


def measure(strategy: str, first_step: str, n: int) -> dict:
    """One measurement in this process (a child of :func:`main`)."""
    import torch

    from activedet.strategies.cdal import symmetric_kl
    from activedet.strategies.coreset import k_center_greedy
    from bench.common import peak_memory

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    if strategy == "coreset":
        x, kw = torch.randn(n, 192, generator=g), {}
    else:
        x, kw = torch.softmax(3 * torch.randn(n, 10, generator=g, dtype=torch.float64), 1), {"distance": symmetric_kl}
    centers = torch.zeros(n, dtype=torch.bool)
    centers[torch.randperm(n, generator=g)[: n // 20]] = True
    block = 10 ** 12 if first_step == "one_block" else 2 ** 22
    t = time.perf_counter()
    picks, mib = peak_memory(lambda: k_center_greedy(x, centers, 100, block=block, **kw), torch.device("cpu"))
    return {"strategy": strategy, "first_step": first_step, "pool_images": n, "centres": n // 20,
            "seconds": round(time.perf_counter() - t, 3), "peak_rss_mib": round(mib),
            "first_picks": " ".join(map(str, picks[:5])),
            "picks_sha1": hashlib.sha1(" ".join(map(str, picks)).encode()).hexdigest()[:12]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.kcenter_blocks", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child[0], args.child[1], int(args.child[2]))))
        return 0
    rows = []
    for n in SIZES:
        for strategy in ("coreset", "cdal"):
            for step in ("one_block", "row_blocks"):
                out = subprocess.run([sys.executable, "-m", "bench.kcenter_blocks", "--out", str(args.out),
                                      "--child", strategy, step, str(n)], check=True, capture_output=True, text=True)
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    df = pd.DataFrame(rows)
    from activedet.io import atomic_path
    with atomic_path(args.out) as tmp:  # a killed run leaves the previous table whole
        df.to_csv(tmp, index=False)
    print(df.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
