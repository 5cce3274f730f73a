//! Parquet reading and writing helpers with errors that name the file and the column.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type,
    UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use crate::SimError;

fn pq_err(path: &Path, e: impl std::fmt::Display) -> SimError {
    SimError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// A file that could not be read as parquet: bad input.
fn corrupt(path: &Path, e: impl std::fmt::Display) -> SimError {
    SimError::Unreadable {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Writer properties like pyarrow's defaults: snappy, row groups of 2^20 rows.
fn props() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(1 << 20))
        .build()
}

/// Writes `columns` as one parquet file.
pub(crate) fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) -> Result<(), SimError> {
    let batch = RecordBatch::try_from_iter(columns).map_err(|e| pq_err(path, e))?;
    let file = File::create(path).map_err(|source| SimError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut w =
        ArrowWriter::try_new(file, batch.schema(), Some(props())).map_err(|e| pq_err(path, e))?;
    w.write(&batch).map_err(|e| pq_err(path, e))?;
    w.close().map_err(|e| pq_err(path, e))?;
    Ok(())
}

/// Reads the named columns of a parquet file, optional ones as `None` when absent.
pub(crate) fn read_columns(
    path: &Path,
    required: &[&str],
    optional: &[&str],
) -> Result<Vec<Option<ArrayRef>>, SimError> {
    if !path.is_file() {
        return Err(SimError::MissingFile {
            path: path.to_path_buf(),
        });
    }
    let file = File::open(path).map_err(|source| SimError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| corrupt(path, e))?;
    let schema = builder.schema().clone();
    let mut wanted: Vec<(&str, Option<usize>)> = Vec::new();
    for &c in required {
        match schema.index_of(c) {
            Ok(i) => wanted.push((c, Some(i))),
            Err(_) => {
                return Err(SimError::MissingColumn {
                    path: path.to_path_buf(),
                    column: c.to_string(),
                })
            }
        }
    }
    for &c in optional {
        wanted.push((c, schema.index_of(c).ok()));
    }
    let mut roots: Vec<usize> = wanted.iter().filter_map(|w| w.1).collect();
    roots.sort_unstable();
    roots.dedup();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots.iter().copied());
    let reader = builder
        .with_projection(mask)
        .build()
        .map_err(|e| corrupt(path, e))?;
    let mut parts: Vec<Vec<ArrayRef>> = vec![Vec::new(); roots.len()];
    for batch in reader {
        let batch = batch.map_err(|e| corrupt(path, e))?;
        for (k, part) in parts.iter_mut().enumerate() {
            part.push(batch.column(k).clone());
        }
    }
    let mut merged: Vec<ArrayRef> = Vec::with_capacity(roots.len());
    for (k, part) in parts.into_iter().enumerate() {
        let dt = schema.field(roots[k]).data_type().clone();
        if part.is_empty() {
            merged.push(arrow_array::new_empty_array(&dt));
        } else {
            let refs: Vec<&dyn Array> = part.iter().map(|a| a.as_ref()).collect();
            merged.push(arrow_select_concat(&refs).map_err(|e| corrupt(path, e))?);
        }
    }
    Ok(wanted
        .iter()
        .map(|(_, i)| i.map(|i| merged[roots.binary_search(&i).unwrap_or(0)].clone()))
        .collect())
}

/// Concatenates arrays of one type (a single array is returned as is).
fn arrow_select_concat(parts: &[&dyn Array]) -> Result<ArrayRef, String> {
    if parts.len() == 1 {
        return Ok(arrow_array::make_array(parts[0].to_data()));
    }
    let dt = parts[0].data_type().clone();
    // Rebuild through the element readers below: the crate has no arrow-select dependency.
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Dictionary(..) => {
            let mut out: Vec<Option<String>> = Vec::new();
            for p in parts {
                out.extend(strings_of(*p).map_err(|e| e.to_string())?);
            }
            Ok(Arc::new(arrow_array::StringArray::from(out)))
        }
        DataType::Float32 | DataType::Float64 => {
            let mut out: Vec<Option<f64>> = Vec::new();
            for p in parts {
                out.extend(floats_of(*p).map_err(|e| e.to_string())?);
            }
            Ok(Arc::new(arrow_array::Float64Array::from(out)))
        }
        _ => {
            let mut out: Vec<Option<i64>> = Vec::new();
            for p in parts {
                out.extend(ints_of(*p).map_err(|e| e.to_string())?);
            }
            Ok(Arc::new(arrow_array::Int64Array::from(out)))
        }
    }
}

/// Error for a column whose type is not accepted.
pub(crate) fn wrong_type(
    path: &Path,
    column: &str,
    a: &dyn Array,
    expected: &'static str,
) -> SimError {
    SimError::WrongType {
        path: path.to_path_buf(),
        column: column.to_string(),
        found: a.data_type().to_string(),
        expected,
    }
}

