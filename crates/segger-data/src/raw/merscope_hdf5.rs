//! MERSCOPE's classic per-field-of-view boundary files: `cell_boundaries/feature_data_<fov>.hdf5`,
//! the only boundaries of older exports (before the `cell_boundaries.parquet` of 2022+ and vpt).
//!
//! Layout (checked on two real exports: Vizgen's FFPE showcase, and files written by
//! SpatialFeatureExperiment): one group `featuredata` at the root; one group per cell in it, named
//! by the cell id (the `EntityID` of the parquet layout and the `cell_id` of newer transcript
//! files); in each cell, one group `zIndex_<z>` per z-plane, holding one group `p_<k>` per polygon
//! (`p_0` in every file seen), each with a float64 dataset `coordinates` of shape `(1, N, 2)`:
//! one closed ring of N (x, y) vertices in micrometres (GeoJSON's polygon nesting; rings after
//! the first, holes, would be further rows of the first axis). A cell also holds a
//! `z_coordinates` dataset and may carry attributes (`id`, `fov`, `volume`, `bounding_box`);
//! both are ignored. Storage may be contiguous or chunked and deflate-compressed.
//!
//! The z-plane rule is the parquet path's: every z-plane's polygon is offered for its cell, in
//! `zIndex` order ([`RingGroups::push_ring`]), the largest by area is kept and the others are
//! counted as duplicate rows. Several polygons in one z-plane keep their largest (counted as a
//! multi-part geometry); holes are ignored. A cell with no polygon at all is kept as an empty
//! ring, which the boundary cleaning then skips and counts.
//!
//! A folder is read file by file (`feature_data_*.hdf5`, `.h5`, in name order; in parallel,
//! merged in that order). Every problem is a [`DataError`] naming the file and the HDF5 path.

use std::path::{Path, PathBuf};

use hdf5_pure::{DType, File, Group};
use rayon::prelude::*;

use super::boundaries::RingGroups;
use crate::error::DataError;
use crate::geometry::{self, Point};

/// The group every feature file keeps its cells in.
const ROOT_GROUP: &str = "featuredata";

/// Whether `path` names per-FOV HDF5 boundaries: a folder, or a `.hdf5` / `.h5` file.
pub(crate) fn is_hdf5_boundaries(path: &Path) -> bool {
    path.is_dir() || has_hdf5_extension(path)
}

fn has_hdf5_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("hdf5") || e.eq_ignore_ascii_case("h5"))
}

/// The feature files of `path`: the file itself, or a folder's `feature_data_*.hdf5` (or `.h5`)
/// files in name order. A folder without any is an error.
pub(crate) fn feature_files(path: &Path) -> Result<Vec<PathBuf>, DataError> {
    if !path.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| DataError::io(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && has_hdf5_extension(p)
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("feature_data_"))
        })
        .collect();
    if files.is_empty() {
        return Err(DataError::format(
            path,
            "feature_data_*.hdf5",
            "no per-field-of-view boundary file in the folder",
        ));
    }
    files.sort();
    Ok(files)
}

/// The polygons of one file: (cell id, one ring per z-plane), and the number of z-planes that
/// held more than one polygon.
#[derive(Debug, Default)]
struct FileRings {
    cells: Vec<(String, Vec<Vec<Point>>)>,
    multipart: u64,
}

/// Reads per-FOV boundaries (a folder of feature files, or one file), scaled by `scale`, keyed
/// by cell id; one ring per cell and z-plane is offered to [`RingGroups::push_ring`].
pub(crate) fn read_feature_rings(path: &Path, scale: f64) -> Result<RingGroups, DataError> {
    let files = feature_files(path)?;
    let per_file: Vec<FileRings> = files
        .par_iter()
        .map(|f| read_file(f, scale))
        .collect::<Result<_, _>>()?;
    let mut groups = RingGroups::default();
    for fr in per_file {
        groups.multipart += fr.multipart;
        for (id, rings) in fr.cells {
            if rings.is_empty() {
                // Kept so that the cleaning counts it (too few vertices).
                groups.push_ring(&id, Vec::new());
            }
            for ring in rings {
                groups.push_ring(&id, ring);
            }
        }
    }
    Ok(groups)
}

/// Wraps an HDF5 library error with the file and the object it concerns.
fn h5_err(file: &Path, field: &str, what: &str, e: hdf5_pure::Error) -> DataError {
    match e {
        hdf5_pure::Error::Io(e) => DataError::io(file, e),
        e => DataError::format(file, field, format!("{what}: {e}")),
    }
}

