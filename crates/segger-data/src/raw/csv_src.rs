//! CSV input (plain or gzip-compressed): blocks of rows become Arrow `LargeUtf8` batches, which
//! the shared column code parses (numbers from text, with errors naming the row).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, LargeStringArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use rayon::prelude::*;

use super::columns::{self, col_err};
use super::transcripts::{Chunk, TxContext};
use crate::error::DataError;

/// Rows per batch.
const BATCH: usize = 64 * 1024;
/// Batches decoded in parallel at a time.
const IN_FLIGHT: usize = 8;

fn open(path: &Path) -> Result<csv::Reader<Box<dyn Read>>, DataError> {
    let f = File::open(path).map_err(|e| DataError::io(path, e))?;
    let gz = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.ends_with(".gz"));
    let inner: Box<dyn Read> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(BufReader::with_capacity(
            1 << 20,
            f,
        )))
    } else {
        Box::new(BufReader::with_capacity(1 << 20, f))
    };
    Ok(csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .from_reader(inner))
}

fn csv_err(path: &Path, e: csv::Error) -> DataError {
    match e.kind() {
        csv::ErrorKind::Io(_) => DataError::format(path, "file", format!("cannot read CSV ({e})")),
        _ => DataError::format(path, "file", format!("malformed CSV ({e})")),
    }
}

/// The header of a CSV file.
pub(crate) fn column_names(path: &Path) -> Result<Vec<String>, DataError> {
    let mut r = open(path)?;
    let h = r.headers().map_err(|e| csv_err(path, e))?;
    Ok(h.iter().map(|s| s.trim().to_string()).collect())
}

/// Streams the `wanted` columns in batches of string arrays through `f(batches)`, up to
/// [`IN_FLIGHT`] batches at a time, each with its first row number.
fn for_each_block(
    path: &Path,
    wanted: &[String],
    mut f: impl FnMut(Vec<(RecordBatch, u64)>) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let mut r = open(path)?;
    let header: Vec<String> = r
        .headers()
        .map_err(|e| csv_err(path, e))?
        .iter()
        .map(|s| s.trim().to_string())
        .collect();
    let mut idx = Vec::with_capacity(wanted.len());
    for w in wanted {
        match header.iter().position(|h| h == w) {
            Some(i) => idx.push(i),
            None => {
                return Err(col_err(
                    path,
                    w,
                    format!("column is missing (the file has: {})", header.join(", ")),
                ))
            }
        }
    }
    let schema = Arc::new(Schema::new(
        wanted
            .iter()
            .map(|w| Field::new(w, DataType::LargeUtf8, true))
            .collect::<Vec<_>>(),
    ));
    let mut rec = csv::StringRecord::new();
    let mut row = 0u64;
    loop {
        let mut block = Vec::with_capacity(IN_FLIGHT);
        for _ in 0..IN_FLIGHT {
            let row0 = row;
            let mut cols: Vec<Vec<Option<String>>> = (0..wanted.len())
                .map(|_| Vec::with_capacity(BATCH))
                .collect();
            while (row - row0) < BATCH as u64 {
                if !r.read_record(&mut rec).map_err(|e| csv_err(path, e))? {
                    break;
                }
                for (c, &i) in cols.iter_mut().zip(&idx) {
                    let v = rec.get(i).map(str::trim).filter(|v| !v.is_empty());
                    c.push(v.map(str::to_string));
                }
                row += 1;
            }
            if row == row0 {
                break;
            }
            let arrays: Vec<ArrayRef> = cols
                .into_iter()
                .map(|c| Arc::new(LargeStringArray::from(c)) as ArrayRef)
                .collect();
            let batch = RecordBatch::try_new(schema.clone(), arrays)
                .map_err(|e| DataError::format(path, "file", e.to_string()))?;
            block.push((batch, row0));
        }
        if block.is_empty() {
            return Ok(());
        }
        let last = block.len() < IN_FLIGHT;
        f(block)?;
        if last {
            return Ok(());
        }
    }
}

/// Streams `wanted` columns batch by batch, sequentially.
pub(crate) fn for_each_batch(
    path: &Path,
    wanted: &[String],
    mut f: impl FnMut(&RecordBatch, u64) -> Result<(), DataError>,
) -> Result<(), DataError> {
    for_each_block(path, wanted, |block| {
        for (b, row0) in &block {
            f(b, *row0)?;
        }
        Ok(())
    })
}

/// Reads the transcript file: one [`Chunk`] per batch, batches of a block filtered in
/// parallel.
pub(crate) fn read_transcripts(
    path: &Path,
    wanted: &[String],
    ctx: &TxContext<'_>,
) -> Result<Vec<Chunk>, DataError> {
    let mut chunks = Vec::new();
    for_each_block(path, wanted, |block| {
        let done: Vec<Chunk> = block
            .par_iter()
            .map(|(b, row0)| {
                let mut c = Chunk::new(ctx.prefixes.len());
                c.push_batch(b, ctx, *row0)?;
                Ok(c)
            })
            .collect::<Result<_, DataError>>()?;
        chunks.extend(done);
        Ok(())
    })?;
    Ok(chunks)
}

/// Reads a gene embedding CSV: header row, gene name in the first column, features after it.
pub(crate) fn read_embedding(path: &Path) -> Result<Vec<(String, Vec<f32>)>, DataError> {
    let header = column_names(path)?;
    if header.len() < 2 {
        return Err(col_err(
            path,
            "*",
            "expected a gene column followed by feature columns",
        ));
    }
    let mut rows = Vec::new();
    for_each_batch(path, &header, |b, row0| {
        let start = rows.len();
        let mut null = None;
        columns::for_each_str(b.column(0).as_ref(), path, &header[0], |i, v| {
            if v.is_none() {
                null.get_or_insert(i);
            }
            rows.push((
                v.unwrap_or_default().to_string(),
                Vec::with_capacity(header.len() - 1),
            ));
        })?;
        if let Some(i) = null {
            return Err(col_err(
                path,
                &header[0],
                format!("empty gene name at row {}", row0 + i as u64),
            ));
        }
        for (ci, name) in header.iter().enumerate().skip(1) {
            let v = columns::f32s(b.column(ci).as_ref(), path, name, row0, false)?;
            for (i, x) in v.into_iter().enumerate() {
                rows[start + i].1.push(x);
            }
        }
        Ok(())
    })?;
    Ok(rows)
}
