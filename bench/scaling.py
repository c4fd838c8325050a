"""Shard sets on one machine: the same data built as 1, 2, 4 and 8 shards with
strata.distributed (Ray), then queried through ShardedDb — build time, bytes per vector, batch
QPS and recall at the recall target, single-query latency (p50/p99) through the fan-out, each
shard's own search time in-process, and the merge's share — the measured inputs of
docs/scaling.md.

    bench-out/venv/bin/python bench/scaling.py --data ../shared/data2 --out bench-out/scaling \
        [--shards 1,2,4,8] [--queries 1000] [--single 200] [--plot]

Needs the Python package installed in the venv (maturin develop --release) and ray; --plot
needs matplotlib. Prints a table and writes results.json (and scaling.png).
"""

import argparse
import json
import os
import pickle
import shutil
import subprocess
import time

import numpy as np
import ray

import strata
import strata.distributed as sd


def load(data):
    vecs = sd._read_vectors(os.path.join(data, "base.fvecs"))
    keys, terms, attrs = [], [], {}
    with open(os.path.join(data, "base.jsonl")) as f:
        for line in f:
            d = json.loads(line)
            keys.append(d["key"])
            terms.append(d.get("terms", []))
            for a, v in d.get("attrs", {}).items():
                attrs.setdefault(a, []).append(v)
    qs = np.ascontiguousarray(sd._read_vectors(os.path.join(data, "query.fvecs")))
    return {"vectors": np.ascontiguousarray(vecs), "keys": keys, "terms": terms,
            "attrs": attrs}, qs


def truth(base, qs, k):
    # Unit vectors: cosine distance 1 - dot; exact top-k by brute force.
    out = []
    for i in range(0, len(qs), 256):
        d = 1.0 - qs[i:i + 256] @ base.T
        idx = np.argpartition(d, k, axis=1)[:, :k]
        for row, cand in zip(d, idx):
            out.append(set(cand[np.argsort(row[cand], kind="stable")].tolist()))
    return out


def recall(answers, gt, keys_index):
    return float(np.mean([len({keys_index[k] for k in a[0]} & t) / len(t)
                          for a, t in zip(answers, gt)]))


