//! Bad raw input: every case gives an error naming the file, the column and the problem, or a
//! documented skip that the load report counts.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{
    ArrayRef, BinaryArray, Float32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    UInt64Array, UInt8Array,
};
use segger_data::create::{create_dataset, CreateOptions};
use segger_data::raw::{self, Platform, RawOptions};
use segger_data::tiling::TileMode;
use segger_data::Split;

fn write_parquet(path: &Path, cols: Vec<(&str, ArrayRef)>) {
    let batch = RecordBatch::try_from_iter(cols).unwrap();
    let f = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

/// A small valid Xenium sample: nuclei `a` (0..4 × 0..4) and `b` (10..14 × 0..4), 12
/// transcripts.
struct Xen {
    ids: Vec<u64>,
    cells: Vec<&'static str>,
    nuc: Vec<u8>,
    genes: Vec<&'static str>,
    x: Vec<f32>,
    y: Vec<f32>,
    qv: Vec<f32>,
    bd: Vec<(&'static str, f32, f32)>,
}

fn square(id: &'static str, x: f32, y: f32, closed: bool) -> Vec<(&'static str, f32, f32)> {
    let mut v = vec![
        (id, x, y),
        (id, x + 4.0, y),
        (id, x + 4.0, y + 4.0),
        (id, x, y + 4.0),
    ];
    if closed {
        v.push((id, x, y));
    }
    v
}

impl Xen {
    fn good() -> Self {
        let mut s = Xen {
            ids: vec![],
            cells: vec![],
            nuc: vec![],
            genes: vec![],
            x: vec![],
            y: vec![],
            qv: vec![],
            bd: [square("a", 0.0, 0.0, true), square("b", 10.0, 0.0, true)].concat(),
        };
        let rows: [(&str, u8, &str, f32, f32); 12] = [
            ("a", 1, "G1", 1.0, 1.0),
            ("a", 1, "G2", 2.0, 2.5),
            ("a", 1, "G1", 3.0, 1.5),
            ("a", 0, "G3", 5.0, 2.0),
            ("b", 1, "G2", 11.0, 1.0),
            ("b", 1, "G3", 12.5, 3.0),
            ("b", 0, "G1", 15.0, 2.0),
            ("UNASSIGNED", 0, "G2", 7.0, 7.0),
            ("UNASSIGNED", 0, "G2", 7.5, 8.0),
            ("UNASSIGNED", 0, "BLANK_0001", 7.0, 9.0),
            ("a", 1, "NegControlProbe_1", 1.5, 1.5),
            ("b", 1, "G1", 13.0, 2.0),
        ];
        for (i, (c, n, g, x, y)) in rows.into_iter().enumerate() {
            s.ids.push(100 + i as u64);
            s.cells.push(c);
            s.nuc.push(n);
            s.genes.push(g);
            s.x.push(x);
            s.y.push(y);
            s.qv.push(if i == 8 { 10.0 } else { 30.0 });
        }
        s
    }

    fn tx_columns(&self) -> Vec<(&'static str, ArrayRef)> {
        vec![
            (
                "transcript_id",
                Arc::new(UInt64Array::from(self.ids.clone())) as ArrayRef,
            ),
            ("cell_id", Arc::new(StringArray::from(self.cells.clone()))),
            (
                "overlaps_nucleus",
                Arc::new(UInt8Array::from(self.nuc.clone())),
            ),
            (
                "feature_name",
                Arc::new(StringArray::from(self.genes.clone())),
            ),
            ("x_location", Arc::new(Float32Array::from(self.x.clone()))),
            ("y_location", Arc::new(Float32Array::from(self.y.clone()))),
            (
                "z_location",
                Arc::new(Float32Array::from(vec![5.0f32; self.x.len()])),
            ),
            ("qv", Arc::new(Float32Array::from(self.qv.clone()))),
        ]
    }

    fn write_with(&self, dir: &Path, tx: Vec<(&'static str, ArrayRef)>) {
        write_parquet(&dir.join("transcripts.parquet"), tx);
        let (ids, (xs, ys)): (Vec<&str>, (Vec<f32>, Vec<f32>)) =
            self.bd.iter().map(|&(i, x, y)| (i, (x, y))).unzip();
        write_parquet(
            &dir.join("nucleus_boundaries.parquet"),
            vec![
                ("cell_id", Arc::new(StringArray::from(ids)) as ArrayRef),
                ("vertex_x", Arc::new(Float32Array::from(xs))),
                ("vertex_y", Arc::new(Float32Array::from(ys))),
            ],
        );
    }

    fn write(&self, dir: &Path) {
        self.write_with(dir, self.tx_columns());
    }
}

fn xenium() -> RawOptions {
    RawOptions::new(Platform::Xenium)
}

fn load_err(dir: &Path, opts: &RawOptions) -> String {
    raw::load(dir, opts).map(|_| ()).unwrap_err().to_string()
}

fn assert_mentions(err: &str, parts: &[&str]) {
    for p in parts {
        assert!(err.contains(p), "error {err:?} does not mention {p:?}");
    }
}

#[test]
fn good_sample_loads_and_counts_filters() {
    let d = tempfile::tempdir().unwrap();
    Xen::good().write(d.path());
    let s = raw::load(d.path(), &xenium()).unwrap();
    assert_eq!(s.report.rows, 12);
    assert_eq!(s.report.dropped_prefix["BLANK_"], 1);
    assert_eq!(s.report.dropped_prefix["NegControlProbe_"], 1);
    assert_eq!(s.report.dropped_qv, 1);
    assert_eq!(s.report.kept, 9);
    assert_eq!(s.vocab, ["G1", "G2", "G3"]);
    assert_eq!(s.bd.ids, ["a", "b"]);
    assert_eq!(s.bd.features[0], [16.0, 1.0, 1.0, 2.0]);
    assert_eq!(s.report.rings_closed_implicitly, 0);
    // Custom prefixes and no quality filter.
    let mut o = xenium();
    o.drop_prefixes = vec!["G3".into()];
    o.columns.qv = Some("none".into());
    let s = raw::load(d.path(), &o).unwrap();
    assert_eq!(s.report.kept, 10);
    assert_eq!(s.vocab, ["BLANK_0001", "G1", "G2", "NegControlProbe_1"]);
}

#[test]
fn missing_file() {
    let d = tempfile::tempdir().unwrap();
    Xen::good().write(d.path());
    std::fs::remove_file(d.path().join("transcripts.parquet")).unwrap();
    assert_mentions(
        &load_err(d.path(), &xenium()),
        &["no transcripts file", "looked for transcripts.parquet"],
    );
    let mut o = xenium();
    o.boundaries = raw::BoundaryKind::Cell;
    Xen::good().write(d.path());
    // The nucleus file that is there is suggested with the setting that reads it.
    assert_mentions(
        &load_err(d.path(), &o),
        &[
            "no boundaries file",
            "cell_boundaries.parquet",
            "nucleus_boundaries.parquet is there: pass --boundaries nucleus",
        ],
    );
}

#[test]
fn missing_column() {
    let d = tempfile::tempdir().unwrap();
    let x = Xen::good();
    let cols = x
        .tx_columns()
        .into_iter()
        .filter(|(n, _)| *n != "feature_name")
        .collect();
    x.write_with(d.path(), cols);
    assert_mentions(
        &load_err(d.path(), &xenium()),
        &["transcripts.parquet", "feature_name", "missing"],
    );
    // An override that names no column.
    Xen::good().write(d.path());
    let mut o = xenium();
    o.columns.x = Some("xx".into());
    assert_mentions(
        &load_err(d.path(), &o),
        &["transcripts.parquet", "`xx`", "missing"],
    );
}

#[test]
fn wrong_column_type() {
    let d = tempfile::tempdir().unwrap();
    let x = Xen::good();
    let mut cols = x.tx_columns();
    cols[4] = ("x_location", Arc::new(StringArray::from(vec!["1"; 12])));
    x.write_with(d.path(), cols);
    assert_mentions(
        &load_err(d.path(), &xenium()),
        &["transcripts.parquet", "x_location", "wrong column type"],
    );
    let mut cols = x.tx_columns();
    cols[0] = ("transcript_id", Arc::new(Float64Array::from(vec![1.5; 12])));
    x.write_with(d.path(), cols);
    assert_mentions(
        &load_err(d.path(), &xenium()),
        &[
            "transcript_id",
            "1.5 at row 0",
            "not a whole number",
            "--id_column none",
        ],
    );
    // Whole numbers stored as floats (R-rewritten exports) are read as the integers they are.
    let mut cols = x.tx_columns();
    let ids: Vec<f64> = (0..12).map(|i| 281_474_976_710_656.0 + i as f64).collect();
    cols[0] = ("transcript_id", Arc::new(Float64Array::from(ids)));
    x.write_with(d.path(), cols);
    let s = raw::load(d.path(), &xenium()).unwrap();
    assert!(
        s.tx.id.iter().all(|&i| i >= 281_474_976_710_656),
        "{:?}",
        s.tx.id
    );
    assert!(!s.tx.id.is_empty() && s.tx.id.iter().all(|&i| i <= 281_474_976_710_667));
    // Not a parquet file at all.
    std::fs::write(d.path().join("transcripts.parquet"), b"hello").unwrap();
    assert_mentions(
        &load_err(d.path(), &xenium()),
        &["transcripts.parquet", "parquet"],
    );
}

#[test]
fn non_finite_coordinates() {
    for bad in [f32::NAN, f32::INFINITY] {
        let d = tempfile::tempdir().unwrap();
        let mut x = Xen::good();
        x.y[2] = bad;
        x.write(d.path());
        assert_mentions(
            &load_err(d.path(), &xenium()),
            &["transcripts.parquet", "y_location", "non-finite", "row 2"],
        );
    }
}

#[test]
fn zero_transcripts_after_filtering() {
    let d = tempfile::tempdir().unwrap();
    let mut x = Xen::good();
    x.qv = vec![5.0; 12];
    x.write(d.path());
    assert_mentions(
        &load_err(d.path(), &xenium()),
        &[
            "transcripts.parquet",
            "zero transcripts after filtering",
            "quality",
        ],
    );
}

#[test]
fn polygon_with_fewer_than_three_vertices() {
    let d = tempfile::tempdir().unwrap();
    let mut x = Xen::good();
    x.bd.extend([("c", 20.0, 0.0), ("c", 21.0, 0.0), ("c", 20.0, 0.0)]);
    x.write(d.path());
    let s = raw::load(d.path(), &xenium()).unwrap();
    assert_eq!(s.report.boundaries_read, 3);
    assert_eq!(s.report.boundaries_kept, 2);
    assert_eq!(
        s.report.boundaries_skipped["fewer than 3 distinct vertices"],
        1
    );
    let mut o = xenium();
    o.strict = true;
    assert_mentions(
        &load_err(d.path(), &o),
        &[
            "nucleus_boundaries.parquet",
            "cell_id",
            "polygon c",
            "fewer than 3",
        ],
    );
}

#[test]
fn unclosed_polygon_is_closed_and_counted() {
    let d = tempfile::tempdir().unwrap();
    let mut x = Xen::good();
    x.bd = [square("a", 0.0, 0.0, false), square("b", 10.0, 0.0, true)].concat();
    x.write(d.path());
    let s = raw::load(d.path(), &xenium()).unwrap();
    assert_eq!(s.report.rings_closed_implicitly, 1);
    assert_eq!(s.bd.features[0][0], 16.0);
}

#[test]
fn self_intersecting_polygon() {
    let d = tempfile::tempdir().unwrap();
    let mut x = Xen::good();
    x.bd.extend([
        ("c", 20.0, 0.0),
        ("c", 24.0, 4.0),
        ("c", 24.0, 0.0),
        ("c", 20.0, 4.0),
        ("c", 20.0, 0.0),
    ]);
    x.write(d.path());
    let s = raw::load(d.path(), &xenium()).unwrap();
    assert_eq!(s.report.boundaries_skipped["self-intersecting ring"], 1);
    assert_eq!(s.bd.len(), 2);
    let mut o = xenium();
    o.strict = true;
    assert_mentions(
        &load_err(d.path(), &o),
        &[
            "nucleus_boundaries.parquet",
            "polygon c",
            "self-intersecting",
        ],
    );
}

#[test]
fn duplicate_transcript_ids() {
    let d = tempfile::tempdir().unwrap();
    let mut x = Xen::good();
    x.ids[5] = x.ids[1];
    x.write(d.path());
    assert_mentions(
        &load_err(d.path(), &xenium()),
        &[
            "transcripts.parquet",
            "transcript_id",
            "duplicate transcript id 101",
        ],
    );
}

#[test]
fn cell_id_naming_no_polygon() {
    let d = tempfile::tempdir().unwrap();
    let mut x = Xen::good();
    x.cells[1] = "zzz";
    x.cells[7] = "yyy";
    x.write(d.path());
    let s = raw::load(d.path(), &xenium()).unwrap();
    assert_eq!(s.report.cell_without_polygon, 2);
    assert_eq!(s.report.nuclear_without_polygon, 1);
    assert_eq!(s.report.kept, 9);
    let mut o = xenium();
    o.strict = true;
    assert_mentions(
        &load_err(d.path(), &o),
        &["transcripts.parquet", "cell_id", "names no polygon"],
    );
}

#[test]
fn output_exists_without_overwrite() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in");
    std::fs::create_dir(&input).unwrap();
    Xen::good().write(&input);
    let out = d.path().join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), b"x").unwrap();
    // A folder of the user's is never replaced, with or without --overwrite.
    let opts = CreateOptions::new(input, out.clone(), xenium());
    let err = create_dataset(&opts, &|_| {}).unwrap_err().to_string();
    assert_mentions(&err, &["out", "not an earlier", "dataset.json"]);
    let mut o = opts.clone();
    o.overwrite = true;
    let err = create_dataset(&o, &|_| {}).unwrap_err().to_string();
    assert_mentions(&err, &["out", "not an earlier", "even with --overwrite"]);
    assert_eq!(std::fs::read(out.join("keep.txt")).unwrap(), b"x");
    // An empty folder is written; a temporary directory of a killed run (no such process)
    // is cleaned up.
    std::fs::remove_file(out.join("keep.txt")).unwrap();
    let stale = d.path().join(".out.tmp-4000000000");
    std::fs::create_dir_all(stale.join("train_tiles")).unwrap();
    let s = create_dataset(&opts, &|_| {}).unwrap();
    assert!(!stale.exists());
    // The earlier dataset: refused without --overwrite, replaced with it.
    let err = create_dataset(&opts, &|_| {}).unwrap_err().to_string();
    assert_mentions(&err, &["out", "already exists", "--overwrite"]);
    let s2 = create_dataset(&o, &|_| {}).unwrap();
    assert_eq!(s2.core_transcripts, s.core_transcripts);
    assert_eq!(s.core_transcripts, 9);
    // A single small tile with positives.
    assert_eq!(s.tiles.train + s.tiles.val + s.tiles.test, 1);
    assert_eq!(s.positives, 6);
}

