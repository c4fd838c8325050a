"""Shard sets on a local Ray cluster (2 CPUs on this machine): a 4-shard build against a single
database built from the same data, exact and approximate fan-out, routed writes, and a shard
actor killed in the middle of a query."""

import os
import threading
import time

import numpy as np
import pytest

import strata

ray = pytest.importorskip("ray")
sd = pytest.importorskip("strata.distributed")

DIM = 16
N = 8000


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=200 * 1024 * 1024,
             runtime_env={"env_vars": {"RAY_DEDUP_LOGS": "0"}})
    yield
    ray.shutdown()


def dataset(n=N, seed=11):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, DIM)).astype(np.float32) * 3
    x = (centres[rng.integers(0, 40, n)] + rng.normal(size=(n, DIM))).astype(np.float32)
    langs = rng.integers(0, 4, n)
    terms = [[f"lang:{l}"] for l in langs]
    keys = [f"post-{i:06d}" for i in range(n)]
    return {"vectors": x, "keys": keys, "terms": terms, "attrs": {"ts": list(range(n))}}, langs


@pytest.fixture(scope="module")
def built(cluster, tmp_path_factory):
    data, langs = dataset()
    root = tmp_path_factory.mktemp("sets")
    set_dir = root / "set4"
    info = sd.build(data, set_dir, shards=4, metric="l2")
    single = root / "single"
    strata.build(single, data["vectors"], keys=data["keys"], terms=data["terms"],
                 attrs=data["attrs"], metric="l2")
    return data, langs, set_dir, single, info


def test_build_writes_a_verifiable_set_that_partitions_the_keys(built):
    data, _, set_dir, _, info = built
    assert info["n"] == 4 and info["schema"] == {"dim": DIM, "metric": "l2", "attrs": ["ts"]}
    sizes = [s["documents"] for s in info["shards"]]
    assert sum(sizes) == N and min(sizes) > N // 4 * 0.9
    assert strata.verify_shard_set(set_dir) == sizes
    owners = strata.shards_of(data["keys"], 4)
    assert [int((owners == i).sum()) for i in range(4)] == sizes
    with strata.open(set_dir / info["shards"][2]["path"], read_only=True) as db:
        keys = list(db.scan(keys_only=True))
    assert keys == sorted(k.encode() for k, o in zip(data["keys"], owners) if o == 2)
    with pytest.raises(strata.AlreadyExistsError):
        sd.build(data, set_dir, shards=4)


def test_exact_fan_out_equals_the_single_database(built):
    data, langs, set_dir, single, _ = built
    rng = np.random.default_rng(5)
    qs = data["vectors"][rng.integers(0, N, 20)] + 0.05
    with sd.ShardedDb(set_dir) as sharded, strata.open(single, read_only=True) as one:
        for filt in (None, "lang:1", "(and (not lang:0) (range ts 100 6000))"):
            got = sharded.search(qs, k=10, filter=filt, exact=True)
            want = one.search(qs, k=10, filter=filt, exact=True)
            for (gk, gd), (wk, wd) in zip(got, want):
                assert gk == wk
                np.testing.assert_array_equal(gd, wd)
        k1, d1 = sharded.search(qs[0], k=5, exact=True)
        assert k1 == one.search(qs[0], k=5, exact=True)[0]


def recall(got, truth):
    return np.mean([len(set(g[0]) & set(t[0])) / max(1, len(t[0])) for g, t in zip(got, truth)])


def test_approximate_fan_out_keeps_the_recall_target(built):
    data, _, set_dir, single, _ = built
    rng = np.random.default_rng(9)
    qs = data["vectors"][rng.integers(0, N, 200)] + rng.normal(size=(200, DIM)).astype(np.float32)
    with sd.ShardedDb(set_dir) as sharded, strata.open(single, read_only=True) as one:
        truth = one.search(qs, k=10, exact=True)
        for target in (0.9, 0.95):
            r_sharded = recall(sharded.search(qs, k=10, recall=target), truth)
            r_single = recall(one.search(qs, k=10, recall=target), truth)
            # The bound of the module doc: per shard 1 - (1 - R) / N.
            assert sharded.shard_recall(target) == pytest.approx(1 - (1 - target) / 4)
            assert r_sharded >= target and r_sharded >= r_single - 0.005, (target, r_sharded, r_single)
        # Calibrated on one half of the queries, held on the other.
        cal = sharded.calibrate(qs[:100], k=10, recall=0.95)
        assert cal["shard_recall"] <= cal["bound"] and cal["levels"]
        assert sharded.shard_recall(0.95) == cal["shard_recall"]
        r_cal = recall(sharded.search(qs[100:], k=10, recall=0.95), truth[100:])
        assert r_cal >= 0.95 - 0.02, (cal, r_cal)


