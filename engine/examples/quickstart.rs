//! Quick start: create a database, write documents and a batch, run hybrid queries.
//! Run with `cargo run -p strata --example quickstart`.

use strata::{Db, Document, Filter, Metric, Options, Query, Schema, WriteBatch};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("posts");

    // The schema is fixed at creation: dimension, metric, numeric attributes.
    let schema = Schema::new(3, Metric::Cosine)
        .with_attr("ts")
        .with_attr("likes");
    let db = Db::create(&dir, schema)?;

    db.put(
        Document::new("post-1", "strata ships today")
            .with_vector(vec![0.9, 0.1, 0.0])
            .with_term("lang:en")
            .with_term("author:7")
            .with_attr("ts", 1_700_000_100),
    )?;
    // A batch is atomic: all of it or none of it, also across a crash.
    let mut batch = WriteBatch::new();
    batch
        .put(
            Document::new("post-2", "heute neu")
                .with_vector(vec![0.8, 0.2, 0.1])
                .with_term("lang:de")
                .with_term("author:9")
                .with_attr("ts", 1_700_000_200),
        )
        .put(
            Document::new("post-3", "win a prize")
                .with_vector(vec![0.95, 0.05, 0.0])
                .with_term("lang:en")
                .with_term("spam")
                .with_attr("ts", 1_700_000_300),
        );
    db.write(batch)?;

    // Nearest posts in English that are not spam.
    let q = Query::knn(vec![1.0, 0.0, 0.0], 10).with_filter_str("(and lang:en (not spam))")?;
    for hit in db.search(&q)? {
        println!(
            "{} at cosine distance {:.4}",
            String::from_utf8_lossy(&hit.key),
            hit.distance.unwrap_or(0.0)
        );
    }

    // The same filter built without parsing, as a boolean query (keys in key order).
    let f = Filter::and([
        Filter::term("lang:en"),
        Filter::range("ts", 1_700_000_000, 1_700_000_250),
    ]);
    let keys: Vec<_> = db
        .search(&Query::boolean(f, 100))?
        .into_iter()
        .map(|h| h.key)
        .collect();
    println!("boolean query: {} match", keys.len());

    // Reopen: the WAL is replayed.
    drop(db);
    let db = Db::open(&dir, Options::default())?;
    println!("after reopen: {} documents", db.scan(..)?.len());
    Ok(())
}
