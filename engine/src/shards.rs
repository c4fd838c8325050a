//! Shard sets: one collection split over N databases by a stable hash of the key, described
//! by a small versioned, checksummed file (`SHARDS.json`, `docs/format.md`, "SHARDS.json").
//!
//! A key belongs to shard [`shard_of`]`(key, n)`: the 64-bit XXH3 of its bytes (seed 0) mapped
//! to `0..n` by jump consistent hashing (Lamping & Veach, 2014), so growing a set from `n` to
//! `n + 1` shards moves only about `1/(n+1)` of the keys. The function is part of the format:
//! builders, routers and `verify` in every language must agree on it (`hash` in the file names
//! it; a new function would be a new name).
//!
//! Each shard is an ordinary database in a directory named in the file (relative to the set's
//! directory). The file is written last, atomically, after every shard is complete, so a set
//! directory either has a complete shard set or none.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::{Db, Error, Metric, Options, Result, Schema};

/// The shard set's file name inside its directory.
pub const SHARDS_FILE: &str = "SHARDS.json";
/// The `format` field of the file.
pub const SHARDS_FORMAT: &str = "strata-shards";
/// The file's layout version.
pub const SHARDS_VERSION: u64 = 1;
/// The name of the key-to-shard function ([`shard_of`]) in the file's `hash` field.
pub const SHARD_HASH: &str = "xxh3-64/jump";
/// Most shards in one set.
pub const SHARDS_MAX: u32 = 65_536;

/// The shard (in `0..n`) that owns `key` in a set of `n` shards.
///
/// ```
/// let s = strata::shards::shard_of(b"doc-17", 4)?;
/// assert!(s < 4);
/// assert_eq!(s, strata::shards::shard_of(b"doc-17", 4)?); // stable
/// # Ok::<(), strata::Error>(())
/// ```
pub fn shard_of(key: &[u8], n: u32) -> Result<u32> {
    if n == 0 || n > SHARDS_MAX {
        return Err(Error::invalid(format!(
            "a shard set has 1..={SHARDS_MAX} shards, not {n}"
        )));
    }
    Ok(jump(xxhash_rust::xxh3::xxh3_64(key), n))
}

/// Jump consistent hash: the bucket in `0..n` (n >= 1) of a 64-bit key.
fn jump(mut key: u64, n: u32) -> u32 {
    let (mut b, mut j) = (0u64, 0u64);
    while j < u64::from(n) {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        // (b + 1) * 2^31 / ((key >> 33) + 1), in f64 as the algorithm defines it; the
        // quotient is at most (b + 1) * 2^31 < 2^48, exact enough and far from overflow.
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as u64;
    }
    // b < n <= SHARDS_MAX: it fits.
    u32::try_from(b).unwrap_or(u32::MAX)
}

/// One shard of a set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// The shard's database directory, relative to the set's directory (one plain name or
    /// a relative path without `..`).
    pub path: String,
    /// Identifies the build that wrote the shard (16 hex digits), so a shard directory
    /// swapped for another build's can be told from the file.
    pub build_id: String,
    /// Documents in the shard when the set was written.
    pub documents: u64,
}

impl Shard {
    /// A fresh build id: 16 hex digits from the time, the process and `salt`.
    pub fn new_build_id(salt: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seed = format!("{nanos}/{}/{salt}", std::process::id());
        format!("{:016x}", xxhash_rust::xxh3::xxh3_64(seed.as_bytes()))
    }
}

/// A shard set: the schema every shard shares and the shards in order (shard `i` owns the
/// keys with [`shard_of`]`(key, n) == i`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSet {
    /// The schema of every shard.
    pub schema: Schema,
    /// Shard `i` at index `i`.
    pub shards: Vec<Shard>,
}

/// What [`ShardSet::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardsReport {
    /// Live documents per shard now.
    pub documents: Vec<u64>,
}

fn corrupt(path: &Path, reason: impl Into<String>) -> Error {
    Error::corrupt("shard set file", path, reason)
}

impl ShardSet {
    /// The number of shards.
    pub fn n(&self) -> u32 {
        // validate() bounds the count by SHARDS_MAX.
        u32::try_from(self.shards.len()).unwrap_or(u32::MAX)
    }

