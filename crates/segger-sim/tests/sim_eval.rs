//! Simulation, evaluation and picture tests.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray, UInt64Array};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use segger_sim::baselines::{cell_outlines, standard_baselines, CELL_OUTLINES};
use segger_sim::evaluate::{
    adjusted_rand_index, evaluate, read_gene_pairs, read_prediction, read_truth, Assignments,
};
use segger_sim::picture::{draw_segmentation, draw_titled_segmentation};
use segger_sim::simulate::{simulate, SimConfig};
use segger_sim::SimError;

fn write(path: &Path, cols: Vec<(&str, ArrayRef)>) {
    let b = RecordBatch::try_from_iter(cols).unwrap();
    let f = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(f, b.schema(), None).unwrap();
    w.write(&b).unwrap();
    w.close().unwrap();
}

fn strs(v: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(v.to_vec()))
}

fn ids(n: u64) -> ArrayRef {
    Arc::new(UInt64Array::from((0..n).collect::<Vec<_>>()))
}

/// A prediction directory from hand-made columns.
fn prediction(dir: &Path, cells: &[Option<&str>], genes: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    let g: Vec<Option<&str>> = genes.iter().map(|g| Some(*g)).collect();
    write(
        &dir.join("segger_transcripts.parquet"),
        vec![
            ("transcript_id", ids(cells.len() as u64)),
            ("segger_cell_id", strs(cells)),
            ("feature_name", strs(&g)),
        ],
    );
}

fn truth(path: &Path, cells: &[Option<&str>], types: &[Option<&str>]) {
    write(
        path,
        vec![
            ("transcript_id", ids(cells.len() as u64)),
            ("true_cell_id", strs(cells)),
            ("true_cell_type", strs(types)),
        ],
    );
}

#[test]
fn ari_matches_known_values() {
    // Values from scikit-learn's adjusted_rand_score documentation.
    assert!((adjusted_rand_index(&[0, 0, 1, 1], &[1, 1, 0, 0]) - 1.0).abs() < 1e-12);
    assert!(
        (adjusted_rand_index(&[0, 0, 1, 1], &[0, 0, 1, 2]) - 0.571_428_571_428_571_4).abs() < 1e-12
    );
    assert!((adjusted_rand_index(&[0, 0, 0, 0], &[0, 1, 2, 3]) - 0.0).abs() < 1e-12);
    assert!(
        (adjusted_rand_index(&[0, 0, 1, 2], &[0, 0, 1, 1]) - 0.571_428_571_428_571_4).abs() < 1e-12
    );
    assert!((adjusted_rand_index(&[0, 0, 1, 1], &[0, 1, 0, 1]) + 0.5).abs() < 1e-12);
}

