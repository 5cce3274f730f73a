//! The table element: the cells × genes counts of `segger_adata.h5ad` in AnnData's zarr
//! encoding (anndata 0.1.0 layout), annotating the `cells` shapes.

use serde_json::{json, Value};
use zarrs::array::{data_type, Element};

use super::{SpatialDataError, Zarr, INSTANCE_KEY, REGION_KEY, SHAPES_ELEMENT, TABLE_ELEMENT};
use crate::outputs::{CellAgg, Resolved};
use crate::state::CellKind;

/// Table element format.
const TABLE_FORMAT: &str = "0.2";

/// AnnData's `encoding-type` / `encoding-version` attributes.
fn enc(kind: &str, version: &str) -> Value {
    json!({ "encoding-type": kind, "encoding-version": version })
}

/// An AnnData dense array's attributes.
fn array_enc() -> Value {
    enc("array", "0.2.0")
}

/// `tables/table`: the AnnData groups and arrays.
pub(super) fn write_table(
    z: &Zarr,
    res: &Resolved,
    genes: &[String],
) -> Result<(), SpatialDataError> {
    let base = format!("/tables/{TABLE_ELEMENT}");
    let mut attrs = enc("anndata", "0.1.0");
    attrs["spatialdata-encoding-type"] = json!("ngff:regions_table");
    attrs["region"] = json!(SHAPES_ELEMENT);
    attrs["region_key"] = json!(REGION_KEY);
    attrs["instance_key"] = json!(INSTANCE_KEY);
    attrs["version"] = json!(TABLE_FORMAT);
    z.group(&base, attrs)?;
    write_x(z, &base, &res.aggs, genes.len())?;
    write_obs(z, &base, res)?;
    write_var(z, &base, &res.aggs, genes)?;
    z.group(&format!("{base}/obsm"), enc("dict", "0.1.0"))?;
    let spatial: Vec<f64> = res.aggs.iter().flat_map(|a| [a.x, a.y]).collect();
    let n = res.aggs.len() as u64;
    z.array(
        &format!("{base}/obsm/spatial"),
        &[n, 2],
        data_type::float64(),
        0.0f64,
        &spatial,
        array_enc(),
    )?;
    for name in ["varm", "obsp", "varp", "layers"] {
        z.group(&format!("{base}/{name}"), enc("dict", "0.1.0"))?;
    }
    write_uns(z, &base)
}

/// `X`: the counts as a CSR matrix of float32 (indices int32, indptr int64).
fn write_x(z: &Zarr, base: &str, aggs: &[CellAgg], n_genes: usize) -> Result<(), SpatialDataError> {
    let nnz: usize = aggs.iter().map(|a| a.genes.len()).sum();
    let mut indptr: Vec<i64> = Vec::with_capacity(aggs.len() + 1);
    let mut indices: Vec<i32> = Vec::with_capacity(nnz);
    let mut data: Vec<f32> = Vec::with_capacity(nnz);
    indptr.push(0);
    for a in aggs {
        for &(g, k) in a.genes.iter().filter(|(g, _)| (*g as usize) < n_genes) {
            indices.push(g as i32);
            data.push(k as f32);
        }
        indptr.push(indices.len() as i64);
    }
    let x = format!("{base}/X");
    let mut attrs = enc("csr_matrix", "0.1.0");
    attrs["shape"] = json!([aggs.len(), n_genes]);
    z.group(&x, attrs)?;
    let nnz = data.len() as u64;
    let none = json!({});
    z.array(
        &format!("{x}/data"),
        &[nnz],
        data_type::float32(),
        0.0f32,
        &data,
        none.clone(),
    )?;
    z.array(
        &format!("{x}/indices"),
        &[nnz],
        data_type::int32(),
        0i32,
        &indices,
        none.clone(),
    )?;
    let len = indptr.len() as u64;
    z.array(
        &format!("{x}/indptr"),
        &[len],
        data_type::int64(),
        0i64,
        &indptr,
        none,
    )
}

/// A dataframe's column of strings.
fn strings<T: Element>(z: &Zarr, node: &str, values: &[T]) -> Result<(), SpatialDataError> {
    let attrs = enc("string-array", "0.2.0");
    let n = values.len() as u64;
    z.array(node, &[n], data_type::string(), "", values, attrs)
}

