//! `create_dataset` on the real Xenium lung preview and on small synthetic inputs.

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use segger_data::create::{build_tile, create_dataset, CreateOptions, GraphParams, SampleIndex};
use segger_data::raw::{self, Platform, RawOptions};
use segger_data::tiling::{plan, Rect, TileMode};
use segger_data::{DatasetInfo, Split, TileDataset};
use segger_graph::knn::{brute_force, KnnParams};
use segger_graph::{NodeFeatures, NodeIds, BELONGS, NEIGHBORS_BD, NEIGHBORS_TX};

fn lung() -> PathBuf {
    common::test_data("xenium_lung_10k")
}

fn quiet(_: segger_data::create::Progress) {}

#[test]
fn lung_10k_builds_all_three_splits() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("ds");
    let opts = CreateOptions::new(lung(), out.clone(), RawOptions::new(Platform::Xenium));
    let s = create_dataset(&opts, &quiet).unwrap();
    assert_eq!(s.load.rows, 10_000);
    assert!(
        s.tiles.train > 0 && s.tiles.val > 0 && s.tiles.test > 0,
        "{:?}",
        s.tiles
    );
    // Every dropped row is accounted for.
    let dropped: u64 = s.load.dropped_prefix.values().sum::<u64>() + s.load.dropped_qv;
    assert_eq!(s.load.kept + dropped, 10_000);
    let info = DatasetInfo::read(&out).unwrap();
    assert_eq!(info.tiles, s.tiles);
    let mut sorted = info.vocab.clone();
    sorted.sort();
    assert_eq!(sorted, info.vocab);
    assert!(!info
        .vocab
        .iter()
        .any(|g| g.starts_with("BLANK_") || g.starts_with("NegControl")));

    // Every kept transcript lies in exactly one tile core; tiles are valid.
    let mut core_ids = HashSet::new();
    let mut n_core = 0u64;
    for split in Split::ALL {
        let ds = TileDataset::open(&out.join(split.dir_name()), Some(info.vocab.len())).unwrap();
        for i in 0..ds.len() {
            let t = ds.get(i).unwrap();
            let b = t.bounds.unwrap();
            let r = Rect {
                x0: b.x,
                y0: b.y,
                x1: b.x + b.width,
                y1: b.y + b.height,
            };
            let g = &t.graph;
            assert_eq!(g.tx.pos_dim, 3);
            let NodeIds::Int(ids) = &g.tx.ids else {
                panic!("tx ids")
            };
            for (k, p) in g.tx.pos.chunks_exact(3).enumerate() {
                if r.contains(p[0] as f64, p[1] as f64) {
                    n_core += 1;
                    assert!(
                        core_ids.insert(ids[k]),
                        "transcript {} in two cores",
                        ids[k]
                    );
                }
            }
            if split != Split::Test {
                assert!(g.num_positive() > 0);
            }
            // No self-edges.
            let tt = &g.edges[&segger_graph::EdgeType::parse(NEIGHBORS_TX).unwrap()];
            assert!(tt.src.iter().zip(&tt.dst).all(|(a, b)| a != b));
        }
    }
    assert_eq!(n_core, s.load.kept);

    // Same seed, same dataset; an existing output needs --overwrite.
    let err = create_dataset(&opts, &quiet).unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
    let mut again = opts.clone();
    again.overwrite = true;
    let s2 = create_dataset(&again, &quiet).unwrap();
    assert_eq!(s2.tiles, s.tiles);
    assert_eq!(s2.negatives, s.negatives);
    // No temporary directories are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "ds")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn lung_sample() -> raw::Sample {
    raw::load(&lung(), &RawOptions::new(Platform::Xenium)).unwrap()
}

/// The tile with the most positives, built in memory.
fn busiest_tile(s: &raw::Sample) -> (segger_data::Tile, Vec<i64>) {
    let index = SampleIndex::new(s);
    let p = plan(
        &s.tx.x,
        &s.tx.y,
        TileMode::Grid {
            width: 50.0,
            height: 50.0,
        },
    )
    .unwrap();
    let mut best = None;
    for t in &p.tiles {
        let (tile, stats) = build_tile(s, &index, &t.rect, &GraphParams::default(), 1)
            .unwrap()
            .unwrap();
        if best.as_ref().is_none_or(|(_, n)| stats.positives > *n) {
            best = Some((tile, stats.positives));
        }
    }
    let (tile, _) = best.unwrap();
    let NodeIds::Int(ids) = tile.graph.tx.ids.clone() else {
        panic!()
    };
    (tile, ids)
}