/// Reads one feature file. A panic inside the HDF5 library (a corrupt file it does not
/// anticipate) becomes an error naming the file, like any other unreadable file.
fn read_file(file: &Path, scale: f64) -> Result<FileRings, DataError> {
    std::panic::catch_unwind(|| read_file_inner(file, scale)).unwrap_or_else(|_| {
        Err(DataError::format(
            file,
            "HDF5 file",
            "corrupt: the HDF5 reader failed on it",
        ))
    })
}

/// The most a deflate stream expands (1032:1), rounded up: no dataset of a file of `n` bytes
/// holds more than `n * MAX_EXPANSION` bytes. A corrupt dataspace claiming more is refused
/// before anything is allocated for it.
const MAX_EXPANSION: u64 = 1100;

/// One open feature file: what every read in it needs.
struct FeatureFile<'a> {
    path: &'a Path,
    scale: f64,
    /// The most float values one dataset of this file can hold.
    max_values: u64,
}

fn read_file_inner(file: &Path, scale: f64) -> Result<FileRings, DataError> {
    let h5 =
        File::open(file).map_err(|e| h5_err(file, "HDF5 file", "not a readable HDF5 file", e))?;
    // libhdf5's check: a file shorter than its superblock's end-of-file address was cut short
    // (a partial copy), even when what is left happens to parse.
    let sb = h5.superblock();
    let eof = sb.eof_address.saturating_add(sb.base_address.get());
    if h5.file_size() < eof {
        return Err(DataError::format(
            file,
            "HDF5 file",
            format!(
                "truncated: {} bytes, the superblock says {eof}",
                h5.file_size()
            ),
        ));
    }
    let ff = FeatureFile {
        path: file,
        scale,
        max_values: h5.file_size().saturating_mul(MAX_EXPANSION) / 4,
    };
    let root = h5.root();
    let top = root
        .groups()
        .map_err(|e| h5_err(file, "/", "cannot list the root group", e))?;
    if !top.iter().any(|g| g == ROOT_GROUP) {
        return Err(DataError::format(
            file,
            ROOT_GROUP,
            format!(
                "group is missing (not a MERSCOPE feature file; root groups: [{}])",
                top.join(", ")
            ),
        ));
    }
    let cells = root
        .group(ROOT_GROUP)
        .and_then(|g| g.iter_groups())
        .map_err(|e| h5_err(file, ROOT_GROUP, "cannot list the cells", e))?;
    let mut out = FileRings::default();
    for (cell_id, cell) in cells {
        let field = format!("{ROOT_GROUP}/{cell_id}");
        let rings = ff.read_cell(&field, &cell, &mut out.multipart)?;
        out.cells.push((cell_id, rings));
    }
    Ok(out)
}

