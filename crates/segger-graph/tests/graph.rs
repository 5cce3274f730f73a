use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use segger_graph::csr::Csr;
use segger_graph::knn::{
    brute_force, knn_bipartite, knn_bipartite_rows, knn_same, knn_same_rows, KnnParams,
    NO_NEIGHBOUR,
};
use segger_graph::negative::sample_labels;
use segger_graph::*;

fn random_graph(seed: u64, n_tx: usize, n_bd: usize) -> HeteroGraph {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pos: Vec<f32> = (0..n_tx * 2)
        .map(|_| rng.random_range(0.0..100.0))
        .collect();
    let bd_pos: Vec<f32> = (0..n_bd * 2)
        .map(|_| rng.random_range(0.0..100.0))
        .collect();
    let tt = knn_same(&pos, 2, KnnParams::new(3, 20.0)).unwrap();
    let tb = knn_bipartite(&pos, &bd_pos, 2, KnnParams::new(2, 50.0)).unwrap();
    let mut edges = BTreeMap::new();
    edges.insert(
        EdgeType::parse(NEIGHBORS_TX).unwrap(),
        EdgeStore::new(tt.src, tt.dst),
    );
    edges.insert(
        EdgeType::parse(NEIGHBORS_BD).unwrap(),
        EdgeStore::new(tb.src, tb.dst),
    );
    HeteroGraph {
        tx: NodeStore {
            x: NodeFeatures::Tokens((0..n_tx).map(|_| rng.random_range(0..50)).collect()),
            pos,
            pos_dim: 2,
            ids: NodeIds::Int((0..n_tx as i64).collect()),
        },
        bd: NodeStore {
            x: NodeFeatures::Dense {
                values: (0..n_bd * 4).map(|_| rng.random()).collect(),
                width: 4,
            },
            pos: bd_pos,
            pos_dim: 2,
            ids: NodeIds::Str((0..n_bd).map(|i| format!("cell{i}")).collect()),
        },
        edges,
    }
}

/// Mean of the sources' values over each destination's incoming edges (0 for none).
fn mean_of_neighbours(values: &[f32], src: &[i64], dst: &[i64], n_dst: usize) -> Vec<f32> {
    let mut sum = vec![0f32; n_dst];
    let mut cnt = vec![0f32; n_dst];
    for (&s, &d) in src.iter().zip(dst) {
        sum[d as usize] += values[s as usize];
        cnt[d as usize] += 1.0;
    }
    sum.iter()
        .zip(&cnt)
        .map(|(s, c)| if *c > 0.0 { s / c } else { 0.0 })
        .collect()
}

