#!/usr/bin/env python3
"""Recall per filter family on a real dataset, measured on whole `strata query` processes.

The held-out evaluation of issue 18 reports recall per *family* of real filters (a query's own
corpus, a foreign corpus, own corpus AND NOT own label, ...), not per selectivity bucket; this
script does the same on the datasets in `../shared/` so a planner change can be checked on data
nobody tuned on. For each family it writes one filter per query, computes the exact top-10 under
that filter by brute force (NumPy), runs `strata query DB --vectors Q --filters F --json` once
(1,000 queries in one process: the open is counted, as users see it), and prints mean recall@10,
the share of queries below 0.85, wall time and the plans the planner chose.

    python3 bench/families.py --data ../shared/data2 [--db DIR] [--strata target/release/strata]
        [--extra "--plan partition"] [--json OUT]

`--data` is either layout of `../shared/`: `base.fvecs` + `base.tags.txt` (+ `query.*`), or
`base.fvecs` + `base.jsonl` (+ `query.*`). The database (`--db`, default
`bench-out/families-<name>`) is built with `strata build --metric cosine` when it does not
exist, else reused. Needs numpy.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def fvecs(path):
    a = np.fromfile(path, dtype=np.int32)
    d = a[0]
    return a.reshape(-1, d + 1)[:, 1:].view(np.float32)


def load_tags(data, split):
    """Terms per row, from `<split>.jsonl` or `<split>.tags.txt`."""
    j = os.path.join(data, split + ".jsonl")
    if os.path.exists(j):
        with open(j) as f:
            return [json.loads(line)["terms"] for line in f]
    with open(os.path.join(data, split + ".tags.txt")) as f:
        return [line.split() for line in f]


def label_of(terms):
    """The row's class label: the first intent/emotion/topic/mesh tag."""
    for prefix in ("intent:", "emotion:", "topic:", "mesh:"):
        for t in terms:
            if t.startswith(prefix):
                return t
    return None


def source_of(terms):
    for t in terms:
        if t.startswith("src:"):
            return t
    return None


def families(base_tags, query_tags):
    """family -> per query (filter text or None, rows-admitted function of a tag-mask lookup)."""
    sources = sorted({source_of(t) for t in base_tags if source_of(t)})
    count = {}
    for t in base_tags:
        for x in t:
            count[x] = count.get(x, 0) + 1
    out = {k: [] for k in ("unfiltered", "own corpus", "foreign corpus", "label", "own corpus AND NOT label",
                           "label OR a foreign corpus", "rarest own tag")}
    for t in query_tags:
        src, lab = source_of(t), label_of(t)
        foreign = sources[(sources.index(src) + 1) % len(sources)] if src in sources else None
        own = [x for x in t if x in count]
        rare = min(own, key=lambda x: (count[x], x)) if own else None
        out["unfiltered"].append(("", lambda m: ~m(None)))
        out["own corpus"].append((src, lambda m, a=src: m(a)) if src else (None, None))
        out["foreign corpus"].append(
            (foreign, lambda m, a=foreign: m(a)) if foreign else (None, None))
        out["label"].append((lab, lambda m, a=lab: m(a)) if lab and lab in count else (None, None))
        out["own corpus AND NOT label"].append(
            (f"(and {src} (not {lab}))", lambda m, a=src, b=lab: m(a) & ~m(b))
            if src and lab else (None, None))
        out["label OR a foreign corpus"].append(
            (f"(or {lab} {foreign})", lambda m, a=lab, b=foreign: m(a) | m(b))
            if lab and foreign else (None, None))
        out["rarest own tag"].append((rare, lambda m, a=rare: m(a)) if rare else (None, None))
    return out