#[test]
fn gene_embedding_gives_float_features_and_drops_unknown_genes() {
    let d = tempfile::tempdir().unwrap();
    Xen::good().write(d.path());
    let emb = d.path().join("emb.csv");
    let mut f = std::fs::File::create(&emb).unwrap();
    writeln!(f, "gene,f0,f1").unwrap();
    writeln!(f, "G1,1.0,0.5").unwrap();
    writeln!(f, "G2,-2,3").unwrap();
    drop(f);
    let mut o = xenium();
    o.gene_embedding = Some(emb.clone());
    let s = raw::load(d.path(), &o).unwrap();
    assert_eq!(s.vocab, ["G1", "G2"]);
    assert_eq!(s.report.dropped_no_embedding, 2);
    let e = s.embedding.as_ref().unwrap();
    assert_eq!((e.width, e.values.clone()), (2, vec![1.0, 0.5, -2.0, 3.0]));
    // A malformed value names its column and row.
    std::fs::write(&emb, "gene,f0\nG1,abc\n").unwrap();
    assert_mentions(
        &load_err(d.path(), &o),
        &["emb.csv", "f0", "row 0", "not a number"],
    );
    // The dataset stores F32 [N, 2] transcript features.
    std::fs::write(&emb, "gene,f0,f1\nG1,1,2\nG2,3,4\nG3,5,6\n").unwrap();
    // The output lies outside the input folder (an output inside an input is refused).
    let od = tempfile::tempdir().unwrap();
    let out = od.path().join("ds");
    let mut c = CreateOptions::new(d.path().to_path_buf(), out.clone(), o);
    c.val_prob = 0.0;
    c.test_prob = 0.0;
    create_dataset(&c, &|_| {}).unwrap();
    let ds = segger_data::TileDataset::open(&out.join(Split::Train.dir_name()), None).unwrap();
    let t = ds.get(0).unwrap();
    assert!(matches!(
        t.graph.tx.x,
        segger_graph::NodeFeatures::Dense { width: 2, .. }
    ));
}

