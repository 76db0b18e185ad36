"""Search at scale: exact search against the approximate indexes at 1M and 10M gallery rows.

The gallery is synthetic (D = 512, rows from a seeded normal distribution, generated block by
block so that a 10M gallery, 20 GB as float32, is never held whole), the queries are noisy
copies of gallery rows with cosine about 0.6 to their source (a genuine face pair's score),
and recall@1 is the fraction of queries whose approximate first hit is the exact first hit.
For each size, in one process: exact search (torch blocks over the regenerated gallery:
queries/s), then each index kind: build time, queries/s, recall@1 and the memory it added::

    python benchmarks/search_scale.py                         # 1M: exact, hnsw, ivfpq
    python benchmarks/search_scale.py --rows 10000000 --kinds ivfpq --queries 300
    python benchmarks/search_scale.py --output benchmarks/results/search_scale_1m.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from marginface.inference.index import approximate_index

BLOCK = 1 << 18


def rss_gib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**30


def block(rows: int, dim: int, number: int, seed: int) -> np.ndarray:
    """Rows ``[number * BLOCK, ...)`` of the gallery, the same every time they are made."""
    start = number * BLOCK
    count = min(BLOCK, rows - start)
    rng = np.random.default_rng([seed, number])
    return rng.standard_normal((count, dim), dtype=np.float32)


def blocks(rows: int, dim: int, seed: int):
    for number in range((rows + BLOCK - 1) // BLOCK):
        yield number * BLOCK, block(rows, dim, number, seed)


def make_queries(rows: int, dim: int, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 1 << 30])
    source = np.sort(rng.choice(rows, count, replace=False))
    out = np.empty((count, dim), dtype=np.float32)
    for number in np.unique(source // BLOCK):  # each block made once
        mine = np.flatnonzero(source // BLOCK == number)
        out[mine] = block(rows, dim, int(number), seed)[source[mine] % BLOCK]
    return out + 1.3 * rng.standard_normal((count, dim), dtype=np.float32)


@torch.inference_mode()
def exact_top1(queries: np.ndarray, rows: int, dim: int, seed: int) -> tuple[np.ndarray, float]:
    """The exact first hit of each query, and the seconds spent scoring (generation excluded)."""
    q = F.normalize(torch.from_numpy(queries), dim=1)
    best = torch.full((len(q),), float("-inf"))
    best_i = torch.zeros(len(q), dtype=torch.int64)
    spent = 0.0
    for start, rows_block in blocks(rows, dim, seed):
        begin = time.perf_counter()
        sims = q @ F.normalize(torch.from_numpy(rows_block), dim=1).T
        s, i = sims.max(dim=1)
        better = s > best
        best = torch.where(better, s, best)
        best_i = torch.where(better, i + start, best_i)
        spent += time.perf_counter() - begin
    return best_i.numpy(), spent


def measure(kind: str, rows: int, dim: int, queries: np.ndarray, truth: np.ndarray, args) -> dict:
    rng = np.random.default_rng([args.seed, 1 << 31])
    sample_rows = np.sort(rng.choice(rows, min(rows, args.train_rows), replace=False))
    sample = np.concatenate(
        [block(rows, dim, n, args.seed)[sample_rows[sample_rows // BLOCK == n] % BLOCK]
         for n in np.unique(sample_rows // BLOCK)]
    )  # fmt: skip
    before = rss_gib()
    start = time.perf_counter()
    index = approximate_index(
        kind, dim, rows, sample, cells=args.cells, probes=args.probes, ef_search=args.ef_search
    )
    for _, rows_block in blocks(rows, dim, args.seed):
        index.add(rows_block)
    built = time.perf_counter() - start
    start = time.perf_counter()
    _, found = index.search(queries, top_k=1)
    searched = time.perf_counter() - start
    return {
        "kind": kind,
        "params": index.params,
        "build_seconds": built,
        "queries_per_second": len(queries) / searched,
        "recall_at_1": float(np.mean(found[:, 0] == truth)),
        "memory_gib": rss_gib() - before,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--kinds", default="hnsw,ivfpq")
    parser.add_argument("--cells", type=int, default=None, help="IVF-PQ cells (default 4 sqrt G)")
    parser.add_argument("--probes", type=int, default=32, help="IVF-PQ cells visited per query")
    parser.add_argument("--ef-search", type=int, default=128, help="HNSW search breadth")
    parser.add_argument("--train-rows", type=int, default=131_072)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output")
    args = parser.parse_args()
    queries = make_queries(args.rows, args.dim, args.queries, args.seed)
    truth, spent = exact_top1(queries, args.rows, args.dim, args.seed)
    import faiss

    result = {
        "machine": {"cpus": os.cpu_count(), "load_at_start": os.getloadavg(),
                    "faiss_threads": faiss.omp_get_max_threads(),
                    "torch_threads": torch.get_num_threads()},
        "rows": args.rows,
        "dim": args.dim,
        "queries": args.queries,
        "exact_queries_per_second": args.queries / spent,
        "indexes": [],
    }  # fmt: skip
    print(f"{args.rows:,} x {args.dim} gallery, {args.queries} queries; exact search "
          f"{result['exact_queries_per_second']:.1f} queries/s", flush=True)  # fmt: skip
    for kind in args.kinds.split(","):
        row = measure(kind, args.rows, args.dim, queries, truth, args)
        result["indexes"].append(row)
        speedup = row["queries_per_second"] / result["exact_queries_per_second"]
        print(f"  {kind:<6} {row['params']}: built in {row['build_seconds']:.0f} s, "
              f"{row['queries_per_second']:.0f} queries/s ({speedup:.0f}x exact), "
              f"recall@1 {row['recall_at_1']:.3f}, +{row['memory_gib']:.2f} GiB",
              flush=True)  # fmt: skip
    result["machine"]["peak_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    result["machine"]["load_at_end"] = os.getloadavg()
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
