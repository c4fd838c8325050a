use std::path::Path;

use super::*;

fn rows(n: usize, d: usize) -> Vec<Vec<f32>> {
    (0..n)
        .map(|i| (0..d).map(|j| (i * 10 + j) as f32 * 0.5 - 3.0).collect())
        .collect()
}

#[test]
fn fvecs_npy_and_ivecs_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let data = rows(37, 5);
    let f = tmp.path().join("a.fvecs");
    write_fvecs(&f, &data).unwrap();
    let vf = VectorFile::open(&f).unwrap();
    assert_eq!((vf.len(), vf.dim()), (37, 5));
    assert_eq!(vf.read_all().unwrap(), data);

    let n = tmp.path().join("a.npy");
    write_npy_f32(&n, &data).unwrap();
    assert_eq!(VectorFile::open(&n).unwrap().read_all().unwrap(), data);

    let gt: Vec<Vec<u32>> = vec![vec![1, 2, 3], vec![], vec![9]];
    let i = tmp.path().join("gt.ivecs");
    write_ivecs(&i, &gt).unwrap();
    assert_eq!(read_ivecs(&i).unwrap(), gt);
}

/// An `.npy` with a hand-written header (as NumPy writes it) and the given data bytes.
fn write_npy(path: &Path, descr: &str, fortran: bool, shape: (usize, usize), data: &[u8]) {
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': ({}, {}), }}",
        if fortran { "True" } else { "False" },
        shape.0,
        shape.1
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(data);
    std::fs::write(path, b).unwrap();
}

#[test]
fn npy_of_float64_float16_and_fortran_order_is_read_as_f32_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let data = rows(7, 3); // values exact in f16 and f64
    let p = tmp.path().join("f8.npy");
    let bytes: Vec<u8> = data
        .iter()
        .flatten()
        .flat_map(|&x| f64::from(x).to_le_bytes())
        .collect();
    write_npy(&p, "<f8", false, (7, 3), &bytes);
    assert_eq!(VectorFile::open(&p).unwrap().read_all().unwrap(), data);

    let p = tmp.path().join("f2.npy");
    let bytes: Vec<u8> = data
        .iter()
        .flatten()
        .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
        .collect();
    write_npy(&p, "<f2", false, (7, 3), &bytes);
    assert_eq!(VectorFile::open(&p).unwrap().read_all().unwrap(), data);

    // Fortran order: column by column.
    let p = tmp.path().join("fortran.npy");
    let bytes: Vec<u8> = (0..3)
        .flat_map(|j| data.iter().map(move |r| r[j]))
        .flat_map(f32::to_le_bytes)
        .collect();
    write_npy(&p, "<f4", true, (7, 3), &bytes);
    let vf = VectorFile::open(&p).unwrap();
    assert_eq!((vf.len(), vf.dim()), (7, 3));
    assert_eq!(vf.read_all().unwrap(), data);

    // Refused with a reason: big-endian, integers, 3-D, a short file.
    for (descr, shape, len, want) in [
        (">f4", (7, 3), 84, "not supported"),
        ("<i4", (7, 3), 84, "not supported"),
        ("<f4", (7, 3), 80, "needs"),
    ] {
        let p = tmp.path().join("bad.npy");
        write_npy(&p, descr, false, shape, &vec![0u8; len]);
        let e = VectorFile::open(&p).unwrap_err().to_string();
        assert!(e.contains(want), "{descr}: {e}");
    }
}

#[test]
fn bvecs_are_read_as_floats() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("b.bvecs");
    let mut bytes = Vec::new();
    for r in [[1u8, 2, 3], [250, 0, 7]] {
        bytes.extend_from_slice(&3i32.to_le_bytes());
        bytes.extend_from_slice(&r);
    }
    std::fs::write(&p, bytes).unwrap();
    let vf = VectorFile::open(&p).unwrap();
    assert_eq!(
        vf.read_all().unwrap(),
        vec![vec![1.0, 2.0, 3.0], vec![250.0, 0.0, 7.0]]
    );
}

