//! The `serde` feature: documents, schemas, hits and query stats round-trip through JSON, and a
//! filter serializes as its JSON form (and deserializes with the same checks as the parser).
#![cfg(feature = "serde")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed assumption should abort the test loudly"
)]

use strata::{Db, Document, Filter, Metric, Query, QueryStats, Schema};

#[test]
fn public_types_round_trip_through_json() {
    let d = Document::new("k", "v")
        .with_vector(vec![1.0, 2.0])
        .with_term("lang:en")
        .with_attr("ts", 5);
    let back: Document = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
    assert_eq!(back, d);
    let s = Schema::new(2, Metric::Cosine).with_attr("ts");
    let back: Schema = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
    assert_eq!(back, s);

    let f = Filter::parse("(and lang:en (not spam) (range ts 5 *))").unwrap();
    let text = serde_json::to_string(&f).unwrap();
    assert_eq!(text, f.to_json());
    assert_eq!(serde_json::from_str::<Filter>(&text).unwrap(), f);
    let bad = serde_json::from_str::<Filter>(r#"{"range": {"ts": [9, 1]}}"#).unwrap_err();
    assert!(bad.to_string().contains("LO <= HI"), "{bad}");

    let dir = tempfile::tempdir().unwrap();
    let db = Db::create(dir.path(), s).unwrap();
    db.put(d).unwrap();
    let (hits, stats) = db
        .search_with_stats(&Query::knn(vec![1.0, 2.0], 1).with_filter(f))
        .unwrap();
    let json = serde_json::to_value(&hits).unwrap();
    assert_eq!(json[0]["key"], serde_json::json!(b"k".to_vec()));
    let back: QueryStats = serde_json::from_str(&serde_json::to_string(&stats).unwrap()).unwrap();
    assert_eq!(back, stats);
}
