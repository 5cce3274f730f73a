//! The files of `segger simulate`: transcripts, ground truth, nucleus and cell boundaries.

use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, Float32Array, StringArray, UInt64Array, UInt8Array};

use super::{Cell, Tissue, Tx, FIRST_TRANSCRIPT_ID, FOV_SIDE, ORIGIN, P};
use crate::io::write_parquet;
use crate::SimError;

fn fov_name(col: usize, row: usize) -> String {
    let mut letters = Vec::new();
    let mut r = row;
    loop {
        letters.push(b'A' + (r % 26) as u8);
        if r < 26 {
            break;
        }
        r = r / 26 - 1;
    }
    letters.reverse();
    let mut s: String = letters.into_iter().map(char::from).collect();
    s.push_str(&(col + 1).to_string());
    s
}

/// Fields of view: 250 µm squares, named by row letters and column number.
pub(super) struct Fovs {
    cols: usize,
    names: Vec<String>,
}

impl Fovs {
    pub(super) fn new(w: f64, h: f64) -> Self {
        let cols = ((w / FOV_SIDE).ceil() as usize).max(1);
        let rows = ((h / FOV_SIDE).ceil() as usize).max(1);
        let names = (0..rows * cols + cols)
            .map(|f| fov_name(f % cols, f / cols))
            .collect();
        Self { cols, names }
    }

    pub(super) fn of(&self, t: &Tx) -> usize {
        let c = (((t.x - ORIGIN) / FOV_SIDE).floor().max(0.0) as usize).min(self.cols - 1);
        let r = ((t.y - ORIGIN) / FOV_SIDE).floor().max(0.0) as usize;
        r * self.cols + c
    }
}

fn transcript_ids(n: usize) -> Vec<u64> {
    (0..n as u64).map(|i| FIRST_TRANSCRIPT_ID + i).collect()
}

/// Writes `transcripts.parquet`; returns the number of transcripts inside a written nucleus.
pub(super) fn write_transcripts(
    out: &Path,
    txs: &[Tx],
    tissue: &Tissue,
    features: &[String],
    fovs: &Fovs,
) -> Result<usize, SimError> {
    let n = txs.len();
    let mut col_cell: Vec<&str> = Vec::with_capacity(n);
    let mut col_nuc: Vec<u8> = Vec::with_capacity(n);
    let mut col_dist: Vec<f32> = Vec::with_capacity(n);
    let mut in_nuclei = 0usize;
    for tx in txs {
        match tissue.index.lookup(&tissue.nuclei, (tx.x, tx.y)) {
            (Some(k), _) => {
                in_nuclei += 1;
                col_cell.push(&tissue.nuclei[k].id);
                col_nuc.push(1);
                col_dist.push(0.0);
            }
            (None, ndist) => {
                col_cell.push("UNASSIGNED");
                col_nuc.push(0);
                col_dist.push(ndist as f32);
            }
        }
    }
    let f32s = |f: &dyn Fn(&Tx) -> f32| -> ArrayRef {
        Arc::new(Float32Array::from_iter_values(txs.iter().map(f)))
    };
    write_parquet(
        &out.join("transcripts.parquet"),
        vec![
            (
                "transcript_id",
                Arc::new(UInt64Array::from(transcript_ids(n))) as ArrayRef,
            ),
            ("cell_id", Arc::new(StringArray::from(col_cell))),
            ("overlaps_nucleus", Arc::new(UInt8Array::from(col_nuc))),
            (
                "feature_name",
                Arc::new(StringArray::from_iter_values(
                    txs.iter().map(|t| features[t.feature as usize].as_str()),
                )),
            ),
            ("x_location", f32s(&|t| t.x as f32)),
            ("y_location", f32s(&|t| t.y as f32)),
            ("z_location", f32s(&|t| t.z as f32)),
            ("qv", f32s(&|t| t.qv)),
            (
                "fov_name",
                Arc::new(StringArray::from_iter_values(
                    txs.iter().map(|t| fovs.names[fovs.of(t)].as_str()),
                )),
            ),
            ("nucleus_distance", Arc::new(Float32Array::from(col_dist))),
        ],
    )?;
    Ok(in_nuclei)
}

/// Writes `ground_truth.parquet`.
pub(super) fn write_truth(
    out: &Path,
    txs: &[Tx],
    cells: &[Cell],
    names: &[String],
    type_names: &[String],
) -> Result<(), SimError> {
    write_parquet(
        &out.join("ground_truth.parquet"),
        vec![
            (
                "transcript_id",
                Arc::new(UInt64Array::from(transcript_ids(txs.len()))) as ArrayRef,
            ),
            (
                "true_cell_id",
                Arc::new(StringArray::from_iter(txs.iter().map(|t| {
                    (t.cell != u32::MAX).then(|| names[t.cell as usize].as_str())
                }))),
            ),
            (
                "true_cell_type",
                Arc::new(StringArray::from_iter(txs.iter().map(|t| {
                    (t.cell != u32::MAX).then(|| type_names[cells[t.cell as usize].kind].as_str())
                }))),
            ),
        ],
    )
}

/// Writes one boundary file: closed rings, one row per vertex.
pub(super) fn write_rings<'a>(
    path: &Path,
    rings: impl Iterator<Item = (&'a str, &'a [P])>,
) -> Result<(), SimError> {
    let mut id: Vec<&str> = Vec::new();
    let mut vx: Vec<f32> = Vec::new();
    let mut vy: Vec<f32> = Vec::new();
    for (name, ring) in rings {
        for v in 0..=ring.len() {
            let p = ring[v % ring.len()];
            id.push(name);
            vx.push(p.0 as f32);
            vy.push(p.1 as f32);
        }
    }
    write_parquet(
        path,
        vec![
            ("cell_id", Arc::new(StringArray::from(id)) as ArrayRef),
            ("vertex_x", Arc::new(Float32Array::from(vx))),
            ("vertex_y", Arc::new(Float32Array::from(vy))),
        ],
    )
}
