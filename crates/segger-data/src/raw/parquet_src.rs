//! Parquet input: schema inspection, parallel row-group streaming, embeddings.

use std::fs::File;
use std::path::Path;

use arrow_array::RecordBatch;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;
use rayon::prelude::*;

use super::columns::{self, col_err};
use super::transcripts::{Chunk, TxContext};
use crate::error::DataError;

/// Rows per decoded batch.
const BATCH: usize = 64 * 1024;

fn open(path: &Path) -> Result<(File, ArrowReaderMetadata), DataError> {
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(|e| {
        DataError::format(path, "file", format!("not a readable parquet file ({e})"))
    })?;
    Ok((file, meta))
}

/// The top-level column names of a parquet file.
pub(crate) fn column_names(path: &Path) -> Result<Vec<String>, DataError> {
    let (_, meta) = open(path)?;
    Ok(meta
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect())
}

fn mask(
    meta: &ArrowReaderMetadata,
    path: &Path,
    wanted: &[String],
) -> Result<ProjectionMask, DataError> {
    let fields = meta.schema().fields();
    let mut idx = Vec::with_capacity(wanted.len());
    for w in wanted {
        match fields.iter().position(|f| f.name() == w) {
            Some(i) => idx.push(i),
            None => {
                let have: Vec<String> = fields.iter().map(|f| f.name().clone()).collect();
                return Err(col_err(
                    path,
                    w,
                    format!("column is missing (the file has: {})", have.join(", ")),
                ));
            }
        }
    }
    Ok(ProjectionMask::roots(meta.parquet_schema(), idx))
}

fn read_err(path: &Path, e: impl std::fmt::Display) -> DataError {
    DataError::format(path, "data", format!("cannot decode parquet data ({e})"))
}

/// Streams `wanted` columns of every row group through `f(batch, first_row)`, sequentially.
pub(crate) fn for_each_batch(
    path: &Path,
    wanted: &[String],
    mut f: impl FnMut(&RecordBatch, u64) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let (file, meta) = open(path)?;
    let m = mask(&meta, path, wanted)?;
    let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta)
        .with_projection(m)
        .with_batch_size(BATCH)
        .build()
        .map_err(|e| read_err(path, e))?;
    let mut row0 = 0u64;
    for b in reader {
        let b = b.map_err(|e| read_err(path, e))?;
        f(&b, row0)?;
        row0 += b.num_rows() as u64;
    }
    Ok(())
}

/// Reads the transcript file: one [`Chunk`] per row group, decoded and filtered in parallel.
pub(crate) fn read_transcripts(
    path: &Path,
    wanted: &[String],
    ctx: &TxContext<'_>,
) -> Result<Vec<Chunk>, DataError> {
    let (_, meta) = open(path)?;
    let m = mask(&meta, path, wanted)?;
    let groups = meta.metadata().row_groups();
    let mut starts = Vec::with_capacity(groups.len());
    let mut acc = 0u64;
    for g in groups {
        starts.push(acc);
        acc += g.num_rows().max(0) as u64;
    }
    (0..groups.len())
        .into_par_iter()
        .map(|rg| {
            // A fresh handle per row group: cloned handles share one file offset, which
            // concurrent readers would race on.
            let f = File::open(path).map_err(|e| DataError::io(path, e))?;
            let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(f, meta.clone())
                .with_projection(m.clone())
                .with_row_groups(vec![rg])
                .with_batch_size(BATCH)
                .build()
                .map_err(|e| read_err(path, e))?;
            let mut chunk = Chunk::new(ctx.prefixes.len());
            let mut row0 = starts[rg];
            for b in reader {
                let t = std::time::Instant::now();
                let b = b.map_err(|e| read_err(path, e))?;
                chunk.read_s += t.elapsed().as_secs_f64();
                chunk.push_batch(&b, ctx, row0)?;
                row0 += b.num_rows() as u64;
            }
            Ok(chunk)
        })
        .collect()
}

/// Reads a gene embedding from parquet: the first string column names the gene, every
/// numeric column is a feature.
pub(crate) fn read_embedding(path: &Path) -> Result<Vec<(String, Vec<f32>)>, DataError> {
    let (_, meta) = open(path)?;
    let fields = meta.schema().fields().clone();
    let gene = fields
        .iter()
        .find(|f| {
            matches!(
                f.data_type(),
                arrow_schema::DataType::Utf8
                    | arrow_schema::DataType::LargeUtf8
                    | arrow_schema::DataType::Utf8View
                    | arrow_schema::DataType::Dictionary(_, _)
            )
        })
        .map(|f| f.name().clone())
        .ok_or_else(|| col_err(path, "gene", "no string column with gene names"))?;
    let feats: Vec<String> = fields
        .iter()
        .filter(|f| f.data_type().is_numeric())
        .map(|f| f.name().clone())
        .collect();
    if feats.is_empty() {
        return Err(col_err(path, "*", "no numeric feature columns"));
    }
    let mut wanted = vec![gene.clone()];
    wanted.extend(feats.iter().cloned());
    let mut rows: Vec<(String, Vec<f32>)> = Vec::new();
    for_each_batch(path, &wanted, |b, row0| {
        let start = rows.len();
        let arr = columns::require(b, path, &gene)?;
        let mut null = None;
        columns::for_each_str(arr.as_ref(), path, &gene, |i, v| match v {
            Some(s) => rows.push((s.to_string(), Vec::with_capacity(feats.len()))),
            None => {
                null.get_or_insert(i);
                rows.push((String::new(), Vec::new()));
            }
        })?;
        if let Some(i) = null {
            return Err(col_err(
                path,
                &gene,
                format!("null gene name at row {}", row0 + i as u64),
            ));
        }
        for f in &feats {
            let v = columns::f32s(columns::require(b, path, f)?.as_ref(), path, f, row0, false)?;
            for (i, x) in v.into_iter().enumerate() {
                rows[start + i].1.push(x);
            }
        }
        Ok(())
    })?;
    Ok(rows)
}