fn wkb_square(x: f64, y: f64, s: f64) -> Vec<u8> {
    let pts = [(x, y), (x + s, y), (x + s, y + s), (x, y + s), (x, y)];
    // A MultiPolygon with one part, as MERSCOPE writes it.
    let mut b = vec![1u8];
    b.extend(6u32.to_le_bytes());
    b.extend(1u32.to_le_bytes());
    b.push(1);
    b.extend(3u32.to_le_bytes());
    b.extend(1u32.to_le_bytes());
    b.extend((pts.len() as u32).to_le_bytes());
    for (px, py) in pts {
        b.extend(px.to_le_bytes());
        b.extend(py.to_le_bytes());
    }
    b
}

#[test]
fn merscope_wkb_boundaries_and_point_in_polygon_positives() {
    let d = tempfile::tempdir().unwrap();
    let geoms = [
        wkb_square(0.0, 0.0, 4.0),
        wkb_square(10.0, 0.0, 4.0),
        wkb_square(0.0, 0.0, 5.0),
    ];
    write_parquet(
        &d.path().join("cellpose_nucleus_micron_space.parquet"),
        vec![
            (
                "EntityID",
                Arc::new(Int64Array::from(vec![7i64, 8, 7])) as ArrayRef,
            ),
            (
                "Geometry",
                Arc::new(BinaryArray::from(
                    geoms.iter().map(|g| g.as_slice()).collect::<Vec<_>>(),
                )),
            ),
        ],
    );
    let mut csv =
        String::from(",barcode_id,global_x,global_y,global_z,x,y,fov,gene,transcript_id,cell_id\n");
    let rows = [
        (1.0, 1.0, "G1", 7),
        (4.5, 4.5, "G2", 7),
        (11.0, 2.0, "G1", 8),
        (20.0, 20.0, "Blank-1", -1),
        (30.0, 1.0, "G2", 9),
    ];
    for (i, (x, y, g, c)) in rows.iter().enumerate() {
        csv.push_str(&format!("{i},0,{x},{y},0,0,0,0,{g},ENST{i},{c}\n"));
    }
    std::fs::write(d.path().join("detected_transcripts.csv"), csv).unwrap();
    let mut o = RawOptions::new(Platform::Merscope);
    o.drop_prefixes = vec!["Blank-".into()];
    let s = raw::load(d.path(), &o).unwrap();
    assert_eq!(s.report.boundary_duplicate_rows, 1);
    assert_eq!(s.bd.ids, ["7", "8"]);
    assert_eq!(s.bd.features[0][0], 25.0); // the larger of the two rows for 7
    assert!(s.report.nuclear_from_polygons && s.report.ids_from_rows);
    assert_eq!(s.report.cell_without_polygon, 1); // 9; -1 means unassigned
    assert_eq!(s.tx.id, [0, 1, 2, 4]);
    // The output lies outside the input folder (an output inside an input is refused).
    let od = tempfile::tempdir().unwrap();
    let out = od.path().join("ds");
    let mut opts = CreateOptions::new(d.path().to_path_buf(), out, o);
    // One tile holds the whole sample, so that no positive is also in a neighbour's margin.
    opts.tiling = TileMode::Grid {
        width: 50.0,
        height: 50.0,
    };
    let s = create_dataset(&opts, &|_| {}).unwrap();
    // (1,1) in 7, (4.5,4.5) in the 5 × 5 square of 7, (11,2) in 8.
    assert_eq!(s.positives, 3);
    // A geometry that is not WKB names the column and the row.
    write_parquet(
        &d.path().join("cellpose_nucleus_micron_space.parquet"),
        vec![
            (
                "EntityID",
                Arc::new(Int64Array::from(vec![7i64])) as ArrayRef,
            ),
            (
                "Geometry",
                Arc::new(BinaryArray::from(vec![&b"\x01\x03\x00"[..]])),
            ),
        ],
    );
    assert_mentions(
        &raw::load(d.path(), &RawOptions::new(Platform::Merscope))
            .map(|_| ())
            .unwrap_err()
            .to_string(),
        &[
            "cellpose_nucleus_micron_space.parquet",
            "Geometry",
            "row 0",
            "truncated",
        ],
    );
}