/// String values (plain, large, view or dictionary-encoded); `Err(())` for another type.
pub(crate) fn strings_of(a: &dyn Array) -> Result<Vec<Option<String>>, TypeMismatch> {
    let get = |a: &dyn Array, i: usize| -> Option<String> {
        if a.is_null(i) {
            return None;
        }
        match a.data_type() {
            DataType::Utf8 => Some(a.as_string::<i32>().value(i).to_string()),
            DataType::LargeUtf8 => Some(a.as_string::<i64>().value(i).to_string()),
            DataType::Utf8View => Some(a.as_string_view().value(i).to_string()),
            _ => None,
        }
    };
    match a.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            Ok((0..a.len()).map(|i| get(a, i)).collect())
        }
        DataType::Dictionary(k, v)
            if matches!(
                v.as_ref(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) =>
        {
            let keys: Vec<Option<i64>> = match k.as_ref() {
                DataType::Int8 => dict_keys::<Int8Type>(a),
                DataType::Int16 => dict_keys::<Int16Type>(a),
                DataType::Int32 => dict_keys::<Int32Type>(a),
                DataType::Int64 => dict_keys::<Int64Type>(a),
                DataType::UInt8 => dict_keys::<UInt8Type>(a),
                DataType::UInt16 => dict_keys::<UInt16Type>(a),
                DataType::UInt32 => dict_keys::<UInt32Type>(a),
                DataType::UInt64 => dict_keys::<UInt64Type>(a),
                _ => return Err(TypeMismatch),
            };
            let values = dict_values(a);
            Ok(keys
                .into_iter()
                .map(|k| k.and_then(|k| get(values.as_ref(), k as usize)))
                .collect())
        }
        _ => Err(TypeMismatch),
    }
}

fn dict_keys<K: arrow_array::types::ArrowDictionaryKeyType>(a: &dyn Array) -> Vec<Option<i64>>
where
    K::Native: num_like::ToI64,
{
    let d = a.as_dictionary::<K>();
    d.keys()
        .iter()
        .map(|k| k.map(num_like::ToI64::to_i64))
        .collect()
}

fn dict_values(a: &dyn Array) -> ArrayRef {
    match a.data_type() {
        DataType::Dictionary(k, _) => match k.as_ref() {
            DataType::Int8 => a.as_dictionary::<Int8Type>().values().clone(),
            DataType::Int16 => a.as_dictionary::<Int16Type>().values().clone(),
            DataType::Int32 => a.as_dictionary::<Int32Type>().values().clone(),
            DataType::Int64 => a.as_dictionary::<Int64Type>().values().clone(),
            DataType::UInt8 => a.as_dictionary::<UInt8Type>().values().clone(),
            DataType::UInt16 => a.as_dictionary::<UInt16Type>().values().clone(),
            DataType::UInt32 => a.as_dictionary::<UInt32Type>().values().clone(),
            _ => a.as_dictionary::<UInt64Type>().values().clone(),
        },
        _ => arrow_array::new_empty_array(&DataType::Utf8),
    }
}

mod num_like {
    /// Widening of dictionary key types.
    pub trait ToI64 {
        fn to_i64(self) -> i64;
    }
    macro_rules! impl_to_i64 {
        ($($t:ty),*) => {$(impl ToI64 for $t { fn to_i64(self) -> i64 { self as i64 } })*};
    }
    impl_to_i64!(i8, i16, i32, i64, u8, u16, u32, u64);
}

/// The column's type is not the expected kind.
#[derive(Debug)]
pub(crate) struct TypeMismatch;

impl std::fmt::Display for TypeMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("unexpected column type")
    }
}

/// Integer values of any integer type.
pub(crate) fn ints_of(a: &dyn Array) -> Result<Vec<Option<i64>>, TypeMismatch> {
    macro_rules! prim {
        ($t:ty) => {
            Ok(a.as_primitive::<$t>()
                .iter()
                .map(|v| v.map(|v| v as i64))
                .collect())
        };
    }
    match a.data_type() {
        DataType::Int8 => prim!(Int8Type),
        DataType::Int16 => prim!(Int16Type),
        DataType::Int32 => prim!(Int32Type),
        DataType::Int64 => prim!(Int64Type),
        DataType::UInt8 => prim!(UInt8Type),
        DataType::UInt16 => prim!(UInt16Type),
        DataType::UInt32 => prim!(UInt32Type),
        DataType::UInt64 => prim!(UInt64Type),
        _ => Err(TypeMismatch),
    }
}

/// Float values of a float or integer column.
pub(crate) fn floats_of(a: &dyn Array) -> Result<Vec<Option<f64>>, TypeMismatch> {
    match a.data_type() {
        DataType::Float32 => Ok(a
            .as_primitive::<Float32Type>()
            .iter()
            .map(|v| v.map(f64::from))
            .collect()),
        DataType::Float64 => Ok(a.as_primitive::<Float64Type>().iter().collect()),
        _ => Ok(ints_of(a)?
            .into_iter()
            .map(|v| v.map(|v| v as f64))
            .collect()),
    }
}
