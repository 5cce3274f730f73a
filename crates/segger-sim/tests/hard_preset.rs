//! The `hard` preset of `segger simulate`, and the default preset's unchanged output.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use arrow_array::{Array, Float32Array, RecordBatch, StringArray, UInt64Array, UInt8Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use segger_sim::simulate::{simulate, Preset, SimConfig, SimSummary};
use segger_sim::SimError;

const FILES: [&str; 4] = [
    "transcripts.parquet",
    "ground_truth.parquet",
    "nucleus_boundaries.parquet",
    "cell_boundaries.parquet",
];

/// 64-bit FNV-1a, a stable hash (std's hasher may change between Rust releases).
fn fnv(h: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *h ^= b as u64;
        *h = h.wrapping_mul(0x0100_0000_01b3);
    }
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

fn batches(path: &Path) -> Vec<RecordBatch> {
    let f = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// A hash of the decoded values of the four files (column names, strings, nulls, the bits of
/// the floats): independent of the parquet writer's version.
fn content_hash(dir: &Path) -> u64 {
    let mut h = FNV_START;
    for f in FILES {
        fnv(&mut h, f.as_bytes());
        for b in batches(&dir.join(f)) {
            for (field, col) in b.schema().fields().iter().zip(b.columns()) {
                fnv(&mut h, field.name().as_bytes());
                let any = col.as_any();
                for i in 0..col.len() {
                    if col.is_null(i) {
                        fnv(&mut h, b"\0null");
                    } else if let Some(a) = any.downcast_ref::<StringArray>() {
                        fnv(&mut h, a.value(i).as_bytes());
                        fnv(&mut h, b"\0");
                    } else if let Some(a) = any.downcast_ref::<Float32Array>() {
                        fnv(&mut h, &a.value(i).to_bits().to_le_bytes());
                    } else if let Some(a) = any.downcast_ref::<UInt64Array>() {
                        fnv(&mut h, &a.value(i).to_le_bytes());
                    } else if let Some(a) = any.downcast_ref::<UInt8Array>() {
                        fnv(&mut h, &[a.value(i)]);
                    } else {
                        panic!("{f}: unexpected column type {}", field.data_type());
                    }
                }
            }
        }
    }
    h
}

/// A hash of the files' bytes.
fn byte_hash(dir: &Path) -> u64 {
    let mut h = FNV_START;
    for f in FILES {
        fnv(&mut h, &std::fs::read(dir.join(f)).unwrap());
    }
    h
}

/// A column of a batch as its array type.
fn array<'a, A: Array + 'static>(b: &'a RecordBatch, name: &str) -> &'a A {
    b.column_by_name(name)
        .unwrap()
        .as_any()
        .downcast_ref::<A>()
        .unwrap_or_else(|| {
            panic!(
                "column {name} has type {}",
                b.schema().field_with_name(name).unwrap().data_type()
            )
        })
}

fn strings(b: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let a = array::<StringArray>(b, name);
    (0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i).to_string()))
        .collect()
}

fn floats(b: &RecordBatch, name: &str) -> Vec<f64> {
    let a = array::<Float32Array>(b, name);
    a.values().iter().map(|&v| v as f64).collect()
}

fn bytes(b: &RecordBatch, name: &str) -> Vec<u8> {
    array::<UInt8Array>(b, name).values().to_vec()
}

/// One column over all batches.
fn column<T>(path: &Path, f: impl Fn(&RecordBatch) -> Vec<T>) -> Vec<T> {
    batches(path).iter().flat_map(f).collect()
}

type P = (f64, f64);

/// Closed rings by id, in file order (the closing vertex dropped).
fn rings(path: &Path) -> Vec<(String, Vec<P>)> {
    let ids = column(path, |b| strings(b, "cell_id"));
    let x = column(path, |b| floats(b, "vertex_x"));
    let y = column(path, |b| floats(b, "vertex_y"));
    let mut out: Vec<(String, Vec<P>)> = Vec::new();
    for k in 0..ids.len() {
        let id = ids[k].clone().unwrap();
        match out.last_mut() {
            Some((last, ring)) if *last == id => ring.push((x[k], y[k])),
            _ => out.push((id, vec![(x[k], y[k])])),
        }
    }
    for (id, ring) in &mut out {
        assert_eq!(ring.first(), ring.last(), "ring {id} is not closed");
        ring.pop();
    }
    out
}

fn area(poly: &[P]) -> f64 {
    let n = poly.len();
    (0..n)
        .map(|i| {
            let (a, b) = (poly[i], poly[(i + 1) % n]);
            a.0 * b.1 - b.0 * a.1
        })
        .sum::<f64>()
        .abs()
        / 2.0
}