    /// The directory of shard `i` of the set in `dir`.
    pub fn shard_dir(&self, dir: &Path, i: usize) -> Option<PathBuf> {
        self.shards.get(i).map(|s| dir.join(&s.path))
    }

    /// Check the set's own bounds: 1..=SHARDS_MAX shards, relative paths without `..`, all
    /// distinct, build ids of 16 hex digits, a valid schema.
    pub fn validate(&self) -> Result<()> {
        self.schema.validate()?;
        let n = self.shards.len();
        if n == 0 || n > SHARDS_MAX as usize {
            return Err(Error::invalid(format!(
                "a shard set has 1..={SHARDS_MAX} shards, not {n}"
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, s) in self.shards.iter().enumerate() {
            let p = Path::new(&s.path);
            let plain = !s.path.is_empty()
                && p.is_relative()
                && p.components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)));
            if !plain {
                return Err(Error::invalid(format!(
                    "shard {i}: path {:?} is not a relative path inside the set's directory",
                    s.path
                )));
            }
            if !seen.insert(&s.path) {
                return Err(Error::invalid(format!(
                    "shard {i}: path {:?} is used twice",
                    s.path
                )));
            }
            if s.build_id.len() != 16 || !s.build_id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::invalid(format!(
                    "shard {i}: build id {:?} is not 16 hex digits",
                    s.build_id
                )));
            }
        }
        Ok(())
    }

    /// The file's body (everything but the checksum), keys sorted.
    fn body(&self) -> Value {
        json!({
            "format": SHARDS_FORMAT,
            "version": SHARDS_VERSION,
            "hash": SHARD_HASH,
            "n": self.shards.len(),
            "schema": {
                "dim": self.schema.dim,
                "metric": self.schema.metric.name(),
                "attrs": self.schema.attrs,
            },
            "shards": self.shards.iter().enumerate().map(|(i, s)| json!({
                "index": i, "path": s.path, "build_id": s.build_id, "documents": s.documents,
            })).collect::<Vec<_>>(),
        })
    }

    /// The file's bytes: the body with `crc32` (CRC-32 of the body's compact serialization,
    /// keys sorted), pretty-printed.
    pub fn encode(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let body = self.body();
        let crc = crc32fast::hash(body.to_string().as_bytes());
        let mut obj = match body {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        obj.insert("crc32".into(), Value::from(crc));
        let mut out = serde_json::to_vec_pretty(&Value::Object(obj))
            .map_err(|e| Error::invalid(format!("shard set: {e}")))?;
        out.push(b'\n');
        Ok(out)
    }

    /// Parse and check a shard set file's bytes (`path` names it in errors): the checksum
    /// first, then the format, version, hash function and every field.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<ShardSet> {
        let v: Value =
            serde_json::from_slice(bytes).map_err(|e| corrupt(path, format!("not JSON: {e}")))?;
        let Value::Object(mut obj) = v else {
            return Err(corrupt(path, "not a JSON object"));
        };
        let crc = obj
            .remove("crc32")
            .and_then(|c| c.as_u64())
            .ok_or_else(|| corrupt(path, "no crc32 field"))?;
        let body = Value::Object(obj);
        let got = crc32fast::hash(body.to_string().as_bytes());
        if u64::from(got) != crc {
            return Err(corrupt(
                path,
                format!("checksum mismatch (stored {crc:#010x}, computed {got:#010x})"),
            ));
        }
        let field = |k: &str| {
            body.get(k)
                .ok_or_else(|| corrupt(path, format!("no {k:?}")))
        };
        if field("format")?.as_str() != Some(SHARDS_FORMAT) {
            return Err(corrupt(path, format!("format is not {SHARDS_FORMAT:?}")));
        }
        match field("version")?.as_u64() {
            Some(SHARDS_VERSION) => {}
            other => {
                return Err(corrupt(
                    path,
                    format!("version {other:?} is not {SHARDS_VERSION} (a newer Strata wrote it?)"),
                ))
            }
        }
        if field("hash")?.as_str() != Some(SHARD_HASH) {
            return Err(corrupt(
                path,
                format!(
                    "unknown key hash {} (expected {SHARD_HASH:?})",
                    field("hash")?
                ),
            ));
        }
        let schema = field("schema")?;
        let dim = schema
            .get("dim")
            .and_then(Value::as_u64)
            .and_then(|d| u32::try_from(d).ok())
            .ok_or_else(|| corrupt(path, "schema.dim is not a dimension"))?;
        let metric = schema
            .get("metric")
            .and_then(Value::as_str)
            .ok_or_else(|| corrupt(path, "schema.metric is not a string"))
            .and_then(|m| Metric::parse(m).map_err(|e| corrupt(path, e.to_string())))?;
        let attrs = schema
            .get("attrs")
            .and_then(Value::as_array)
            .ok_or_else(|| corrupt(path, "schema.attrs is not a list"))?
            .iter()
            .map(|a| a.as_str().map(str::to_owned))
            .collect::<Option<Vec<String>>>()
            .ok_or_else(|| corrupt(path, "schema.attrs holds a non-string"))?;
        let list = field("shards")?
            .as_array()
            .ok_or_else(|| corrupt(path, "shards is not a list"))?;
        if field("n")?.as_u64() != Some(list.len() as u64) {
            return Err(corrupt(path, "n is not the number of shards listed"));
        }
        let mut shards = Vec::with_capacity(list.len());
        for (i, s) in list.iter().enumerate() {
            let str_of = |k: &str| {
                s.get(k)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| corrupt(path, format!("shard {i}: {k} is not a string")))
            };
            if s.get("index").and_then(Value::as_u64) != Some(i as u64) {
                return Err(corrupt(path, format!("shard {i}: index is not {i}")));
            }
            shards.push(Shard {
                path: str_of("path")?,
                build_id: str_of("build_id")?,
                documents: s
                    .get("documents")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| corrupt(path, format!("shard {i}: documents is not a count")))?,
            });
        }
        let set = ShardSet {
            schema: Schema { dim, metric, attrs },
            shards,
        };
        set.validate().map_err(|e| corrupt(path, e.to_string()))?;
        Ok(set)
    }

    /// Write `dir/SHARDS.json` atomically and durably (temp file, fsync, rename, directory
    /// fsync). Write it after every shard is complete.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let bytes = self.encode()?;
        crate::files::write_durably(&Options::default().fs, &dir.join(SHARDS_FILE), &bytes)
    }

    /// Read and check `dir/SHARDS.json`.
    pub fn read(dir: &Path) -> Result<ShardSet> {
        let path = dir.join(SHARDS_FILE);
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(dir.to_path_buf()),
            _ => Error::io("read", &path, e),
        })?;
        ShardSet::decode(&bytes, &path)
    }

    /// Whether `dir` holds a shard set file.
    pub fn exists(dir: &Path) -> bool {
        dir.join(SHARDS_FILE).is_file()
    }

    /// Open every shard of the set in `dir` read-only (nothing on disk changes) and check it:
    /// its schema is the set's, every checksum holds ([`Db::verify`]), and every key it holds
    /// routes to it by [`shard_of`] (read lazily, keys only). A failure names the shard.
    pub fn verify(&self, dir: &Path) -> Result<ShardsReport> {
        let n = self.n();
        let mut documents = Vec::with_capacity(self.shards.len());
        for (i, s) in self.shards.iter().enumerate() {
            let sdir = dir.join(&s.path);
            let named = |e: Error| Error::ShardFailed {
                shard: i,
                path: sdir.clone(),
                source: Box::new(e),
            };
            let db = Db::open_read_only(&sdir, Options::default()).map_err(named)?;
            if *db.schema() != self.schema {
                return Err(named(Error::invalid(format!(
                    "schema {:?} differs from the set's {:?}",
                    db.schema(),
                    self.schema
                ))));
            }
            db.verify().map_err(named)?;
            let mut count = 0u64;
            for k in db.range(..).keys() {
                let k = k.map_err(named)?;
                let owner = shard_of(&k, n)?;
                if owner as usize != i {
                    return Err(named(Error::invalid(format!(
                        "key {:?} belongs to shard {owner}, not here",
                        String::from_utf8_lossy(&k)
                    ))));
                }
                count += 1;
            }
            documents.push(count);
        }
        Ok(ShardsReport { documents })
    }
}

