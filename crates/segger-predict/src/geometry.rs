//! Cell shapes from transcript positions: the polygon drawn for a cell. The hull and area are
//! segger-data's ([`segger_data::geometry`]), the one geometry module of the workspace.

pub use segger_data::geometry::{area as polygon_area, convex_hull};

/// The polygon drawn for a cell: its convex hull when that has an area, otherwise (one point,
/// or collinear points) the bounding box grown by `pad` on every side. The ring is closed (the
/// first vertex is repeated at the end), counter-clockwise, as GeoJSON wants.
pub fn cell_polygon(points: &[[f64; 2]], pad: f64) -> Vec<[f64; 2]> {
    let hull = convex_hull(points);
    let mut ring = if hull.len() >= 3 && polygon_area(&hull) > 0.0 {
        hull
    } else {
        let (mut x0, mut y0, mut x1, mut y1) = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
        for p in points {
            x0 = x0.min(p[0]);
            y0 = y0.min(p[1]);
            x1 = x1.max(p[0]);
            y1 = y1.max(p[1]);
        }
        vec![
            [x0 - pad, y0 - pad],
            [x1 + pad, y0 - pad],
            [x1 + pad, y1 + pad],
            [x0 - pad, y1 + pad],
        ]
    };
    ring.push(ring[0]);
    ring
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hull_of_square_with_interior_points() {
        let pts = [
            [0.0, 0.0],
            [1.0, 0.0],
            [1.0, 1.0],
            [0.0, 1.0],
            [0.5, 0.5],
            [0.2, 0.7],
            [0.5, 0.0],
        ];
        let h = convex_hull(&pts);
        assert_eq!(h.len(), 4);
        assert!((polygon_area(&h) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn degenerate_cells_get_a_padded_box() {
        let ring = cell_polygon(&[[2.0, 3.0]], 0.5);
        assert_eq!(ring.len(), 5);
        assert_eq!(ring[0], ring[4]);
        assert!((polygon_area(&ring[..4]) - 1.0).abs() < 1e-12);
        let line = cell_polygon(&[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], 0.5);
        assert!((polygon_area(&line[..4]) - 9.0).abs() < 1e-12);
    }
}