#[test]
fn positives_are_transcripts_inside_their_polygon() {
    let mut opts = RawOptions::new(Platform::Xenium);
    // Decide positives geometrically, then check them against the polygons read
    // independently of the sample's boundary table.
    opts.columns.nuclear = Some("none".into());
    let s = raw::load(&lung(), &opts).unwrap();
    assert!(s.report.nuclear_from_polygons);
    let (tile, _) = busiest_tile(&s);
    let g = &tile.graph;
    let NodeIds::Str(bd_ids) = &g.bd.ids else {
        panic!()
    };
    let rings = read_rings(&lung().join("nucleus_boundaries.parquet"));
    let belongs = &g.edges[&segger_graph::EdgeType::parse(BELONGS).unwrap()];
    assert!(belongs.src.len() > 50, "{} positives", belongs.src.len());
    for (&t, &b) in belongs.src.iter().zip(&belongs.dst) {
        let p = &g.tx.pos[t as usize * 3..t as usize * 3 + 2];
        let ring = &rings[&bd_ids[b as usize]];
        assert!(
            segger_data::geometry::contains(ring, [p[0] as f64, p[1] as f64]),
            "transcript {t} at {p:?} is not inside {}",
            bd_ids[b as usize]
        );
    }
    // Labels: positives first, then negatives that are not positives.
    let l = belongs.labels.as_ref().unwrap();
    let pos: HashSet<(i64, i64)> = belongs
        .src
        .iter()
        .copied()
        .zip(belongs.dst.iter().copied())
        .collect();
    for i in 0..l.src.len() {
        let pair = (l.src[i], l.dst[i]);
        assert_eq!(l.label[i] == 1.0, i < belongs.src.len());
        assert_eq!(pos.contains(&pair), l.label[i] == 1.0);
    }

    // With the instrument's flag, positives are the flagged transcripts of the tile's nuclei.
    let s = lung_sample();
    let (tile, ids) = busiest_tile(&s);
    let g = &tile.graph;
    let by_id: HashMap<i64, usize> = s.tx.id.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let NodeIds::Str(bd_ids) = &g.bd.ids else {
        panic!()
    };
    let belongs = &g.edges[&segger_graph::EdgeType::parse(BELONGS).unwrap()];
    for (&t, &b) in belongs.src.iter().zip(&belongs.dst) {
        let i = by_id[&ids[t as usize]];
        assert!(s.tx.nuclear.as_ref().unwrap()[i]);
        assert_eq!(s.bd.ids[s.tx.cell[i] as usize], bd_ids[b as usize]);
    }
}

/// Reads `cell_id, vertex_x, vertex_y` rows directly with the parquet crate.
fn read_rings(path: &Path) -> HashMap<String, Vec<[f64; 2]>> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Float32Type;
    let f = std::fs::File::open(path).unwrap();
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap();
    let mut out: HashMap<String, Vec<[f64; 2]>> = HashMap::new();
    for b in r {
        let b = b.unwrap();
        let id = b.column_by_name("cell_id").unwrap();
        let id = id.as_string::<i32>();
        let x = b
            .column_by_name("vertex_x")
            .unwrap()
            .as_primitive::<Float32Type>()
            .clone();
        let y = b
            .column_by_name("vertex_y")
            .unwrap()
            .as_primitive::<Float32Type>()
            .clone();
        for i in 0..b.num_rows() {
            out.entry(id.value(i).to_string())
                .or_default()
                .push([x.value(i) as f64, y.value(i) as f64]);
        }
    }
    out
}