/// A shard set opened in this process: every shard's [`Db`], writes routed to the owning
/// shard by [`shard_of`], searches fanned out over every shard (on rayon) and merged exactly.
///
/// Each shard is asked for recall `1 − (1 − R)/N` for a set-level target `R`: every global
/// top-k item a shard misses is one of its own top-k it misses, so the expected set recall is
/// at least `1 − N (1 − r)` = `R` (`docs/scaling.md`). Exact queries equal one database's.
/// A [`WriteBatch`] is split per shard: atomic within each shard, not across shards.
#[derive(Debug)]
pub struct ShardedDb {
    set: ShardSet,
    dir: PathBuf,
    dbs: Vec<Db>,
}

impl ShardedDb {
    /// Open every shard of the set in `dir` (read-only: nothing on disk changes, writes are
    /// refused; else each shard takes its lock).
    pub fn open(dir: impl AsRef<Path>, read_only: bool) -> Result<ShardedDb> {
        let dir = dir.as_ref().to_path_buf();
        let set = ShardSet::read(&dir)?;
        let mut dbs = Vec::with_capacity(set.shards.len());
        for (i, s) in set.shards.iter().enumerate() {
            let sdir = dir.join(&s.path);
            let db = if read_only {
                Db::open_read_only(&sdir, Options::default())
            } else {
                Db::open(&sdir, Options::default())
            };
            dbs.push(db.map_err(|e| Error::ShardFailed {
                shard: i,
                path: sdir,
                source: Box::new(e),
            })?);
        }
        Ok(ShardedDb { set, dir, dbs })
    }

