//! Tests of the CosMx mask reader: tracing on small synthetic masks, the TIFF and fov
//! positions readers' errors, and the orientation on the real sample.

use std::path::Path;

use tiff::encoder::{colortype, TiffEncoder};

use super::*;
use crate::geometry;

/// A mask from rows of labels.
fn image(rows: &[&[u32]]) -> LabelImage {
    LabelImage {
        width: rows[0].len(),
        height: rows.len(),
        labels: rows.iter().flat_map(|r| r.iter().copied()).collect(),
    }
}

/// The ring of `label` (pixel corners, rows down) and its number of pieces.
fn ring_of(img: &LabelImage, label: u32) -> (Vec<[i64; 2]>, usize) {
    let b = label_boxes(img)[&label];
    label_ring(img, label, b)
}

fn area(ring: &[[i64; 2]]) -> f64 {
    let r: Vec<Point> = ring.iter().map(|&[x, y]| [x as f64, y as f64]).collect();
    geometry::area(&r)
}

#[test]
fn l_shape() {
    let img = image(&[&[1, 0], &[1, 0], &[1, 1]]);
    let (ring, parts) = ring_of(&img, 1);
    assert_eq!(ring, [[0, 0], [1, 0], [1, 2], [2, 2], [2, 3], [0, 3]]);
    assert_eq!((parts, area(&ring)), (1, 4.0));
}

#[test]
fn hole_is_ignored() {
    let img = image(&[
        &[0, 0, 0, 0, 0],
        &[0, 3, 3, 3, 0],
        &[0, 3, 0, 3, 0],
        &[0, 3, 3, 3, 0],
    ]);
    let (ring, parts) = ring_of(&img, 3);
    assert_eq!(ring, [[1, 1], [4, 1], [4, 4], [1, 4]]);
    assert_eq!((parts, area(&ring)), (1, 9.0));
}

#[test]
fn label_in_two_pieces_keeps_the_largest() {
    // Piece of one pixel first in raster order, then a piece of three; and a pixel that
    // touches the big piece only at a corner is a third piece.
    let img = image(&[&[5, 0, 5, 5, 0], &[0, 0, 5, 0, 0], &[0, 0, 0, 5, 0]]);
    let (ring, parts) = ring_of(&img, 5);
    assert_eq!(ring, [[2, 0], [4, 0], [4, 1], [3, 1], [3, 2], [2, 2]]);
    assert_eq!((parts, area(&ring)), (3, 3.0));
    // Equal pieces: the first in raster order.
    let img = image(&[&[7, 0], &[0, 7]]);
    let (ring, parts) = ring_of(&img, 7);
    assert_eq!((ring, parts), (vec![[0, 0], [1, 0], [1, 1], [0, 1]], 2));
}

#[test]
fn labels_touching_the_border() {
    let img = image(&[&[1, 1, 2], &[1, 4, 2], &[4, 4, 2]]);
    assert_eq!(ring_of(&img, 2).0, [[2, 0], [3, 0], [3, 3], [2, 3]]);
    assert_eq!(
        ring_of(&img, 1).0,
        [[0, 0], [2, 0], [2, 1], [1, 1], [1, 2], [0, 2]]
    );
    assert_eq!(
        ring_of(&img, 4).0,
        [[1, 1], [2, 1], [2, 3], [0, 3], [0, 2], [1, 2]]
    );
    for l in [1, 2, 4] {
        assert_eq!(area(&ring_of(&img, l).0), 3.0, "label {l}");
    }
}

#[test]
fn one_pixel_label() {
    let img = image(&[&[0, 0, 0], &[0, 9, 0]]);
    let (ring, parts) = ring_of(&img, 9);
    assert_eq!(ring, [[1, 1], [2, 1], [2, 2], [1, 2]]);
    assert_eq!((parts, area(&ring)), (1, 1.0));
}