#[test]
fn merscope_without_cell_id_or_nucleus_file_uses_cells_by_polygon() {
    // The pre-2023 layout: cell boundaries only, and no cell_id column in the transcripts.
    let d = tempfile::tempdir().unwrap();
    write_parquet(
        &d.path().join("cell_boundaries.parquet"),
        vec![
            (
                "EntityID",
                Arc::new(Int64Array::from(vec![7i64, 8])) as ArrayRef,
            ),
            (
                "Geometry",
                Arc::new(BinaryArray::from(vec![
                    wkb_square(0.0, 0.0, 4.0).as_slice(),
                    wkb_square(10.0, 0.0, 4.0).as_slice(),
                ])),
            ),
        ],
    );
    let mut csv =
        String::from("V1,barcode_id,global_x,global_y,global_z,x,y,fov,gene,transcript_id\n");
    let rows = [
        (1.0, 1.0, "G1"),
        (3.5, 2.0, "G2"),
        (11.0, 2.0, "G1"),
        (20.0, 20.0, "G2"),
        (2.0, 2.0, "Blank-7"),
    ];
    for (i, (x, y, g)) in rows.iter().enumerate() {
        csv.push_str(&format!("{i},0,{x},{y},0,0,0,0,{g},ENST{i}\n"));
    }
    std::fs::write(d.path().join("detected_transcripts.csv"), csv).unwrap();
    assert_eq!(Platform::detect(d.path()).unwrap(), Platform::Merscope);
    // Every default: the nucleus kind falls back to the cell boundaries, Blank- is dropped.
    let s = raw::load(d.path(), &RawOptions::new(Platform::Merscope)).unwrap();
    assert!(s
        .report
        .boundaries_file
        .ends_with("cell_boundaries.parquet"));
    assert!(s.report.cells_from_polygons);
    assert_eq!(s.report.dropped_prefix["Blank-"], 1);
    assert_eq!(s.vocab, ["G1", "G2"]);
    let cell: Vec<Option<&str>> =
        s.tx.cell
            .iter()
            .map(|&c| (c != raw::NO_CELL).then(|| s.bd.ids[c as usize].as_str()))
            .collect();
    assert_eq!(cell, [Some("7"), Some("7"), Some("8"), None]);
    // An explicit cell column that is missing is still an error naming it.
    let mut o = RawOptions::new(Platform::Merscope);
    o.columns.cell = Some("cell_id".into());
    assert_mentions(
        &load_err(d.path(), &o),
        &["detected_transcripts.csv", "cell_id", "missing"],
    );
}