    /// The set as its file describes it.
    pub fn set(&self) -> &ShardSet {
        &self.set
    }

    /// The open database of shard `i`.
    pub fn shard(&self, i: usize) -> Option<&Db> {
        self.dbs.get(i)
    }

    fn named<T>(&self, i: usize, r: Result<T>) -> Result<T> {
        r.map_err(|e| Error::ShardFailed {
            shard: i,
            path: self
                .dir
                .join(self.set.shards.get(i).map_or("", |s| s.path.as_str())),
            source: Box::new(e),
        })
    }

    fn owner(&self, key: &[u8]) -> Result<usize> {
        Ok(shard_of(key, self.set.n())? as usize)
    }

    fn db(&self, i: usize) -> Result<&Db> {
        self.dbs
            .get(i)
            .ok_or_else(|| Error::invalid(format!("no shard {i}")))
    }

    /// Write `doc` through its shard.
    pub fn put(&self, doc: crate::Document) -> Result<()> {
        let i = self.owner(&doc.key)?;
        self.named(i, self.db(i)?.put(doc))
    }

    /// Delete `key` from its shard.
    pub fn delete(&self, key: &[u8]) -> Result<()> {
        let i = self.owner(key)?;
        self.named(i, self.db(i)?.delete(key))
    }

    /// Apply a batch, split per shard (atomic within each shard, not across them).
    pub fn write(&self, batch: crate::WriteBatch) -> Result<()> {
        let mut parts: Vec<crate::WriteBatch> = (0..self.dbs.len())
            .map(|_| crate::WriteBatch::new())
            .collect();
        for op in batch.ops() {
            let part = parts
                .get_mut(self.owner(op.key())?)
                .ok_or_else(|| Error::invalid("shard index out of range"))?;
            match op {
                crate::Op::Put(d) => part.put(d.clone()),
                crate::Op::Delete(k) => part.delete(k.clone()),
            };
        }
        for (i, part) in parts.into_iter().enumerate() {
            if !part.is_empty() {
                self.named(i, self.db(i)?.write(part))?;
            }
        }
        Ok(())
    }

    /// Read `key` from its shard.
    pub fn get(&self, key: &[u8]) -> Result<Option<std::sync::Arc<crate::Document>>> {
        let i = self.owner(key)?;
        self.named(i, self.db(i)?.get(key))
    }

    /// The per-shard recall target that keeps the set's expected recall at least `recall`.
    pub fn shard_recall(&self, recall: f64) -> f64 {
        1.0 - (1.0 - recall) / f64::from(self.set.n())
    }