#[test]
fn validation_accepts_good_graph_and_names_problems() {
    let g = random_graph(1, 200, 10);
    g.validate(Some(50)).unwrap();

    let err = g.validate(Some(10)).unwrap_err();
    assert!(
        matches!(err, GraphError::TokenOutOfVocab { vocab: 10, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("tx.x"));

    let mut bad = g.clone();
    bad.edges
        .get_mut(&EdgeType::parse(NEIGHBORS_BD).unwrap())
        .unwrap()
        .dst[5] = 10;
    let err = bad.validate(None).unwrap_err();
    assert!(
        err.to_string().contains("tx__neighbors__bd.edge_index"),
        "{err}"
    );
    assert!(matches!(
        err,
        GraphError::IndexOutOfRange {
            index: 10,
            count: 10,
            position: 5,
            ..
        }
    ));

    let mut bad = g.clone();
    bad.tx.pos[7] = f32::NAN;
    let err = bad.validate(None).unwrap_err();
    assert!(
        matches!(
            err,
            GraphError::NonFinite {
                row: 3,
                column: 1,
                ..
            }
        ),
        "{err}"
    );

    let mut bad = g.clone();
    bad.tx.ids = NodeIds::Int(vec![1, 2]);
    assert!(matches!(
        bad.validate(None).unwrap_err(),
        GraphError::LengthMismatch {
            expected: 200,
            actual: 2,
            ..
        }
    ));

    let mut bad = g.clone();
    let e = bad
        .edges
        .get_mut(&EdgeType::parse(NEIGHBORS_TX).unwrap())
        .unwrap();
    e.dst.pop();
    assert!(bad
        .validate(None)
        .unwrap_err()
        .to_string()
        .contains("tx__neighbors__tx.edge_index"));

    let mut bad = g;
    let labels = sample_labels(&[0, 1], &[0, 1], 10, 2.0, 0);
    let mut es = EdgeStore::new(vec![0, 1], vec![0, 1]);
    es.labels = Some(LabelStore {
        label: labels.label.iter().map(|l| l * 2.0).collect(),
        ..labels
    });
    bad.edges.insert(EdgeType::parse(BELONGS).unwrap(), es);
    let err = bad.validate(None).unwrap_err();
    assert!(
        matches!(
            err,
            GraphError::BadLabel {
                value: 2.0,
                position: 0,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("tx__belongs__bd.edge_label"));
}

#[test]
fn edge_type_keys_round_trip() {
    let et = EdgeType::parse("tx__belongs__bd").unwrap();
    assert_eq!(et.src, NodeType::Tx);
    assert_eq!(et.rel, "belongs");
    assert_eq!(et.dst, NodeType::Bd);
    assert_eq!(et.key(), "tx__belongs__bd");
    assert!(EdgeType::parse("tx__bd").is_none());
    assert!(EdgeType::parse("tx__a__xx").is_none());
    assert!(EdgeType::parse("tx__a__bd__c").is_none());
}

#[test]
fn batch_of_four_matches_tiles_processed_separately() {
    let graphs: Vec<HeteroGraph> = (0..4)
        .map(|s| random_graph(10 + s, 150 + 37 * s as usize, 5 + s as usize))
        .collect();
    let refs: Vec<&HeteroGraph> = graphs.iter().collect();
    let batch = Batch::collate(&refs).unwrap();
    batch.graph.validate(None).unwrap();
    assert_eq!(batch.num_tiles(), 4);
    assert_eq!(
        batch.graph.tx.num_nodes(),
        graphs.iter().map(|g| g.tx.num_nodes()).sum::<usize>()
    );

    // Per-node signal: the x coordinate of each transcript.
    let signal = |g: &HeteroGraph| -> Vec<f32> { g.tx.pos.chunks(2).map(|p| p[0]).collect() };
    for key in [NEIGHBORS_TX, NEIGHBORS_BD] {
        let et = EdgeType::parse(key).unwrap();
        let be = batch.graph.edge(key).unwrap();
        let batched = mean_of_neighbours(
            &signal(&batch.graph),
            &be.src,
            &be.dst,
            batch.graph.num_nodes(et.dst),
        );
        let mut nonzero = 0;
        for (gi, v) in batched.iter().enumerate() {
            let o = batch.origin(et.dst, gi).unwrap();
            let g = &graphs[o.tile];
            let e = g.edge(key).unwrap();
            let single = mean_of_neighbours(&signal(g), &e.src, &e.dst, g.num_nodes(et.dst));
            assert_eq!(*v, single[o.local], "{key} node {gi}");
            nonzero += usize::from(*v != 0.0);
        }
        assert!(nonzero > 10);
    }
    // Ids and the tile vector follow the tiles.
    let o = batch.origin(NodeType::Bd, 6).unwrap();
    assert_eq!(o, NodeOrigin { tile: 1, local: 1 });
    if let NodeIds::Str(ids) = &batch.graph.bd.ids {
        assert_eq!(ids[6], "cell1");
    } else {
        panic!("bd ids lost");
    }
    let tv = batch.tile_vector(NodeType::Tx);
    assert_eq!(tv.len(), batch.graph.tx.num_nodes());
    assert_eq!(tv[150], 1);
    assert!(batch.origin(NodeType::Tx, tv.len()).is_none());
}

#[test]
fn batch_rejects_mixed_layouts() {
    let a = random_graph(1, 20, 3);
    let mut b = random_graph(2, 20, 3);
    b.tx.x = NodeFeatures::Dense {
        values: vec![0.0; 40],
        width: 2,
    };
    assert!(Batch::collate(&[&a, &b])
        .unwrap_err()
        .to_string()
        .contains("tx.x"));
    assert!(Batch::collate(&[]).is_err());
}

fn random_points(seed: u64, n: usize, dim: usize, scale: f32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n * dim).map(|_| rng.random_range(0.0..scale)).collect()
}

/// Per-query neighbour lists of an edge list grouped by query.
fn per_query(e: &segger_graph::knn::EdgeList, n: usize) -> Vec<Vec<i64>> {
    let mut out = vec![Vec::new(); n];
    for (s, d) in e.src.iter().zip(&e.dst) {
        out[*s as usize].push(*d);
    }
    out
}

/// The kd-tree result equals the brute-force one up to the order of exactly tied distances:
/// per query, the same number of neighbours at the same (bitwise) distances, no duplicates.
fn assert_equivalent(
    fast: &segger_graph::knn::EdgeList,
    slow: &segger_graph::knn::EdgeList,
    q: &[f32],
    d: &[f32],
    dim: usize,
    what: &str,
) {
    let n = q.len() / dim;
    let dist = |qi: usize, di: i64| -> u32 {
        let di = di as usize;
        (0..dim)
            .map(|c| (q[qi * dim + c] - d[di * dim + c]) * (q[qi * dim + c] - d[di * dim + c]))
            .sum::<f32>()
            .to_bits()
    };
    let (fa, sl) = (per_query(fast, n), per_query(slow, n));
    let mut ties = 0;
    for qi in 0..n {
        let mut a: Vec<u32> = fa[qi].iter().map(|&x| dist(qi, x)).collect();
        let b: Vec<u32> = sl[qi].iter().map(|&x| dist(qi, x)).collect();
        a.sort_unstable_by(|x, y| f32::from_bits(*x).total_cmp(&f32::from_bits(*y)));
        assert_eq!(a, b, "{what}: query {qi}: {:?} vs {:?}", fa[qi], sl[qi]);
        let mut uniq = fa[qi].clone();
        uniq.sort_unstable();
        uniq.dedup();
        assert_eq!(
            uniq.len(),
            fa[qi].len(),
            "{what}: duplicate neighbour for query {qi}"
        );
        ties += usize::from(fa[qi] != sl[qi]);
    }
    assert!(
        ties * 1000 < n.max(1000),
        "{what}: {ties} queries differ by ties"
    );
}

#[test]
fn knn_matches_brute_force_on_10k_points() {
    for dim in [2usize, 3] {
        let pts = random_points(dim as u64, 10_000, dim, 100.0);
        let targets = random_points(99, 300, dim, 100.0);
        for k in [1usize, 3, 10] {
            for radius in [0.5f32, 2.0, 5.0, 1000.0] {
                let p = KnnParams::new(k, radius);
                for (keep_self, what) in [(false, "same"), (true, "keep_self")] {
                    let p = KnnParams { keep_self, ..p };
                    let fast = knn_same(&pts, dim, p).unwrap();
                    if radius <= 0.5 && !keep_self {
                        assert!(fast.src.len() < 10_000 * k, "radius must cut some edges");
                    }
                    let slow = brute_force(&pts, &pts, dim, p, true);
                    assert_equivalent(
                        &fast,
                        &slow,
                        &pts,
                        &pts,
                        dim,
                        &format!("{what} dim={dim} k={k} r={radius}"),
                    );
                }
                if radius >= 5.0 {
                    let fast = knn_bipartite(&pts, &targets, dim, p).unwrap();
                    let slow = brute_force(&pts, &targets, dim, p, false);
                    assert_equivalent(
                        &fast,
                        &slow,
                        &pts,
                        &targets,
                        dim,
                        &format!("bipartite dim={dim} k={k} r={radius}"),
                    );
                }
            }
        }
    }
}

#[test]
fn knn_rows_match_brute_force_on_10k_points() {
    for dim in [2usize, 3] {
        let pts = random_points(10 + dim as u64, 10_000, dim, 100.0);
        for k in [1usize, 10] {
            // 0.5 and 2: the grid engine (some rows not full); 1000 and MAX: the kd-tree
            for radius in [0.5f32, 2.0, 1000.0, f32::MAX] {
                for keep_self in [false, true] {
                    let p = KnnParams {
                        keep_self,
                        ..KnnParams::new(k, radius)
                    };
                    let what = format!("rows keep_self={keep_self} dim={dim} k={k} r={radius}");
                    let rows = knn_same_rows(&pts, dim, p).unwrap();
                    assert_eq!((rows.len(), rows.k), (10_000, k), "{what}");
                    let full = (0..rows.len()).filter(|&i| rows.row(i).len() == k).count();
                    if radius <= 0.5 && !keep_self {
                        assert!(full < 10_000, "{what}: the radius must empty some slots");
                        assert!(rows.index.contains(&NO_NEIGHBOUR), "{what}");
                    } else if radius >= 1000.0 {
                        assert_eq!(full, 10_000, "{what}: every row full");
                    }
                    let slow = brute_force(&pts, &pts, dim, p, true);
                    assert_equivalent(&rows.to_edges(), &slow, &pts, &pts, dim, &what);
                }
            }
        }
    }
    let empty = knn_same_rows(&[], 2, KnnParams::new(3, 1.0)).unwrap();
    assert!(empty.is_empty());
    assert!(knn_same_rows(&[0.0, f32::NAN], 2, KnnParams::new(1, 1.0)).is_err());
}

#[test]
fn bipartite_rows_match_brute_force() {
    for dim in [2usize, 3] {
        let data = random_points(20 + dim as u64, 5_000, dim, 100.0);
        // queries: some of the data points themselves (they find themselves) and new points
        let mut queries: Vec<f32> = data[..300 * dim].to_vec();
        queries.extend(random_points(30 + dim as u64, 700, dim, 100.0));
        for k in [1usize, 21] {
            for radius in [0.5f32, 3.0, f32::MAX] {
                let p = KnnParams::new(k, radius);
                let what = format!("bipartite rows dim={dim} k={k} r={radius}");
                let rows = knn_bipartite_rows(&queries, &data, dim, p).unwrap();
                assert_eq!((rows.len(), rows.k), (1_000, k), "{what}");
                // a query that is a data point is its own nearest
                assert!((0..300).all(|i| rows.row(i)[0] == i as u32), "{what}");
                let slow = brute_force(&queries, &data, dim, p, false);
                assert_equivalent(&rows.to_edges(), &slow, &queries, &data, dim, &what);
            }
        }
    }
    assert!(knn_bipartite_rows(&[0.0, f32::NAN], &[0.0, 0.0], 2, KnnParams::new(1, 1.0)).is_err());
}

#[test]
fn knn_edges_respect_k_radius_and_self() {
    let pts = vec![0.0, 0.0, 1.0, 0.0, 3.0, 0.0, 10.0, 0.0];
    let e = knn_same(&pts, 2, KnnParams::new(2, 2.5)).unwrap();
    assert_eq!(e.src, vec![0, 1, 1, 2]);
    assert_eq!(e.dst, vec![1, 0, 2, 1]);
    let e = knn_same(
        &pts,
        2,
        KnnParams {
            keep_self: true,
            ..KnnParams::new(2, 2.5)
        },
    )
    .unwrap();
    assert_eq!(e.src, vec![0, 0, 1, 1, 2, 2, 3]);
    assert_eq!(e.dst, vec![0, 1, 1, 0, 2, 1, 3]);
    assert!(knn_same(&[0.0, f32::INFINITY], 2, KnnParams::new(1, 1.0)).is_err());
    assert!(knn_same(&[0.0; 4], 4, KnnParams::new(1, 1.0)).is_err());
    assert_eq!(
        knn_bipartite(&pts, &[], 2, KnnParams::new(1, 1.0))
            .unwrap()
            .src
            .len(),
        0
    );
}

#[test]
fn negative_sampling_is_seeded_restricted_and_disjoint_from_positives() {
    let pos_src = vec![0, 1, 2, 5, 5];
    let pos_dst = vec![0, 0, 1, 2, 3];
    let a = sample_labels(&pos_src, &pos_dst, 6, 2.0, 7);
    let b = sample_labels(&pos_src, &pos_dst, 6, 2.0, 7);
    let c = sample_labels(&pos_src, &pos_dst, 6, 2.0, 8);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.len(), 5 + 10);
    assert_eq!(a.positives(), 5);
    assert_eq!(&a.src[..5], &pos_src[..]);
    let mut seen = std::collections::HashSet::new();
    for i in 5..a.len() {
        assert_eq!(a.label[i], 0.0);
        assert!(
            [0, 1, 2, 5].contains(&a.src[i]),
            "negative for a transcript without positive"
        );
        assert!(
            !(0..5).any(|p| pos_src[p] == a.src[i] && pos_dst[p] == a.dst[i]),
            "negative is a positive"
        );
        assert!(seen.insert((a.src[i], a.dst[i])), "duplicate negative");
    }
    // Capped by the number of available pairs: 4 transcripts x 6 boundaries - 5 positives.
    assert_eq!(sample_labels(&pos_src, &pos_dst, 6, 100.0, 1).len(), 5 + 19);
}

#[test]
fn csr_groups_edges_by_destination_stably() {
    let src = vec![0, 1, 2, 3, 4];
    let dst = vec![2, 0, 2, 0, 1];
    let c = Csr::from_edges(&src, &dst, 4);
    assert_eq!(c.row_ptr, vec![0, 2, 3, 5, 5]);
    assert_eq!(c.src, vec![1, 3, 4, 0, 2]);
    assert_eq!(c.edge_id, vec![1, 3, 4, 0, 2]);
    assert_eq!(c.dst_of_sorted(), vec![0, 0, 1, 2, 2]);
}