#[test]
fn corner_touch_inside_one_piece_gives_a_simple_ring() {
    // (1,0) and (2,1) meet at a corner; the piece is one through the rest, and the pocket
    // at (1,1) is enclosed (a hole, ignored).
    let img = image(&[&[6, 6, 0], &[6, 0, 6], &[6, 6, 6]]);
    let (ring, parts) = ring_of(&img, 6);
    assert_eq!(ring, [[0, 0], [2, 0], [2, 1], [3, 1], [3, 3], [0, 3]]);
    assert_eq!((parts, area(&ring)), (1, 8.0));
    let r: Vec<Point> = ring.iter().map(|&[x, y]| [x as f64, y as f64]).collect();
    assert!(geometry::clean_ring(&r).is_ok());
}

#[test]
fn polygons_in_global_micrometres_rows_flipped() {
    // A 3 × 2 mask at origin (10, 20), 0.5 µm per pixel: label 1 at column 1, row 0 covers
    // x ∈ [11, 12] px and y ∈ [20 + 2 − 1, 20 + 2] px.
    let img = image(&[&[0, 1, 0], &[2, 2, 2]]);
    let (polys, multipart) = mask_polygons(&img, [10.0, 20.0], 0.5);
    assert_eq!(multipart, 0);
    assert_eq!(polys[0].0, 1);
    assert_eq!(
        polys[0].1,
        [[5.5, 10.5], [6.0, 10.5], [6.0, 11.0], [5.5, 11.0]]
    );
    assert!(
        geometry::signed_area(&polys[0].1) > 0.0,
        "counter-clockwise"
    );
    assert_eq!(polys[1].0, 2);
    assert_eq!(geometry::envelope(&polys[1].1), [5.0, 10.0, 6.5, 10.5]);
}

fn write_tiff_u16(path: &Path, w: u32, h: u32, v: &[u16]) {
    let f = std::fs::File::create(path).unwrap();
    TiffEncoder::new(f)
        .unwrap()
        .write_image::<colortype::Gray16>(w, h, v)
        .unwrap();
}

#[test]
fn tiff_round_trip_and_bad_tiffs() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("CellLabels_F001.tif");
    write_tiff_u16(&p, 3, 2, &[0, 1, 1, 2, 2, 0]);
    let img = read_label_tiff(&p).unwrap();
    assert_eq!(
        (img.width, img.height, img.labels),
        (3, 2, vec![0, 1, 1, 2, 2, 0])
    );

    // Not a TIFF.
    let bad = d.path().join("CellLabels_F002.tif");
    std::fs::write(&bad, b"this is not an image").unwrap();
    let e = read_label_tiff(&bad).unwrap_err();
    assert!(matches!(e, DataError::Format { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("CellLabels_F002.tif") && msg.contains("not a readable TIFF"),
        "{msg}"
    );

    // Truncated.
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 2]).unwrap();
    let msg = read_label_tiff(&bad).unwrap_err().to_string();
    assert!(msg.contains("CellLabels_F002.tif"), "{msg}");

    // Fractional float labels.
    let f = std::fs::File::create(&bad).unwrap();
    TiffEncoder::new(f)
        .unwrap()
        .write_image::<colortype::Gray32Float>(2, 1, &[0.0, 1.5])
        .unwrap();
    let msg = read_label_tiff(&bad).unwrap_err().to_string();
    assert!(msg.contains("pixel (column 1, row 0) holds 1.5"), "{msg}");

    // Whole-number floats are labels.
    let f = std::fs::File::create(&bad).unwrap();
    TiffEncoder::new(f)
        .unwrap()
        .write_image::<colortype::Gray32Float>(2, 1, &[0.0, 3752.0])
        .unwrap();
    assert_eq!(read_label_tiff(&bad).unwrap().labels, [0, 3752]);

    // Colour.
    let f = std::fs::File::create(&bad).unwrap();
    TiffEncoder::new(f)
        .unwrap()
        .write_image::<colortype::RGB8>(1, 1, &[1, 2, 3])
        .unwrap();
    let msg = read_label_tiff(&bad).unwrap_err().to_string();
    assert!(msg.contains("one channel"), "{msg}");
}

#[test]
fn mask_file_names() {
    assert_eq!(mask_fov("CellLabels_F001.tif"), Some(1));
    assert_eq!(mask_fov("CellLabels_F012.TIFF"), Some(12));
    assert_eq!(mask_fov("Run1_CellLabels_F7.tif"), Some(7));
    assert_eq!(mask_fov("CellLabels_F001.png"), None);
    assert_eq!(mask_fov("notes.tif"), None);
    assert_eq!(mask_fov("CellLabels_F.tif"), None);
}