impl FeatureFile<'_> {
    fn err(&self, field: &str, problem: String) -> DataError {
        DataError::format(self.path, field, problem)
    }

    /// One ring per z-plane of a cell group, in `zIndex` order (numeric).
    fn read_cell(
        &self,
        field: &str,
        cell: &Group,
        multipart: &mut u64,
    ) -> Result<Vec<Vec<Point>>, DataError> {
        let planes = cell
            .iter_groups()
            .map_err(|e| h5_err(self.path, field, "cannot list the z-planes", e))?;
        let mut planes: Vec<(u64, String, Group)> = planes
            .filter_map(|(name, g)| {
                let z = name.strip_prefix("zIndex_")?.parse::<u64>().ok()?;
                Some((z, name, g))
            })
            .collect();
        planes.sort_by_key(|(z, _, _)| *z);
        let mut rings = Vec::with_capacity(planes.len());
        for (_, name, plane) in planes {
            let field = format!("{field}/{name}");
            let polys = plane
                .iter_groups()
                .map_err(|e| h5_err(self.path, &field, "cannot list the polygons", e))?;
            let mut best: Option<Vec<Point>> = None;
            let mut parts = 0u64;
            for (pname, poly) in polys {
                if !pname.starts_with("p_") {
                    continue;
                }
                let ring = self.read_coordinates(&format!("{field}/{pname}/coordinates"), &poly)?;
                parts += 1;
                if best
                    .as_ref()
                    .is_none_or(|b| geometry::area(&ring) > geometry::area(b))
                {
                    best = Some(ring);
                }
            }
            if parts > 1 {
                *multipart += 1;
            }
            // A z-plane with no polygon (the cell is absent there) offers nothing.
            rings.extend(best);
        }
        Ok(rings)
    }

    /// The exterior ring of a polygon's `coordinates` dataset: float, shape `(R, N, 2)` (ring 0
    /// is the exterior, the others holes, GeoJSON's nesting; only ring 0 is read) or `(N, 2)`.
    fn read_coordinates(&self, field: &str, poly: &Group) -> Result<Vec<Point>, DataError> {
        let ds = poly
            .dataset("coordinates")
            .map_err(|e| h5_err(self.path, field, "dataset is missing or unreadable", e))?;
        let dtype = ds
            .dtype()
            .map_err(|e| h5_err(self.path, field, "unreadable datatype", e))?;
        if !matches!(dtype, DType::F64 | DType::F32) {
            return Err(self.err(
                field,
                format!("wrong type {dtype}, expected float64 (x, y) pairs"),
            ));
        }
        let shape = ds
            .shape()
            .map_err(|e| h5_err(self.path, field, "unreadable shape", e))?;
        let (n, rows) = match shape.as_slice() {
            [r, n, 2] if *r >= 1 => (*n, Some(1)),
            [n, 2] => (*n, None),
            _ => return Err(self.err(field, format!("wrong shape {shape:?}, expected (1, N, 2)"))),
        };
        if n.saturating_mul(2) > self.max_values {
            return Err(self.err(
                field,
                format!("shape {shape:?} is larger than the file can hold (corrupt dataspace)"),
            ));
        }
        let values = match rows {
            Some(r) => ds.read_f64_rows(0, r),
            None => ds.read_f64(),
        }
        .map_err(|e| h5_err(self.path, field, "cannot read the values", e))?;
        let n = n as usize;
        if values.len() != 2 * n {
            return Err(self.err(
                field,
                format!("{} values for shape {shape:?}", values.len()),
            ));
        }
        Ok(values
            .chunks_exact(2)
            .map(|p| [p[0] * self.scale, p[1] * self.scale])
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdf5_pure::FileBuilder;

    /// `rel` under the workspace's `tests/data` (origin and licence: `tests/data/README.md`).
    fn test_data(rel: &str) -> PathBuf {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data")).join(rel)
    }

    fn square(x0: f64, side: f64) -> Vec<f64> {
        let p = [
            [x0, 0.0],
            [x0 + side, 0.0],
            [x0 + side, side],
            [x0, side],
            [x0, 0.0],
        ];
        p.iter().flatten().copied().collect()
    }

    /// A polygon: (z-plane, p index, flat x, y values, shape).
    type Poly = (u32, u32, Vec<f64>, Vec<u64>);

    /// Writes `featuredata/<id>/zIndex_<z>/p_<k>/coordinates` for each cell's polygons.
    fn write_feature_file(path: &Path, cells: &[(&str, Vec<Poly>)]) {
        let mut b = FileBuilder::new();
        let mut fd = b.create_group(ROOT_GROUP);
        for (id, polys) in cells {
            let mut cell = fd.create_group(id);
            cell.create_dataset("z_coordinates")
                .with_f64_data(&[1.5, 3.0]);
            let mut zs: Vec<u32> = polys.iter().map(|p| p.0).collect();
            zs.dedup();
            for z in zs {
                let mut plane = cell.create_group(&format!("zIndex_{z}"));
                for (_, k, xy, shape) in polys.iter().filter(|p| p.0 == z) {
                    let mut p = plane.create_group(&format!("p_{k}"));
                    p.create_dataset("coordinates")
                        .with_f64_data(xy)
                        .with_shape(shape);
                    plane.add_group(p.finish());
                }
                cell.add_group(plane.finish());
            }
            fd.add_group(cell.finish());
        }
        b.add_group(fd.finish());
        std::fs::write(path, b.finish().unwrap()).unwrap();
    }

    fn poly(z: u32, xy: Vec<f64>) -> Poly {
        let n = xy.len() as u64 / 2;
        (z, 0, xy, vec![1, n, 2])
    }

    fn err_of(path: &Path) -> String {
        match read_feature_rings(path, 1.0) {
            Ok(g) => panic!(
                "{}: read {} cells, expected an error",
                path.display(),
                g.rings.len()
            ),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn largest_z_plane_is_kept_and_the_others_counted() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("feature_data_7.hdf5");
        write_feature_file(
            &f,
            &[
                (
                    "101",
                    vec![
                        poly(0, square(0.0, 1.0)),
                        poly(1, square(0.0, 3.0)),
                        poly(2, square(0.0, 2.0)),
                    ],
                ),
                (
                    "102",
                    vec![
                        poly(0, square(10.0, 1.0)),
                        (0, 1, square(20.0, 2.0), vec![1, 5, 2]),
                    ],
                ),
            ],
        );
        // A second file in the folder, read after the first; files not named feature_data_* are
        // ignored.
        write_feature_file(
            &dir.path().join("feature_data_8.hdf5"),
            &[("103", vec![poly(4, square(30.0, 1.0))])],
        );
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        let g = read_feature_rings(dir.path(), 2.0).unwrap();
        assert_eq!(g.ids.names, ["101", "102", "103"]);
        // Cell 101: three z-planes, the largest (side 3, scaled by 2) kept, two duplicates.
        assert_eq!(g.rings[0][2], [6.0, 6.0]);
        assert_eq!(g.duplicate_rows, 2);
        // Cell 102: two polygons in one z-plane, the larger kept, one multi-part geometry.
        assert_eq!(g.rings[1][0], [40.0, 0.0]);
        assert_eq!(g.multipart, 1);
        assert_eq!(g.rings[2].len(), 5);
        // One file alone.
        let g = read_feature_rings(&f, 1.0).unwrap();
        assert_eq!(g.ids.names, ["101", "102"]);
    }

    #[test]
    fn two_dimensional_coordinates_are_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("feature_data_1.h5");
        write_feature_file(&f, &[("5", vec![(0, 0, square(0.0, 1.0), vec![5, 2])])]);
        let g = read_feature_rings(dir.path(), 1.0).unwrap();
        assert_eq!(g.rings[0].len(), 5);
    }

    #[test]
    fn empty_folder_is_an_error_naming_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("cell_metadata.csv"), b"x").unwrap();
        let msg = err_of(dir.path());
        assert!(msg.starts_with(&dir.path().display().to_string()), "{msg}");
        assert!(
            msg.contains("feature_data_*.hdf5: no per-field-of-view boundary file"),
            "{msg}"
        );
    }

    #[test]
    fn non_hdf5_and_truncated_files_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("feature_data_1.hdf5");
        std::fs::write(&f, b"EntityID,Geometry\n1,2\n").unwrap();
        let msg = err_of(dir.path());
        assert!(msg.starts_with(&f.display().to_string()), "{msg}");
        assert!(msg.contains("HDF5 file: not a readable HDF5 file"), "{msg}");

        let real = std::fs::read(test_data(
            "real/merscope_moleculeexperiment/cell_boundaries/feature_data_1753.hdf5",
        ))
        .unwrap();
        // Cut anywhere, or with bytes overwritten: an error naming the file, never a panic.
        for cut in [0, 7, 100, 1000, 4096, real.len() / 2, real.len() - 1] {
            std::fs::write(&f, &real[..cut]).unwrap();
            let msg = err_of(&f);
            assert!(
                msg.starts_with(&f.display().to_string()),
                "cut {cut}: {msg}"
            );
        }
        for at in (0..real.len()).step_by(real.len() / 40) {
            let mut bad = real.clone();
            for b in &mut bad[at..(at + 64).min(real.len())] {
                *b ^= 0xA5;
            }
            std::fs::write(&f, &bad).unwrap();
            if let Err(e) = read_feature_rings(&f, 1.0) {
                assert!(e.to_string().starts_with(&f.display().to_string()), "{e}");
            }
        }
    }

    #[test]
    fn missing_featuredata_group_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("feature_data_1.hdf5");
        let mut b = FileBuilder::new();
        let mut g = b.create_group("labels");
        g.create_dataset("x").with_f64_data(&[1.0]);
        b.add_group(g.finish());
        std::fs::write(&f, b.finish().unwrap()).unwrap();
        let msg = err_of(&f);
        assert!(msg.starts_with(&f.display().to_string()), "{msg}");
        assert!(msg.contains("featuredata: group is missing"), "{msg}");
        assert!(msg.contains("root groups: [labels]"), "{msg}");
    }

    #[test]
    fn coordinates_of_the_wrong_shape_or_type_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("feature_data_1.hdf5");
        let field = "featuredata/9/zIndex_0/p_0/coordinates";
        for shape in [vec![1, 5, 2, 1], vec![1, 2, 5], vec![10], vec![0, 5, 2]] {
            let xy = square(0.0, 1.0);
            let xy = if shape.iter().product::<u64>() == 0 {
                Vec::new()
            } else {
                xy
            };
            write_feature_file(&f, &[("9", vec![(0, 0, xy, shape.clone())])]);
            let msg = err_of(&f);
            assert!(msg.starts_with(&f.display().to_string()), "{msg}");
            assert!(
                msg.contains(&format!("{field}: wrong shape")),
                "{shape:?}: {msg}"
            );
        }

        let mut b = FileBuilder::new();
        let mut fd = b.create_group(ROOT_GROUP);
        let mut cell = fd.create_group("9");
        let mut plane = cell.create_group("zIndex_0");
        let mut p = plane.create_group("p_0");
        p.create_dataset("coordinates")
            .with_i32_data(&[0, 0, 1, 0, 1, 1, 0, 1])
            .with_shape(&[1, 4, 2]);
        plane.add_group(p.finish());
        // A polygon group without coordinates.
        let mut plane1 = cell.create_group("zIndex_1");
        let mut p1 = plane1.create_group("p_0");
        p1.create_dataset("other").with_f64_data(&[0.0]);
        plane1.add_group(p1.finish());
        cell.add_group(plane.finish());
        cell.add_group(plane1.finish());
        fd.add_group(cell.finish());
        b.add_group(fd.finish());
        std::fs::write(&f, b.finish().unwrap()).unwrap();
        let msg = err_of(&f);
        assert!(
            msg.contains(&format!("{field}: wrong type i32, expected float64")),
            "{msg}"
        );

        let mut b = FileBuilder::new();
        let mut fd = b.create_group(ROOT_GROUP);
        let mut cell = fd.create_group("9");
        let mut plane = cell.create_group("zIndex_1");
        let mut p = plane.create_group("p_0");
        p.create_dataset("other").with_f64_data(&[0.0]);
        plane.add_group(p.finish());
        cell.add_group(plane.finish());
        fd.add_group(cell.finish());
        b.add_group(fd.finish());
        std::fs::write(&f, b.finish().unwrap()).unwrap();
        let msg = err_of(&f);
        assert!(
            msg.contains("featuredata/9/zIndex_1/p_0/coordinates: dataset is missing"),
            "{msg}"
        );
    }

    #[test]
    fn a_cell_without_polygons_is_kept_empty_for_the_cleaning_to_count() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("feature_data_1.hdf5");
        write_feature_file(&f, &[("1", vec![]), ("2", vec![poly(3, square(0.0, 1.0))])]);
        let g = read_feature_rings(&f, 1.0).unwrap();
        assert_eq!(g.ids.names, ["1", "2"]);
        assert!(g.rings[0].is_empty());
    }

    #[test]
    fn real_showcase_file_has_24_cells_on_7_z_planes() {
        let f = test_data("real/merscope_moleculeexperiment/cell_boundaries");
        let g = read_feature_rings(&f, 1.0).unwrap();
        assert_eq!(g.ids.names.len(), 24);
        assert_eq!(g.duplicate_rows, 24 * 6);
        assert_eq!(g.multipart, 0);
        for r in &g.rings {
            assert!(r.len() >= 4 && r.first() == r.last(), "closed rings");
            assert!(
                r.iter().all(|p| (10_000.0..10_600.0).contains(&p[0])),
                "micrometres"
            );
        }
    }

    /// SpatialFeatureExperiment's toy MERSCOPE export holds the same polygons twice: in
    /// `cell_boundaries.parquet` (one row per EntityID, ZIndex 3) and, for 20 of its cells, in a
    /// gzip-compressed, chunked feature file (zIndex_2 and zIndex_3, equal). The rings must match.
    #[test]
    fn real_feature_file_matches_the_parquet_polygons() {
        let dir = test_data("real/merscope_sfe_cellbound");
        let h = read_feature_rings(&dir.join("cell_boundaries"), 1.0).unwrap();
        assert_eq!(h.ids.names.len(), 20);
        assert_eq!(h.duplicate_rows, 20);
        let p = super::super::merscope::read_wkb_rings(
            &dir.join("cell_boundaries.parquet"),
            &["EntityID".to_string()],
            "Geometry",
            1.0,
        )
        .unwrap();
        for (i, id) in h.ids.names.iter().enumerate() {
            let j = *p
                .ids
                .map
                .get(id)
                .unwrap_or_else(|| panic!("{id} not in the parquet"));
            assert_eq!(h.rings[i], p.rings[j as usize], "cell {id}");
        }
    }
}