#[test]
fn knn_edges_equal_brute_force() {
    let s = lung_sample();
    let (tile, _) = busiest_tile(&s);
    let g = &tile.graph;
    let p = GraphParams::default();
    let tt = &g.edges[&segger_graph::EdgeType::parse(NEIGHBORS_TX).unwrap()];
    let want = brute_force(
        &g.tx.pos,
        &g.tx.pos,
        3,
        KnnParams::new(p.k_tx, p.dist_tx),
        true,
    );
    assert!(!want.src.is_empty());
    assert_eq!((&tt.src, &tt.dst), (&want.src, &want.dst));
    let xy: Vec<f32> =
        g.tx.pos
            .chunks_exact(3)
            .flat_map(|c| [c[0], c[1]])
            .collect();
    let tb = &g.edges[&segger_graph::EdgeType::parse(NEIGHBORS_BD).unwrap()];
    let want = brute_force(&xy, &g.bd.pos, 2, KnnParams::new(p.k_bd, p.dist_bd), false);
    assert!(!want.src.is_empty());
    assert_eq!((&tb.src, &tb.dst), (&want.src, &want.dst));
    // Ties (points on an integer lattice) come out in index order, like the brute force.
    let lattice: Vec<f32> = (0..400)
        .flat_map(|i| [(i % 20) as f32, (i / 20) as f32])
        .collect();
    for k in [1, 3, 8] {
        let e = segger_graph::knn::knn_same(&lattice, 2, KnnParams::new(k, 1.5)).unwrap();
        let b = brute_force(&lattice, &lattice, 2, KnnParams::new(k, 1.5), true);
        assert_eq!((e.src, e.dst), (b.src, b.dst));
    }
}

#[test]
fn boundary_features_are_finite_per_boundary() {
    let s = lung_sample();
    let (tile, _) = busiest_tile(&s);
    let NodeFeatures::Dense { values, width } = &tile.graph.bd.x else {
        panic!()
    };
    assert_eq!(*width, 4);
    assert_eq!(values.len(), tile.graph.bd.num_nodes() * 4);
    for row in values.chunks_exact(4) {
        assert!(row.iter().all(|v| v.is_finite()), "{row:?}");
        assert!(row[0] > 0.0 && row[1] >= 1.0 && row[2] > 0.0 && row[2] <= 1.0 + 1e-6);
    }
}

#[test]
fn balanced_tiling_covers_every_transcript_once() {
    let s = lung_sample();
    let p = plan(
        &s.tx.x,
        &s.tx.y,
        TileMode::Balanced {
            max_transcripts: 500,
        },
    )
    .unwrap();
    assert!(p.tiles.len() >= 17);
    assert!(
        p.tiles.iter().all(|t| t.core <= 500 && t.core >= 200),
        "{:?}",
        p.tiles.iter().map(|t| t.core).collect::<Vec<_>>()
    );
    for i in 0..s.tx.len() {
        let (x, y) = (s.tx.x[i] as f64, s.tx.y[i] as f64);
        let n = p.tiles.iter().filter(|t| t.rect.contains(x, y)).count();
        assert_eq!(n, 1, "transcript {i} at ({x}, {y}) is in {n} cores");
    }
    let total: usize = p.tiles.iter().map(|t| t.core).sum();
    assert_eq!(total, s.tx.len());
    // A grid with absurdly small tiles is refused instead of allocating it.
    let err = plan(
        &s.tx.x,
        &s.tx.y,
        TileMode::Grid {
            width: 1e-4,
            height: 1e-4,
        },
    )
    .unwrap_err();
    assert!(err.contains("use larger tiles"), "{err}");
}