class Peers:
    """faiss in this process, with the same allowed rows and ground truth: HNSW (M 16,
    efConstruction 200, inner product on the unit vectors) with efSearch raised until mean
    recall@10 reaches 0.95 (the first that does is reported, or the last tried), and exact
    search; both through an IDSelectorBitmap per query, one query per call, one thread."""

    EF = (16, 32, 64, 128, 256, 512, 1024)

    def __init__(self, base):
        import faiss
        self.faiss = faiss
        faiss.omp_set_num_threads(1)
        self.n = len(base)
        self.hnsw = faiss.IndexHNSWFlat(base.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
        self.hnsw.hnsw.efConstruction = 200
        self.hnsw.add(base)
        self.flat = faiss.IndexFlatIP(base.shape[1])
        self.flat.add(base)

    def _one(self, index, params_of, queries, masks, gts):
        faiss = self.faiss
        hit = tot = low = 0
        lat = []
        t0 = time.time()
        for qi, mask in enumerate(masks):
            g = gts[qi]
            if not g:
                continue
            sel = None
            if mask is not None and not mask.all():
                bits = np.packbits(mask.astype(np.uint8), bitorder="little")
                sel = faiss.IDSelectorBitmap(self.n, faiss.swig_ptr(bits))
            t1 = time.perf_counter()
            _, ids = index.search(queries[qi:qi + 1], 10, params=params_of(sel))
            lat.append(time.perf_counter() - t1)
            h = len({int(j) for j in ids[0] if j >= 0} & g)
            hit, tot, low = hit + h, tot + len(g), low + (h / len(g) < 0.85)
        wall = time.time() - t0
        n = sum(1 for g in gts if g)
        p99 = float(np.percentile(lat, 99)) * 1e3 if lat else None
        return hit / max(tot, 1), n / max(wall, 1e-9), low / max(n, 1), p99

    def run(self, queries, masks, gts):
        faiss = self.faiss
        out = {}
        for ef in self.EF:
            def params(sel, ef=ef):
                p = faiss.SearchParametersHNSW()
                p.efSearch = ef
                if sel is not None:
                    p.sel = sel
                return p
            recall, qps, below, p99 = self._one(self.hnsw, params, queries, masks, gts)
            r = {"param": f"ef {ef}", "recall": recall, "qps": qps, "below_085": below,
                 "p99_ms": p99}
            if "faiss-hnsw" not in out or out["faiss-hnsw"]["recall"] < 0.95:
                out["faiss-hnsw"] = r
            # The same promise as Strata's: mean >= 0.95 and at most 5 % of queries below 0.85.
            out["faiss-hnsw-tail"] = r
            if recall >= 0.95 and below <= 0.05:
                break

        def flat_params(sel):
            p = faiss.SearchParameters()
            if sel is not None:
                p.sel = sel
            return p
        recall, qps, below, p99 = self._one(self.flat, flat_params, queries, masks, gts)
        out["faiss-exact"] = {"param": "-", "recall": recall, "qps": qps, "below_085": below,
                              "p99_ms": p99}
        return out


def ensure_db(args, name):
    db = args.db or os.path.join("bench-out", f"families-{name}")
    if os.path.exists(os.path.join(db, "SCHEMA")):
        return db
    os.makedirs(os.path.dirname(os.path.abspath(db)), exist_ok=True)
    docs = os.path.join(args.data, "base.jsonl")
    if not os.path.exists(docs):
        docs = os.path.join(tempfile.mkdtemp(), "base.jsonl")
        with open(docs, "w") as f:
            for i, t in enumerate(load_tags(args.data, "base")):
                f.write(json.dumps({"key": str(i), "terms": t}) + "\n")
    subprocess.run([args.strata, "build", "--out", db, "--vectors",
                    os.path.join(args.data, "base.fvecs"), "--docs", docs,
                    "--metric", "cosine"], check=True)
    return db


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--db")
    ap.add_argument("--strata", default="target/release/strata")
    ap.add_argument("--extra", default="", help="extra `strata query` arguments")
    ap.add_argument("--json")
    ap.add_argument("--keep", help="write each family's filter file into this directory")
    ap.add_argument("--only", help="run only the families whose name contains this")
    ap.add_argument("--peers", action="store_true",
                    help="also run faiss (HNSW M 16 efConstruction 200 and exact, each with an "
                         "IDSelectorBitmap per query, one thread) in this process: needs the "
                         "venv of bench/peers/setup.sh (run this script with its python)")
    args = ap.parse_args()
    name = os.path.basename(os.path.normpath(args.data))
    base, queries = fvecs(os.path.join(args.data, "base.fvecs")), fvecs(
        os.path.join(args.data, "query.fvecs"))
    base_tags = [set(t) for t in load_tags(args.data, "base")]
    query_tags = load_tags(args.data, "query")
    db = ensure_db(args, name)
    sims = base @ queries.T  # unit vectors: cosine similarity
    masks = {}

    def tag_mask(tag):
        """Rows carrying `tag`, as a boolean array (built once per tag)."""
        if tag not in masks:
            masks[tag] = np.fromiter((tag is not None and tag in s for s in base_tags), dtype=bool,
                                     count=len(base_tags))
        return masks[tag]

    tmp = tempfile.mkdtemp()
    rows = []
    peers = Peers(base) if args.peers else None
    for fam, per_query in families(base_tags, query_tags).items():
        if args.only and args.only not in fam:
            continue
        gts = []
        for qi, (text, admit) in enumerate(per_query):
            if text is None:
                gts.append(None)
                continue
            mask = admit(tag_mask)
            col = np.where(mask, sims[:, qi], -np.inf)
            top = np.argsort(-col, kind="stable")[:10]
            gts.append({int(j) for j in top if np.isfinite(col[j])})
        ffile = os.path.join(args.keep or tmp, fam.replace(" ", "_") + ".txt")
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
        with open(ffile, "w") as f:
            f.write("\n".join(t or "" for t, _ in per_query) + "\n")
        cmd = [args.strata, "query", db, "--vectors", os.path.join(args.data, "query.fvecs"),
               "--filters", ffile, "--json"] + args.extra.split()
        t0 = time.time()
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        wall = time.time() - t0
        hit = tot = low = n = 0
        plans = {}
        by_plan = {}  # plan of the (first) segment -> [hits, truth, queries below 0.85, queries]
        predicted = []
        micros = []  # per query: the sum of its explain entries' times (the engine's latency)
        for line in out.splitlines():
            r = json.loads(line)
            g = gts[r["query"]]
            if not g:
                continue
            got = {int(h["key"]) for h in r["hits"]}
            h = len(got & g)
            hit, tot, n = hit + h, tot + len(g), n + 1
            low += h / len(g) < 0.85
            micros.append(sum(e.get("micros") or 0 for e in r["stats"]["explain"]))
            segs = [e for e in r["stats"]["explain"] if e["segment"] is not None]
            if segs:
                b = by_plan.setdefault(segs[0]["plan"], [0, 0, 0, 0])
                b[0], b[1], b[2], b[3] = b[0] + h, b[1] + len(g), b[2] + (h / len(g) < 0.85), b[3] + 1
            for e in r["stats"]["explain"]:
                if e["segment"] is not None:
                    plans[e["plan"]] = plans.get(e["plan"], 0) + 1
                    if e.get("predicted_recall") is not None:
                        predicted.append(e["predicted_recall"])
        row = {"family": fam, "queries": n, "recall": hit / max(tot, 1),
               "below_085": low / max(n, 1), "seconds": wall, "plans": plans,
               "predicted": sum(predicted) / len(predicted) if predicted else None,
               "p50_ms": float(np.percentile(micros, 50)) / 1e3 if micros else None,
               "p99_ms": float(np.percentile(micros, 99)) / 1e3 if micros else None,
               "by_plan": {p: {"queries": b[3], "recall": b[0] / max(b[1], 1),
                               "below_085": b[2] / max(b[3], 1)} for p, b in by_plan.items()}}
        if peers:
            masks_q = [admit(tag_mask) if text is not None else None for text, admit in per_query]
            row["peers"] = peers.run(queries, masks_q, gts)
            row["strata_qps"] = n / wall
        rows.append(row)
        pred = f"{row['predicted']:.3f}" if row["predicted"] is not None else "-"
        print(f"{fam:<28} {n:>5} queries  recall@10 {row['recall']:.4f}  "
              f"below 0.85 {100 * row['below_085']:5.1f} %  {wall:6.2f} s  p50/p99 "
              f"{row['p50_ms'] or 0:.2f}/{row['p99_ms'] or 0:.2f} ms  predicted {pred}  "
              f"{plans}", flush=True)
        for p, b in sorted(row["by_plan"].items(), key=lambda x: -x[1]["queries"]):
            print(f"    plan {p:<18} {b['queries']:>5} queries  recall@10 {b['recall']:.4f}  "
                  f"below 0.85 {100 * b['below_085']:5.1f} %", flush=True)
        for name, r in (row.get("peers") or {}).items():
            ratio = row["strata_qps"] / r["qps"] if r.get("qps") else float("nan")
            print(f"    {name:<15} {r['param']:<10} recall@10 {r['recall']:.4f}  below 0.85 "
                  f"{100 * r['below_085']:5.1f} %  QPS {r['qps']:8.0f}  p99 "
                  f"{r['p99_ms'] or 0:.2f} ms  (Strata "
                  f"{row['strata_qps']:.0f} QPS whole process: {ratio:.2f}x)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"data": args.data, "db": db, "extra": args.extra, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
