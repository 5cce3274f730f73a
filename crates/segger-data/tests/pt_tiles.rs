//! The PyG `.pt` tile reader against the reference's own files and their manifests.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use segger_data::torch::pyg::{parse_pt_tile, pyg_to_tile};
use segger_data::torch::zip::{ZipArchive, ZipWriter};
use segger_data::torch::{read_pyg, PygValue, Tensor};
use segger_data::{read_tile, DataError, TileDataset};
use segger_graph::{NodeFeatures, NodeIds, NodeType};
use serde_json::Value as Json;

fn fixtures() -> PathBuf {
    common::test_data("pyg")
}

/// The directory of `.pt` + `.json` pairs to check: `SEGGER_PYG_DIR`, or the fixtures.
fn pyg_dir() -> PathBuf {
    std::env::var_os("SEGGER_PYG_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(fixtures)
}

fn pt_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pt"))
        .collect();
    v.sort();
    v
}

fn parity_source() -> PathBuf {
    fixtures().join("tiles_x=2247_y=2199_w=33_h=35.pt")
}

fn as_f64(j: &Json) -> f64 {
    j.as_f64().unwrap_or_else(|| panic!("not a number: {j}"))
}

/// Compares one tensor with its manifest entry; returns a list of problems.
fn check_tensor(key: &str, t: &Tensor, m: &Json) -> Vec<String> {
    let mut bad = Vec::new();
    let mut expect = |what: &str, ok: bool, got: String, want: String| {
        if !ok {
            bad.push(format!("{key}: {what} is {got}, manifest says {want}"));
        }
    };
    let dtype = m["dtype"].as_str().unwrap();
    expect(
        "dtype",
        t.dtype.name() == dtype,
        t.dtype.name().into(),
        dtype.into(),
    );
    let shape: Vec<usize> = serde_json::from_value(m["shape"].clone()).unwrap();
    expect(
        "shape",
        t.shape == shape,
        format!("{:?}", t.shape),
        format!("{shape:?}"),
    );
    let stride: Vec<usize> = serde_json::from_value(m["stride"].clone()).unwrap();
    expect(
        "stride",
        t.stride == stride,
        format!("{:?}", t.stride),
        format!("{stride:?}"),
    );
    let off = m["storage_offset"].as_u64().unwrap() as usize;
    expect(
        "storage_offset",
        t.storage_offset == off,
        t.storage_offset.to_string(),
        off.to_string(),
    );
    let numel = m["numel"].as_u64().unwrap() as usize;
    expect(
        "numel",
        t.numel() == numel,
        t.numel().to_string(),
        numel.to_string(),
    );

    if t.dtype.is_float() {
        let v = t.to_f64();
        let nan = v.iter().filter(|x| x.is_nan()).count();
        let want_nan = m["nan_count"].as_u64().unwrap() as usize;
        expect(
            "nan_count",
            nan == want_nan,
            nan.to_string(),
            want_nan.to_string(),
        );
        let nansum: f64 = v.iter().filter(|x| !x.is_nan()).sum();
        let sum_key = if m["sum"].is_null() { "nansum" } else { "sum" };
        if m["sum"].is_null() {
            expect("sum", nan > 0, "finite".into(), "null (NaN present)".into());
        }
        let want = as_f64(&m[sum_key]);
        let tol = 1e-6 + 1e-9 * want.abs();
        expect(
            sum_key,
            (nansum - want).abs() <= tol,
            nansum.to_string(),
            want.to_string(),
        );
        // min/max as the manifest computes them: over nan_to_num'd values.
        let clean: Vec<f64> = v
            .iter()
            .map(|&x| if x.is_nan() { 0.0 } else { x })
            .collect();
        for (name, got) in [
            ("min", clean.iter().copied().reduce(f64::min)),
            ("max", clean.iter().copied().reduce(f64::max)),
        ] {
            match (got, m.get(name)) {
                (Some(g), Some(w)) => expect(name, g == as_f64(w), g.to_string(), w.to_string()),
                (None, None) => {}
                (g, w) => expect(name, false, format!("{g:?}"), format!("{w:?}")),
            }
        }
    } else {
        let v = t.to_i64();
        let sum: i128 = v.iter().map(|&x| x as i128).sum();
        let want = m["sum"]
            .as_i64()
            .map(|x| x as i128)
            .or_else(|| m["sum"].as_u64().map(|x| x as i128))
            .unwrap_or_else(|| panic!("{key}: integer sum missing"));
        expect("sum", sum == want, sum.to_string(), want.to_string());
        for (name, got) in [("min", v.iter().min()), ("max", v.iter().max())] {
            match (got, m.get(name)) {
                (Some(&g), Some(w)) => {
                    expect(name, g as f64 == as_f64(w), g.to_string(), w.to_string())
                }
                (None, None) => {}
                (g, w) => expect(name, false, format!("{g:?}"), format!("{w:?}")),
            }
        }
    }
    bad
}

