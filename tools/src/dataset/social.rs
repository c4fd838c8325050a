//! A deterministic generator of social-search-shaped data: posts with clustered vectors and
//! tags whose frequencies span 100 % to 0.01 %, authors with a friend graph, timestamps — the
//! workload of "posts near this embedding, by friends of user 42, in English, not spam".
//!
//! What a post gets (all derived from the seed):
//! - a vector from one of `clusters` low-rank clusters (`synth::ClusterModel`, L2);
//! - Zipfian tags `z<r>` for ranks r = 1..=10,000 with frequency 1/r (z1 = 100 %, z10 = 10 %,
//!   z100 = 1 %, z1000 = 0.1 %, z10000 = 0.01 %), independent of the vector;
//! - cluster-correlated tags: `g10:<c mod 10>`, `g100:<c mod 100>`, `g1000:<c>` for cluster c
//!   (10 %, 1 %, 0.1 %), and `g10000:<c>` on a tenth of cluster c (0.01 %);
//! - anti-correlated tags `anti10`, `anti1`, `anti01`, `anti001` (10 %, 1 %, 0.1 %, 0.01 %)
//!   only on posts *outside* the query clusters (c mod 100 = 0), where the queries come from —
//!   the hard case for post-filtering: nothing near a query matches;
//! - `lang:en` 90 %, `lang:de` 9 %, `lang:fr` 0.9 %, `lang:ja` 0.1 %; `spam` 5 %;
//! - `author:<uid>` (a few power users write much of it) and attribute `ts` (a year, uniform).
//!
//! Users carry `uid` and a `friend-of:X` term per friend X (edge lists are posting lists), so
//! `(apply author uid friend-of:X)` selects the posts by friends of X.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::synth::ClusterModel;

/// Seconds of the first timestamp, and the span (one year).
pub const TS_BASE: i64 = 1_700_000_000;
pub const TS_SPAN: i64 = 365 * 86_400;
/// Zipfian tag ranks.
pub const ZIPF_RANKS: u32 = 10_000;

/// Parameters of a generated set (all of it is a function of these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SocialSpec {
    pub posts: usize,
    pub dim: usize,
    pub clusters: usize,
    pub users: usize,
    pub queries: usize,
    pub seed: u64,
}

impl SocialSpec {
    /// The benchmark default at `posts` (1,000 clusters; a user per 50 posts).
    pub fn new(posts: usize, dim: usize, queries: usize, seed: u64) -> SocialSpec {
        SocialSpec {
            posts,
            dim,
            clusters: 1000.min(posts.max(1)),
            users: (posts / 50).max(10),
            queries,
            seed,
        }
    }
}

/// One post's metadata (its vector is row `i` of [`Social::vectors`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Post {
    pub cluster: u32,
    pub author: u32,
    pub ts: i64,
    pub terms: Vec<String>,
}

/// A generated set.
#[derive(Debug)]
pub struct Social {
    pub spec: SocialSpec,
    /// Row-major `posts × dim`.
    pub vectors: Vec<f32>,
    pub posts: Vec<Post>,
    /// `friends[u]`: the users whose `friend-of:` list names u's friends, i.e. user u's
    /// document carries `friend-of:X` for every X in `friends[u]`.
    pub friends: Vec<Vec<u32>>,
    /// Row-major `queries × dim`, drawn from the query clusters.
    pub queries: Vec<f32>,
}

/// Whether cluster `c` is one the queries come from.
pub fn is_query_cluster(c: u32) -> bool {
    c.is_multiple_of(100)
}