fn gz(path: &Path, text: &str) {
    let f = std::fs::File::create(path).unwrap();
    let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap();
}

#[test]
fn cosmx_csv_gz_in_pixels() {
    let d = tempfile::tempdir().unwrap();
    // Polygons keyed by fov + cellID (no `cell` column), in pixels.
    let mut poly = String::from("fov,cellID,x_local_px,y_local_px,x_global_px,y_global_px\n");
    for (x, y) in [(0, 0), (40, 0), (40, 40), (0, 40)] {
        poly.push_str(&format!("1,5,0,0,{x},{y}\n"));
    }
    for (x, y) in [(100, 0), (140, 0)] {
        poly.push_str(&format!("1,6,0,0,{x},{y}\n"));
    }
    gz(&d.path().join("Run1-polygons.csv.gz"), &poly);
    let tx = "fov,cell_ID,x_global_px,y_global_px,z,target,CellComp\n\
              1,5,10,10,0,G1,Nuclear\n1,5,30,35,1,G2,Cytoplasm\n1,0,80,80,0,G1,None\n\
              1,6,120,10,0,G2,Nuclear\n1,5,20,20,0,NegPrb1,Nuclear\n";
    gz(&d.path().join("Run1_tx_file.csv.gz"), tx);
    let mut o = RawOptions::new(Platform::Cosmx);
    o.drop_prefixes = vec!["NegPrb".into()];
    o.scale = Some(0.5);
    let s = raw::load(d.path(), &o).unwrap();
    assert_eq!(s.bd.ids, ["1_5"]);
    assert_eq!(
        s.report.boundaries_skipped["fewer than 3 distinct vertices"],
        1
    );
    assert_eq!(s.bd.features[0][0], 400.0); // (40 px × 0.5)²
    assert_eq!(s.tx.x, [5.0, 15.0, 40.0, 60.0]);
    assert_eq!(s.report.nuclear_without_polygon, 1); // 1_6 was skipped
                                                     // The output lies outside the input folder (an output inside an input is refused).
    let od = tempfile::tempdir().unwrap();
    let out = od.path().join("ds");
    let s = create_dataset(
        &CreateOptions::new(d.path().to_path_buf(), out, o.clone()),
        &|_| {},
    )
    .unwrap();
    assert_eq!(s.positives, 1);
    // A CSV with a non-numeric coordinate names the column and the row.
    gz(
        &d.path().join("Run1_tx_file.csv.gz"),
        "fov,cell_ID,x_global_px,y_global_px,target,CellComp\n1,5,1,oops,G1,Nuclear\n",
    );
    assert_mentions(
        &load_err(d.path(), &o),
        &[
            "Run1_tx_file.csv.gz",
            "y_global_px",
            "row 0",
            "not a number",
        ],
    );
}

