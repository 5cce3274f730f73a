//! Typed access to Arrow columns of raw instrument files, with errors that name the file, the
//! column and the problem. Accepts the encodings the instruments and pandas produce: any
//! integer or float type for numbers; UTF-8 (plain, large, view or dictionary-encoded) or
//! integers for keys.

use std::collections::HashMap;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::DataType;

use crate::error::DataError;

/// A column problem, for `file`.
pub(crate) fn col_err(file: &Path, column: &str, problem: impl Into<String>) -> DataError {
    DataError::Column {
        path: file.to_path_buf(),
        column: column.to_string(),
        problem: problem.into(),
    }
}

/// The column named `name`, or an error listing the columns that exist.
pub(crate) fn require<'a>(
    batch: &'a RecordBatch,
    file: &Path,
    name: &str,
) -> Result<&'a ArrayRef, DataError> {
    batch.column_by_name(name).ok_or_else(|| {
        let have: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        col_err(
            file,
            name,
            format!("column is missing (the file has: {})", have.join(", ")),
        )
    })
}

fn null_err(file: &Path, column: &str, arr: &dyn Array, row0: u64) -> DataError {
    let i = (0..arr.len()).find(|&i| arr.is_null(i)).unwrap_or(0);
    col_err(
        file,
        column,
        format!("null value at row {}", row0 + i as u64),
    )
}

fn type_err(file: &Path, column: &str, dt: &DataType, want: &str) -> DataError {
    col_err(
        file,
        column,
        format!("wrong column type {dt}, expected {want}"),
    )
}

macro_rules! numeric_to {
    ($arr:expr, $out:ty, $($t:ty),*) => {{
        let a: &dyn Array = $arr;
        $(
            if let Some(p) = a.as_primitive_opt::<$t>() {
                Some(p.values().iter().map(|&v| v as $out).collect::<Vec<$out>>())
            } else
        )* { None }
    }};
}

/// Parses a text column into numbers; nulls give `None`. CSV input reaches the column code
/// as `LargeUtf8` arrays, the only string type parsed as numbers: a parquet column of plain
/// strings where numbers are expected is a wrong column type.
fn parse_text<T: std::str::FromStr>(
    arr: &dyn Array,
    file: &Path,
    column: &str,
    row0: u64,
    want: &str,
) -> Option<Result<Vec<Option<T>>, DataError>> {
    let s = arr.as_string_opt::<i64>()?;
    let mut out = Vec::with_capacity(s.len());
    for i in 0..s.len() {
        if s.is_null(i) {
            out.push(None);
            continue;
        }
        let v = s.value(i);
        match v.parse::<T>() {
            Ok(x) => out.push(Some(x)),
            Err(_) => {
                return Some(Err(col_err(
                    file,
                    column,
                    format!(
                        "wrong column type: value {v:?} at row {} is not {want}",
                        row0 + i as u64
                    ),
                )))
            }
        }
    }
    Some(Ok(out))
}

/// The values of a parsed text column, or an error naming the first null's row.
fn without_nulls<T>(
    v: Vec<Option<T>>,
    file: &Path,
    column: &str,
    row0: u64,
) -> Result<Vec<T>, DataError> {
    if let Some(i) = v.iter().position(Option::is_none) {
        return Err(col_err(
            file,
            column,
            format!("null value at row {}", row0 + i as u64),
        ));
    }
    Ok(v.into_iter().flatten().collect())
}

/// The numbers of the column named `name` of `batch` as `f64` ([`require`], then [`f64s`]).
pub(crate) fn required_f64s(
    batch: &RecordBatch,
    file: &Path,
    name: &str,
    row0: u64,
) -> Result<Vec<f64>, DataError> {
    f64s(require(batch, file, name)?.as_ref(), file, name, row0)
}

/// Numbers as `f64` (any integer or float type). Nulls are errors.
pub(crate) fn f64s(
    arr: &dyn Array,
    file: &Path,
    column: &str,
    row0: u64,
) -> Result<Vec<f64>, DataError> {
    if let Some(v) = parse_text::<f64>(arr, file, column, row0, "a number") {
        return without_nulls(v?, file, column, row0);
    }
    if arr.null_count() > 0 {
        return Err(null_err(file, column, arr, row0));
    }
    numeric_to!(
        arr,
        f64,
        Float32Type,
        Float64Type,
        Int8Type,
        Int16Type,
        Int32Type,
        Int64Type,
        UInt8Type,
        UInt16Type,
        UInt32Type,
        UInt64Type
    )
    .ok_or_else(|| type_err(file, column, arr.data_type(), "a numeric type"))
}