#[test]
fn malformed_files_are_errors_with_the_path() {
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("bad.fvecs");
    write_fvecs(&f, &rows(3, 4)).unwrap();
    let mut b = std::fs::read(&f).unwrap();
    b.truncate(b.len() - 2);
    std::fs::write(&f, &b).unwrap();
    let e = VectorFile::open(&f).unwrap_err().to_string();
    assert!(e.contains("bad.fvecs") && e.contains("whole number"), "{e}");

    let mut b = std::fs::read(&f).unwrap();
    b.truncate(2 * 20);
    b[20] = 9; // row 1 claims another dimension
    std::fs::write(&f, &b).unwrap();
    assert!(VectorFile::open(&f)
        .unwrap_err()
        .to_string()
        .contains("row 1"));

    let n = tmp.path().join("bad.npy");
    write_npy_f32(&n, &rows(2, 3)).unwrap();
    let mut b = std::fs::read(&n).unwrap();
    b.pop();
    std::fs::write(&n, &b).unwrap();
    assert!(VectorFile::open(&n).is_err());
    assert!(VectorFile::open(Path::new("x.csv")).is_err());
    assert!(VectorFile::open(&tmp.path().join("missing.fvecs")).is_err());

    let t = tmp.path().join("tags.txt");
    std::fs::write(&t, "a b\nc (d\n").unwrap();
    let e = read_tags(&t).unwrap_err().to_string();
    assert!(e.contains("line 2"), "{e}");
}

#[test]
fn real_data_loads_when_present() {
    // ../shared/data is read at run time and never committed; skip where it is absent.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data");
    if !dir.join("base.fvecs").exists() {
        eprintln!("skipping: {} not present", dir.display());
        return;
    }
    let d = RealData::open(&dir).unwrap();
    assert_eq!((d.base.len(), d.base.dim()), (28_677, 384));
    assert_eq!(d.queries.len(), 301);
    let mut v = Vec::new();
    d.base.read(0, &mut v).unwrap();
    let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!(
        (norm - 1.0).abs() < 1e-3,
        "vectors are unit length, got {norm}"
    );
    assert!(d
        .base_tags
        .iter()
        .all(|t| t.iter().any(|x| x.starts_with("src:"))));
}

#[test]
fn social_generator_is_deterministic_and_shaped_as_documented() {
    use super::social::{is_query_cluster, Social, SocialSpec};
    let spec = SocialSpec::new(20_000, 32, 20, 5);
    let a = Social::generate(spec);
    let b = Social::generate(spec);
    assert_eq!(a.vectors, b.vectors);
    assert_eq!(a.posts, b.posts);
    assert_eq!(a.friends, b.friends);
    assert_eq!(a.queries, b.queries);
    let c = Social::generate(SocialSpec { seed: 6, ..spec });
    assert_ne!(a.vectors, c.vectors);

    let n = a.posts.len() as f64;
    let freq = |t: &str| {
        a.posts
            .iter()
            .filter(|p| p.terms.iter().any(|x| x == t))
            .count() as f64
            / n
    };
    // Zipfian tags: frequency 1/r (within sampling noise).
    assert_eq!(freq("z1"), 1.0);
    assert!((freq("z10") - 0.1).abs() < 0.01, "{}", freq("z10"));
    assert!((freq("z100") - 0.01).abs() < 0.003, "{}", freq("z100"));
    // Correlated tags follow the cluster; anti-correlated ones avoid the query clusters.
    for p in &a.posts {
        assert!(p.terms.contains(&format!("g100:{}", p.cluster % 100)));
        if is_query_cluster(p.cluster) {
            assert!(!p.terms.iter().any(|t| t.starts_with("anti")));
        }
        assert!(p.terms.contains(&format!("author:{}", p.author)));
    }
    assert!((freq("anti10") - 0.1).abs() < 0.01, "{}", freq("anti10"));
    assert!((freq("lang:en") - 0.9).abs() < 0.01);
    // Queries come from the query clusters: (nearly) every query's nearest post is in one.
    let mut in_query_cluster = 0;
    for qi in 0..spec.queries {
        let q = a.query(qi);
        let nearest = (0..a.posts.len())
            .min_by(|&x, &y| {
                let dx = strata::distance(strata::Metric::L2, q, a.vector(x));
                let dy = strata::distance(strata::Metric::L2, q, a.vector(y));
                dx.total_cmp(&dy)
            })
            .unwrap();
        in_query_cluster += usize::from(is_query_cluster(a.posts[nearest].cluster));
    }
    assert!(
        in_query_cluster * 10 >= spec.queries * 9,
        "{in_query_cluster}"
    );
    // friends_of(x) = the users whose lists name x.
    let x = a.friends[0][0];
    for u in a.friends_of(x) {
        assert!(a.friends[u as usize].contains(&x));
    }
}