#[test]
fn row_groups_are_read_in_parallel_and_in_order() {
    // The same sample written with one row group and with a row group per 2 rows loads
    // identically.
    let one = tempfile::tempdir().unwrap();
    let many = tempfile::tempdir().unwrap();
    let x = Xen::good();
    x.write(one.path());
    x.write(many.path());
    let batch = RecordBatch::try_from_iter(x.tx_columns()).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(2))
        .build();
    let f = std::fs::File::create(many.path().join("transcripts.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    for _ in 0..20 {
        let a = raw::load(one.path(), &xenium()).unwrap();
        let b = raw::load(many.path(), &xenium()).unwrap();
        assert_eq!(
            (&a.tx.id, &a.tx.x, &a.tx.gene, &a.tx.cell),
            (&b.tx.id, &b.tx.x, &b.tx.gene, &b.tx.cell)
        );
        assert_eq!(a.report.dropped_prefix, b.report.dropped_prefix);
    }
}

#[test]
fn binary_and_dictionary_string_columns_are_read() {
    use arrow_array::types::Int32Type;
    use arrow_array::DictionaryArray;
    let d = tempfile::tempdir().unwrap();
    let x = Xen::good();
    let mut cols = x.tx_columns();
    cols[1] = (
        "cell_id",
        Arc::new(
            x.cells
                .iter()
                .copied()
                .collect::<DictionaryArray<Int32Type>>(),
        ),
    );
    cols[3] = (
        "feature_name",
        Arc::new(BinaryArray::from(
            x.genes.iter().map(|g| g.as_bytes()).collect::<Vec<_>>(),
        )),
    );
    x.write_with(d.path(), cols);
    let s = raw::load(d.path(), &xenium()).unwrap();
    assert_eq!(s.vocab, ["G1", "G2", "G3"]);
    assert_eq!(s.report.kept, 9);
    assert_eq!(s.tx.cell.iter().filter(|&&c| c != raw::NO_CELL).count(), 8);
}