#[test]
fn missing_fov_row_names_the_file_and_the_fov() {
    let d = tempfile::tempdir().unwrap();
    let masks = d.path().join("CellLabels");
    std::fs::create_dir(&masks).unwrap();
    write_tiff_u16(&masks.join("CellLabels_F001.tif"), 2, 2, &[1, 1, 0, 2]);
    write_tiff_u16(&masks.join("CellLabels_F003.tif"), 2, 2, &[0, 1, 0, 0]);
    let pos = d.path().join("S1_fov_positions_file.csv");
    std::fs::write(&pos, "FOV,x_global_px,y_global_px\n1,100,200\n2,102,200\n").unwrap();
    assert_eq!(find_fov_positions(&[d.path()]), Some(pos.clone()));
    let positions = read_fov_positions(&pos).unwrap();
    let e = read_mask_rings(&masks, &positions, 1.0).unwrap_err();
    assert!(matches!(e, DataError::Column { .. }), "{e:?}");
    let msg = e.to_string();
    for want in [
        "S1_fov_positions_file.csv",
        "no row for fov 3",
        "CellLabels_F003.tif",
        "lists fovs 1, 2",
    ] {
        assert!(msg.contains(want), "{want}: {msg}");
    }

    // With the row: keys <fov>_<label>, fov by fov.
    std::fs::write(&pos, "FOV,x_global_px,y_global_px\n1,100,200\n3,102,200\n").unwrap();
    let positions = read_fov_positions(&pos).unwrap();
    let g = read_mask_rings(&masks, &positions, 1.0).unwrap();
    assert_eq!(g.ids.names, ["1_1", "1_2", "3_1"]);
    assert_eq!(
        geometry::envelope(&g.rings[2]),
        [103.0, 201.0, 104.0, 202.0]
    );

    // No masks; no fov column.
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let msg = read_mask_rings(&empty, &positions, 1.0)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("no cell label masks"), "{msg}");
    std::fs::write(&pos, "field,x_global_px,y_global_px\n1,100,200\n").unwrap();
    let msg = read_fov_positions(&pos).unwrap_err().to_string();
    assert!(
        msg.contains("column `fov`") && msg.contains("field"),
        "{msg}"
    );
}

#[test]
fn pixel_size_from_millimetres() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("fov_positions_file.csv");
    // AtoMx layout: both mm and px.
    std::fs::write(
        &p,
        "Slide,FOV,x_global_mm,y_global_mm,x_global_px,y_global_px\n\
         1,1,1.6036,2.1,13332.225,17459.26\n1,2,2.1,2.1,17459.26,17459.26\n1,3,0,0,0,0\n",
    )
    .unwrap();
    let s = stated_pixel_size(&p).unwrap().unwrap();
    assert!((s - 0.12028).abs() < 1e-5, "{s}");
    // Rows that disagree.
    std::fs::write(
        &p,
        "FOV,x_global_mm,x_global_px,y_global_px\n1,1.6036,13332.225,0\n2,1.8,10000,0\n",
    )
    .unwrap();
    let msg = stated_pixel_size(&p).unwrap_err().to_string();
    assert!(
        msg.contains("different pixel sizes") && msg.contains("--pixel_size"),
        "{msg}"
    );
    // Pixels only: nothing stated.
    std::fs::write(&p, "fov,x_global_px,y_global_px\n1,5133.3,146055.5\n").unwrap();
    assert_eq!(stated_pixel_size(&p).unwrap(), None);
}