    /// Run `q` on every shard (in parallel) at the derived per-shard recall and merge the
    /// answers by (distance, key) — key order for boolean queries — keeping `q.k`.
    pub fn search(&self, q: &crate::Query) -> Result<Vec<crate::Hit>> {
        use rayon::prelude::*;
        let mut per = q.clone();
        per.ann.recall = self.shard_recall(q.ann.recall);
        let parts: Vec<Result<Vec<crate::Hit>>> = self
            .dbs
            .par_iter()
            .enumerate()
            .map(|(i, db)| self.named(i, db.search(&per)))
            .collect();
        let mut hits = Vec::new();
        for p in parts {
            hits.extend(p?);
        }
        match q.vector {
            None => hits.sort_by(|a, b| a.key.cmp(&b.key)),
            Some(_) => hits.sort_by(|a, b| {
                let (x, y) = (a.distance.unwrap_or(0.0), b.distance.unwrap_or(0.0));
                x.total_cmp(&y).then_with(|| a.key.cmp(&b.key))
            }),
        }
        hits.truncate(q.k);
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(n: usize) -> ShardSet {
        ShardSet {
            schema: Schema::new(8, Metric::Cosine).with_attr("ts"),
            shards: (0..n)
                .map(|i| Shard {
                    path: format!("shard-{i:04}"),
                    build_id: Shard::new_build_id(&i.to_string()),
                    documents: i as u64 * 10,
                })
                .collect(),
        }
    }

    #[test]
    fn shards_are_balanced_stable_and_move_little_when_the_set_grows() {
        let keys: Vec<Vec<u8>> = (0..40_000)
            .map(|i| format!("doc-{i}").into_bytes())
            .collect();
        let mut count = [0usize; 4];
        for k in &keys {
            count[shard_of(k, 4).unwrap() as usize] += 1;
        }
        // Each shard within 5 % of its 10,000 share.
        assert!(
            count.iter().all(|&c| (9_500..=10_500).contains(&c)),
            "{count:?}"
        );
        // From 4 to 5 shards, only keys that move to the new shard move (about a fifth).
        let moved = keys
            .iter()
            .filter(|k| shard_of(k, 4).unwrap() != shard_of(k, 5).unwrap())
            .count();
        assert!((7_000..=9_000).contains(&moved), "{moved}");
        assert!(keys
            .iter()
            .filter(|k| shard_of(k, 4).unwrap() != shard_of(k, 5).unwrap())
            .all(|k| shard_of(k, 5).unwrap() == 4));
        // Pinned values: the function is part of the format.
        assert_eq!(shard_of(b"", 1).unwrap(), 0);
        let pinned: Vec<u32> = ["a", "doc-17", "user:42"]
            .iter()
            .map(|k| shard_of(k.as_bytes(), 16).unwrap())
            .collect();
        assert_eq!(pinned, PINNED);
        assert!(shard_of(b"k", 0).is_err() && shard_of(b"k", SHARDS_MAX + 1).is_err());
    }

    // Checked against an independent implementation (Python: the `xxhash` package and the
    // published jump hash).
    const PINNED: [u32; 3] = [14, 1, 1];

    #[test]
    fn the_file_round_trips_and_every_damage_is_an_error() {
        let s = set(3);
        let bytes = s.encode().unwrap();
        let p = Path::new("SHARDS.json");
        assert_eq!(ShardSet::decode(&bytes, p).unwrap(), s);
        // Any flipped byte of the content is caught (by the checksum or the JSON parser).
        let text = String::from_utf8(bytes.clone()).unwrap();
        for (i, _) in text
            .char_indices()
            .filter(|(_, c)| c.is_ascii_alphanumeric())
        {
            let mut b = bytes.clone();
            b[i] = if b[i] == b'1' { b'2' } else { b'1' };
            if b == bytes {
                continue;
            }
            assert!(ShardSet::decode(&b, p).is_err(), "flip at {i} undetected");
        }
        assert!(ShardSet::decode(b"", p).is_err());
        assert!(ShardSet::decode(b"[]", p).is_err());
        // Bad sets are refused at write.
        let mut bad = set(2);
        bad.shards[1].path = "../x".into();
        assert!(bad.encode().is_err());
        bad.shards[1].path = bad.shards[0].path.clone();
        assert!(bad.encode().is_err());
        assert!(set(0).encode().is_err());
    }
}
