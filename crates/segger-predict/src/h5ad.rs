//! `segger_adata.h5ad`: the cells × genes counts as an AnnData file.

use std::path::Path;

use crate::outputs::{rt, Resolved};
use crate::PredictError;

/// `segger_adata.h5ad`: AnnData's on-disk format (encoding 0.1.0), written with a pure-Rust
/// HDF5 writer.
pub(crate) fn write_h5ad(
    path: &Path,
    res: &Resolved,
    genes: &[String],
) -> Result<(), PredictError> {
    use hdf5_pure::{AttrValue, FileBuilder};
    let s = |v: &str| AttrValue::VarLenString(v.to_string());
    let mut indptr: Vec<i64> = Vec::with_capacity(res.aggs.len() + 1);
    indptr.push(0);
    let nnz: usize = res.aggs.iter().map(|a| a.genes.len()).sum();
    let mut indices: Vec<i32> = Vec::with_capacity(nnz);
    let mut data: Vec<f32> = Vec::with_capacity(nnz);
    let mut gene_totals = vec![0i64; genes.len()];
    for a in &res.aggs {
        for &(g, k) in &a.genes {
            if (g as usize) < genes.len() {
                indices.push(g as i32);
                data.push(k as f32);
                gene_totals[g as usize] += k as i64;
            }
        }
        indptr.push(indices.len() as i64);
    }
    let mut fb = FileBuilder::new();
    fb.set_attr("encoding-type", s("anndata"));
    fb.set_attr("encoding-version", s("0.1.0"));

    let mut x = fb.create_group("X");
    x.set_attr("encoding-type", s("csr_matrix"));
    x.set_attr("encoding-version", s("0.1.0"));
    x.set_attr(
        "shape",
        AttrValue::I64Array(vec![res.aggs.len() as i64, genes.len() as i64]),
    );
    x.create_dataset("data").with_f32_data(&data);
    x.create_dataset("indices").with_i32_data(&indices);
    x.create_dataset("indptr").with_i64_data(&indptr);
    fb.add_group(x.finish());

    let array_attrs = |d: &mut hdf5_pure::DatasetBuilder| {
        d.set_attr("encoding-type", s("array"));
        d.set_attr("encoding-version", s("0.2.0"));
    };
    let mut obs = fb.create_group("obs");
    obs.set_attr("encoding-type", s("dataframe"));
    obs.set_attr("encoding-version", s("0.2.0"));
    obs.set_attr("_index", s("cell_id"));
    obs.set_attr(
        "column-order",
        AttrValue::VarLenStringArray(
            ["x", "y", "transcript_count", "area"]
                .iter()
                .map(|v| v.to_string())
                .collect(),
        ),
    );
    let ids: Vec<&str> = res.cell_ids.iter().map(String::as_str).collect();
    let d = obs.create_dataset("cell_id").with_vlen_strings(&ids);
    d.set_attr("encoding-type", s("string-array"));
    d.set_attr("encoding-version", s("0.2.0"));
    let xs: Vec<f64> = res.aggs.iter().map(|a| a.x).collect();
    let ys: Vec<f64> = res.aggs.iter().map(|a| a.y).collect();
    let counts: Vec<i64> = res.aggs.iter().map(|a| a.count as i64).collect();
    let areas: Vec<f64> = res.aggs.iter().map(|a| a.area).collect();
    array_attrs(obs.create_dataset("x").with_f64_data(&xs));
    array_attrs(obs.create_dataset("y").with_f64_data(&ys));
    array_attrs(
        obs.create_dataset("transcript_count")
            .with_i64_data(&counts),
    );
    array_attrs(obs.create_dataset("area").with_f64_data(&areas));
    fb.add_group(obs.finish());

    let mut var = fb.create_group("var");
    var.set_attr("encoding-type", s("dataframe"));
    var.set_attr("encoding-version", s("0.2.0"));
    var.set_attr("_index", s("gene"));
    var.set_attr(
        "column-order",
        AttrValue::VarLenStringArray(vec!["n_transcripts".to_string()]),
    );
    let names: Vec<&str> = genes.iter().map(String::as_str).collect();
    let d = var.create_dataset("gene").with_vlen_strings(&names);
    d.set_attr("encoding-type", s("string-array"));
    d.set_attr("encoding-version", s("0.2.0"));
    array_attrs(
        var.create_dataset("n_transcripts")
            .with_i64_data(&gene_totals),
    );
    fb.add_group(var.finish());

    let mut obsm = fb.create_group("obsm");
    obsm.set_attr("encoding-type", s("dict"));
    obsm.set_attr("encoding-version", s("0.1.0"));
    let spatial: Vec<f64> = res.aggs.iter().flat_map(|a| [a.x, a.y]).collect();
    let d = obsm
        .create_dataset("spatial")
        .with_f64_data(&spatial)
        .with_shape(&[res.aggs.len() as u64, 2]);
    array_attrs(d);
    fb.add_group(obsm.finish());
    for name in ["varm", "obsp", "varp", "layers", "uns"] {
        let mut g = fb.create_group(name);
        g.set_attr("encoding-type", s("dict"));
        g.set_attr("encoding-version", s("0.1.0"));
        fb.add_group(g.finish());
    }
    fb.write(path).map_err(|e| rt(path, e))
}
