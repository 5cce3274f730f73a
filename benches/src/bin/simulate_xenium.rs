//! Writes a simulated sample in the Xenium schema, for benchmarking `segger create_dataset`.
//!
//! `simulate_xenium OUT_DIR N_TRANSCRIPTS [SEED]` writes `transcripts.parquet` (transcript_id
//! u64, cell_id, overlaps_nucleus u8, feature_name, x/y/z_location f32, qv f32; snappy, row
//! groups of 2^20 rows like pyarrow's default) and `nucleus_boundaries.parquet` (closed
//! 13-vertex rings: cell_id, vertex_x, vertex_y).
//!
//! The tissue: nuclei of radius 3–5 µm on a jittered 12 µm lattice; transcripts at the
//! density of the Xenium lung preview (0.42 per µm²), 60 % scattered around a nucleus
//! (σ = 4 µm) and 40 % uniform; 350 genes plus 2 % control probes; about 15 % of qv below 20.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float32Array, RecordBatch, StringArray, UInt64Array, UInt8Array};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DENSITY: f64 = 0.42;
const SPACING: f64 = 12.0;
const VERTICES: usize = 12;

fn cell_name(i: usize) -> String {
    let mut s = [b'a'; 8];
    let mut v = i;
    for k in (0..8).rev() {
        s[k] = b'a' + (v % 26) as u8;
        v /= 26;
    }
    format!("{}-1", std::str::from_utf8(&s).expect("ascii"))
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    // Box-Muller.
    let u: f64 = rng.random::<f64>().max(1e-12);
    let v: f64 = rng.random();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
}

fn props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(1 << 20))
        .build()
}

/// Control probe names; 2 % of the transcripts are one of these.
const CONTROLS: [&str; 3] = [
    "NegControlProbe_00042",
    "BLANK_0001",
    "NegControlCodeword_0500",
];

/// Transcripts per written block.
const BLOCK: usize = 1 << 18;

fn main() {
    let (out, n, seed) = parse_args();
    std::fs::create_dir_all(&out).expect("create output directory");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let tissue = Tissue::new(n, &mut rng);
    write_boundaries(&out, &tissue.nuclei);
    write_transcripts(&out, n, &tissue, &mut rng);
    eprintln!(
        "wrote {n} transcripts and {} nuclei ({:.0} µm square) to {}",
        tissue.nuclei.len(),
        tissue.side,
        out.display()
    );
}

/// `OUT_DIR N_TRANSCRIPTS [SEED]` from the command line (seed 0 by default); prints the usage
/// and exits with status 2 when an argument is missing.
fn parse_args() -> (PathBuf, usize, u64) {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: simulate_xenium OUT_DIR N_TRANSCRIPTS [SEED]");
        std::process::exit(2);
    }
    let out = PathBuf::from(&args[1]);
    let n: usize = args[2].parse().expect("N_TRANSCRIPTS is an integer");
    let seed: u64 = args
        .get(3)
        .map_or(0, |s| s.parse().expect("SEED is an integer"));
    (out, n, seed)
}

/// The simulated square of tissue and its nuclei.
struct Tissue {
    /// The x of the lower-left corner (µm).
    x0: f64,
    /// The y of the lower-left corner (µm).
    y0: f64,
    /// The side (µm).
    side: f64,
    /// Nuclei per lattice row (and column).
    per_row: usize,
    /// Nuclei as (centre x, centre y, radius), row by row.
    nuclei: Vec<(f64, f64, f64)>,
}

impl Tissue {
    /// A square sized for `n` transcripts at [`DENSITY`], with a nucleus of radius 3–5 µm
    /// jittered around each node of the [`SPACING`] lattice.
    fn new(n: usize, rng: &mut ChaCha8Rng) -> Self {
        let side = (n as f64 / DENSITY).sqrt();
        let (x0, y0) = (1000.0, 1000.0);
        let per_row = (side / SPACING).floor().max(1.0) as usize;
        let mut nuclei: Vec<(f64, f64, f64)> = Vec::new();
        for j in 0..per_row {
            for i in 0..per_row {
                let cx = x0 + (i as f64 + 0.5) * SPACING + (rng.random::<f64>() - 0.5) * 3.0;
                let cy = y0 + (j as f64 + 0.5) * SPACING + (rng.random::<f64>() - 0.5) * 3.0;
                nuclei.push((cx, cy, 3.0 + 2.0 * rng.random::<f64>()));
            }
        }
        Self {
            x0,
            y0,
            side,
            per_row,
            nuclei,
        }
    }

    /// A transcript position: 60 % scattered around a random nucleus (σ = 4 µm), the rest
    /// uniform over the square.
    fn random_position(&self, rng: &mut ChaCha8Rng) -> (f64, f64) {
        if rng.random::<f64>() < 0.6 {
            let &(cx, cy, _) = &self.nuclei[rng.random_range(0..self.nuclei.len())];
            (cx + 4.0 * normal(rng), cy + 4.0 * normal(rng))
        } else {
            (
                self.x0 + self.side * rng.random::<f64>(),
                self.y0 + self.side * rng.random::<f64>(),
            )
        }
    }

    /// The distance to the nearest lattice nucleus of (`x`, `y`) and its index (the 3×3
    /// neighbourhood suffices); `(∞, usize::MAX)` when no neighbouring node is on the lattice.
    fn nearest_nucleus(&self, x: f64, y: f64) -> (f64, usize) {
        let per_row = self.per_row;
        let gi = ((x - self.x0) / SPACING).floor() as i64;
        let gj = ((y - self.y0) / SPACING).floor() as i64;
        let mut best = (f64::INFINITY, usize::MAX);
        for dj in -1..=1 {
            for di in -1..=1 {
                let (a, b) = (gi + di, gj + dj);
                if a < 0 || b < 0 || a >= per_row as i64 || b >= per_row as i64 {
                    continue;
                }
                let k = b as usize * per_row + a as usize;
                let (cx, cy, _) = self.nuclei[k];
                let d = (x - cx).hypot(y - cy);
                if d < best.0 {
                    best = (d, k);
                }
            }
        }
        best
    }
}