def test_writes_are_routed_to_the_owning_shard(built, tmp_path):
    data, _, _, _, _ = built
    small = {"vectors": data["vectors"][:600], "keys": data["keys"][:600]}
    set_dir = tmp_path / "set3"
    sd.build(small, set_dir, shards=3)
    with sd.ShardedDb(set_dir, writable=True) as db:
        db.put("new-key", vector=np.ones(DIM, np.float32), terms=["fresh"], value="v")
        db.put_many(["a1", "a2", "a3", "a4"], vectors=np.zeros((4, DIM), np.float32),
                    values=["1", "2", "3", "4"])
        db.delete(data["keys"][7])
        assert db.get("new-key")["value"] == b"v"
        assert db.get(data["keys"][7]) is None
        keys, _ = db.search(np.ones(DIM, np.float32), k=1, filter="fresh")
        assert keys == [b"new-key"]
        assert db.count() == 600 + 5 - 1
        db.flush()
    # Every key sits in its own shard (verify checks each one).
    docs = strata.verify_shard_set(set_dir)
    assert sum(docs) == 604


def test_a_killed_shard_actor_is_an_error_naming_the_shard(built):
    data, _, set_dir, _, _ = built
    db = sd.ShardedDb(set_dir)
    try:
        # A batch long enough that the kill lands while every shard is working on it.
        rows = 1000
        while True:
            qs = np.repeat(data["vectors"][:1], rows, axis=0)
            t0 = time.perf_counter()
            db.search(qs, k=10, exact=True)
            took = time.perf_counter() - t0
            if took >= 1.0 or rows >= 256_000:
                break
            rows *= 2
        assert took >= 0.6, took
        caught = {}

        def query():
            try:
                db.search(qs, k=10, exact=True)
            except Exception as e:  # noqa: BLE001 - the test inspects it
                caught["e"] = e

        t = threading.Thread(target=query)
        t.start()
        time.sleep(took / 4)  # the batch is running on every shard
        ray.kill(db.actors[2])
        t.join(timeout=120)
        assert isinstance(caught.get("e"), sd.ShardError), caught
        assert caught["e"].shard == 2 and "shard-0002" in str(caught["e"])
        # Asked for it, the other shards' answer comes back with the failure listed.
        (keys, dists), missing = db.search(data["vectors"][0], k=10, partial=True)
        assert missing == [2] and len(keys) == 10
        owners = strata.shards_of(keys, 4)
        assert 2 not in set(owners.tolist())
        with pytest.raises(sd.ShardError, match="shard 2"):
            db.search(data["vectors"][0], k=10)
    finally:
        db.close()


def test_a_damaged_set_or_shard_is_refused(built, tmp_path):
    data, _, _, _, _ = built
    set_dir = tmp_path / "set2"
    sd.build({"vectors": data["vectors"][:300]}, set_dir, shards=2)
    f = set_dir / "SHARDS.json"
    text = f.read_text()
    f.write_text(text.replace('"documents": 1', '"documents": 2', 1))
    with pytest.raises(strata.CorruptionError, match="checksum"):
        sd.ShardedDb(set_dir)
    f.write_text(text)
    seg_dir = set_dir / "shard-0001" / "segments"
    seg = sorted(p for p in os.listdir(seg_dir) if p.endswith(".seg"))[0]
    with open(seg_dir / seg, "r+b") as fh:
        fh.seek(200)
        b = fh.read(1)
        fh.seek(200)
        fh.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(strata.CorruptionError, match="shard 1"):
        strata.verify_shard_set(set_dir)


def test_build_from_files_npy_fvecs_and_parquet(cluster, tmp_path):
    data, _ = dataset(1200, seed=2)
    x = data["vectors"]
    np.save(tmp_path / "v.npy", x)
    with open(tmp_path / "v.fvecs", "wb") as f:
        for row in x:
            f.write(np.int32(DIM).tobytes() + row.tobytes())
    sizes = {}
    for name in ("v.npy", "v.fvecs"):
        info = sd.build(tmp_path / name, tmp_path / f"set-{name}", shards=2)
        sizes[name] = [s["documents"] for s in info["shards"]]
    assert sizes["v.npy"] == sizes["v.fvecs"] and sum(sizes["v.npy"]) == 1200
    with sd.ShardedDb(tmp_path / "set-v.npy") as a, sd.ShardedDb(tmp_path / "set-v.fvecs") as b:
        assert a.search(x[:5], k=3, exact=True)[0][0] == b.search(x[:5], k=3, exact=True)[0][0]
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.table({
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), DIM),
        "key": data["keys"], "terms": data["terms"], "ts": np.arange(1200, dtype=np.int64),
    })
    pq.write_table(table, tmp_path / "d.parquet")
    info = sd.build(tmp_path / "d.parquet", tmp_path / "set-pq", shards=3)
    assert info["schema"]["attrs"] == ["ts"] and sum(s["documents"] for s in info["shards"]) == 1200
    with sd.ShardedDb(tmp_path / "set-pq") as db:
        keys, _ = db.search(x[10], k=1, filter="(range ts 10 10)")
        assert keys == [data["keys"][10].encode()]
    with pytest.raises(strata.NotFoundError):
        sd.build(tmp_path / "missing.npy", tmp_path / "never", shards=2)