impl Social {
    pub fn generate(spec: SocialSpec) -> Social {
        let model = ClusterModel::new(spec.dim, spec.clusters, spec.seed ^ 0x50C1A1);
        let (vectors, labels) = model.sample_labeled(spec.posts, spec.seed, None);
        let query_clusters: Vec<usize> = (0..spec.clusters)
            .filter(|c| is_query_cluster(*c as u32))
            .collect();
        let (queries, _) =
            model.sample_labeled(spec.queries, spec.seed ^ 0xD1CE, Some(&query_clusters));
        let outside = labels
            .iter()
            .filter(|c| !is_query_cluster(**c))
            .count()
            .max(1) as f64;
        let anti_scale = spec.posts as f64 / outside;
        let mut rng = StdRng::seed_from_u64(spec.seed ^ 0x7A65);
        let users = spec.users.max(1);
        let mut posts: Vec<Post> = labels
            .iter()
            .map(|&c| {
                let mut terms = vec![
                    format!("g10:{}", c % 10),
                    format!("g100:{}", c % 100),
                    format!("g1000:{c}"),
                ];
                if rng.gen_bool(0.1) {
                    terms.push(format!("g10000:{c}"));
                }
                if !is_query_cluster(c) {
                    for (name, f) in [
                        ("anti10", 0.1),
                        ("anti1", 0.01),
                        ("anti01", 0.001),
                        ("anti001", 0.0001),
                    ] {
                        if rng.gen_bool((f * anti_scale).min(1.0)) {
                            terms.push(name.to_string());
                        }
                    }
                }
                let l: f64 = rng.gen();
                terms.push(
                    match l {
                        x if x < 0.9 => "lang:en",
                        x if x < 0.99 => "lang:de",
                        x if x < 0.999 => "lang:fr",
                        _ => "lang:ja",
                    }
                    .to_string(),
                );
                if rng.gen_bool(0.05) {
                    terms.push("spam".into());
                }
                // Power users: the cube of a uniform puts much of the posting on few authors.
                let u: f64 = rng.gen();
                let author = ((u * u * u) * users as f64) as u32;
                terms.push(format!("author:{author}"));
                Post {
                    cluster: c,
                    author,
                    ts: TS_BASE + rng.gen_range(0..TS_SPAN),
                    terms,
                }
            })
            .collect();
        // Zipfian tags, rank by rank: frequent ones by a coin per post, rare ones by picking
        // n/r posts (a repeat pick is dropped, so a rare tag lands a little under 1/r).
        let n = posts.len();
        for r in 1..=ZIPF_RANKS {
            let tag = format!("z{r}");
            if r <= 20 {
                let p = 1.0 / f64::from(r);
                for post in &mut posts {
                    if rng.gen_bool(p) {
                        post.terms.push(tag.clone());
                    }
                }
            } else {
                let picks = (n as f64 / f64::from(r)).round() as usize;
                for _ in 0..picks {
                    let i = rng.gen_range(0..n.max(1));
                    if let Some(post) = posts.get_mut(i) {
                        if post.terms.last() != Some(&tag) {
                            post.terms.push(tag.clone());
                        }
                    }
                }
            }
        }
        // Friend lists: 3 + a skewed number up to 60 per user.
        let friends = (0..users)
            .map(|_| {
                let u: f64 = rng.gen();
                let k = 3 + (u.powi(4) * 57.0) as usize;
                let mut f: Vec<u32> = (0..k).map(|_| rng.gen_range(0..users as u32)).collect();
                f.sort_unstable();
                f.dedup();
                f
            })
            .collect();
        Social {
            spec,
            vectors,
            posts,
            friends,
            queries,
        }
    }

    pub fn vector(&self, i: usize) -> &[f32] {
        let d = self.spec.dim;
        self.vectors.get(i * d..(i + 1) * d).unwrap_or_default()
    }

    pub fn query(&self, i: usize) -> &[f32] {
        let d = self.spec.dim;
        self.queries.get(i * d..(i + 1) * d).unwrap_or_default()
    }

    /// Users whose document carries `friend-of:x` (the friends of x).
    pub fn friends_of(&self, x: u32) -> Vec<u32> {
        (0..self.friends.len() as u32)
            .filter(|u| {
                self.friends
                    .get(*u as usize)
                    .is_some_and(|f| f.binary_search(&x).is_ok())
            })
            .collect()
    }
}
