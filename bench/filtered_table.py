#!/usr/bin/env python3
"""Markdown table of a `strata bench filtered --peers --json FILE` report for
docs/benchmarks.md: per filter, Strata's reported point (the fastest list with recall@10 >= 0.95)
and the fastest peer setting with recall >= 0.95, with the ratio; then the per-bucket minimum
ratio. Usage: python3 bench/filtered_table.py REPORT.json"""
import json
import sys


def main():
    r = json.load(open(sys.argv[1]))
    peers = r.get("peers", [])
    print("| bucket | family | filter | selectivity | Strata L / recall / QPS / p99 µs | plan | best peer ≥ 0.95 (setting: recall / QPS) | Strata ÷ peer |")
    print("|---:|---|---|---:|---|---|---|---:|")
    worst = {}
    for b in r["buckets"]:
        cands = [p for p in peers if p["tag"] == b["tag"] and p["recall"] >= 0.95]
        best = max(cands, key=lambda p: p["qps"]) if cands else None
        plan = ", ".join(f"{k} {v}" for k, v in sorted(b["plans"].items(), key=lambda x: -x[1]))
        if best:
            setting = best.get("setting") or f"ef={best['ef']}"
            if best["system"] == "faiss-ivf":
                setting = f"nprobe={best['ef']}"
            partial = " (partial)" if best.get("partial") else ""
            peer = f"{best['system']} {setting}: {best['recall']:.3f} / {best['qps']:,.0f}{partial}"
            ratio = b["qps"] / best["qps"]
            ratio_s = f"{ratio:,.2f}×" if ratio < 10 else f"{ratio:,.0f}×"
        else:
            peer, ratio, ratio_s = "none reaches 0.95", float("inf"), "—"
        key = b["target"]
        worst[key] = min(worst.get(key, float("inf")), ratio)
        flt = b["tag"].replace("|", "\\|")
        print(f"| {b['target'] * 100:g} % | {b['family']} | `{flt}` | {b['selectivity'] * 100:.3f} % "
              f"| L={b['list']}: {b['recall']:.3f} / {b['qps']:,.0f} / {b['p99_us']:,} | {plan} | {peer} | {ratio_s} |")
    print()
    print("| bucket | lowest Strata ÷ best peer |")
    print("|---:|---:|")
    for k in sorted(worst, reverse=True):
        w = worst[k]
        print(f"| {k * 100:g} % | {'—' if w == float('inf') else f'{w:,.2f}×'} |")


if __name__ == "__main__":
    main()