/// Numbers as `f32`; nulls become NaN when `nulls_as_nan`, errors otherwise.
pub(crate) fn f32s(
    arr: &dyn Array,
    file: &Path,
    column: &str,
    row0: u64,
    nulls_as_nan: bool,
) -> Result<Vec<f32>, DataError> {
    if let Some(v) = parse_text::<f32>(arr, file, column, row0, "a number") {
        let v = v?;
        if !nulls_as_nan {
            return without_nulls(v, file, column, row0);
        }
        return Ok(v.into_iter().map(|x| x.unwrap_or(f32::NAN)).collect());
    }
    if arr.null_count() > 0 && !nulls_as_nan {
        return Err(null_err(file, column, arr, row0));
    }
    let mut v = if let Some(p) = arr.as_primitive_opt::<Float32Type>() {
        p.values().to_vec()
    } else {
        numeric_to!(
            arr,
            f32,
            Float64Type,
            Int8Type,
            Int16Type,
            Int32Type,
            Int64Type,
            UInt8Type,
            UInt16Type,
            UInt32Type,
            UInt64Type
        )
        .ok_or_else(|| type_err(file, column, arr.data_type(), "a numeric type"))?
    };
    if arr.null_count() > 0 {
        for (i, x) in v.iter_mut().enumerate() {
            if arr.is_null(i) {
                *x = f32::NAN;
            }
        }
    }
    Ok(v)
}

/// Integer ids as `i64`. Unsigned values above `i64::MAX`, floats and strings are errors.
pub(crate) fn i64s(
    arr: &dyn Array,
    file: &Path,
    column: &str,
    row0: u64,
) -> Result<Vec<i64>, DataError> {
    if let Some(v) = parse_text::<i64>(arr, file, column, row0, "an integer") {
        return without_nulls(v?, file, column, row0);
    }
    if arr.null_count() > 0 {
        return Err(null_err(file, column, arr, row0));
    }
    if let Some(p) = arr.as_primitive_opt::<UInt64Type>() {
        return p
            .values()
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                i64::try_from(v).map_err(|_| {
                    col_err(
                        file,
                        column,
                        format!("value {v} at row {} does not fit in i64", row0 + i as u64),
                    )
                })
            })
            .collect();
    }
    if let Some(v) = integral_floats(arr, file, column, row0) {
        return v;
    }
    numeric_to!(
        arr, i64, Int64Type, Int32Type, Int16Type, Int8Type, UInt32Type, UInt16Type, UInt8Type
    )
    .ok_or_else(|| type_err(file, column, arr.data_type(), "an integer type"))
}

/// Integers stored as floats (exports rewritten by R, whose data frames have no 64-bit
/// integers): accepted when every value is a whole number that a double holds exactly
/// (|v| ≤ 2^53); `None` when the column is not a float column.
fn integral_floats(
    arr: &dyn Array,
    file: &Path,
    column: &str,
    row0: u64,
) -> Option<Result<Vec<i64>, DataError>> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    let values: Vec<f64> = if let Some(p) = arr.as_primitive_opt::<Float64Type>() {
        p.values().to_vec()
    } else if let Some(p) = arr.as_primitive_opt::<Float32Type>() {
        p.values().iter().map(|&v| v as f64).collect()
    } else {
        return None;
    };
    Some(
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                if v.is_finite() && v.fract() == 0.0 && v.abs() <= EXACT {
                    Ok(v as i64)
                } else {
                    Err(col_err(
                        file,
                        column,
                        format!(
                            "value {v} at row {} is not a whole number; an integer column stored \
                             as floats is read only when every value is whole (pass \
                             --id_column none to number the transcripts by row instead)",
                            row0 + i as u64
                        ),
                    ))
                }
            })
            .collect(),
    )
}