#[test]
fn accuracy_purity_completeness_on_a_hand_made_case() {
    let d = tempfile::tempdir().unwrap();
    // True cells: A = rows 0..4, B = rows 4..8; rows 8, 9 are background.
    let t: Vec<Option<&str>> = vec![
        Some("A"),
        Some("A"),
        Some("A"),
        Some("A"),
        Some("B"),
        Some("B"),
        Some("B"),
        Some("B"),
        None,
        None,
    ];
    let ty: Vec<Option<&str>> = t.iter().map(|c| c.map(|_| "t")).collect();
    truth(&d.path().join("truth.parquet"), &t, &ty);
    // Prediction: A gets 3 of its own + 1 of B; B gets 2; one A and one B unassigned;
    // one background transcript assigned.
    let p: Vec<Option<&str>> = vec![
        Some("A"),
        Some("A"),
        Some("A"),
        None,
        Some("A"),
        Some("B"),
        Some("B"),
        None,
        Some("B"),
        None,
    ];
    prediction(&d.path().join("pred"), &p, &["g"; 10]);
    let pred = read_prediction(&d.path().join("pred")).unwrap();
    let tr = read_truth(&d.path().join("truth.parquet")).unwrap();
    let e = evaluate(&pred, Some(&tr), None);
    let m = e.truth.unwrap();
    assert_eq!(m.evaluated, 8);
    assert!((m.correct - 5.0 / 8.0).abs() < 1e-12);
    assert!((m.wrong - 1.0 / 8.0).abs() < 1e-12);
    assert!((m.unassigned - 2.0 / 8.0).abs() < 1e-12);
    // Purity: predicted A = 3/4, predicted B = 2/2 -> median 0.875.
    assert!((m.purity_median - 0.875).abs() < 1e-12);
    // Completeness: A = 3/4, B = 2/4 -> median 0.625.
    assert!((m.completeness_median - 0.625).abs() < 1e-12);
    // ARI over assigned true-cell rows: truth [A,A,A,B,B,B] vs pred [A,A,A,A,B,B].
    let ari = adjusted_rand_index(&[0, 0, 0, 1, 1, 1], &[0, 0, 0, 0, 1, 1]);
    assert!((m.ari - ari).abs() < 1e-12);
    assert_eq!(m.background, 2);
    assert!((m.background_assigned - 0.5).abs() < 1e-12);
    assert!((e.assigned_fraction - 0.7).abs() < 1e-12);
    assert_eq!(e.cells, 2);
}

#[test]
fn mecr_from_a_pair_file_and_without_truth() {
    let d = tempfile::tempdir().unwrap();
    // Cells: C1 has x and y, C2 has x only, C3 has y and z, C4 has z only.
    let cells = [
        Some("C1"),
        Some("C1"),
        Some("C2"),
        Some("C3"),
        Some("C3"),
        Some("C4"),
        None,
    ];
    let genes = ["x", "y", "x", "y", "z", "z", "x"];
    prediction(&d.path().join("pred"), &cells, &genes);
    std::fs::write(
        d.path().join("pairs.csv"),
        "gene1,gene2\nx,y\n# comment\nx,z\nq,x\n",
    )
    .unwrap();
    let pairs = read_gene_pairs(&d.path().join("pairs.csv")).unwrap();
    assert_eq!(pairs.len(), 3);
    let pred = read_prediction(&d.path().join("pred")).unwrap();
    let e = evaluate(&pred, None, Some((&pairs, "pairs.csv")));
    let m = e.mecr.unwrap();
    // (x,y): both in C1; either in C1, C2, C3 -> 1/3. (x,z): both none; either 4 -> 0.
    // (q,x): q unknown, pair dropped.
    assert_eq!(m.pairs, 2);
    assert!((m.value - (1.0 / 3.0) / 2.0).abs() < 1e-12);
    assert_eq!(m.truth_value, None);
    assert!(e.truth.is_none());
}

