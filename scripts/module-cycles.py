#!/usr/bin/env python3
"""Report import cycles between the engine's top-level modules (engine/src/<module>): each
`crate::<module>` mention outside a test module is an edge. Exit 1 when a cycle exists.
Usage: python3 scripts/module-cycles.py [engine/src]"""
import collections
import glob
import os
import re
import sys

root = os.path.join(sys.argv[1] if len(sys.argv) > 1 else "engine/src", "")


def top(path):
    parts = os.path.relpath(path, root).split("/")
    return parts[0][:-3] if len(parts) == 1 else parts[0]


deps = collections.defaultdict(set)
for f in glob.glob(root + "**/*.rs", recursive=True):
    m = top(f)
    if m == "lib" or f.endswith("/tests.rs"):
        continue
    text = re.split(r"#\[cfg\(test\)\]\s*mod tests", open(f).read())[0]
    for d in re.findall(r"crate::([a-z_]+)", text):
        if d != m:
            deps[m].add(d)

index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]


def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in sorted(deps.get(v, ())):
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on.discard(w)
            comp.append(w)
            if w == v:
                break
        if len(comp) > 1:
            cycles.append(sorted(comp))


for v in sorted(set(deps) | {d for s in deps.values() for d in s}):
    if v not in index:
        visit(v)
for c in cycles:
    print("cycle:", " <-> ".join(c))
    for a in c:
        print(f"  {a} -> {', '.join(sorted(d for d in deps[a] if d in c))}")
sys.exit(1 if cycles else 0)
