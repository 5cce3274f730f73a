mod common;

use std::path::{Path, PathBuf};

use segger_data::tile::{parse_tile, write_atomic};
use segger_data::*;
use segger_graph::{NodeFeatures, NodeIds, NodeType, NEIGHBORS_BD, NEIGHBORS_TX};

fn fixture() -> PathBuf {
    common::test_data("parity/tile.safetensors")
}

#[test]
fn parity_tile_has_the_documented_counts() {
    let t = read_tile(&fixture(), Some(500)).unwrap();
    let g = &t.graph;
    assert_eq!(g.num_nodes(NodeType::Tx), 1141);
    assert_eq!(g.num_nodes(NodeType::Bd), 7);
    assert_eq!(g.num_edges(NEIGHBORS_TX), 3423);
    assert_eq!(g.num_edges(NEIGHBORS_BD), 3423);
    assert_eq!(g.num_positive(), 163);
    let l = g.labels().unwrap();
    assert_eq!(l.len(), 268);
    assert_eq!(l.positives(), 163);
    assert_eq!(g.tx.pos_dim, 3);
    assert!(matches!(&g.tx.x, NodeFeatures::Tokens(t) if t.len() == 1141));
    assert!(matches!(&g.bd.ids, NodeIds::Str(ids) if ids.len() == 7));
    let b = t.bounds.unwrap();
    assert_eq!(
        (b.x, b.y, b.width, b.height, b.margin),
        (2247.0, 2199.0, 33.0, 35.0, 10.0)
    );
    assert_eq!(b.file_name(), "tiles_x2247_y2199_33_35.safetensors");
}

fn bits(t: &Tile) -> Vec<u64> {
    // Every number of the tile, bitwise, in a fixed order.
    let g = &t.graph;
    let mut out: Vec<u64> =
        g.tx.pos
            .iter()
            .chain(&g.bd.pos)
            .map(|v| v.to_bits() as u64)
            .collect();
    if let NodeFeatures::Dense { values, .. } = &g.bd.x {
        out.extend(values.iter().map(|v| v.to_bits() as u64));
    }
    for es in g.edges.values() {
        out.extend(es.src.iter().chain(&es.dst).map(|&v| v as u64));
        if let Some(l) = &es.labels {
            out.extend(l.src.iter().chain(&l.dst).map(|&v| v as u64));
            out.extend(l.label.iter().map(|v| v.to_bits() as u64));
        }
    }
    out
}

