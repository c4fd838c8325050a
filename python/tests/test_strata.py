"""The Python API against NumPy brute force, across reopen, read-only and error kinds."""

import os

import numpy as np
import pytest

import strata

DIM = 16


def data(n, seed=7):
    """n clustered float32 vectors with tags: lang (3 values), a 5 % `rare` tag, ts = row."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(20, DIM)).astype(np.float32) * 4
    x = centres[rng.integers(0, 20, n)] + rng.normal(size=(n, DIM)).astype(np.float32)
    langs = rng.integers(0, 3, n)
    rare = rng.random(n) < 0.05
    terms = [[f"lang:{'en de fr'.split()[l]}"] + (["rare"] if r else []) for l, r in zip(langs, rare)]
    keys = [f"doc{i:06d}".encode() for i in range(n)]
    return keys, x.astype(np.float32), terms, langs, rare


def brute(x, q, allowed, k):
    # Squared L2: the engine's reported convention (faiss's too).
    d = ((x - q) ** 2).sum(axis=1)
    d = np.where(allowed, d, np.inf)
    order = np.argsort(d, kind="stable")[:k]
    return [int(i) for i in order if np.isfinite(d[i])], d


def test_put_get_delete_and_reopen(tmp_path):
    path = tmp_path / "db"
    with strata.create(path, dim=3, metric="l2", attrs=["ts"]) as db:
        db.put("k1", vector=[1, 2, 3], terms=["lang:en"], attrs={"ts": 5}, value=b"v1")
        db.put(b"k2", value="text")
        db.delete("k2")
        db.delete("absent")  # not an error
        got = db.get("k1")
        assert got["key"] == b"k1" and got["value"] == b"v1"
        assert got["terms"] == ["lang:en"] and got["attrs"] == {"ts": 5}
        np.testing.assert_array_equal(got["vector"], np.array([1, 2, 3], np.float32))
        assert db.get("k2") is None
    with strata.open(path) as db:
        assert db.get("k1")["value"] == b"v1"
        assert db.get("k2") is None
        assert db.schema() == {"dim": 3, "metric": "l2", "attrs": ["ts"]}


@pytest.mark.parametrize("flush", [False, True])
def test_search_matches_brute_force(tmp_path, flush):
    keys, x, terms, langs, rare = data(6000)
    with strata.create(tmp_path / "db", dim=DIM) as db:
        db.put_many(keys, vectors=x, terms=terms, attrs=None)
        if flush:
            db.flush()  # 6,000 vectors (≥ the 5,000 default): a segment with its graph
        rng = np.random.default_rng(1)
        qs = x[rng.integers(0, len(x), 40)] + rng.normal(size=(40, DIM)).astype(np.float32) * 0.5
        filters = [
            (None, np.ones(len(x), bool)),
            ("lang:en", langs == 0),
            ("(not lang:en)", langs != 0),
            ("(and rare (not lang:de))", rare & (langs != 1)),
        ]
        for text, allowed in filters:
            hit = total = 0
            for q in qs:
                want, d = brute(x, q, allowed, 10)
                got_keys, got_d = db.search(q, k=10, filter=text)
                got = [int(k[3:]) for k in got_keys]
                # No filter violation, distances are the true ones, nearest first.
                assert all(allowed[i] for i in got)
                np.testing.assert_allclose(got_d, d[got], rtol=1e-4, atol=1e-4)
                assert list(got_d) == sorted(got_d)
                hit += len(set(got) & set(want))
                total += len(want)
                # The exact plan is brute force.
                ex_keys, _ = db.search(q, k=10, filter=text, exact=True)
                ex = [int(k[3:]) for k in ex_keys]
                assert [d[i] for i in ex] == pytest.approx([d[i] for i in want], abs=1e-4)
            assert hit / total >= 0.9, (text, flush, hit / total)


def test_batch_search_equals_single(tmp_path):
    keys, x, terms, _, _ = data(500)
    with strata.create(tmp_path / "db", dim=DIM) as db:
        db.put_many(keys, vectors=x.astype(np.float64), terms=terms)  # float64 converted
        qs = x[:5]
        batch = db.search(qs, k=3, exact=True)
        assert len(batch) == 5
        for q, (bk, bd) in zip(qs, batch):
            sk, sd = db.search(q, k=3, exact=True)
            assert bk == sk
            np.testing.assert_array_equal(bd, sd)


def test_read_only_refuses_writes_and_changes_nothing(tmp_path):
    path = tmp_path / "db"
    with strata.create(path, dim=2) as db:
        db.put("a", vector=[0, 1])
    before = sorted((p, os.path.getsize(os.path.join(r, p)))
                    for r, _, fs in os.walk(path) for p in fs)
    with strata.open(path, read_only=True) as db:
        assert db.read_only
        assert db.get("a") is not None
        with pytest.raises(strata.ReadOnlyError):
            db.put("b", vector=[1, 0])
    after = sorted((p, os.path.getsize(os.path.join(r, p)))
                   for r, _, fs in os.walk(path) for p in fs)
    assert before == after


def test_error_kinds(tmp_path):
    path = tmp_path / "db"
    with pytest.raises(strata.NotFoundError):
        strata.open(path)
    strata.create(path, dim=2).close()
    with pytest.raises(strata.AlreadyExistsError):
        strata.create(path, dim=2)
    db = strata.open(path)
    with pytest.raises(strata.LockedError):
        strata.open(path)
    with pytest.raises(strata.InvalidInputError):
        db.put("a", vector=[1, 2, 3])  # wrong dimension
    with pytest.raises(strata.InvalidInputError):
        db.put("a", vector=[float("nan"), 0])
    with pytest.raises(strata.InvalidInputError):
        db.search([0, 0], filter="(and lang:en")
    with pytest.raises(strata.InvalidInputError):
        db.search([0, 0], recall=1.5)
    with pytest.raises(strata.InvalidInputError):
        db.put_many(["a", "b"], vectors=np.zeros((3, 2), np.float32))
    with pytest.raises(strata.InvalidInputError):
        strata.create(tmp_path / "other", dim=2, metric="hamming")
    assert issubclass(strata.CorruptionError, strata.StrataError)
    db.close()
    db.close()  # twice is fine
    with pytest.raises(strata.ClosedError):
        db.get("a")
    strata.open(path).close()  # the lock went with the close


def test_damaged_segment_is_a_corruption_error(tmp_path):
    path = tmp_path / "db"
    keys, x, terms, _, _ = data(300)
    with strata.create(path, dim=DIM) as db:
        db.put_many(keys, vectors=x, terms=terms)
        db.flush()
    seg = next(os.path.join(r, f) for r, _, fs in os.walk(path) for f in fs if f.endswith(".seg"))
    with open(seg, "r+b") as f:
        f.seek(os.path.getsize(seg) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(strata.CorruptionError):
        with strata.open(path) as db:
            db.verify()


def test_readme_quickstart_runs(tmp_path, monkeypatch):
    """The Python block of README.md's "Python" section, as a newcomer would run it."""
    readme = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")
    with open(readme) as f:
        text = f.read()
    section = text.split("\n## Python\n", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md (Python)", "exec"), {})
    assert (tmp_path / "quickstart-db").is_dir()


def test_build_from_arrays(tmp_path):
    keys, x, terms, langs, _ = data(12000)
    events = []
    report = strata.build(tmp_path / "db", x, terms=terms,
                          attrs={"ts": list(range(len(x)))}, metric="l2",
                          segment_docs_max=6000, progress=lambda *e: events.append(e))
    # Two segments of 6,000 (each over the 5,000 vectors that get a graph by default).
    assert report["documents"] == 12000 and report["segments"] == 2
    assert ("segment", 1, 2) in events and ("segment", 2, 2) in events
    assert any(kind == "graph" for kind, _, _ in events)
    with strata.open(tmp_path / "db", read_only=True) as db:
        assert db.schema() == {"dim": DIM, "metric": "l2", "attrs": ["ts"]}
        # Keys default to row numbers; documents as given.
        got = db.get("17")
        np.testing.assert_array_equal(got["vector"], x[17])
        assert got["terms"] == sorted(terms[17]) and got["attrs"] == {"ts": 17}
        hit = total = 0
        for qi in range(0, 12000, 600):
            want, d = brute(x, x[qi], langs == 0, 10)
            got_keys, got_d = db.search(x[qi], k=10, filter="lang:en")
            got = [int(k) for k in got_keys]
            assert all(langs[i] == 0 for i in got)
            hit += len(set(got) & set(want))
            total += len(want)
        assert hit / total >= 0.9


def test_build_errors(tmp_path):
    x = np.zeros((10, 4), np.float32)
    with pytest.raises(strata.InvalidInputError):
        strata.build(tmp_path / "a", x[0])  # 1-D
    with pytest.raises(strata.InvalidInputError):
        strata.build(tmp_path / "b", x, keys=["same"] * 10)  # duplicate keys
    with pytest.raises(strata.InvalidInputError):
        strata.build(tmp_path / "c", x, terms=[["t"]] * 9)  # a column too short
    strata.build(tmp_path / "d", x)
    with pytest.raises(strata.AlreadyExistsError):
        strata.build(tmp_path / "d", x)

    def boom(*_):
        raise RuntimeError("from the callback")

    with pytest.raises(RuntimeError, match="from the callback"):
        strata.build(tmp_path / "e", x, progress=boom)


def test_scan_is_lazy_ordered_and_equals_a_dict_model(tmp_path):
    rng = np.random.default_rng(7)
    model = {}
    with strata.create(tmp_path / "db", dim=2) as db:
        for step in range(1500):
            k = f"k{int(rng.integers(0, 400)):03d}".encode()
            if rng.random() < 0.25:
                db.delete(k)
                model.pop(k, None)
            else:
                v = str(step).encode()
                db.put(k, vector=[step, 0], value=v)
                model[k] = v
            if step % 500 == 499:
                db.flush()  # versions spread over segments and the memtable
        keys = sorted(model)
        it = db.scan()
        assert next(it)["key"] == keys[0]  # lazy: one document at a time
        assert [d["key"] for d in db.scan()] == keys
        assert [d["value"] for d in db.scan()] == [model[k] for k in keys]
        assert list(db.scan(keys_only=True, reverse=True)) == keys[::-1]
        assert list(db.scan(prefix="k1", keys_only=True)) == [k for k in keys if k.startswith(b"k1")]
        assert list(db.scan(start=b"k100", end="k200", keys_only=True)) == [
            k for k in keys if b"k100" <= k < b"k200"
        ]
        assert list(db.scan(start="k390", keys_only=True, reverse=True)) == [
            k for k in keys if k >= b"k390"
        ][::-1]
        # A scan reads its snapshot: a write after it starts is not seen.
        it = db.scan(keys_only=True)
        db.put("k000a", value="late")
        assert b"k000a" not in list(it)
        assert b"k000a" in list(db.scan(keys_only=True))
        with pytest.raises(strata.InvalidInputError):
            db.scan(prefix="k", start="k1")


def test_radius_and_distances_are_squared_l2(tmp_path):
    keys, x, terms, langs, rare = data(500, seed=3)
    with strata.create(tmp_path / "db", dim=DIM) as db:
        db.put_many(keys, vectors=x)
        q = x[5] + 0.1
        d = ((x - q) ** 2).sum(axis=1)
        r = float(np.sort(d)[20])
        got, got_d = db.search(q, k=100, radius=r, exact=True)
        want = [keys[i] for i in np.argsort(d, kind="stable") if d[i] <= r]
        assert got == want
        np.testing.assert_allclose(got_d, np.sort(d)[: len(want)], rtol=1e-4)
        with pytest.raises(strata.InvalidInputError):
            db.search(q, radius=-1.0)


def test_json_filters_equal_s_expressions(tmp_path):
    keys, x, terms, langs, rare = data(400, seed=4)
    with strata.create(tmp_path / "db", dim=DIM, attrs=["ts"]) as db:
        db.put_many(keys, vectors=x, terms=terms, attrs={"ts": list(range(400))})
        q = x[3]
        s = db.search(q, k=20, filter="(and (not lang:en) (range ts 100 *))", exact=True)
        j = db.search(q, k=20, exact=True, filter={"and": [{"not": {"term": "lang:en"}},
                                                          {"range": {"ts": [100, None]}}]})
        assert s[0] == j[0] and len(s[0]) == 20
        with pytest.raises(strata.InvalidInputError, match="range"):
            db.search(q, filter={"range": {"ts": [5, 1]}})


def test_batches_run_in_parallel_and_explain_reports_plans(tmp_path):
    keys, x, terms, langs, rare = data(3000, seed=6)
    strata.build(tmp_path / "db", x, keys=keys, terms=terms)
    with strata.open(tmp_path / "db", read_only=True) as db:
        qs = x[:64] + 0.01
        batch = db.search(qs, k=5, filter="lang:en")
        one_by_one = [db.search(q, k=5, filter="lang:en") for q in qs]
        for (bk, bd), (ok_, od) in zip(batch, one_by_one):
            assert bk == ok_
            np.testing.assert_array_equal(bd, od)
        k, d, explain = db.search(qs[0], k=5, filter="lang:en", explain=True)
        assert k == batch[0][0]
        assert explain and all({"plan", "micros", "matches"} <= set(e) for e in explain)
        assert sum(e["documents"] for e in explain) == 3000


def strata_bin():
    """The `strata` binary of this checkout (scripts/test sets STRATA_BIN), if built."""
    here = os.path.join(os.path.dirname(__file__), "..", "..", "target")
    for p in (os.environ.get("STRATA_BIN"), os.path.join(here, "debug", "strata"),
              os.path.join(here, "release", "strata")):
        if p and os.path.isfile(p):
            return p
    pytest.skip("no strata binary built")


def test_results_equal_the_cli_on_the_same_database(tmp_path):
    import json
    import subprocess

    keys, x, terms, langs, rare = data(3000, seed=8)
    strata.build(tmp_path / "db", x, keys=keys, terms=terms, attrs={"ts": list(range(3000))})
    qs = x[:20] + 0.01
    with open(tmp_path / "q.fvecs", "wb") as f:
        for q in qs:
            f.write(np.int32(DIM).tobytes() + q.astype(np.float32).tobytes())
    for filt in ("(and lang:en (range ts 100 *))", '{"not": {"term": "lang:de"}}'):
        out = subprocess.run(
            [strata_bin(), "query", str(tmp_path / "db"), "--vectors", str(tmp_path / "q.fvecs"),
             "--k", "10", "--filter", filt, "--json"],
            check=True, capture_output=True, text=True).stdout
        cli = [json.loads(line) for line in out.splitlines()]
        with strata.open(tmp_path / "db", read_only=True) as db:
            py = db.search(qs, k=10, filter=filt)
        for c, (k, d) in zip(cli, py):
            assert [h["key"].encode() for h in c["hits"]] == k
            np.testing.assert_allclose([h["distance"] for h in c["hits"]], d, rtol=1e-6)


def test_arrow_tables_in_and_results_out(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import strata.arrow as sa

    keys, x, terms, langs, rare = data(2000, seed=9)
    table = pa.table({
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), DIM),
        "key": [k.decode() for k in keys], "terms": terms,
        "ts": pa.array(np.arange(2000), pa.int64()), "note": ["n"] * 2000,
    })
    cols = sa.columns(table)
    assert cols["vectors"].shape == (2000, DIM) and list(cols["attrs"]) == ["ts"]
    report = sa.build(tmp_path / "built", table)
    assert report["documents"] == 2000
    with strata.create(tmp_path / "db", dim=DIM, attrs=["ts"]) as db:
        assert sa.put_table(db, table) == 2000
        with strata.open(tmp_path / "built", read_only=True) as built:
            q = x[11]
            a = db.search(q, k=5, filter="(range ts 0 999)", exact=True)
            b = built.search(q, k=5, filter="(range ts 0 999)", exact=True)
            assert a[0] == b[0]
        out = sa.to_arrow(*a)
        assert out.column_names == ["key", "distance"] and out.num_rows == 5
        assert out.column("key").to_pylist()[0] == keys[11]
    with pytest.raises(strata.InvalidInputError, match="vector"):
        sa.columns(pa.table({"v": [1, 2]}))
    ragged = pa.table({"vector": pa.array([[1.0, 2.0], [3.0]])})
    with pytest.raises(strata.InvalidInputError, match="different lengths"):
        sa.columns(ragged)