def du(path):
    return int(subprocess.check_output(["du", "-sb", path]).split()[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data2")
    ap.add_argument("--out", default="bench-out/scaling")
    ap.add_argument("--shards", default="1,2,4,8")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--single", type=int, default=200)
    ap.add_argument("--recall", type=float, default=0.95)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--plot", action="store_true")
    a = ap.parse_args()

    data, qs = load(a.data)
    qs = qs[: a.queries]
    n, dim = data["vectors"].shape
    gt = truth(data["vectors"], qs, a.k)
    keys_index = {k.encode(): i for i, k in enumerate(data["keys"])}
    os.makedirs(a.out, exist_ok=True)
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    rows = []
    for shards in [int(s) for s in a.shards.split(",")]:
        path = os.path.join(a.out, f"set{shards}")
        shutil.rmtree(path, ignore_errors=True)
        t0 = time.perf_counter()
        info = sd.build(data, path, shards=shards, metric="cosine")
        build_s = time.perf_counter() - t0
        size = du(path)
        # Each shard alone, in this process: its own search time for the whole batch.
        per_shard = []
        for s in info["shards"]:
            with strata.open(os.path.join(path, s["path"]), read_only=True) as db:
                db.search(qs[:50], k=a.k, recall=a.recall)  # warm
                t0 = time.perf_counter()
                db.search(qs, k=a.k, recall=1 - (1 - a.recall) / shards)
                per_shard.append(time.perf_counter() - t0)
        with sd.ShardedDb(path) as db:
            db.search(qs[:50], k=a.k, recall=a.recall)  # warm the actors
            t0 = time.perf_counter()
            answers = db.search(qs, k=a.k, recall=a.recall)
            batch_s = time.perf_counter() - t0
            rec = recall(answers, gt, keys_index)
            # Without the bound: every shard at the set's own target.
            t0 = time.perf_counter()
            same = db.search(qs, k=a.k, recall=a.recall, shard_recall=a.recall)
            same_s = time.perf_counter() - t0
            rec_same = recall(same, gt, keys_index)
            # Calibrated on the first half of the queries, measured on the second.
            half = len(qs) // 2
            cal = db.calibrate(qs[:half], k=a.k, recall=a.recall)
            t0 = time.perf_counter()
            held = db.search(qs[half:], k=a.k, recall=a.recall)
            cal_s = time.perf_counter() - t0
            rec_cal = recall(held, gt[half:], keys_index)
            t0 = time.perf_counter()
            held_bound = db.search(qs[half:], k=a.k, recall=a.recall, shard_recall=cal["bound"])
            bound_half_s = time.perf_counter() - t0
            rec_bound_half = recall(held_bound, gt[half:], keys_index)
            lat = []
            for q in qs[: a.single]:
                t0 = time.perf_counter()
                db.search(q, k=a.k, recall=a.recall)
                lat.append(time.perf_counter() - t0)
            # The merge alone: the shards' answers of one query merged again.
            parts = [ray.get(actor.search.remote(qs[0], a.k, None, db.shard_recall(a.recall),
                                                 False, None)) for actor in db.actors]
            t0 = time.perf_counter()
            for _ in range(200):
                sd._merge(parts, a.k)
            merge_ms = (time.perf_counter() - t0) / 200 * 1e3
            reply_bytes = sum(len(pickle.dumps(p)) for p in parts)
        row = {
            "shards": shards, "documents": n, "dim": dim, "build_s": build_s,
            "bytes_per_vector": size / n, "recall": rec,
            "batch_qps": len(qs) / batch_s,
            "recall_shards_at_target": rec_same, "batch_qps_shards_at_target": len(qs) / same_s,
            "calibrated_shard_recall": cal["shard_recall"], "calibration": cal["levels"],
            "recall_calibrated_heldout": rec_cal, "batch_qps_calibrated_heldout": (len(qs) - half) / cal_s,
            "recall_bound_heldout": rec_bound_half, "batch_qps_bound_heldout": (len(qs) - half) / bound_half_s,
            "shard_batch_s_max": max(per_shard), "shard_batch_s_sum": sum(per_shard),
            "single_p50_ms": float(np.percentile(lat, 50) * 1e3),
            "single_p99_ms": float(np.percentile(lat, 99) * 1e3),
            "merge_ms": merge_ms, "query_bytes_per_shard": dim * 4,
            "reply_bytes_per_query": reply_bytes,
        }
        rows.append(row)
        print(f"{shards} shard(s): build {build_s:.1f} s, {row['bytes_per_vector']:.0f} B/vector, "
              f"recall {rec:.3f}, batch {row['batch_qps']:.0f} QPS (each shard at the target "
              f"instead of the bound: recall {rec_same:.3f}, {row['batch_qps_shards_at_target']:.0f}"
              f" QPS; calibrated per-shard {cal['shard_recall']:.3f}, held-out half: recall "
              f"{rec_cal:.3f}, {row['batch_qps_calibrated_heldout']:.0f} QPS vs bound "
              f"{rec_bound_half:.3f}, {row['batch_qps_bound_heldout']:.0f} QPS; shards alone: max "
              f"{max(per_shard):.2f} s, sum {sum(per_shard):.2f} s for {len(qs)}), one query p50 "
              f"{row['single_p50_ms']:.2f} ms p99 {row['single_p99_ms']:.2f} ms, merge "
              f"{merge_ms:.3f} ms, replies {reply_bytes} B/query", flush=True)
        shutil.rmtree(path, ignore_errors=True)
    ray.shutdown()
    with open(os.path.join(a.out, "results.json"), "w") as f:
        json.dump(rows, f, indent=1)
    if a.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        s = [r["shards"] for r in rows]
        fig, ax = plt.subplots(1, 3, figsize=(13, 3.8))
        ax[0].plot(s, [r["batch_qps"] for r in rows], "o-", label="through ShardedDb (Ray)")
        ax[0].plot(s, [r["batch_qps_calibrated_heldout"] for r in rows], "^-",
                   label="calibrated per-shard recall (held-out queries)")
        ax[0].plot(s, [len(qs) / r["shard_batch_s_sum"] for r in rows], "s--",
                   label="shards alone at the bound, one after another")
        ax[0].set(xlabel="shards", ylabel="batch QPS", xscale="log", xticks=s, xticklabels=s)
        ax[0].legend(fontsize=8)
        ax[1].plot(s, [r["single_p50_ms"] for r in rows], "o-", label="p50")
        ax[1].plot(s, [r["single_p99_ms"] for r in rows], "s-", label="p99")
        ax[1].set(xlabel="shards", ylabel="one query, ms", xscale="log", xticks=s, xticklabels=s)
        ax[1].legend(fontsize=8)
        ax[2].plot(s, [r["build_s"] for r in rows], "o-")
        ax[2].set(xlabel="shards", ylabel="build s (2 cores)", xscale="log", xticks=s,
                  xticklabels=s)
        fig.suptitle(f"{n:,} x {dim} (data2, cosine), recall target {a.recall}; recall at the bound / "
                     "calibrated: " + ", ".join(f"{r['shards']}: {r['recall']:.3f} / "
                                                f"{r['recall_calibrated_heldout']:.3f}" for r in rows),
                     fontsize=9)
        fig.tight_layout()
        fig.savefig(os.path.join(a.out, "scaling.png"), dpi=110)


if __name__ == "__main__":
    main()