/// Checks one `.pt` file against its `.json` manifest; returns every problem found.
fn check_against_manifest(pt: &Path) -> Vec<String> {
    let json = pt.with_extension("json");
    let m: Json = serde_json::from_str(
        &std::fs::read_to_string(&json).unwrap_or_else(|e| panic!("{}: {e}", json.display())),
    )
    .unwrap();
    let h = match read_pyg(pt) {
        Ok(h) => h,
        Err(e) => return vec![format!("read failed: {e}")],
    };
    let mut bad = Vec::new();
    let strs = |j: &Json| -> Vec<String> { serde_json::from_value(j.clone()).unwrap() };
    if h.members != strs(&m["torch_save_zip_entries"]) {
        bad.push(format!("zip members {:?}", h.members));
    }
    if h.protocol as u64 != m["pickle_protocol"].as_u64().unwrap() {
        bad.push(format!("pickle protocol {}", h.protocol));
    }
    let globals: Vec<String> = h.globals.iter().cloned().collect();
    if globals != strs(&m["pickle_globals"]) {
        bad.push(format!("pickle globals {globals:?}"));
    }
    if h.node_types != strs(&m["node_types"]) {
        bad.push(format!("node types {:?}", h.node_types));
    }
    if h.edge_types != strs(&m["edge_types"]) {
        bad.push(format!("edge types {:?}", h.edge_types));
    }
    let entries = m["entries"].as_array().unwrap();
    let keys: Vec<&str> = entries.iter().map(|e| e["key"].as_str().unwrap()).collect();
    for k in h.entries.keys() {
        if !keys.contains(&k.as_str()) {
            bad.push(format!("{k}: read but not in the manifest"));
        }
    }
    for e in entries {
        let key = e["key"].as_str().unwrap();
        match (e["type"].as_str().unwrap(), h.entries.get(key)) {
            ("tensor", Some(PygValue::Tensor(t))) => bad.extend(check_tensor(key, t, e)),
            ("numpy.ndarray", Some(PygValue::Strings(s))) => {
                if e["dtype"] != "object" || *s != strs(&e["values"]) {
                    bad.push(format!("{key}: strings {s:?}"));
                }
                let shape: Vec<usize> = serde_json::from_value(e["shape"].clone()).unwrap();
                if shape != [s.len()] {
                    bad.push(format!("{key}: {} strings for shape {shape:?}", s.len()));
                }
            }
            (ty, got) => bad.push(format!("{key}: manifest type {ty}, read {got:?}")),
        }
    }
    // PyG's node counts hold for the converted tile.
    match pyg_to_tile(pt, &h, None) {
        Ok(c) => {
            for (t, name) in [(NodeType::Tx, "tx"), (NodeType::Bd, "bd")] {
                let want = m["num_nodes_pyg"][name].as_u64().unwrap() as usize;
                if c.tile.graph.num_nodes(t) != want {
                    bad.push(format!("{name}: {} nodes", c.tile.graph.num_nodes(t)));
                }
            }
        }
        Err(e) => bad.push(format!("conversion failed: {e}")),
    }
    bad
}

