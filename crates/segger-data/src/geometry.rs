//! Plane geometry for boundary polygons: validation, area, centroid, convex hull, minimum
//! rotated rectangle, minimum enclosing circle, point-in-polygon.
//!
//! A ring is a slice of vertices without the repeated closing vertex. All computations are in
//! `f64`.

/// A point `[x, y]`.
pub type Point = [f64; 2];

/// Why a ring was rejected by [`clean_ring`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RingProblem {
    /// Fewer than three distinct vertices.
    TooFewVertices,
    /// A coordinate is NaN or infinite.
    NonFinite,
    /// The ring encloses no area (all vertices collinear).
    ZeroArea,
    /// Two non-adjacent edges touch or cross.
    SelfIntersecting,
}

impl RingProblem {
    /// A short description, used in errors and summaries.
    pub fn describe(self) -> &'static str {
        match self {
            RingProblem::TooFewVertices => "fewer than 3 distinct vertices",
            RingProblem::NonFinite => "NaN or infinite vertex coordinate",
            RingProblem::ZeroArea => "zero area (collinear vertices)",
            RingProblem::SelfIntersecting => "self-intersecting ring",
        }
    }
}

/// The result of [`clean_ring`]: the ring without its closing vertex, and whether the input
/// was closed (its last vertex repeated its first).
#[derive(Debug, Clone, PartialEq)]
pub struct CleanRing {
    /// Vertices, consecutive duplicates removed, closing vertex removed.
    pub ring: Vec<Point>,
    /// True when the input repeated its first vertex at the end.
    pub was_closed: bool,
}

/// Normalises a ring given as vertex rows: drops consecutive duplicate vertices and the closing
/// vertex, then checks that it is a simple polygon with a non-zero area.
pub fn clean_ring(vertices: &[Point]) -> Result<CleanRing, RingProblem> {
    if vertices
        .iter()
        .any(|p| !p[0].is_finite() || !p[1].is_finite())
    {
        return Err(RingProblem::NonFinite);
    }
    let was_closed = vertices.len() >= 2 && vertices.first() == vertices.last();
    let mut ring: Vec<Point> = Vec::with_capacity(vertices.len());
    for &p in vertices {
        if ring.last() != Some(&p) {
            ring.push(p);
        }
    }
    while ring.len() >= 2 && ring.first() == ring.last() {
        ring.pop();
    }
    if ring.len() < 3 {
        return Err(RingProblem::TooFewVertices);
    }
    let collinear = ring[2..].iter().all(|&p| cross(ring[0], ring[1], p) == 0.0);
    if collinear {
        return Err(RingProblem::ZeroArea);
    }
    if self_intersects(&ring) {
        return Err(RingProblem::SelfIntersecting);
    }
    if signed_area(&ring) == 0.0 {
        return Err(RingProblem::ZeroArea);
    }
    Ok(CleanRing { ring, was_closed })
}

/// Signed shoelace area: positive for counter-clockwise rings.
pub fn signed_area(ring: &[Point]) -> f64 {
    let n = ring.len();
    if n < 3 {
        return 0.0;
    }
    // Shifting by the first vertex keeps precision for large coordinates.
    let o = ring[0];
    let mut s = 0.0;
    for i in 1..n - 1 {
        let a = [ring[i][0] - o[0], ring[i][1] - o[1]];
        let b = [ring[i + 1][0] - o[0], ring[i + 1][1] - o[1]];
        s += a[0] * b[1] - a[1] * b[0];
    }
    s / 2.0
}

/// Absolute area of a ring.
pub fn area(ring: &[Point]) -> f64 {
    signed_area(ring).abs()
}

/// Area-weighted centroid of a ring; the vertex mean when the area is zero.
pub fn centroid(ring: &[Point]) -> Point {
    let n = ring.len();
    let o = ring[0];
    let mut a2 = 0.0;
    let (mut cx, mut cy) = (0.0, 0.0);
    for i in 0..n {
        let p = [ring[i][0] - o[0], ring[i][1] - o[1]];
        let q = [ring[(i + 1) % n][0] - o[0], ring[(i + 1) % n][1] - o[1]];
        let c = p[0] * q[1] - q[0] * p[1];
        a2 += c;
        cx += (p[0] + q[0]) * c;
        cy += (p[1] + q[1]) * c;
    }
    if a2 == 0.0 {
        let mx = ring.iter().map(|p| p[0]).sum::<f64>() / n as f64;
        let my = ring.iter().map(|p| p[1]).sum::<f64>() / n as f64;
        return [mx, my];
    }
    [o[0] + cx / (3.0 * a2), o[1] + cy / (3.0 * a2)]
}