fn inside(poly: &[P], p: P) -> bool {
    let mut c = false;
    let n = poly.len();
    let mut j = n - 1;
    for i in 0..n {
        let (a, b) = (poly[i], poly[j]);
        if (a.1 > p.1) != (b.1 > p.1) && p.0 < (b.0 - a.0) * (p.1 - a.1) / (b.1 - a.1) + a.0 {
            c = !c;
        }
        j = i;
    }
    c
}

fn ring_distance(poly: &[P], p: P) -> f64 {
    let n = poly.len();
    (0..n)
        .map(|i| {
            let (a, b) = (poly[i], poly[(i + 1) % n]);
            let (dx, dy) = (b.0 - a.0, b.1 - a.1);
            let t = (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / (dx * dx + dy * dy).max(1e-300))
                .clamp(0.0, 1.0);
            (p.0 - a.0 - t * dx).hypot(p.1 - a.1 - t * dy)
        })
        .fold(f64::INFINITY, f64::min)
}

fn centroid(poly: &[P]) -> P {
    let n = poly.len();
    let (mut cx, mut cy, mut a2) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (a, b) = (poly[i], poly[(i + 1) % n]);
        let cr = a.0 * b.1 - b.0 * a.1;
        a2 += cr;
        cx += (a.0 + b.0) * cr;
        cy += (a.1 + b.1) * cr;
    }
    (cx / (3.0 * a2), cy / (3.0 * a2))
}

/// Longest over shortest caliper width (directions every 3°).
fn aspect(poly: &[P]) -> f64 {
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for k in 0..60 {
        let th = std::f64::consts::PI * k as f64 / 60.0;
        let (c, s) = (th.cos(), th.sin());
        let proj = poly.iter().map(|p| p.0 * c + p.1 * s);
        let w = proj.clone().fold(f64::NEG_INFINITY, f64::max) - proj.fold(f64::INFINITY, f64::min);
        lo = lo.min(w);
        hi = hi.max(w);
    }
    hi / lo
}

/// The decoded hard sample.
struct Sample {
    summary: SimSummary,
    cells: Vec<(String, Vec<P>)>,
    nuclei: Vec<(String, Vec<P>)>,
    /// x, y, cell_id, overlaps_nucleus, true cell.
    tx: Vec<(P, String, u8, Option<String>)>,
}

fn read_sample(dir: &Path, summary: SimSummary) -> Sample {
    let t = dir.join("transcripts.parquet");
    let x = column(&t, |b| floats(b, "x_location"));
    let y = column(&t, |b| floats(b, "y_location"));
    let id = column(&t, |b| strings(b, "cell_id"));
    let nuc = column(&t, |b| bytes(b, "overlaps_nucleus"));
    let truth = column(&dir.join("ground_truth.parquet"), |b| {
        strings(b, "true_cell_id")
    });
    let tx = (0..x.len())
        .map(|k| {
            (
                (x[k], y[k]),
                id[k].clone().unwrap(),
                nuc[k],
                truth[k].clone(),
            )
        })
        .collect();
    Sample {
        summary,
        cells: rings(&dir.join("cell_boundaries.parquet")),
        nuclei: rings(&dir.join("nucleus_boundaries.parquet")),
        tx,
    }
}

fn hard_sample(dir: &Path, cells: usize, seed: u64) -> Sample {
    let s = simulate(&SimConfig::hard(cells, seed), dir, false).unwrap();
    read_sample(dir, s)
}

/// Hashes of the default preset's output, computed with the code before the hard preset
/// existed (commit 720b80d). The content hash is over decoded values; the byte hash also
/// depends on the parquet writer (pinned by Cargo.lock): if only the byte hash changes after
/// a parquet upgrade, update it.
const DEFAULT_HASHES: [(usize, u64, u64, u64); 2] = [
    (700, 0, 0x6dff_f2a3_9406_b44c, 0xcba0_1749_cdfe_d0e8),
    (300, 11, 0x24d0_db0e_57d6_feea, 0xb878_6163_21a7_e77d),
];

#[test]
fn default_preset_output_is_unchanged() {
    let d = tempfile::tempdir().unwrap();
    for (cells, seed, content, bytes) in DEFAULT_HASHES {
        let dir = d.path().join(format!("{cells}-{seed}"));
        let s = simulate(&SimConfig::preset(Preset::Easy, cells, seed), &dir, false).unwrap();
        assert_eq!(
            content_hash(&dir),
            content,
            "content of {cells} cells, seed {seed}"
        );
        assert_eq!(
            byte_hash(&dir),
            bytes,
            "bytes of {cells} cells, seed {seed}"
        );
        assert_eq!(s.nuclei, s.cells);
        assert_eq!((s.no_nucleus, s.merged_nuclei, s.split_nuclei), (0, 0, 0));
    }
}