#[test]
fn every_pt_file_matches_its_manifest() {
    let dir = pyg_dir();
    let files = pt_files(&dir);
    assert!(!files.is_empty(), "{}: no .pt files", dir.display());
    let mut failures = Vec::new();
    for pt in &files {
        for p in check_against_manifest(pt) {
            failures.push(format!("{}: {p}", pt.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_three_reference_tiles_match_their_manifests() {
    // Independent of SEGGER_PYG_DIR: the fixtures themselves.
    let files = pt_files(&fixtures());
    assert_eq!(files.len(), 3);
    for pt in &files {
        let bad = check_against_manifest(pt);
        assert!(bad.is_empty(), "{}: {bad:#?}", pt.display());
    }
}

#[test]
fn converted_parity_tile_equals_the_parity_fixture_except_bd_x() {
    let pt = read_tile(&parity_source(), Some(500)).unwrap();
    let st = read_tile(&fixtures().join("../parity/tile.safetensors"), Some(500)).unwrap();
    let (a, b) = (&pt.graph, &st.graph);
    assert_eq!(a.tx, b.tx, "tx store (x, pos, id)");
    assert_eq!(a.bd.pos, b.bd.pos, "bd.pos");
    assert_eq!(a.bd.pos_dim, b.bd.pos_dim);
    assert_eq!(a.bd.ids, b.bd.ids, "bd.id");
    assert_eq!(a.edges, b.edges, "edge_index, edge_label_index, edge_label");
    assert_eq!(
        pt.bounds, st.bounds,
        "tile metadata (x, y, width, height, margin)"
    );
    // bd.x: the parity fixture holds recomputed features; the .pt holds 91 NaN rows for 7
    // boundaries, which the reader replaces with zeros of the boundary count.
    match (&a.bd.x, &b.bd.x) {
        (
            NodeFeatures::Dense { values, width },
            NodeFeatures::Dense {
                width: w2,
                values: v2,
            },
        ) => {
            assert_eq!((*width, *w2), (4, 4));
            assert_eq!(values.len(), 7 * 4);
            assert_eq!(v2.len(), 7 * 4);
            assert!(values.iter().all(|&v| v == 0.0));
        }
        other => panic!("bd.x: {other:?}"),
    }
}

#[test]
fn segger_quirks_are_repaired() {
    // A test tile with no boundaries: bd.x [0, 4], belongs edge_index stored 1-D [0].
    let p = fixtures().join("tiles_x=2160_y=2110_w=48_h=40.pt");
    let c = parse_pt_tile(&p, &std::fs::read(&p).unwrap(), None).unwrap();
    let g = &c.tile.graph;
    assert_eq!(g.num_nodes(NodeType::Bd), 0);
    assert_eq!(g.num_positive(), 0);
    assert!(g.edge("tx__belongs__bd").is_some());
    assert!(g.labels().is_none());
    assert!(!c.bd_x_replaced);
    assert_eq!(g.bd.ids, NodeIds::Str(vec![]));

    // One boundary, 13 NaN rows of bd.x.
    let p = fixtures().join("tiles_x=2218_y=2110_w=14_h=16.pt");
    let c = parse_pt_tile(&p, &std::fs::read(&p).unwrap(), None).unwrap();
    assert!(c.bd_x_replaced);
    assert_eq!(c.tile.graph.num_nodes(NodeType::Bd), 1);
    assert_eq!(
        c.tile.graph.bd.x,
        NodeFeatures::Dense {
            values: vec![0.0; 4],
            width: 4
        }
    );
    let b = c.tile.bounds.unwrap();
    assert_eq!(
        (b.x, b.y, b.width, b.height, b.margin),
        (2218.0, 2110.0, 14.0, 16.0, 10.0)
    );
}

#[test]
fn dataset_lists_and_loads_pt_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let processed = dir.path().join("train_tiles/processed");
    std::fs::create_dir_all(&processed).unwrap();
    for p in pt_files(&fixtures()) {
        std::os::unix::fs::symlink(&p, processed.join(p.file_name().unwrap())).unwrap();
    }
    // PyG's InMemoryDataset leaves these next to the tiles: not tiles, not listed.
    std::fs::write(processed.join("pre_transform.pt"), b"x").unwrap();
    std::fs::write(processed.join("pre_filter.pt"), b"x").unwrap();
    let ds = TileDataset::open(&dir.path().join("train_tiles"), Some(500)).unwrap();
    assert_eq!(ds.len(), 3);
    let batch = segger_data::dataset::load_batch(&ds, &[0, 1, 2]).unwrap();
    assert_eq!(batch.paths.len(), 3);
    assert!(batch.bounds.iter().all(Option::is_some));
}

/// Rebuilds a zip archive with `data.pkl` replaced (so the pickle interpreter, not the CRC
/// check, sees the mutation).
fn with_pickle(bytes: &[u8], pkl: &[u8]) -> Vec<u8> {
    let z = ZipArchive::new(bytes).unwrap();
    let mut w = ZipWriter::new();
    for e in z.entries() {
        if e.name.ends_with("/data.pkl") {
            w.add(&e.name, pkl).unwrap();
        } else {
            w.add(&e.name, z.read(&e.name).unwrap().unwrap()).unwrap();
        }
    }
    w.finish().unwrap()
}

fn parse_quietly(path: &Path, bytes: &[u8]) -> Result<(), DataError> {
    parse_pt_tile(path, bytes, Some(500)).map(|_| ())
}

#[test]
fn mutated_and_truncated_files_give_errors_not_panics() {
    // SEGGER_FUZZ_SCALE multiplies the iterations (and varies the seed) for longer runs.
    let scale: u64 = std::env::var("SEGGER_FUZZ_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(0x5E66E2 + scale - 1);
    let mut n_runs = 0usize;
    let mut n_err = 0usize;
    let slowest = std::cell::Cell::new(Duration::ZERO);
    let mut run = |path: &Path, bytes: &[u8]| {
        let t = Instant::now();
        let r = parse_quietly(path, bytes);
        slowest.set(slowest.get().max(t.elapsed()));
        if let Err(e) = r {
            let msg = e.to_string();
            assert!(
                msg.contains(&*path.to_string_lossy()),
                "error does not name the file: {msg}"
            );
            n_err += 1;
        }
        n_runs += 1;
    };
    for path in pt_files(&fixtures()) {
        let orig = std::fs::read(&path).unwrap();
        let pkl = {
            let z = ZipArchive::new(&orig).unwrap();
            let name = z
                .entries()
                .iter()
                .find(|e| e.name.ends_with("/data.pkl"))
                .unwrap()
                .name
                .clone();
            z.read(&name).unwrap().unwrap().to_vec()
        };
        // Whole-file truncations (every length near the ends, random ones in between).
        for len in (0..64).chain(orig.len() - 64..orig.len()) {
            run(&path, &orig[..len]);
        }
        for _ in 0..300 * scale {
            run(&path, &orig[..rng.random_range(0..orig.len())]);
        }
        // Whole-file byte mutations (zip structures and member data).
        for _ in 0..600 * scale {
            let mut b = orig.clone();
            for _ in 0..rng.random_range(1..6) {
                let at = if rng.random_bool(0.5) {
                    // Bias toward the zip directory at the end.
                    orig.len() - 1 - rng.random_range(0..orig.len().min(2000))
                } else {
                    rng.random_range(0..orig.len())
                };
                b[at] = rng.random();
            }
            run(&path, &b);
        }
        // Pickle-level mutations inside a valid archive.
        for i in 0..1500 * scale {
            let mut p = pkl.clone();
            match i % 4 {
                0 => {
                    for _ in 0..rng.random_range(1..4) {
                        let at = rng.random_range(0..p.len());
                        p[at] = rng.random();
                    }
                }
                1 => p.truncate(rng.random_range(0..p.len())),
                2 => {
                    let at = rng.random_range(0..p.len());
                    let n = rng.random_range(1..8).min(p.len() - at);
                    p.drain(at..at + n);
                }
                _ => {
                    // Small integers (sizes, strides, offsets) are BININT1/BININT2 arguments:
                    // set a random byte to an extreme value.
                    let at = rng.random_range(0..p.len());
                    p[at] = [0x00, 0x01, 0x7F, 0x80, 0xFF][rng.random_range(0..5)];
                }
            }
            run(&path, &with_pickle(&orig, &p));
        }
    }
    assert!(n_runs > 7000, "{n_runs} runs");
    assert!(
        n_err > n_runs / 2,
        "only {n_err} of {n_runs} mutated inputs failed"
    );
    assert!(
        slowest.get() < Duration::from_secs(2),
        "slowest parse took {:?}",
        slowest.get()
    );
}

#[test]
fn hostile_sizes_are_refused_quickly() {
    let path = parity_source();
    let orig = std::fs::read(&path).unwrap();
    let z = ZipArchive::new(&orig).unwrap();
    let name = z
        .entries()
        .iter()
        .find(|e| e.name.ends_with("/data.pkl"))
        .unwrap()
        .name
        .clone();
    let pkl = z.read(&name).unwrap().unwrap().to_vec();
    // Each hostile pickle with the error it must give.
    let quadratic = {
        // set(T) on one 50,000-item tuple, 50,000 times: quadratic copying unless bounded.
        let mut p = b"\x80\x02c__builtin__\nset\nq\x00(".to_vec();
        p.extend(std::iter::repeat_n(b'N', 50_000));
        p.extend(b"tq\x01");
        for _ in 0..50_000 {
            p.extend(b"h\x00h\x01\x85R0");
        }
        p.extend(b"N.");
        p
    };
    let cases: Vec<(Vec<u8>, &str)> = vec![
        // A string length of 4 GiB.
        (b"\x80\x02X\xff\xff\xff\xff".to_vec(), "more bytes"),
        // A list whose APPENDS never ends.
        (
            b"\x80\x02]("
                .iter()
                .copied()
                .chain(std::iter::repeat_n(b'N', 100_000))
                .collect(),
            "without STOP",
        ),
        // Deeply nested tuples: the interpreter does not recurse.
        (
            [0x80, 2]
                .into_iter()
                .chain(std::iter::repeat_n(b'(', 200_000))
                .chain(std::iter::repeat_n(b't', 200_000))
                .chain(std::iter::once(b'.'))
                .collect(),
            "expected a torch_geometric HeteroData",
        ),
        (quadratic, "copy too much"),
    ];
    for (bad, want) in cases {
        let t = Instant::now();
        let e = parse_quietly(&path, &with_pickle(&orig, &bad))
            .unwrap_err()
            .to_string();
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{want}: {:?}",
            t.elapsed()
        );
        assert!(e.contains("data.pkl") && e.contains(want), "{want}: {e}");
    }
    // A tensor whose size claims far more elements than its storage holds: patch the first
    // BININT2 size of tx.id (1141) to 65535.
    let at = pkl
        .windows(3)
        .position(|w| w == [b'M', 0x75, 0x04])
        .unwrap();
    let mut p = pkl.clone();
    p[at + 1] = 0xFF;
    p[at + 2] = 0xFF;
    let e = parse_quietly(&path, &with_pickle(&orig, &p)).unwrap_err();
    assert!(e.to_string().contains("storage"), "{e}");
}

#[test]
fn non_torch_files_are_refused_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tiles_x=0_y=0_w=1_h=1.pt");
    std::fs::write(&p, b"not a zip").unwrap();
    let e = read_tile(&p, None).unwrap_err().to_string();
    assert!(
        e.contains("tiles_x=0_y=0_w=1_h=1.pt") && e.contains("zip"),
        "{e}"
    );
    // A zip without data.pkl.
    let mut w = ZipWriter::new();
    w.add("a/other", b"x").unwrap();
    std::fs::write(&p, w.finish().unwrap()).unwrap();
    let e = read_tile(&p, None).unwrap_err().to_string();
    assert!(e.contains("data.pkl"), "{e}");
}

#[test]
fn the_manifest_check_notices_differences() {
    // A pair whose manifest disagrees with its .pt must be reported, entry by entry.
    let dir = tempfile::tempdir().unwrap();
    let src = parity_source();
    let pt = dir.path().join(src.file_name().unwrap());
    std::os::unix::fs::symlink(&src, &pt).unwrap();
    let mut m: Json =
        serde_json::from_str(&std::fs::read_to_string(src.with_extension("json")).unwrap())
            .unwrap();
    for e in m["entries"].as_array_mut().unwrap() {
        match e["key"].as_str().unwrap() {
            "tx.pos" => e["sum"] = Json::from(1.0),
            "tx.id" => e["sum"] = Json::from(e["sum"].as_i64().unwrap() + 1),
            "bd.x" => e["stride"] = serde_json::json!([4, 1]),
            "tx__belongs__bd.edge_label" => e["max"] = Json::from(2.0),
            "bd.id" => e["values"][0] = Json::from("other"),
            _ => {}
        }
    }
    std::fs::write(pt.with_extension("json"), m.to_string()).unwrap();
    let bad = check_against_manifest(&pt);
    for needle in [
        "tx.pos: sum",
        "tx.id: sum",
        "bd.x: stride",
        "edge_label: max",
        "bd.id",
    ] {
        assert!(
            bad.iter().any(|b| b.contains(needle)),
            "{needle} not reported in {bad:#?}"
        );
    }
    assert_eq!(bad.len(), 5, "{bad:#?}");
}

#[test]
fn one_dimensional_edge_tensors_are_read() {
    use segger_data::torch::DType;
    let p = fixtures().join("tiles_x=2218_y=2110_w=14_h=16.pt");
    let mut h = read_pyg(&p).unwrap();
    let t = |dtype: DType, shape: Vec<usize>, data: Vec<u8>| {
        PygValue::Tensor(Tensor {
            dtype,
            stride: if shape.is_empty() { vec![] } else { vec![1] },
            shape,
            storage_offset: 0,
            storage_key: "x".into(),
            data,
        })
    };
    let ints = |v: &[i64]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    // One labelled pair stored 1-D [2] with a 0-D label; no positives stored 1-D [0].
    h.entries.insert(
        "tx__belongs__bd.edge_label_index".into(),
        t(DType::I64, vec![2], ints(&[5, 0])),
    );
    h.entries.insert(
        "tx__belongs__bd.edge_label".into(),
        t(DType::F32, vec![], 1.0f32.to_le_bytes().to_vec()),
    );
    h.entries.insert(
        "tx__belongs__bd.edge_index".into(),
        t(DType::I64, vec![0], vec![]),
    );
    let c = pyg_to_tile(&p, &h, None).unwrap();
    let l = c.tile.graph.labels().unwrap();
    assert_eq!(
        (l.src.as_slice(), l.dst.as_slice(), l.label.as_slice()),
        (&[5i64][..], &[0i64][..], &[1.0f32][..])
    );
    assert_eq!(c.tile.graph.num_positive(), 0);
    // Any other 1-D shape is an error naming the tensor.
    h.entries.insert(
        "tx__belongs__bd.edge_label_index".into(),
        t(DType::I64, vec![3], ints(&[5, 0, 1])),
    );
    let e = pyg_to_tile(&p, &h, None).unwrap_err().to_string();
    assert!(
        e.contains("tx__belongs__bd.edge_label_index") && e.contains("[3]"),
        "{e}"
    );
}
