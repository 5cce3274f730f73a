//! Boundary polygon features against hand-computed values.

use segger_data::geometry::{
    centroid, clean_ring, contains, polygon_features, Point, PolygonFeatures, RingProblem,
};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

fn check(ring: &[Point], want: PolygonFeatures) {
    let got = polygon_features(ring);
    assert!(close(got.area, want.area), "area {got:?} vs {want:?}");
    assert!(
        close(got.convexity, want.convexity),
        "convexity {got:?} vs {want:?}"
    );
    assert!(
        close(got.elongation, want.elongation),
        "elongation {got:?} vs {want:?}"
    );
    assert!(
        close(got.circularity, want.circularity),
        "circularity {got:?} vs {want:?}"
    );
    // Orientation and starting vertex do not matter.
    let mut rev = ring.to_vec();
    rev.reverse();
    rev.rotate_left(1);
    let back = polygon_features(&rev);
    assert!(close(back.area, got.area) && close(back.circularity, got.circularity));
}

#[test]
fn square() {
    // Side 2: area 4, hull = itself, min rectangle = envelope, circumradius √2 → 4 / 2.
    check(
        &[[0.0, 0.0], [2.0, 0.0], [2.0, 2.0], [0.0, 2.0]],
        PolygonFeatures {
            area: 4.0,
            convexity: 1.0,
            elongation: 1.0,
            circularity: 2.0,
        },
    );
}

#[test]
fn rectangle() {
    // 4 × 1: area 4, radius = half diagonal = √17 / 2 → 4 / (17 / 4) = 16 / 17.
    check(
        &[[10.0, 5.0], [14.0, 5.0], [14.0, 6.0], [10.0, 6.0]],
        PolygonFeatures {
            area: 4.0,
            convexity: 1.0,
            elongation: 1.0,
            circularity: 16.0 / 17.0,
        },
    );
}

#[test]
fn rotated_rectangle() {
    // The 4 × 1 rectangle turned by 45°: the envelope is a square of side 5/√2 (area 12.5),
    // the minimum rotated rectangle is the rectangle itself (area 4).
    let s = std::f64::consts::FRAC_1_SQRT_2;
    let (u, v) = ([s, s], [-s, s]);
    let ring: Vec<Point> = [(0.0, 0.0), (4.0, 0.0), (4.0, 1.0), (0.0, 1.0)]
        .iter()
        .map(|&(a, b)| [a * u[0] + b * v[0], a * u[1] + b * v[1]])
        .collect();
    check(
        &ring,
        PolygonFeatures {
            area: 4.0,
            convexity: 1.0,
            elongation: 4.0 / 12.5,
            circularity: 16.0 / 17.0,
        },
    );
}

#[test]
fn triangle() {
    // Right triangle with legs 4 and 3: area 6; every minimum rectangle has area 12 = the
    // envelope; the enclosing circle has the hypotenuse (5) as diameter → 6 / 6.25.
    check(
        &[[0.0, 0.0], [4.0, 0.0], [0.0, 3.0]],
        PolygonFeatures {
            area: 6.0,
            convexity: 1.0,
            elongation: 1.0,
            circularity: 6.0 / 6.25,
        },
    );
    // Obtuse triangle (0,0), (6,0), (1,1): area 3; the circle has the long side as diameter
    // (r = 3); the smallest rectangle lies along the long side: 6 × 1 = 6 = envelope.
    check(
        &[[0.0, 0.0], [6.0, 0.0], [1.0, 1.0]],
        PolygonFeatures {
            area: 3.0,
            convexity: 1.0,
            elongation: 1.0,
            circularity: 3.0 / 9.0,
        },
    );
}

#[test]
fn l_shape() {
    // Unit squares (0,0), (1,0), (0,1): area 3; hull cuts the corner (2,2): 4 - 1/2 = 3.5;
    // the 2 × 2 envelope is the smallest rectangle; circle through (0,0), (2,0), (0,2) has
    // centre (1,1) and r² = 2 → 3 / 2.
    check(
        &[
            [0.0, 0.0],
            [2.0, 0.0],
            [2.0, 1.0],
            [1.0, 1.0],
            [1.0, 2.0],
            [0.0, 2.0],
        ],
        PolygonFeatures {
            area: 3.0,
            convexity: 3.5 / 3.0,
            elongation: 1.0,
            circularity: 1.5,
        },
    );
    let c = centroid(&[
        [0.0, 0.0],
        [2.0, 0.0],
        [2.0, 1.0],
        [1.0, 1.0],
        [1.0, 2.0],
        [0.0, 2.0],
    ]);
    // Three unit squares with centres (0.5,0.5), (1.5,0.5), (0.5,1.5).
    assert!(close(c[0], 2.5 / 3.0) && close(c[1], 2.5 / 3.0));
}

#[test]
fn ring_validation() {
    let sq = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]];
    let closed: Vec<Point> = sq.iter().chain(&sq[..1]).copied().collect();
    let c = clean_ring(&closed).unwrap();
    assert!(c.was_closed);
    assert_eq!(c.ring, sq.to_vec());
    assert!(!clean_ring(&sq).unwrap().was_closed);
    assert_eq!(
        clean_ring(&[[0.0, 0.0], [1.0, 0.0], [0.0, 0.0]]),
        Err(RingProblem::TooFewVertices)
    );
    assert_eq!(
        clean_ring(&[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]),
        Err(RingProblem::ZeroArea)
    );
    // Bow tie.
    assert_eq!(
        clean_ring(&[[0.0, 0.0], [2.0, 2.0], [2.0, 0.0], [0.0, 2.0]]),
        Err(RingProblem::SelfIntersecting)
    );
    assert_eq!(
        clean_ring(&[[0.0, f64::NAN], [1.0, 0.0], [0.0, 1.0]]),
        Err(RingProblem::NonFinite)
    );
    assert!(contains(&sq, [0.5, 0.5]));
    assert!(!contains(&sq, [1.5, 0.5]));
}