#[test]
fn diffusion_alone_keeps_the_default_geometry() {
    let d = tempfile::tempdir().unwrap();
    let mut cfg = SimConfig::new(300, 11);
    cfg.diffusion = 0.8;
    simulate(&cfg, &d.path().join("diffused"), false).unwrap();
    simulate(&SimConfig::new(300, 11), &d.path().join("plain"), false).unwrap();
    for f in ["cell_boundaries.parquet", "nucleus_boundaries.parquet"] {
        let a = std::fs::read(d.path().join("diffused").join(f)).unwrap();
        let b = std::fs::read(d.path().join("plain").join(f)).unwrap();
        assert_eq!(a, b, "{f}");
    }
    let a = std::fs::read(d.path().join("diffused/transcripts.parquet")).unwrap();
    let b = std::fs::read(d.path().join("plain/transcripts.parquet")).unwrap();
    assert_ne!(a, b);
}

#[test]
fn hard_preset_has_tissue_like_geometry() {
    let d = tempfile::tempdir().unwrap();
    let s = hard_sample(d.path(), 700, 0);
    let sm = &s.summary;
    let n = sm.cells;
    assert!((630..=770).contains(&n), "{n} cells for --cells 700");
    assert_eq!(s.cells.len(), n);
    let true_ids: HashSet<&str> = s.tx.iter().filter_map(|t| t.3.as_deref()).collect();
    let cell_ids: HashSet<&str> = s.cells.iter().map(|c| c.0.as_str()).collect();
    assert!(true_ids.is_subset(&cell_ids));

    // Nuclei: missing, merged, split.
    let nucleus_ids: HashSet<&str> = s.nuclei.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        nucleus_ids.len(),
        s.nuclei.len(),
        "one polygon per nucleus id"
    );
    assert_eq!(sm.nuclei, s.nuclei.len());
    assert_eq!(
        sm.nuclei,
        n - sm.no_nucleus - sm.merged_nuclei + sm.split_nuclei
    );
    let without = cell_ids
        .iter()
        .filter(|c| !nucleus_ids.contains(*c))
        .count();
    let frac = without as f64 / n as f64;
    assert!(
        (0.2..=0.3).contains(&frac),
        "{frac} of the cells have no nucleus id"
    );
    assert_eq!(without, sm.no_nucleus + sm.merged_nuclei);
    let no_nucleus = sm.no_nucleus as f64 / n as f64;
    assert!((0.2..=0.3).contains(&no_nucleus), "no nucleus {no_nucleus}");
    for (what, k) in [("merged", sm.merged_nuclei), ("split", sm.split_nuclei)] {
        let f = k as f64 / n as f64;
        assert!((0.02..=0.04).contains(&f), "{what} nuclei {f}");
    }
    // Every nucleus id is a cell id, or a split nucleus's second half (suffix -2) of one.
    let mut second_halves = 0;
    for id in &nucleus_ids {
        if let Some(letters) = id.strip_suffix("-2") {
            let first = format!("{letters}-1");
            assert!(nucleus_ids.contains(first.as_str()), "{id} without {first}");
            second_halves += 1;
        } else {
            assert!(cell_ids.contains(id), "nucleus {id} is no cell");
        }
    }
    assert_eq!(second_halves, sm.split_nuclei);
    // Each written nucleus lies in its cell (merged hulls may reach into the partner).
    let cells: HashMap<&str, &Vec<P>> = s.cells.iter().map(|c| (c.0.as_str(), &c.1)).collect();
    let hull_like = s.nuclei.iter().filter(|(id, ring)| {
        let cell = cells[&*id.replace("-2", "-1")];
        ring.iter()
            .any(|&p| !inside(cell, p) && ring_distance(cell, p) > 1e-3)
    });
    assert!(hull_like.count() <= sm.merged_nuclei);

    // Sizes and shapes.
    let areas: Vec<f64> = s.cells.iter().map(|c| area(&c.1)).collect();
    let (lo, hi) = areas
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(l, h), &a| (l.min(a), h.max(a)));
    assert!(hi / lo > 3.0, "areas {lo}..{hi}");
    let total: f64 = areas.iter().sum();
    let tissue = sm.width_um * sm.height_um;
    assert!(
        (total / tissue - 1.0).abs() < 1e-4,
        "cells cover {total} of {tissue} µm²"
    );
    let elongated = s.cells.iter().filter(|c| aspect(&c.1) > 2.0).count();
    assert!(
        elongated as f64 > 0.05 * n as f64,
        "{elongated} cells with aspect ratio > 2"
    );
    // Off-centre nuclei: the nucleus centroid's distance to the cell centroid, over the
    // square root of the cell's area: median 0.15 here, 0.10 for the easy preset (whose
    // nuclei sit on the jittered lattice seed, not the Voronoi centroid).
    let mut offsets: Vec<f64> = s
        .nuclei
        .iter()
        .filter_map(|(id, ring)| {
            let cell = cells.get(id.as_str())?;
            let (a, b) = (centroid(ring), centroid(cell));
            Some((a.0 - b.0).hypot(a.1 - b.1) / area(cell).sqrt())
        })
        .collect();
    offsets.sort_by(f64::total_cmp);
    let median = offsets[offsets.len() / 2];
    assert!(median > 0.125, "median nucleus offset {median}");

    // Diffusion: some transcripts fall outside their true cell.
    let in_cells: Vec<_> = s.tx.iter().filter(|t| t.3.is_some()).collect();
    let outside = in_cells
        .iter()
        .filter(|t| !inside(cells[t.3.as_deref().unwrap()], t.0))
        .count();
    let f = outside as f64 / in_cells.len() as f64;
    assert!((0.03..0.2).contains(&f), "{f} outside their cell");
    let per_cell = sm.in_cells as f64 / n as f64;
    assert!((55.0..70.0).contains(&per_cell), "per cell {per_cell}");
}