/// A dataframe's categorical column: int8 `codes` into the string `categories`.
fn categorical(
    z: &Zarr,
    node: &str,
    codes: &[i8],
    categories: &[&str],
) -> Result<(), SpatialDataError> {
    let mut attrs = enc("categorical", "0.2.0");
    attrs["ordered"] = json!(false);
    z.group(node, attrs)?;
    let n = codes.len() as u64;
    z.array(
        &format!("{node}/codes"),
        &[n],
        data_type::int8(),
        0i8,
        codes,
        array_enc(),
    )?;
    strings(z, &format!("{node}/categories"), categories)
}

/// `obs`: indexed by cell id, with the instance key `cell_id`, the region key `region` (all
/// `cells`), `source` and the columns of the h5ad (`x`, `y`, `transcript_count`, `area`).
fn write_obs(z: &Zarr, base: &str, res: &Resolved) -> Result<(), SpatialDataError> {
    let obs = format!("{base}/obs");
    let columns = [
        INSTANCE_KEY,
        REGION_KEY,
        "source",
        "x",
        "y",
        "transcript_count",
        "area",
    ];
    let mut attrs = enc("dataframe", "0.2.0");
    attrs["_index"] = json!("_index");
    attrs["column-order"] = json!(columns);
    z.group(&obs, attrs)?;
    strings(z, &format!("{obs}/_index"), &res.cell_ids)?;
    strings(z, &format!("{obs}/{INSTANCE_KEY}"), &res.cell_ids)?;
    let n = res.aggs.len();
    categorical(
        z,
        &format!("{obs}/{REGION_KEY}"),
        &vec![0; n],
        &[SHAPES_ELEMENT],
    )?;
    let source: Vec<i8> = res
        .cell_kinds
        .iter()
        .map(|k| i8::from(*k == CellKind::Component))
        .collect();
    categorical(
        z,
        &format!("{obs}/source"),
        &source,
        &["boundary", "component"],
    )?;
    let f64_column = |name: &str, f: fn(&CellAgg) -> f64| {
        let v: Vec<f64> = res.aggs.iter().map(f).collect();
        let node = format!("{obs}/{name}");
        z.array(
            &node,
            &[n as u64],
            data_type::float64(),
            0.0f64,
            &v,
            array_enc(),
        )
    };
    f64_column("x", |a| a.x)?;
    f64_column("y", |a| a.y)?;
    f64_column("area", |a| a.area)?;
    let counts: Vec<i64> = res.aggs.iter().map(|a| a.count as i64).collect();
    let node = format!("{obs}/transcript_count");
    z.array(
        &node,
        &[n as u64],
        data_type::int64(),
        0i64,
        &counts,
        array_enc(),
    )
}

/// `var`: indexed by gene name, with the column `n_transcripts` (transcripts in cells).
fn write_var(
    z: &Zarr,
    base: &str,
    aggs: &[CellAgg],
    genes: &[String],
) -> Result<(), SpatialDataError> {
    let mut totals = vec![0i64; genes.len()];
    for &(g, k) in aggs.iter().flat_map(|a| a.genes.iter()) {
        if let Some(t) = totals.get_mut(g as usize) {
            *t += k as i64;
        }
    }
    let var = format!("{base}/var");
    let mut attrs = enc("dataframe", "0.2.0");
    attrs["_index"] = json!("_index");
    attrs["column-order"] = json!(["n_transcripts"]);
    z.group(&var, attrs)?;
    strings(z, &format!("{var}/_index"), genes)?;
    let n = genes.len() as u64;
    let node = format!("{var}/n_transcripts");
    z.array(&node, &[n], data_type::int64(), 0i64, &totals, array_enc())
}

/// `uns/spatialdata_attrs`: the table annotates the `cells` shapes through `region` and
/// `cell_id` (what `TableModel.parse(region=..., region_key=..., instance_key=...)` stores).
fn write_uns(z: &Zarr, base: &str) -> Result<(), SpatialDataError> {
    let uns = format!("{base}/uns");
    z.group(&uns, enc("dict", "0.1.0"))?;
    let sd = format!("{uns}/spatialdata_attrs");
    z.group(&sd, enc("dict", "0.1.0"))?;
    for (key, value) in [
        ("region", SHAPES_ELEMENT),
        ("region_key", REGION_KEY),
        ("instance_key", INSTANCE_KEY),
    ] {
        let attrs = enc("string", "0.2.0");
        z.array(
            &format!("{sd}/{key}"),
            &[],
            data_type::string(),
            "",
            &[value],
            attrs,
        )?;
    }
    Ok(())
}