/// Axis-aligned bounding box `[min_x, min_y, max_x, max_y]`.
pub fn envelope(ring: &[Point]) -> [f64; 4] {
    let mut b = [f64::INFINITY, f64::INFINITY, -f64::INFINITY, -f64::INFINITY];
    for p in ring {
        b[0] = b[0].min(p[0]);
        b[1] = b[1].min(p[1]);
        b[2] = b[2].max(p[0]);
        b[3] = b[3].max(p[1]);
    }
    b
}

fn cross(o: Point, a: Point, b: Point) -> f64 {
    (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
}

/// Convex hull (Andrew's monotone chain), counter-clockwise, without collinear vertices.
pub fn convex_hull(points: &[Point]) -> Vec<Point> {
    let mut pts = points.to_vec();
    pts.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
    pts.dedup();
    if pts.len() < 3 {
        return pts;
    }
    let mut hull: Vec<Point> = Vec::with_capacity(pts.len() + 1);
    // Lower hull, left to right.
    for &p in &pts {
        while hull.len() >= 2 && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0 {
            hull.pop();
        }
        hull.push(p);
    }
    // Upper hull, right to left; never pops into the lower hull.
    let lower = hull.len() + 1;
    for &p in pts.iter().rev().skip(1) {
        while hull.len() >= lower && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0.0 {
            hull.pop();
        }
        hull.push(p);
    }
    hull.pop();
    hull
}

/// Area of the minimum-area enclosing rectangle (any rotation) of a convex hull, by rotating
/// calipers over the hull's edges.
pub fn min_rotated_rect_area(hull: &[Point]) -> f64 {
    let n = hull.len();
    if n < 3 {
        return 0.0;
    }
    let mut best = f64::INFINITY;
    for i in 0..n {
        let a = hull[i];
        let b = hull[(i + 1) % n];
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let len = dx.hypot(dy);
        if len == 0.0 {
            continue;
        }
        let (ux, uy) = (dx / len, dy / len);
        let (mut lo_u, mut hi_u, mut lo_v, mut hi_v) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for p in hull {
            let (px, py) = (p[0] - a[0], p[1] - a[1]);
            let u = px * ux + py * uy;
            let v = -px * uy + py * ux;
            lo_u = lo_u.min(u);
            hi_u = hi_u.max(u);
            lo_v = lo_v.min(v);
            hi_v = hi_v.max(v);
        }
        best = best.min((hi_u - lo_u) * (hi_v - lo_v));
    }
    best
}

fn circle_two(a: Point, b: Point) -> (Point, f64) {
    let c = [(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0];
    (c, dist(c, a).max(dist(c, b)))
}

fn circle_three(a: Point, b: Point, c: Point) -> Option<(Point, f64)> {
    let (bx, by) = (b[0] - a[0], b[1] - a[1]);
    let (cx, cy) = (c[0] - a[0], c[1] - a[1]);
    let d = 2.0 * (bx * cy - by * cx);
    if d == 0.0 {
        return None;
    }
    let b2 = bx * bx + by * by;
    let c2 = cx * cx + cy * cy;
    let ux = (cy * b2 - by * c2) / d;
    let uy = (bx * c2 - cx * b2) / d;
    let center = [a[0] + ux, a[1] + uy];
    Some((
        center,
        dist(center, a).max(dist(center, b)).max(dist(center, c)),
    ))
}

fn dist(a: Point, b: Point) -> f64 {
    (a[0] - b[0]).hypot(a[1] - b[1])
}

/// Radius of the minimum enclosing circle of `points` (Welzl's algorithm in its iterative
/// form, on a deterministic shuffle).
pub fn min_enclosing_radius(points: &[Point]) -> f64 {
    let mut pts = convex_hull(points);
    match pts.len() {
        0 => return 0.0,
        1 => return 0.0,
        2 => return dist(pts[0], pts[1]) / 2.0,
        _ => {}
    }
    // Deterministic Fisher-Yates with a xorshift generator.
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in (1..pts.len()).rev() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        pts.swap(i, (s % (i as u64 + 1)) as usize);
    }
    let tol = |r: f64| r * 1e-12 + 1e-12;
    let inside = |c: Point, r: f64, p: Point| dist(c, p) <= r + tol(r);
    let (mut c, mut r) = (pts[0], 0.0);
    for i in 1..pts.len() {
        if inside(c, r, pts[i]) {
            continue;
        }
        (c, r) = (pts[i], 0.0);
        for j in 0..i {
            if inside(c, r, pts[j]) {
                continue;
            }
            (c, r) = circle_two(pts[i], pts[j]);
            for k in 0..j {
                if inside(c, r, pts[k]) {
                    continue;
                }
                if let Some(cc) = circle_three(pts[i], pts[j], pts[k]) {
                    (c, r) = cc;
                }
            }
        }
    }
    r
}

/// The four boundary features of the tile format, in `bd.x` column order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolygonFeatures {
    /// Polygon area.
    pub area: f64,
    /// Convex hull area / area (≥ 1).
    pub convexity: f64,
    /// Minimum rotated rectangle area / envelope (axis-aligned bounding box) area (≤ 1).
    pub elongation: f64,
    /// Area / r², r the radius of the minimum enclosing circle (π for a disc).
    pub circularity: f64,
}