/// Calls `f(row, value)` for every row of a string-like column (nulls give `None`). Integer
/// columns are formatted in decimal. Dictionary-encoded columns call `f` with the dictionary
/// value for each row, which lets callers cache per dictionary key via [`map_keys`].
pub(crate) fn for_each_str(
    arr: &dyn Array,
    file: &Path,
    column: &str,
    mut f: impl FnMut(usize, Option<&str>),
) -> Result<(), DataError> {
    for_each_str_dyn(arr, file, column, &mut f)
}

fn for_each_str_dyn(
    arr: &dyn Array,
    file: &Path,
    column: &str,
    f: &mut dyn FnMut(usize, Option<&str>),
) -> Result<(), DataError> {
    macro_rules! strings {
        ($a:expr) => {{
            let a = $a;
            for i in 0..a.len() {
                f(i, if a.is_null(i) { None } else { Some(a.value(i)) });
            }
            return Ok(());
        }};
    }
    match arr.data_type() {
        DataType::Utf8 => strings!(arr.as_string::<i32>()),
        DataType::LargeUtf8 => strings!(arr.as_string::<i64>()),
        DataType::Utf8View => strings!(arr.as_string_view()),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            // Some exports store strings as binary without the UTF-8 annotation.
            let get = |i: usize| -> &[u8] {
                match arr.data_type() {
                    DataType::Binary => arr.as_binary::<i32>().value(i),
                    DataType::LargeBinary => arr.as_binary::<i64>().value(i),
                    _ => arr.as_binary_view().value(i),
                }
            };
            for i in 0..arr.len() {
                if arr.is_null(i) {
                    f(i, None);
                    continue;
                }
                match std::str::from_utf8(get(i)) {
                    Ok(s) => f(i, Some(s)),
                    Err(_) => {
                        return Err(col_err(
                            file,
                            column,
                            format!("value at row {i} of a batch is not valid UTF-8"),
                        ))
                    }
                }
            }
            Ok(())
        }
        DataType::Dictionary(_, _) => {
            // Decode the dictionary once, then index it per row.
            let keys = dictionary_keys(arr, file, column)?;
            let mut values: Vec<Option<String>> = Vec::new();
            let dict = dictionary_values(arr);
            for_each_str_dyn(dict.as_ref(), file, column, &mut |_, v| {
                values.push(v.map(str::to_string))
            })?;
            for (i, k) in keys.iter().enumerate() {
                let v = k.and_then(|k| values.get(k).and_then(|v| v.as_deref()));
                f(i, v);
            }
            Ok(())
        }
        dt if dt.is_integer() => {
            let ints = match i64s(arr, file, column, 0) {
                Ok(v) => v,
                Err(_) => {
                    // Nulls inside integer keys: format row by row.
                    let mut out = Vec::with_capacity(arr.len());
                    for i in 0..arr.len() {
                        out.push(if arr.is_null(i) {
                            i64::MIN
                        } else {
                            i64s(&arr.slice(i, 1), file, column, 0)?[0]
                        });
                    }
                    out
                }
            };
            let mut buf = String::new();
            for (i, v) in ints.iter().enumerate() {
                if arr.is_null(i) {
                    f(i, None);
                } else {
                    buf.clear();
                    use std::fmt::Write;
                    let _ = write!(buf, "{v}");
                    f(i, Some(&buf));
                }
            }
            Ok(())
        }
        dt => Err(type_err(file, column, dt, "strings or integers")),
    }
}

fn dictionary_values(arr: &dyn Array) -> ArrayRef {
    macro_rules! vals {
        ($($t:ty),*) => {
            $( if let Some(d) = arr.as_dictionary_opt::<$t>() { return d.values().clone(); } )*
        };
    }
    vals!(Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type);
    unreachable!("called on a dictionary array")
}

fn dictionary_keys(
    arr: &dyn Array,
    file: &Path,
    column: &str,
) -> Result<Vec<Option<usize>>, DataError> {
    macro_rules! keys {
        ($($t:ty),*) => {
            $( if let Some(d) = arr.as_dictionary_opt::<$t>() {
                return Ok(d.keys().iter().map(|k| k.map(|k| k as usize)).collect());
            } )*
        };
    }
    keys!(Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type, UInt32Type, UInt64Type);
    Err(type_err(file, column, arr.data_type(), "a dictionary"))
}