#[test]
fn hard_preset_nuclear_flags_follow_the_written_polygons() {
    let d = tempfile::tempdir().unwrap();
    let s = hard_sample(d.path(), 700, 0);
    let nuclei: HashMap<&str, &Vec<P>> = s.nuclei.iter().map(|c| (c.0.as_str(), &c.1)).collect();
    let mut flagged = 0;
    let mut merged_or_split_hits = HashSet::new();
    for (p, id, nuc, truth) in &s.tx {
        // f32 coordinates: skip points within a rounding error of a ring.
        let near = |ring: &Vec<P>| ring_distance(ring, *p) < 1e-3;
        if *nuc == 1 {
            flagged += 1;
            let ring = nuclei
                .get(id.as_str())
                .unwrap_or_else(|| panic!("{id} is no nucleus"));
            assert!(inside(ring, *p) || near(ring), "{p:?} outside nucleus {id}");
            if truth.as_deref() != Some(id.as_str()) && truth.is_some() {
                merged_or_split_hits.insert(id.clone());
            }
        } else {
            assert_eq!(id, "UNASSIGNED");
            for (nid, ring) in &s.nuclei {
                assert!(
                    !inside(ring, *p) || near(ring),
                    "{p:?} inside nucleus {nid} but not flagged"
                );
            }
        }
    }
    assert_eq!(flagged, s.summary.in_nuclei);
    let f = flagged as f64 / s.tx.len() as f64;
    assert!((0.15..0.3).contains(&f), "{f} of the transcripts in nuclei");
    // Transcripts of another cell under a nucleus id: merged nuclei, second halves of split
    // nuclei, and diffusion.
    assert!(merged_or_split_hits.iter().any(|id| id.ends_with("-2")));
}

#[test]
fn hard_preset_is_deterministic() {
    let d = tempfile::tempdir().unwrap();
    let a = simulate(&SimConfig::hard(400, 5), &d.path().join("a"), false).unwrap();
    let b = simulate(&SimConfig::hard(400, 5), &d.path().join("b"), false).unwrap();
    simulate(&SimConfig::hard(400, 6), &d.path().join("c"), false).unwrap();
    assert_eq!(a.transcripts, b.transcripts);
    assert_eq!(
        byte_hash(&d.path().join("a")),
        byte_hash(&d.path().join("b"))
    );
    for f in FILES {
        let x = std::fs::read(d.path().join("a").join(f)).unwrap();
        let z = std::fs::read(d.path().join("c").join(f)).unwrap();
        assert_ne!(x, z, "{f} is the same for two seeds");
    }
}

/// A flag and a setting that breaks it.
type BadCase = (&'static str, fn(&mut SimConfig));

#[test]
fn bad_hard_options_name_the_flag() {
    let d = tempfile::tempdir().unwrap();
    let cases: Vec<BadCase> = vec![
        ("--no_nucleus_fraction", |c| c.no_nucleus_fraction = 1.5),
        ("--region_chain", |c| c.region_chain = [0.0; 4]),
        ("--region_chain", |c| c.region_chain[2] = -0.1),
        ("--size_spread", |c| c.size_spread = 0.9),
        ("--nucleus_offset", |c| c.nucleus_offset = f64::NAN),
        ("--merged_nuclei", |c| c.merged_nuclei = 0.7),
        ("--split_nuclei", |c| c.split_nuclei = -1.0),
        ("--no_nucleus_fraction", |c| c.no_nucleus_fraction = 0.95),
        ("--diffusion", |c| c.diffusion = -0.5),
    ];
    for (flag, set) in cases {
        let mut cfg = SimConfig::hard(50, 0);
        set(&mut cfg);
        match simulate(&cfg, &d.path().join("x"), false) {
            Err(SimError::Invalid(m)) => assert!(m.contains(flag), "{flag}: {m}"),
            other => panic!("{flag}: {other:?}"),
        }
    }
}