/// Writes `nucleus_boundaries.parquet` into `out`: each nucleus as a closed ring of
/// [`VERTICES`] + 1 vertices.
fn write_boundaries(out: &Path, nuclei: &[(f64, f64, f64)]) {
    let mut ids = Vec::with_capacity(nuclei.len() * (VERTICES + 1));
    let mut vx = Vec::with_capacity(ids.capacity());
    let mut vy = Vec::with_capacity(ids.capacity());
    for (k, &(cx, cy, r)) in nuclei.iter().enumerate() {
        let name = cell_name(k);
        for v in 0..=VERTICES {
            let a = 2.0 * std::f64::consts::PI * (v % VERTICES) as f64 / VERTICES as f64;
            ids.push(name.clone());
            vx.push((cx + r * a.cos()) as f32);
            vy.push((cy + r * a.sin()) as f32);
        }
    }
    let batch = RecordBatch::try_from_iter([
        ("cell_id", Arc::new(StringArray::from(ids)) as ArrayRef),
        ("vertex_x", Arc::new(Float32Array::from(vx)) as ArrayRef),
        ("vertex_y", Arc::new(Float32Array::from(vy)) as ArrayRef),
    ])
    .expect("boundary batch");
    let f = File::create(out.join("nucleus_boundaries.parquet")).expect("create boundaries");
    let mut w = ArrowWriter::try_new(f, batch.schema(), Some(props())).expect("writer");
    w.write(&batch).expect("write boundaries");
    w.close().expect("close boundaries");
}

/// Writes `transcripts.parquet` into `out`: `n` transcripts of `tissue`, in blocks of
/// [`BLOCK`].
fn write_transcripts(out: &Path, n: usize, tissue: &Tissue, rng: &mut ChaCha8Rng) {
    let genes: Vec<String> = (0..350).map(|g| format!("GENE{g:03}")).collect();
    let f = File::create(out.join("transcripts.parquet")).expect("create transcripts");
    let mut writer: Option<ArrowWriter<File>> = None;
    let mut written = 0usize;
    while written < n {
        let m = BLOCK.min(n - written);
        let batch = transcript_block(m, written, tissue, &genes, rng);
        let w = writer.get_or_insert_with(|| {
            ArrowWriter::try_new(
                f.try_clone().expect("clone file"),
                batch.schema(),
                Some(props()),
            )
            .expect("writer")
        });
        w.write(&batch).expect("write transcripts");
        written += m;
    }
    writer
        .expect("at least one block")
        .close()
        .expect("close transcripts");
}

/// `m` transcripts of `tissue`, numbered from `first`, as a record batch in the Xenium schema:
/// each assigned to its nearest nucleus's cell within 8 µm, inside the nucleus within 95 % of
/// its radius, with a gene of `genes` (or a control probe) and a quality value.
fn transcript_block(
    m: usize,
    first: usize,
    tissue: &Tissue,
    genes: &[String],
    rng: &mut ChaCha8Rng,
) -> RecordBatch {
    let nuclei = &tissue.nuclei;
    let mut tid = Vec::with_capacity(m);
    let mut cell = Vec::with_capacity(m);
    let mut nuc = Vec::with_capacity(m);
    let mut feat = Vec::with_capacity(m);
    let (mut xs, mut ys, mut zs, mut qv) = (
        Vec::with_capacity(m),
        Vec::with_capacity(m),
        Vec::with_capacity(m),
        Vec::with_capacity(m),
    );
    for i in 0..m {
        let (x, y) = tissue.random_position(rng);
        let (d, k) = tissue.nearest_nucleus(x, y);
        let inside = k != usize::MAX && d < nuclei[k].2 * 0.95;
        cell.push(if k != usize::MAX && d < 8.0 {
            cell_name(k)
        } else {
            "UNASSIGNED".to_string()
        });
        nuc.push(u8::from(inside));
        feat.push(if rng.random::<f64>() < 0.02 {
            CONTROLS[rng.random_range(0..CONTROLS.len())].to_string()
        } else {
            genes[rng.random_range(0..genes.len())].clone()
        });
        tid.push(281_000_000_000_000u64 + (first + i) as u64);
        xs.push(x as f32);
        ys.push(y as f32);
        zs.push((10.0 + 15.0 * rng.random::<f64>()) as f32);
        qv.push(if rng.random::<f64>() < 0.15 {
            (5.0 + 15.0 * rng.random::<f64>()) as f32
        } else {
            (20.0 + 20.0 * rng.random::<f64>()) as f32
        });
    }
    RecordBatch::try_from_iter([
        (
            "transcript_id",
            Arc::new(UInt64Array::from(tid)) as ArrayRef,
        ),
        ("cell_id", Arc::new(StringArray::from(cell)) as ArrayRef),
        (
            "overlaps_nucleus",
            Arc::new(UInt8Array::from(nuc)) as ArrayRef,
        ),
        (
            "feature_name",
            Arc::new(StringArray::from(feat)) as ArrayRef,
        ),
        ("x_location", Arc::new(Float32Array::from(xs)) as ArrayRef),
        ("y_location", Arc::new(Float32Array::from(ys)) as ArrayRef),
        ("z_location", Arc::new(Float32Array::from(zs)) as ArrayRef),
        ("qv", Arc::new(Float32Array::from(qv)) as ArrayRef),
    ])
    .expect("transcript batch")
}