/// Maps every row of a string-like column through `lookup`, calling it once per distinct
/// dictionary value for dictionary-encoded columns and once per row otherwise.
pub(crate) fn map_keys(
    arr: &dyn Array,
    file: &Path,
    column: &str,
    mut lookup: impl FnMut(Option<&str>) -> u32,
) -> Result<Vec<u32>, DataError> {
    if let DataType::Dictionary(_, _) = arr.data_type() {
        let keys = dictionary_keys(arr, file, column)?;
        let dict = dictionary_values(arr);
        let mut mapped: Vec<u32> = Vec::with_capacity(dict.len());
        for_each_str(dict.as_ref(), file, column, |_, v| mapped.push(lookup(v)))?;
        let null = lookup(None);
        return Ok(keys
            .iter()
            .map(|k| k.and_then(|k| mapped.get(k).copied()).unwrap_or(null))
            .collect());
    }
    let mut out = Vec::with_capacity(arr.len());
    for_each_str(arr, file, column, |_, v| out.push(lookup(v)))?;
    Ok(out)
}

/// Keys made of several columns joined with `_` (e.g. CosMx `fov` + `cell_ID`). A row with a
/// null in any part gives `None`.
pub(crate) fn joined_keys(
    batch: &RecordBatch,
    file: &Path,
    columns: &[String],
) -> Result<Vec<Option<String>>, DataError> {
    let mut out: Vec<Option<String>> = vec![Some(String::new()); batch.num_rows()];
    for (ci, c) in columns.iter().enumerate() {
        let arr = require(batch, file, c)?;
        for_each_str(arr.as_ref(), file, c, |i, v| match (v, &mut out[i]) {
            (Some(v), Some(s)) => {
                if ci > 0 {
                    s.push('_');
                }
                s.push_str(v);
            }
            _ => out[i] = None,
        })?;
    }
    Ok(out)
}

/// Maps row keys (one or several columns, see [`joined_keys`]) through `lookup`.
pub(crate) fn map_key_columns(
    batch: &RecordBatch,
    file: &Path,
    columns: &[String],
    mut lookup: impl FnMut(Option<&str>) -> u32,
) -> Result<Vec<u32>, DataError> {
    if columns.len() == 1 {
        let arr = require(batch, file, &columns[0])?;
        return map_keys(arr.as_ref(), file, &columns[0], lookup);
    }
    Ok(joined_keys(batch, file, columns)?
        .iter()
        .map(|k| lookup(k.as_deref()))
        .collect())
}

/// A per-row flag: `true` where the column equals `value` (booleans compare with
/// `true`/`1`, numbers numerically, strings exactly). Nulls are `false`.
pub(crate) fn flags(
    arr: &dyn Array,
    file: &Path,
    column: &str,
    value: &str,
) -> Result<Vec<bool>, DataError> {
    if let Some(b) = arr.as_boolean_opt() {
        let want = matches!(value, "1" | "true" | "True" | "TRUE");
        return Ok((0..b.len())
            .map(|i| b.is_valid(i) && b.value(i) == want)
            .collect());
    }
    let dt = arr.data_type();
    if dt.is_numeric() {
        let want: f64 = value.parse().map_err(|_| {
            col_err(
                file,
                column,
                format!("numeric column cannot equal the nuclear value {value:?}"),
            )
        })?;
        let vals = numeric_to!(
            arr,
            f64,
            Float32Type,
            Float64Type,
            Int8Type,
            Int16Type,
            Int32Type,
            Int64Type,
            UInt8Type,
            UInt16Type,
            UInt32Type,
            UInt64Type
        )
        .ok_or_else(|| type_err(file, column, dt, "booleans, numbers or strings"))?;
        return Ok(vals
            .iter()
            .enumerate()
            .map(|(i, &v)| arr.is_valid(i) && v == want)
            .collect());
    }
    let mut out = vec![false; arr.len()];
    for_each_str(arr, file, column, |i, v| out[i] = v == Some(value))?;
    Ok(out)
}

/// A small string interner: distinct values in first-seen order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Interner {
    pub map: HashMap<String, u32>,
    pub names: Vec<String>,
}

impl Interner {
    /// The index of `s`, adding it when new.
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.map.get(s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.map.insert(s.to_string(), i);
        self.names.push(s.to_string());
        i
    }
}