impl PolygonFeatures {
    /// The features as the `bd.x` row `[area, convexity, elongation, circularity]`.
    pub fn to_row(self) -> [f32; 4] {
        [
            self.area as f32,
            self.convexity as f32,
            self.elongation as f32,
            self.circularity as f32,
        ]
    }
}

/// Computes [`PolygonFeatures`] of a ring with non-zero area (see [`clean_ring`]).
pub fn polygon_features(ring: &[Point]) -> PolygonFeatures {
    let a = area(ring);
    let hull = convex_hull(ring);
    let hull_area = area(&hull);
    let env = envelope(ring);
    let env_area = (env[2] - env[0]) * (env[3] - env[1]);
    let rect = min_rotated_rect_area(&hull);
    let r = min_enclosing_radius(&hull);
    PolygonFeatures {
        area: a,
        convexity: hull_area / a,
        elongation: rect / env_area,
        circularity: a / (r * r),
    }
}

/// Even-odd point-in-polygon test. Points exactly on an edge may go either way.
pub fn contains(ring: &[Point], p: Point) -> bool {
    let n = ring.len();
    let mut inside = false;
    let mut j = n - 1;
    for i in 0..n {
        let (a, b) = (ring[i], ring[j]);
        if (a[1] > p[1]) != (b[1] > p[1]) {
            let x = a[0] + (p[1] - a[1]) * (b[0] - a[0]) / (b[1] - a[1]);
            if p[0] < x {
                inside = !inside;
            }
        }
        j = i;
    }
    inside
}

fn orient(a: Point, b: Point, c: Point) -> i8 {
    let v = cross(a, b, c);
    if v > 0.0 {
        1
    } else if v < 0.0 {
        -1
    } else {
        0
    }
}

fn on_segment(a: Point, b: Point, p: Point) -> bool {
    p[0] >= a[0].min(b[0])
        && p[0] <= a[0].max(b[0])
        && p[1] >= a[1].min(b[1])
        && p[1] <= a[1].max(b[1])
}

fn segments_touch(a: Point, b: Point, c: Point, d: Point) -> bool {
    let (o1, o2, o3, o4) = (
        orient(a, b, c),
        orient(a, b, d),
        orient(c, d, a),
        orient(c, d, b),
    );
    if o1 != o2 && o3 != o4 && o1 != 0 && o2 != 0 && o3 != 0 && o4 != 0 {
        return true;
    }
    (o1 == 0 && on_segment(a, b, c))
        || (o2 == 0 && on_segment(a, b, d))
        || (o3 == 0 && on_segment(c, d, a))
        || (o4 == 0 && on_segment(c, d, b))
}

/// True when two edges of the ring that do not share a vertex touch or cross, or two adjacent
/// edges overlap (fold back on each other). O(n²) with envelope rejection; rings of instrument
/// outputs have tens of vertices.
pub fn self_intersects(ring: &[Point]) -> bool {
    let n = ring.len();
    if n < 3 {
        return false;
    }
    let edge = |i: usize| (ring[i], ring[(i + 1) % n]);
    for i in 0..n {
        let (a, b) = edge(i);
        // Adjacent edge folding back: the next vertex lies on this edge's line, behind.
        let c = ring[(i + 2) % n];
        if orient(a, b, c) == 0 {
            let (ux, uy) = (b[0] - a[0], b[1] - a[1]);
            let (vx, vy) = (c[0] - b[0], c[1] - b[1]);
            if ux * vx + uy * vy < 0.0 {
                return true;
            }
        }
        let (ax0, ax1) = (a[0].min(b[0]), a[0].max(b[0]));
        let (ay0, ay1) = (a[1].min(b[1]), a[1].max(b[1]));
        for j in i + 2..n {
            if i == 0 && j == n - 1 {
                continue; // the closing edge is adjacent to edge 0
            }
            let (c, d) = edge(j);
            if c[0].max(d[0]) < ax0
                || c[0].min(d[0]) > ax1
                || c[1].max(d[1]) < ay0
                || c[1].min(d[1]) > ay1
            {
                continue;
            }
            if segments_touch(a, b, c, d) {
                return true;
            }
        }
    }
    false
}