#[test]
fn bad_input_names_the_file_and_column() {
    let d = tempfile::tempdir().unwrap();
    let missing = read_prediction(&d.path().join("nope")).unwrap_err();
    assert!(matches!(missing, SimError::MissingFile { .. }), "{missing}");
    assert!(missing.to_string().contains("segger_transcripts.parquet"));

    std::fs::create_dir_all(d.path().join("p")).unwrap();
    write(
        &d.path().join("p/segger_transcripts.parquet"),
        vec![
            ("transcript_id", ids(2)),
            ("feature_name", strs(&[Some("a"), Some("b")])),
        ],
    );
    let e = read_prediction(&d.path().join("p")).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("segger_transcripts.parquet") && msg.contains("segger_cell_id"),
        "{msg}"
    );

    write(
        &d.path().join("t.parquet"),
        vec![
            ("transcript_id", ids(2)),
            ("true_cell_id", strs(&[Some("a"), None])),
        ],
    );
    let msg = read_truth(&d.path().join("t.parquet"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("t.parquet") && msg.contains("true_cell_type"),
        "{msg}"
    );

    write(
        &d.path().join("w.parquet"),
        vec![
            ("transcript_id", strs(&[Some("1"), Some("2")])),
            ("true_cell_id", strs(&[Some("a"), None])),
            ("true_cell_type", strs(&[Some("a"), None])),
        ],
    );
    let msg = read_truth(&d.path().join("w.parquet"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("w.parquet") && msg.contains("transcript_id") && msg.contains("integer"),
        "{msg}"
    );

    let msg = read_truth(&d.path().join("absent.parquet"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("absent.parquet") && msg.contains("not found"),
        "{msg}"
    );

    std::fs::write(d.path().join("bad.csv"), "x,y,z\n").unwrap();
    let msg = read_gene_pairs(&d.path().join("bad.csv"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("bad.csv") && msg.contains("line 1"), "{msg}");
}

fn column_types(path: &Path) -> Vec<(String, String)> {
    let f = std::fs::File::open(path).unwrap();
    let b = ParquetRecordBatchReaderBuilder::try_new(f).unwrap();
    b.schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().to_string()))
        .collect()
}

#[test]
fn simulate_writes_the_xenium_schema_deterministically() {
    let d = tempfile::tempdir().unwrap();
    let cfg = SimConfig::new(400, 7);
    let s = simulate(&cfg, &d.path().join("a"), false).unwrap();
    simulate(&cfg, &d.path().join("b"), false).unwrap();
    simulate(&SimConfig::new(400, 8), &d.path().join("c"), false).unwrap();
    for f in [
        "transcripts.parquet",
        "ground_truth.parquet",
        "nucleus_boundaries.parquet",
        "cell_boundaries.parquet",
    ] {
        let a = std::fs::read(d.path().join("a").join(f)).unwrap();
        let b = std::fs::read(d.path().join("b").join(f)).unwrap();
        let c = std::fs::read(d.path().join("c").join(f)).unwrap();
        assert_eq!(a, b, "{f} differs between two runs with one seed");
        assert_ne!(a, c, "{f} is the same for two seeds");
    }
    let t = column_types(&d.path().join("a/transcripts.parquet"));
    let want = [
        ("transcript_id", "UInt64"),
        ("cell_id", "Utf8"),
        ("overlaps_nucleus", "UInt8"),
        ("feature_name", "Utf8"),
        ("x_location", "Float32"),
        ("y_location", "Float32"),
        ("z_location", "Float32"),
        ("qv", "Float32"),
        ("fov_name", "Utf8"),
        ("nucleus_distance", "Float32"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(t, want);
    let b = column_types(&d.path().join("a/nucleus_boundaries.parquet"));
    assert_eq!(
        b.iter().map(|c| c.0.as_str()).collect::<Vec<_>>(),
        ["cell_id", "vertex_x", "vertex_y"]
    );
    // Tissue-like figures.
    assert!(s.cells >= 380 && s.cells <= 420, "{}", s.cells);
    assert!((0.35..0.45).contains(&s.density), "density {}", s.density);
    let per_cell = s.in_cells as f64 / s.cells as f64;
    assert!((50.0..70.0).contains(&per_cell), "per cell {per_cell}");
    let nuc = s.in_nuclei as f64 / s.transcripts as f64;
    assert!((0.3..0.4).contains(&nuc), "in nuclei {nuc}");
    assert!(s.controls > 0 && s.noise > 0);
}

#[test]
fn create_dataset_reads_simulate_output_unchanged() {
    use segger_data::create::{create_dataset, CreateOptions};
    use segger_data::raw::{Platform, RawOptions};
    let d = tempfile::tempdir().unwrap();
    let s = simulate(&SimConfig::new(300, 3), &d.path().join("raw"), false).unwrap();
    let opts = CreateOptions::new(
        d.path().join("raw"),
        d.path().join("ds"),
        RawOptions::new(Platform::Xenium),
    );
    let sum = create_dataset(&opts, &|_| {}).unwrap();
    assert_eq!(sum.load.rows, s.transcripts as u64);
    assert_eq!(sum.load.boundaries_kept, s.cells as u64);
    assert_eq!(sum.load.cell_without_polygon, 0);
    assert!(
        sum.load.boundaries_skipped.is_empty(),
        "{:?}",
        sum.load.boundaries_skipped
    );
    assert!(!sum.load.ids_from_rows && !sum.load.nuclear_from_polygons && sum.load.has_z);
    assert!(sum.positives > 0);
    // The cell boundaries are read too.
    let mut raw = RawOptions::new(Platform::Xenium);
    raw.boundaries = segger_data::raw::BoundaryKind::Cell;
    let opts = CreateOptions::new(d.path().join("raw"), d.path().join("ds2"), raw);
    let sum = create_dataset(&opts, &|_| {}).unwrap();
    assert_eq!(sum.load.boundaries_kept, s.cells as u64);
    assert!(
        sum.load.boundaries_skipped.is_empty(),
        "{:?}",
        sum.load.boundaries_skipped
    );
}

/// On the hard preset, the nuclei cut as merged are mostly the simulator's merged pairs: the
/// nuclear transcripts in the two halves belong to two different true cells. The transcripts
/// of a cut nucleus lose their cell (no positive); nothing is cut on the easy preset.
#[test]
fn merged_nuclei_of_the_hard_preset_are_cut_in_two() {
    use segger_data::raw::{load, Platform, RawOptions, NO_CELL};
    let d = tempfile::tempdir().unwrap();
    let raw = d.path().join("raw");
    let summary = simulate(&SimConfig::hard(700, 0), &raw, false).unwrap();
    let truth = read_truth(&raw.join("ground_truth.parquet")).unwrap();
    let mut opts = RawOptions::new(Platform::Xenium);
    opts.split_merged = false;
    let whole = load(&raw, &opts).unwrap();
    assert_eq!(whole.report.merged_nuclei_split, 0);
    assert_eq!(whole.bd.len() as u64, whole.report.boundaries_kept);
    let cut = load(&raw, &RawOptions::new(Platform::Xenium)).unwrap();
    let n = cut.report.merged_nuclei_split as usize;
    let merged = summary.merged_nuclei;
    assert!(
        n >= merged / 3 && n <= merged + 3,
        "cut {n}, merged {merged}"
    );
    assert_eq!(cut.bd.len(), whole.bd.len() + n);
    assert_eq!(cut.tx.len(), whole.tx.len());
    // The majority true cell of the nuclear transcripts of nucleus `w` (of the whole sample)
    // that lie in boundary `b` of the cut sample; those transcripts have no cell any more.
    let majority = |w: usize, b: usize| {
        let mut count: std::collections::HashMap<u32, usize> = Default::default();
        for t in 0..whole.tx.len() {
            if whole.tx.cell[t] as usize == w && whole.tx.nuclear.as_ref().unwrap()[t] {
                assert_eq!(cut.tx.cell[t], NO_CELL);
                if cut.bd.contains(b, whole.tx.x[t], whole.tx.y[t]) {
                    if let Some(Some((c, _))) = truth.by_id.get(&whole.tx.id[t]) {
                        *count.entry(*c).or_default() += 1;
                    }
                }
            }
        }
        count
            .into_iter()
            .max_by_key(|&(c, k)| (k, c))
            .map(|(c, _)| c)
    };
    let mut two_cells = 0;
    for half in whole.bd.len()..cut.bd.len() {
        let id = cut.bd.ids[half].strip_suffix("_b").unwrap();
        let first = cut.bd.ids.iter().position(|i| i == id).unwrap();
        let w = whole.bd.ids.iter().position(|i| i == id).unwrap();
        let (a, b) = (cut.bd.features[first][0], cut.bd.features[half][0]);
        let total = whole.bd.features[w][0];
        assert!((a + b - total).abs() < 1e-3 * total, "{a} + {b} vs {total}");
        let (m1, m2) = (majority(w, first), majority(w, half));
        if m1.is_some() && m2.is_some() && m1 != m2 {
            two_cells += 1;
        }
    }
    assert!(
        4 * two_cells >= 3 * n,
        "{two_cells} of {n} cut nuclei hold two true cells"
    );
    // Nothing is cut on the easy preset.
    let easy = d.path().join("easy");
    simulate(&SimConfig::new(700, 0), &easy, false).unwrap();
    let e = load(&easy, &RawOptions::new(Platform::Xenium)).unwrap();
    assert_eq!(e.report.merged_nuclei_split, 0);
}

/// The perfect segmentation (every transcript in its true cell) as an assignment.
fn perfect(raw: &Path) -> Assignments {
    // The ids of the whole sample.
    let tr = read_truth(&raw.join("ground_truth.parquet")).unwrap();
    let mut ids: Vec<i64> = tr.by_id.keys().copied().collect();
    ids.sort_unstable();
    let pred = Assignments {
        path: raw.to_path_buf(),
        ids,
        cell: Vec::new(),
        cell_names: Vec::new(),
        gene: None,
        gene_names: Vec::new(),
    };
    let cell = pred
        .ids
        .iter()
        .map(|id| tr.by_id[id].map(|(c, _)| c))
        .collect();
    Assignments {
        cell,
        cell_names: tr.cell_names.clone(),
        ..pred
    }
}

#[test]
fn baseline_and_perfect_segmentation_and_picture() {
    let d = tempfile::tempdir().unwrap();
    let raw = d.path().join("raw");
    simulate(&SimConfig::new(300, 5), &raw, false).unwrap();
    let tr = read_truth(&raw.join("ground_truth.parquet")).unwrap();
    let best = perfect(&raw);
    let e = evaluate(&best, Some(&tr), None);
    let m = e.truth.unwrap();
    assert!((m.correct - 1.0).abs() < 1e-12 && (m.ari - 1.0).abs() < 1e-12);
    let rules = standard_baselines(&raw, &best).unwrap();
    let base = rules[0].1.clone();
    let b = evaluate(&base, Some(&tr), None).truth.unwrap();
    // Nuclei hold about 35 % of the transcripts, and only their own cell's.
    assert!(
        (0.3..0.42).contains(&b.correct),
        "baseline correct {}",
        b.correct
    );
    assert!(b.wrong < 0.01, "baseline wrong {}", b.wrong);
    assert!(b.purity_median > 0.99);
    let png = d.path().join("s.png");
    draw_segmentation(&png, &raw, &[&base, &best], 80.0).unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    if let Some(keep) = std::env::var_os("SEGGER_KEEP_PNG") {
        std::fs::copy(&png, keep).unwrap();
    }
    // Titles add a band above the panels; the panels themselves are the same pixels.
    let titled = d.path().join("t.png");
    draw_titled_segmentation(
        &titled,
        &raw,
        &[("nucleus only", &base), ("truth: 100 % correct", &best)],
        80.0,
    )
    .unwrap();
    let t = std::fs::read(&titled).unwrap();
    let dims = |b: &[u8]| {
        let u = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        (u(16), u(20))
    };
    let (w, h) = dims(&bytes);
    assert_eq!(dims(&t), (w, h + 30));
    assert_ne!(t, bytes);
}

#[test]
fn geometric_baselines_on_easy_tissue() {
    let d = tempfile::tempdir().unwrap();
    let raw = d.path().join("raw");
    simulate(&SimConfig::new(300, 2), &raw, false).unwrap();
    let tr = read_truth(&raw.join("ground_truth.parquet")).unwrap();
    let best = perfect(&raw);
    let rules = standard_baselines(&raw, &best).unwrap();
    let m: Vec<_> = rules
        .iter()
        .map(|(n, a)| (n.clone(), evaluate(a, Some(&tr), None).truth.unwrap()))
        .collect();
    let names: Vec<&str> = m.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "nucleus only",
            "expanded 5 µm",
            "expanded 15 µm",
            "nearest centroid",
            "exp 3 + cc 1.5"
        ]
    );
    // Packed convex cells with central nuclei: the nearest centroid is almost always right,
    // and a wider expansion assigns more.
    assert!(m[3].1.correct > 0.9, "nearest centroid {:?}", m[3].1);
    assert!(m[3].1.unassigned == 0.0);
    assert!(m[2].1.unassigned < m[1].1.unassigned);
    assert!(
        m[1].1.correct > m[0].1.correct + 0.3,
        "expanded 5 {:?}",
        m[1].1
    );
    // The cell ids of these rules are true cell ids, so both matchings agree; components get
    // fresh ids, which only the majority matching can credit.
    for (_, t) in &m[..4] {
        assert!((t.correct - t.correct_majority).abs() < 0.02, "{t:?}");
    }
    assert!(m[4].1.correct_majority >= m[4].1.correct);
    for (_, t) in &m {
        let total = t.correct_majority + t.wrong_majority + t.unassigned;
        assert!((total - 1.0).abs() < 1e-9, "{t:?}");
    }
}

#[test]
fn an_empty_truth_id_is_no_cell() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("gt.parquet");
    truth(
        &path,
        &[Some("c1"), Some(""), None],
        &[Some("t"), Some(""), None],
    );
    let tr = read_truth(&path).unwrap();
    assert_eq!(tr.cell_names, vec!["c1".to_string()]);
    assert_eq!(tr.by_id[&1], None);
    assert_eq!(tr.by_id[&2], None);
    assert!(tr.by_id[&0].is_some());
}