#[test]
fn write_read_round_trip_is_bit_exact() {
    let t = read_tile(&fixture(), None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a.safetensors");
    write_tile(&p, &t).unwrap();
    let back = read_tile(&p, None).unwrap();
    assert_eq!(back, t);
    assert_eq!(bits(&back), bits(&t));
    // The tensor data section is byte-identical to the reference file's.
    let a = std::fs::read(fixture()).unwrap();
    let b = std::fs::read(&p).unwrap();
    let data = |v: &[u8]| -> Vec<u8> {
        let n = u64::from_le_bytes(v[..8].try_into().unwrap()) as usize;
        v[8 + n..].to_vec()
    };
    assert_eq!(data(&a).len(), data(&b).len());
    assert_eq!(std::fs::metadata(&p).unwrap().len() as usize, b.len());
    // No temporary files are left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

    // Dense transcript features and 2-D positions round-trip too.
    let mut e = t.clone();
    let n = e.graph.tx.num_nodes();
    e.graph.tx.x = NodeFeatures::Dense {
        values: (0..n * 5).map(|i| i as f32 * 0.37 - 1e-7).collect(),
        width: 5,
    };
    e.graph.tx.pos = e
        .graph
        .tx
        .pos
        .chunks(3)
        .flat_map(|c| [c[0], c[1]])
        .collect();
    e.graph.tx.pos_dim = 2;
    e.bounds = None;
    write_tile(&p, &e).unwrap();
    assert_eq!(read_tile(&p, None).unwrap(), e);
}

/// Rewrites one tensor of the fixture (or removes it with `None`) and returns the bytes.
fn with_tensor(
    name: &str,
    replace: Option<(safetensors::Dtype, Vec<usize>, Vec<u8>)>,
    md_patch: Option<(&str, &str)>,
) -> Vec<u8> {
    let bytes = std::fs::read(fixture()).unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n != name)
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect();
    if let Some((d, s, b)) = replace {
        owned.push((name.to_string(), d, s, b));
    }
    let mut md = meta.metadata().clone().unwrap();
    if let Some((k, v)) = md_patch {
        md.insert(k.to_string(), v.to_string());
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = owned
        .iter()
        .map(|(n, d, s, b)| {
            (
                n.clone(),
                safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, Some(md)).unwrap()
}

fn err_of(bytes: &[u8]) -> String {
    let e = parse_tile(Path::new("bad.safetensors"), bytes, Some(500))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("bad.safetensors: "),
        "error does not name the file: {e}"
    );
    e
}

#[test]
fn bad_tiles_are_rejected_with_named_errors() {
    let good = std::fs::read(fixture()).unwrap();
    // Truncated file.
    for cut in [0, 5, 100, good.len() / 2, good.len() - 1] {
        let e = err_of(&good[..cut]);
        assert!(
            e.contains("header") && e.contains("not a valid safetensors"),
            "{e}"
        );
    }
    // Wrong dtype.
    let f64_pos: Vec<u8> = (0..1141 * 3).flat_map(|_| 1.0f64.to_le_bytes()).collect();
    let e = err_of(&with_tensor(
        "tx.pos",
        Some((safetensors::Dtype::F64, vec![1141, 3], f64_pos)),
        None,
    ));
    assert!(e.contains("tx.pos") && e.contains("F64"), "{e}");
    let f64_x: Vec<u8> = (0..1141).flat_map(|_| 1.0f64.to_le_bytes()).collect();
    let e = err_of(&with_tensor(
        "tx.x",
        Some((safetensors::Dtype::F64, vec![1141], f64_x)),
        None,
    ));
    assert!(e.contains("tx.x") && e.contains("dtype is F64"), "{e}");
    // Wrong rank.
    let flat: Vec<u8> = (0..1141 * 3).flat_map(|_| 1.0f32.to_le_bytes()).collect();
    let e = err_of(&with_tensor(
        "tx.pos",
        Some((safetensors::Dtype::F32, vec![1141 * 3], flat)),
        None,
    ));
    assert!(e.contains("tx.pos") && e.contains("rank is 1"), "{e}");
    // Missing required tensor.
    for name in ["tx.x", "bd.pos", "tx__neighbors__tx.edge_index"] {
        let e = err_of(&with_tensor(name, None, None));
        assert!(e.contains(name) && e.contains("missing"), "{e}");
    }
    let e = err_of(&with_tensor("tx__belongs__bd.edge_label", None, None));
    assert!(
        e.contains("tx__belongs__bd.edge_label") && e.contains("missing"),
        "{e}"
    );
    // edge_index >= node count.
    let mut ei: Vec<i64> = vec![0; 2 * 3];
    ei[3 + 1] = 7; // destination 7 of 7 boundaries
    let ei_bytes: Vec<u8> = ei.iter().flat_map(|v| v.to_le_bytes()).collect();
    let e = err_of(&with_tensor(
        "tx__neighbors__bd.edge_index",
        Some((safetensors::Dtype::I64, vec![2, 3], ei_bytes)),
        None,
    ));
    assert!(
        e.contains("tx__neighbors__bd.edge_index")
            && e.contains("index 7")
            && e.contains("out of range"),
        "{e}"
    );
    // Label outside {0, 1}.
    let labels: Vec<u8> = (0..268)
        .flat_map(|i| if i == 3 { 0.5f32 } else { 1.0 }.to_le_bytes())
        .collect();
    let e = err_of(&with_tensor(
        "tx__belongs__bd.edge_label",
        Some((safetensors::Dtype::F32, vec![268], labels)),
        None,
    ));
    assert!(
        e.contains("tx__belongs__bd.edge_label") && e.contains("0.5"),
        "{e}"
    );
    // `tile` metadata that is not JSON.
    let e = err_of(&with_tensor("", None, Some(("tile", "{x: 1"))));
    assert!(e.contains("tile") && e.contains("JSON"), "{e}");
    // A core of no extent (prediction would keep none of the tile's transcripts).
    for core in [
        r#"{"x": 0, "y": 0, "width": -5, "height": 10}"#,
        r#"{"x": 0, "y": 0, "width": 5, "height": 0}"#,
        r#"{"x": 0, "y": 0, "width": 5, "height": 5, "margin": -1}"#,
    ] {
        let e = err_of(&with_tensor("", None, Some(("tile", core))));
        assert!(e.contains("tile") && e.contains("positive"), "{core}: {e}");
    }
    let e = err_of(&with_tensor("", None, Some(("bd.id", "[1, 2"))));
    assert!(e.contains("bd.id"), "{e}");
    let e = err_of(&with_tensor("", None, Some(("format", "segger-tile/9"))));
    assert!(e.contains("format"), "{e}");
    // Token id outside the vocabulary.
    let e = parse_tile(Path::new("bad.safetensors"), &good, Some(10))
        .unwrap_err()
        .to_string();
    assert!(e.contains("tx.x") && e.contains("vocabulary of 10"), "{e}");
    // Unknown tensor.
    let e = err_of(&with_tensor(
        "tx.extra",
        Some((safetensors::Dtype::F32, vec![1], vec![0; 4])),
        None,
    ));
    assert!(e.contains("tx.extra") && e.contains("unknown"), "{e}");
    // A missing file names the file.
    let e = read_tile(Path::new("/nonexistent/t.safetensors"), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/t.safetensors"), "{e}");
}

fn make_dataset(root: &Path, tiles: usize) -> Tile {
    let t = read_tile(&fixture(), None).unwrap();
    let dir = root.join("train_tiles/processed");
    std::fs::create_dir_all(&dir).unwrap();
    for i in 0..tiles {
        let mut ti = t.clone();
        // Make tiles distinguishable: shift positions by the tile index.
        for v in ti.graph.tx.pos.iter_mut() {
            *v += i as f32;
        }
        write_tile(&dir.join(format!("tile_{i:02}.safetensors")), &ti).unwrap();
    }
    t
}

#[test]
fn dataset_streams_ordered_batches_with_seeded_shuffle() {
    let root = tempfile::tempdir().unwrap();
    make_dataset(root.path(), 10);
    let ds = TileDataset::open(&root.path().join("train_tiles"), Some(500)).unwrap();
    assert_eq!(ds.len(), 10);
    let o1 = ds.order(true, 1, 0);
    assert_eq!(o1, ds.order(true, 1, 0));
    assert_ne!(o1, ds.order(true, 1, 1));
    assert_ne!(o1, ds.order(true, 2, 0));
    assert_eq!(ds.order(false, 1, 0), (0..10).collect::<Vec<_>>());
    let mut sorted = o1.clone();
    sorted.sort();
    assert_eq!(sorted, (0..10).collect::<Vec<_>>());

    for workers in [1, 3] {
        let batches: Vec<_> = ds
            .loader(4, true, 1, 0, workers, 2)
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            batches
                .iter()
                .map(|b| b.batch.num_tiles())
                .collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        let seen: Vec<usize> = batches
            .iter()
            .flat_map(|b| {
                b.paths
                    .iter()
                    .map(|p| ds.paths().iter().position(|q| q == p).unwrap())
            })
            .collect();
        assert_eq!(seen, o1, "batches out of order with {workers} workers");
        // Node offsets: tile 1 of batch 0 starts at 1141 transcripts.
        assert_eq!(batches[0].batch.tx_ptr, vec![0, 1141, 2282, 3423, 4564]);
        let first_x = batches[0].batch.graph.tx.pos[3 * 1141];
        assert_eq!(first_x, ds.get(o1[1]).unwrap().graph.tx.pos[0]);
    }
    // A loader dropped early stops its workers.
    let mut l = ds.loader(1, false, 0, 0, 2, 2);
    assert!(l.next().unwrap().is_ok());
    drop(l);
}

#[test]
fn dataset_directories_are_checked() {
    let root = tempfile::tempdir().unwrap();
    let e = TileDataset::open(&root.path().join("missing"), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing") && e.contains("not a directory"),
        "{e}"
    );
    let e = TileDataset::open(root.path(), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no processed/"), "{e}");
    std::fs::create_dir_all(root.path().join("processed")).unwrap();
    let e = TileDataset::open(root.path(), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no tile files"), "{e}");
    // A bad tile inside a dataset is reported through the loader, naming the file.
    make_dataset(root.path(), 2);
    let split = root.path().join("train_tiles");
    write_atomic(&split.join("processed/tile_01.safetensors"), b"garbage").unwrap();
    let ds = TileDataset::open(&split, None).unwrap();
    let res: Vec<_> = ds.loader(1, false, 0, 0, 1, 1).collect();
    assert!(res[0].is_ok());
    let e = res[1].as_ref().unwrap_err().to_string();
    assert!(e.contains("tile_01.safetensors"), "{e}");
}

#[test]
fn dataset_info_round_trips() {
    let root = tempfile::tempdir().unwrap();
    let info = DatasetInfo {
        format: DATASET_FORMAT.into(),
        vocab: vec!["A".into(), "B".into()],
        settings: serde_json::json!({"k_tx": 3}),
        tiles: SplitCounts {
            train: 3,
            val: 1,
            test: 0,
        },
    };
    info.write(root.path()).unwrap();
    assert_eq!(DatasetInfo::read(root.path()).unwrap(), info);
    std::fs::write(root.path().join("dataset.json"), "{").unwrap();
    assert!(DatasetInfo::read(root.path())
        .unwrap_err()
        .to_string()
        .contains("dataset.json"));
}

/// The stable-toolchain harness of the `tile` fuzz target (`fuzz/fuzz_targets/tile.rs`):
/// mutations of a real tile (truncations, byte changes biased toward the JSON header, edits of
/// the header's numbers) are each read without a panic, as a tile or as an error naming the
/// file, quickly. `SEGGER_FUZZ_SCALE` multiplies the iterations (and varies the seed).
#[test]
fn mutated_safetensors_tiles_give_errors_not_panics() {
    use rand::{Rng, SeedableRng};
    let scale: u64 = std::env::var("SEGGER_FUZZ_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x7113 + scale - 1);
    let path = common::test_data("parity/tile.safetensors");
    let orig = std::fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(orig[..8].try_into().unwrap()) as usize;
    let (mut runs, mut errors) = (0usize, 0usize);
    let mut slowest = std::time::Duration::ZERO;
    let mut run = |bytes: &[u8]| {
        let t = std::time::Instant::now();
        let r = parse_tile(&path, bytes, Some(500));
        slowest = slowest.max(t.elapsed());
        if let Err(e) = r {
            let msg = e.to_string();
            assert!(
                msg.contains(&*path.to_string_lossy()),
                "error does not name the file: {msg}"
            );
            errors += 1;
        }
        runs += 1;
    };
    for len in (0..80).chain(orig.len() - 40..orig.len()) {
        run(&orig[..len]);
    }
    for _ in 0..200 * scale {
        run(&orig[..rng.random_range(0..orig.len())]);
    }
    for i in 0..1500 * scale {
        let mut b = orig.clone();
        match i % 3 {
            // Random bytes anywhere (the size prefix, the header, the tensors).
            0 => {
                for _ in 0..rng.random_range(1..6) {
                    let at = rng.random_range(0..b.len());
                    b[at] = rng.random();
                }
            }
            // A digit of the JSON header changed: shapes, offsets, core bounds.
            1 => {
                let digits: Vec<usize> = (8..8 + header_len)
                    .filter(|&k| b[k].is_ascii_digit())
                    .collect();
                for _ in 0..rng.random_range(1..3) {
                    let at = digits[rng.random_range(0..digits.len())];
                    b[at] = b"0123456789-9"[rng.random_range(0..12)];
                }
            }
            // The size prefix set to extreme values.
            _ => {
                let v: u64 =
                    [0, 1, 7, u64::MAX, header_len as u64 + 8, 1 << 40][rng.random_range(0..6)];
                b[..8].copy_from_slice(&v.to_le_bytes());
            }
        }
        run(&b);
    }
    assert!(runs > 1500, "{runs} runs");
    assert!(
        errors > runs / 2,
        "only {errors} of {runs} mutated tiles failed"
    );
    assert!(
        slowest < std::time::Duration::from_secs(2),
        "slowest read took {slowest:?}"
    );
}

#[test]
fn tile_nodes_reads_the_node_count_from_the_header() {
    let t = read_tile(&fixture(), Some(500)).unwrap();
    let n = t.graph.num_nodes(NodeType::Tx) + t.graph.num_nodes(NodeType::Bd);
    assert_eq!(segger_data::tile::tile_nodes(&fixture()).unwrap(), Some(n));
    assert_eq!(n, 1148);
    let pt = common::test_data("pyg").join("tiles_x=2247_y=2199_w=33_h=35.pt");
    assert_eq!(segger_data::tile::tile_nodes(&pt).unwrap(), None);
    // A file that is not a tile names itself.
    let d = tempfile::tempdir().unwrap();
    let bad = d.path().join("tiles_x0_y0_1_1.safetensors");
    std::fs::write(&bad, b"not a tile").unwrap();
    let e = segger_data::tile::tile_nodes(&bad).unwrap_err().to_string();
    assert!(e.contains("tiles_x0_y0_1_1.safetensors"), "{e}");
}

#[test]
fn batches_by_nodes_fill_each_pass_up_to_the_budget_in_order() {
    // Five copies of the 1,148-node parity tile, then a reference .pt tile (size unknown), then
    // two more copies: names sort in this order.
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("processed");
    std::fs::create_dir_all(&p).unwrap();
    for name in ["a1", "a2", "a3", "a4", "a5", "u1", "u2"] {
        std::fs::copy(fixture(), p.join(format!("{name}.safetensors"))).unwrap();
    }
    let pt = common::test_data("pyg").join("tiles_x=2247_y=2199_w=33_h=35.pt");
    std::fs::copy(&pt, p.join("tiles_x=2247_y=2199_w=33_h=35.pt")).unwrap();
    let ds = TileDataset::open(d.path(), Some(500)).unwrap();
    assert_eq!(ds.len(), 8);
    let names: Vec<String> = ds
        .paths()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names[5], "tiles_x=2247_y=2199_w=33_h=35.pt", "{names:?}");
    // Two tiles fit in 2,300 nodes, three do not; the .pt tile goes alone and starts afresh.
    assert_eq!(
        ds.batches_by_nodes(2300).unwrap(),
        vec![vec![0, 1], vec![2, 3], vec![4], vec![5], vec![6, 7]]
    );
    // A tile larger than the budget goes alone.
    assert_eq!(
        ds.batches_by_nodes(1000).unwrap(),
        (0..8).map(|i| vec![i]).collect::<Vec<_>>()
    );
    assert_eq!(
        ds.batches_by_nodes(usize::MAX).unwrap(),
        vec![vec![0, 1, 2, 3, 4], vec![5], vec![6, 7]]
    );
    // The batches load: every tile once, in order.
    let loaded: usize = ds
        .loader_for(ds.batches_by_nodes(2300).unwrap(), 2, 4)
        .map(|b| b.unwrap().paths.len())
        .sum();
    assert_eq!(loaded, 8);
}