#[test]
fn the_platform_is_detected_from_the_transcript_file() {
    let cases: [(&str, Option<Platform>); 5] = [
        ("transcripts.parquet", Some(Platform::Xenium)),
        ("detected_transcripts.csv", Some(Platform::Merscope)),
        ("Run5642_S3_Quarter_tx_file.csv.gz", Some(Platform::Cosmx)),
        ("cells.parquet", None),
        ("", None),
    ];
    for (file, want) in cases {
        let d = tempfile::tempdir().unwrap();
        if !file.is_empty() {
            std::fs::write(d.path().join(file), b"").unwrap();
        }
        match (Platform::detect(d.path()), want) {
            (Ok(p), Some(w)) => assert_eq!(p, w, "{file}"),
            (Err(e), None) => assert_mentions(
                &e.to_string(),
                &[
                    &d.path().display().to_string(),
                    "transcripts.parquet",
                    "--platform",
                ],
            ),
            (got, want) => panic!("{file}: got {got:?}, want {want:?}"),
        }
    }
    // Files of two platforms: ambiguous.
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("transcripts.parquet"), b"").unwrap();
    std::fs::write(d.path().join("detected_transcripts.csv"), b"").unwrap();
    let e = Platform::detect(d.path()).unwrap_err().to_string();
    assert_mentions(&e, &["xenium, merscope", "--platform"]);
}