/// The real sample's first mask against its transcripts' `cell_ID` (tests/data/real,
/// SOURCE.md): with rows flipped, the polygon that contains a transcript is its cell for 98%
/// of the transcripts with a cell over that mask; without the flip, for almost none.
#[test]
fn orientation_agrees_with_the_real_transcripts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/real/cosmx_moleculeexperiment");
    let positions = read_fov_positions(&dir.join("fov_positions_file.csv")).unwrap();
    let origin = positions.origins[&1];
    let img = read_label_tiff(&dir.join("CellLabels/CellLabels_F001.tif")).unwrap();
    assert_eq!((img.width, img.height), (300, 600));
    let (polys, _) = mask_polygons(&img, origin, 1.0);
    let mut r = csv::Reader::from_path(dir.join("tx_file.csv")).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|c| c == n).unwrap();
    let (cx, cy, cc) = (col("x_global_px"), col("y_global_px"), col("cell_ID"));
    let (mut total, mut same, mut same_unflipped) = (0, 0, 0);
    for row in r.records() {
        let row = row.unwrap();
        let cell: u32 = row[cc].parse().unwrap();
        let (x, y): (f64, f64) = (row[cx].parse().unwrap(), row[cy].parse().unwrap());
        if cell == 0 || x < origin[0] || x >= origin[0] + 300.0 {
            continue;
        }
        total += 1;
        let label_at = |y: f64| {
            polys
                .iter()
                .find(|(_, ring)| geometry::contains(ring, [x, y]))
                .map(|p| p.0)
        };
        same += usize::from(label_at(y) == Some(cell));
        // The same point mirrored within the mask: what an unflipped reading would find.
        same_unflipped += usize::from(label_at(2.0 * origin[1] + 600.0 - y) == Some(cell));
    }
    eprintln!("agreement over {total} transcripts: flipped {same}, unflipped {same_unflipped}");
    assert!(total > 15_000, "{total}");
    let (agree, unflipped) = (
        same as f64 / total as f64,
        same_unflipped as f64 / total as f64,
    );
    assert!(agree > 0.97, "{agree}");
    assert!(unflipped < 0.1, "{unflipped}");
}

/// A whole export with masks whose keys match the transcripts': the ids are used, the pixel
/// size comes from the positions file; without that file, an error naming the mask folder.
#[test]
fn export_with_masks_end_to_end() {
    use crate::raw::{self, Platform, RawOptions, NO_CELL};
    let d = tempfile::tempdir().unwrap();
    let masks = d.path().join("CellLabels");
    std::fs::create_dir(&masks).unwrap();
    // 4 × 2 mask at origin (1000, 2000): label 1 on the left half, 2 on the right.
    write_tiff_u16(
        &masks.join("CellLabels_F003.tif"),
        4,
        2,
        &[1, 1, 2, 2, 1, 1, 2, 2],
    );
    std::fs::write(
        d.path().join("Run1_fov_positions_file.csv"),
        "FOV,x_global_mm,y_global_mm,x_global_px,y_global_px\n3,0.12028,0.24056,1000,2000\n",
    )
    .unwrap();
    std::fs::write(
        d.path().join("Run1_tx_file.csv"),
        "fov,cell_ID,x_global_px,y_global_px,target,CellComp\n\
         3,1,1000.5,2001.5,G1,Nuclear\n3,2,1003.5,2000.5,G2,Nuclear\n3,0,1010,2010,G1,None\n",
    )
    .unwrap();
    let o = RawOptions::new(Platform::Cosmx);
    let s = raw::load(d.path(), &o).unwrap();
    assert_eq!(s.bd.ids, ["3_1", "3_2"]);
    assert_eq!(s.tx.cell, [0, 1, NO_CELL]);
    let r = &s.report;
    assert_eq!((r.cell_ids_matched, r.cell_ids_set_aside), (2, 0));
    assert!(!r.cells_from_polygons);
    assert!((r.pixel_size.unwrap() - 0.12028).abs() < 1e-9);
    assert_eq!(
        r.pixel_size_source.as_deref(),
        Some("from Run1_fov_positions_file.csv")
    );
    // Label 1 covers x ∈ [1000, 1002] px, y ∈ [2000, 2002] px.
    let want = [1000.0, 2000.0, 1002.0, 2002.0].map(|v: f64| v * 0.12028);
    for (got, want) in s.bd.bbox[0].iter().zip(want) {
        assert!((*got as f64 - want).abs() < 1e-3, "{:?}", s.bd.bbox[0]);
    }

    std::fs::remove_file(d.path().join("Run1_fov_positions_file.csv")).unwrap();
    let e = raw::load(d.path(), &o).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, DataError::Dataset { .. }), "{e:?}");
    assert!(
        msg.contains("CellLabels") && msg.contains("need the fov positions file"),
        "{msg}"
    );
}