/// The cell outlines of a simulated sample are the true cells: without diffusion every
/// transcript is in its cell; with it, the ones that diffused out are wrong. No
/// cell_boundaries.parquet: no such column.
#[test]
fn cell_outlines_give_the_truth_up_to_diffusion() {
    let d = tempfile::tempdir().unwrap();
    let score = |cfg: SimConfig, name: &str| {
        let raw = d.path().join(name);
        simulate(&cfg, &raw, false).unwrap();
        let tr = read_truth(&raw.join("ground_truth.parquet")).unwrap();
        let (n, a) = cell_outlines(&raw, &perfect(&raw))
            .unwrap()
            .expect("cell_boundaries");
        assert_eq!(n, CELL_OUTLINES);
        let t = evaluate(&a, Some(&tr), None).truth.unwrap();
        (raw, t)
    };
    let (easy, t) = score(SimConfig::new(300, 2), "easy");
    assert!(
        t.correct_majority > 0.999 && t.wrong_majority < 0.001,
        "{t:?}"
    );
    let mut diffused = SimConfig::new(300, 2);
    diffused.diffusion = 0.8;
    let (_, t) = score(diffused, "diffused");
    assert!(
        (0.03..0.2).contains(&t.wrong_majority) && t.unassigned < 0.01,
        "{t:?}"
    );
    // a broken outline file is an error naming the file (and the column when one is missing)
    let like = perfect(&easy);
    let outlines = easy.join("cell_boundaries.parquet");
    std::fs::write(&outlines, b"not parquet").unwrap();
    let err = cell_outlines(&easy, &like).unwrap_err().to_string();
    assert!(err.contains("cell_boundaries.parquet"), "{err}");
    write(
        &outlines,
        vec![
            ("cell_id", strs(&[Some("a"), Some("a"), Some("a")])),
            (
                "vertex_x",
                Arc::new(arrow_array::Float64Array::from(vec![0.0, 1.0, 0.0])),
            ),
        ],
    );
    let err = cell_outlines(&easy, &like).unwrap_err().to_string();
    assert!(
        err.contains("cell_boundaries.parquet") && err.contains("vertex_y"),
        "{err}"
    );
    std::fs::remove_file(&outlines).unwrap();
    assert!(cell_outlines(&easy, &like).unwrap().is_none());
}
