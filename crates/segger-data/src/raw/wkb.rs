//! A minimal reader for WKB (ISO and EWKB) polygons and multi-polygons: enough for MERSCOPE's
//! boundary geometry column. Only exterior rings are kept.

use crate::geometry::{self, Point};

/// A decoded geometry: the exterior rings of its polygons.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rings {
    /// Exterior rings, one per polygon part, closing vertex included as stored.
    pub parts: Vec<Vec<Point>>,
}

impl Rings {
    /// The exterior ring of the part with the largest area.
    pub fn largest(self) -> Option<Vec<Point>> {
        self.parts
            .into_iter()
            .max_by(|a, b| geometry::area(a).total_cmp(&geometry::area(b)))
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.at.checked_add(n).ok_or("length overflow")?;
        let s = self
            .b
            .get(self.at..end)
            .ok_or_else(|| format!("truncated WKB at byte {}", self.at))?;
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self, le: bool) -> Result<u32, String> {
        let s: [u8; 4] = self.take(4)?.try_into().expect("4 bytes");
        Ok(if le {
            u32::from_le_bytes(s)
        } else {
            u32::from_be_bytes(s)
        })
    }
    fn f64(&mut self, le: bool) -> Result<f64, String> {
        let s: [u8; 8] = self.take(8)?.try_into().expect("8 bytes");
        Ok(if le {
            f64::from_le_bytes(s)
        } else {
            f64::from_be_bytes(s)
        })
    }
}

/// Geometry header: byte order, base type (1..7) and coordinate width.
fn header(c: &mut Cursor<'_>) -> Result<(bool, u32, usize), String> {
    let le = match c.u8()? {
        0 => false,
        1 => true,
        o => return Err(format!("invalid WKB byte order {o}")),
    };
    let t = c.u32(le)?;
    // EWKB flags: Z 0x80000000, M 0x40000000, SRID 0x20000000.
    let (mut dims, mut base) = (2usize, t & 0x0FFF_FFFF);
    if t & 0x8000_0000 != 0 {
        dims += 1;
    }
    if t & 0x4000_0000 != 0 {
        dims += 1;
    }
    if t & 0x2000_0000 != 0 {
        c.u32(le)?; // SRID
    }
    // ISO: 1000s are Z, 2000s M, 3000s ZM.
    match base / 1000 {
        0 => {}
        1 | 2 => dims += 1,
        3 => dims += 2,
        _ => return Err(format!("unsupported WKB geometry type {t}")),
    }
    base %= 1000;
    Ok((le, base, dims))
}

fn polygon(c: &mut Cursor<'_>, le: bool, dims: usize) -> Result<Vec<Point>, String> {
    let nrings = c.u32(le)? as usize;
    let mut exterior = Vec::new();
    for r in 0..nrings {
        let n = c.u32(le)? as usize;
        if n > c.b.len() {
            return Err(format!("ring claims {n} points, more than the data holds"));
        }
        let mut ring = Vec::with_capacity(if r == 0 { n } else { 0 });
        for _ in 0..n {
            let x = c.f64(le)?;
            let y = c.f64(le)?;
            for _ in 2..dims {
                c.f64(le)?;
            }
            if r == 0 {
                ring.push([x, y]);
            }
        }
        if r == 0 {
            exterior = ring;
        }
    }
    Ok(exterior)
}

/// Decodes a WKB Polygon or MultiPolygon.
pub(crate) fn parse(bytes: &[u8]) -> Result<Rings, String> {
    let mut c = Cursor { b: bytes, at: 0 };
    let (le, t, dims) = header(&mut c)?;
    match t {
        3 => Ok(Rings {
            parts: vec![polygon(&mut c, le, dims)?],
        }),
        6 => {
            let n = c.u32(le)? as usize;
            if n > bytes.len() {
                return Err(format!(
                    "multipolygon claims {n} parts, more than the data holds"
                ));
            }
            let mut parts = Vec::with_capacity(n);
            for _ in 0..n {
                let (ple, pt, pdims) = header(&mut c)?;
                if pt != 3 {
                    return Err(format!(
                        "multipolygon part has geometry type {pt}, expected 3"
                    ));
                }
                parts.push(polygon(&mut c, ple, pdims)?);
            }
            Ok(Rings { parts })
        }
        t => Err(format!(
            "geometry type {t} is not a polygon or multipolygon"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poly_le(pts: &[[f64; 2]]) -> Vec<u8> {
        let mut b = vec![1u8];
        b.extend(3u32.to_le_bytes());
        b.extend(1u32.to_le_bytes());
        b.extend((pts.len() as u32).to_le_bytes());
        for p in pts {
            b.extend(p[0].to_le_bytes());
            b.extend(p[1].to_le_bytes());
        }
        b
    }

    #[test]
    fn polygon_and_multipolygon() {
        let sq = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]];
        let big = [[0.0, 0.0], [3.0, 0.0], [3.0, 3.0], [0.0, 0.0]];
        assert_eq!(parse(&poly_le(&sq)).unwrap().parts[0], sq.to_vec());
        let mut m = vec![1u8];
        m.extend(6u32.to_le_bytes());
        m.extend(2u32.to_le_bytes());
        m.extend(poly_le(&sq));
        m.extend(poly_le(&big));
        let r = parse(&m).unwrap();
        assert_eq!(r.parts.len(), 2);
        assert_eq!(r.largest().unwrap(), big.to_vec());
        // Truncation is an error, not a panic.
        for n in 0..m.len() {
            assert!(parse(&m[..n]).is_err());
        }
    }
}