fn files(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn output_does_not_depend_on_the_thread_count() {
    let dir = tempfile::tempdir().unwrap();
    let mut trees = Vec::new();
    for threads in [1, 3] {
        let out = dir.path().join(format!("ds{threads}"));
        let mut opts = CreateOptions::new(lung(), out.clone(), RawOptions::new(Platform::Xenium));
        opts.tiling = TileMode::Balanced {
            max_transcripts: 400,
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| create_dataset(&opts, &quiet)).unwrap();
        let mut f = files(&out);
        // dataset.json records the output-independent settings only; compare it too.
        for (p, b) in &mut f {
            if p.ends_with("dataset.json") {
                let s = String::from_utf8(b.clone()).unwrap();
                *b = s.replace(&format!("ds{threads}"), "ds").into_bytes();
            }
        }
        trees.push(f);
    }
    assert!(trees[0].len() > 20);
    assert_eq!(trees[0].len(), trees[1].len());
    for (a, b) in trees[0].iter().zip(&trees[1]) {
        assert_eq!(a.0, b.0);
        if a.0.extension().is_some_and(|e| e == "safetensors") {
            // The header's metadata keys come out in hash-map order; compare the content.
            let ta = segger_data::tile::parse_tile(&a.0, &a.1, None).unwrap();
            let tb = segger_data::tile::parse_tile(&b.0, &b.1, None).unwrap();
            assert!(ta == tb, "{} differs", a.0.display());
        } else {
            assert!(a.1 == b.1, "{} differs", a.0.display());
        }
    }
}

#[test]
fn tile_metadata_recovers_core_edges_exactly() {
    use segger_data::create::exact_span;
    let mut rng_state = 12345u64;
    let mut next = || {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        (rng_state % 2_000_000) as f64 / 997.0 + 500.0
    };
    // Edges of a sample in the positive quadrant (as instruments write them).
    for _ in 0..10_000 {
        let a = next();
        let b = a + next() / 10.0;
        assert_eq!(a + exact_span(a, b), b, "{a} {b}");
    }
    // Grid edges.
    for i in 0..1000 {
        let (a, b) = (2160.0 + i as f64 * 33.3, 2160.0 + (i + 1) as f64 * 33.3);
        assert_eq!(a + exact_span(a, b), b);
    }
}

#[test]
fn competing_negatives_are_the_nearest_other_nuclei() {
    let s = lung_sample();
    let (tile, _) = busiest_tile(&s);
    let g = &tile.graph;
    let p = GraphParams::default();
    assert_eq!(p.negatives, segger_data::create::Negatives::Competing);
    let xy: Vec<f32> =
        g.tx.pos
            .chunks_exact(3)
            .flat_map(|c| [c[0], c[1]])
            .collect();
    let near = brute_force(
        &xy,
        &g.bd.pos,
        2,
        KnnParams::new(segger_data::create::COMPETITORS, p.dist_bd),
        false,
    );
    let mut cands: HashMap<i64, Vec<i64>> = HashMap::new();
    for (&t, &b) in near.src.iter().zip(&near.dst) {
        cands.entry(t).or_default().push(b);
    }
    let belongs = &g.edges[&segger_graph::EdgeType::parse(BELONGS).unwrap()];
    let l = belongs.labels.as_ref().unwrap();
    let own: HashMap<i64, i64> = belongs
        .src
        .iter()
        .copied()
        .zip(belongs.dst.iter().copied())
        .collect();
    let mut negatives = 0;
    for i in 0..l.src.len() {
        if l.label[i] == 1.0 {
            continue;
        }
        negatives += 1;
        let (t, b) = (l.src[i], l.dst[i]);
        assert_ne!(own[&t], b, "a transcript's own nucleus is a negative");
        assert!(
            cands[&t].contains(&b),
            "negative {b} of transcript {t} is not among its nearest nuclei {:?}",
            cands[&t]
        );
    }
    // Every positive gets each other candidate (at most the ratio's worth).
    let want: usize = own
        .iter()
        .map(|(t, b)| {
            cands
                .get(t)
                .map_or(0, |c| c.iter().filter(|&c| c != b).count())
                .min(p.neg_sampling_ratio.ceil() as usize)
        })
        .sum();
    assert!(negatives > 0);
    assert_eq!(negatives, want);
}

#[test]
fn a_validation_tile_is_kept_when_none_is_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = CreateOptions::new(
        lung(),
        dir.path().join("ds"),
        RawOptions::new(Platform::Xenium),
    );
    opts.val_prob = 1e-12; // asked for, but no tile draws it
    opts.test_prob = 0.0;
    let s = create_dataset(&opts, &quiet).unwrap();
    assert_eq!(s.tiles.val, 1, "{:?}", s.tiles);
    assert!(s.tiles.train >= 1);
    let info = DatasetInfo::read(&opts.output).unwrap();
    assert_eq!(info.tiles, s.tiles);
    let in_val = std::fs::read_dir(opts.output.join("val_tiles/processed"))
        .unwrap()
        .count();
    assert_eq!(in_val, 1);
    // --val_prob 0: no validation split, as asked.
    opts.val_prob = 0.0;
    opts.output = dir.path().join("ds0");
    let s = create_dataset(&opts, &quiet).unwrap();
    assert_eq!(s.tiles.val, 0);
    assert!(!opts.output.join("val_tiles").exists());
}
