//! Cell shapes from transcript positions: convex hulls and their areas.

/// Twice the signed area of the triangle `o, a, b` (positive when counter-clockwise).
fn cross(o: [f64; 2], a: [f64; 2], b: [f64; 2]) -> f64 {
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
}

/// Convex hull of `points` (Andrew's monotone chain), counter-clockwise, without repeating
/// the first vertex. Collinear points are dropped. Fewer than three vertices come back when
/// the points are all equal or collinear.
pub fn convex_hull(points: &[[f64; 2]]) -> Vec<[f64; 2]> {
    let mut p: Vec<[f64; 2]> = points.to_vec();
    p.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    p.dedup();
    if p.len() < 3 {
        return p;
    }
    let mut hull: Vec<[f64; 2]> = Vec::with_capacity(p.len() + 1);
    for &q in &p {
        while hull.len() >= 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], q) <= 0.0 {
            hull.pop();
        }
        hull.push(q);
    }
    let lower = hull.len() + 1;
    for &q in p.iter().rev().skip(1) {
        while hull.len() >= lower && cross(hull[hull.len() - 2], hull[hull.len() - 1], q) <= 0.0 {
            hull.pop();
        }
        hull.push(q);
    }
    hull.pop();
    hull
}

/// Area of a simple polygon given by its vertices in order (shoelace formula).
pub fn polygon_area(ring: &[[f64; 2]]) -> f64 {
    if ring.len() < 3 {
        return 0.0;
    }
    let mut s = 0.0;
    for i in 0..ring.len() {
        let a = ring[i];
        let b = ring[(i + 1) % ring.len()];
        s += a[0] * b[1] - b[0] * a[1];
    }
    (s / 2.0).abs()
}

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
