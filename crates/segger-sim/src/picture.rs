//! The demo's picture: a window of tissue, transcripts coloured by their cell, nuclei outlined.
//!
//! One panel per segmentation, side by side (the demo draws the nucleus-only baseline on the
//! left and Segger on the right). In each panel: thin grey cell outlines (from
//! `cell_boundaries.parquet` when the sample has one), transcripts as dots coloured by their
//! cell (a colour derived from the cell id, so one cell has the same colour in every panel),
//! unassigned transcripts as small grey dots, and nucleus outlines in black. A title above each
//! panel, in DejaVu Sans Mono (embedded: `assets/`, with its licence).

use std::collections::HashMap;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::evaluate::Assignments;
use crate::io::{floats_of, ints_of, read_columns, strings_of, wrong_type};
use crate::SimError;

/// Pixels per µm.
const SCALE: f64 = 5.0;
/// Gap between panels in pixels.
const GAP: u32 = 12;
/// Height of the title band in pixels (when a panel has a title).
const TITLE: u32 = 30;
/// The embedded font of the titles.
const FONT: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");
/// The name the font is registered under with plotters.
const FONT_NAME: &str = "segger-mono";

/// Registers the embedded font with plotters (once per process).
fn register_font() -> Result<(), SimError> {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *DONE
        .get_or_init(|| plotters::style::register_font(FONT_NAME, FontStyle::Normal, FONT).is_ok());
    if ok {
        Ok(())
    } else {
        Err(SimError::Invalid(
            "the embedded title font could not be read".into(),
        ))
    }
}

type Ring = Vec<(f64, f64)>;

fn read_rings(path: &Path) -> Result<Vec<Ring>, SimError> {
    let cols = read_columns(path, &["cell_id", "vertex_x", "vertex_y"], &[])?;
    let (Some(ida), Some(xa), Some(ya)) = (&cols[0], &cols[1], &cols[2]) else {
        return Err(SimError::Invalid(format!(
            "{}: columns were not read",
            path.display()
        )));
    };
    let ids = strings_of(ida.as_ref())
        .map_err(|_| wrong_type(path, "cell_id", ida.as_ref(), "string"))?;
    let xs =
        floats_of(xa.as_ref()).map_err(|_| wrong_type(path, "vertex_x", xa.as_ref(), "number"))?;
    let ys =
        floats_of(ya.as_ref()).map_err(|_| wrong_type(path, "vertex_y", ya.as_ref(), "number"))?;
    let mut rings: Vec<Ring> = Vec::new();
    let mut last: Option<String> = None;
    for ((id, x), y) in ids.into_iter().zip(xs).zip(ys) {
        let (Some(x), Some(y)) = (x, y) else { continue };
        if id != last || rings.is_empty() {
            rings.push(Vec::new());
            last = id;
        }
        if let Some(r) = rings.last_mut() {
            r.push((x, y));
        }
    }
    Ok(rings)
}

fn colour(name: &str) -> RGBColor {
    // FNV-1a, then a bright colour from the hash.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in name.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h ^= h >> 29;
    let hue = (h % 360) as f64;
    let s = 0.65 + 0.3 * ((h >> 16) % 100) as f64 / 100.0;
    let l = 0.42 + 0.18 * ((h >> 32) % 100) as f64 / 100.0;
    let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
    let x = c * (1.0 - ((hue / 60.0) % 2.0 - 1.0).abs());
    let m = l - c / 2.0;
    let (r, g, b) = match (hue / 60.0) as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let to = |v: f64| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    RGBColor(to(r), to(g), to(b))
}

fn draw_err(path: &Path, e: impl std::fmt::Display) -> SimError {
    SimError::Invalid(format!("{}: drawing failed: {e}", path.display()))
}

/// Draws `panels` side by side into the PNG `out`, over a square window of `side` µm at the
/// centre of the sample in `raw_dir` (its `transcripts.parquet` gives the positions,
/// `nucleus_boundaries.parquet` the nuclei, `cell_boundaries.parquet` the cells if present).
pub fn draw_segmentation(
    out: &Path,
    raw_dir: &Path,
    panels: &[&Assignments],
    side: f64,
) -> Result<(), SimError> {
    let untitled: Vec<(&str, &Assignments)> = panels.iter().map(|a| ("", *a)).collect();
    draw_titled_segmentation(out, raw_dir, &untitled, side)
}

/// [`draw_segmentation`] with a title above each panel (`(title, segmentation)`); no title band
/// when every title is empty.
pub fn draw_titled_segmentation(
    out: &Path,
    raw_dir: &Path,
    titled: &[(&str, &Assignments)],
    side: f64,
) -> Result<(), SimError> {
    let panels: Vec<&Assignments> = titled.iter().map(|(_, a)| *a).collect();
    let band = title_band(titled)?;
    if panels.is_empty() || !(side > 0.0 && side.is_finite()) {
        return Err(SimError::Invalid("nothing to draw".into()));
    }
    let (pos, lo, hi) = read_positions(&raw_dir.join("transcripts.parquet"))?;
    let win = Window::centred(lo, hi, side);
    let px = win.px;
    let nuclei = read_rings(&raw_dir.join("nucleus_boundaries.parquet"))?;
    let cell_path = raw_dir.join("cell_boundaries.parquet");
    let cells = if cell_path.is_file() {
        read_rings(&cell_path)?
    } else {
        Vec::new()
    };
    let scene = Scene {
        win,
        pos,
        cells,
        nuclei,
    };
    let width = panels.len() as u32 * px + (panels.len() as u32 - 1) * GAP;
    let full = BitMapBackend::new(out, (width, px + band)).into_drawing_area();
    full.fill(&RGBColor(235, 235, 235))
        .map_err(|e| draw_err(out, e))?;
    draw_titles(&full, titled, px, out)?;
    let root = full.clone().shrink((0, band), (width, px));
    for (k, a) in panels.iter().enumerate() {
        let x0 = (k as u32 * (px + GAP)) as i32;
        draw_panel(&root, x0, &scene, a, out)?;
    }
    cover_gaps(&root, panels.len() as u32, px, out)?;
    full.present().map_err(|e| draw_err(out, e))?;
    Ok(())
}

/// A drawing area on the PNG.
type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// The height of the title band: [`TITLE`] (after registering the font) when a panel has a
/// title, else 0.
fn title_band(titled: &[(&str, &Assignments)]) -> Result<u32, SimError> {
    if titled.iter().any(|(t, _)| !t.is_empty()) {
        register_font()?;
        Ok(TITLE)
    } else {
        Ok(0)
    }
}

/// Transcript id → position from `transcripts.parquet` at `tx_path` (rows with a missing
/// value skipped), with the lower and upper corners of their bounding box; an error when no
/// transcript has all three values.
#[allow(clippy::type_complexity)]
fn read_positions(
    tx_path: &Path,
) -> Result<(HashMap<i64, (f64, f64)>, (f64, f64), (f64, f64)), SimError> {
    let cols = read_columns(tx_path, &["transcript_id", "x_location", "y_location"], &[])?;
    let (Some(ia), Some(xa), Some(ya)) = (&cols[0], &cols[1], &cols[2]) else {
        return Err(SimError::Invalid(format!(
            "{}: columns were not read",
            tx_path.display()
        )));
    };
    let ids = ints_of(ia.as_ref())
        .map_err(|_| wrong_type(tx_path, "transcript_id", ia.as_ref(), "integer"))?;
    let xs = floats_of(xa.as_ref())
        .map_err(|_| wrong_type(tx_path, "x_location", xa.as_ref(), "number"))?;
    let ys = floats_of(ya.as_ref())
        .map_err(|_| wrong_type(tx_path, "y_location", ya.as_ref(), "number"))?;
    let mut pos: HashMap<i64, (f64, f64)> = HashMap::with_capacity(ids.len());
    let (mut lo, mut hi) = (
        (f64::INFINITY, f64::INFINITY),
        (f64::NEG_INFINITY, f64::NEG_INFINITY),
    );
    for ((id, x), y) in ids.into_iter().zip(xs).zip(ys) {
        if let (Some(id), Some(x), Some(y)) = (id, x, y) {
            pos.insert(id, (x, y));
            lo = (lo.0.min(x), lo.1.min(y));
            hi = (hi.0.max(x), hi.1.max(y));
        }
    }
    if pos.is_empty() {
        return Err(SimError::Invalid(format!(
            "{}: no transcripts",
            tx_path.display()
        )));
    }
    Ok((pos, lo, hi))
}

/// The square window of tissue that each panel shows.
#[derive(Clone, Copy)]
struct Window {
    /// The lower-left corner (µm).
    corner: (f64, f64),
    /// The side (µm).
    side: f64,
    /// The side in pixels.
    px: u32,
}

impl Window {
    /// A window of `side` µm (no larger than the bounding box `lo`–`hi`, at least 1 µm) at the
    /// centre of that box.
    fn centred(lo: (f64, f64), hi: (f64, f64), side: f64) -> Self {
        let side = side.min(hi.0 - lo.0).min(hi.1 - lo.1).max(1.0);
        let centre = (0.5 * (lo.0 + hi.0), 0.5 * (lo.1 + hi.1));
        let corner = (centre.0 - side / 2.0, centre.1 - side / 2.0);
        let px = (side * SCALE).round() as u32;
        Self { corner, side, px }
    }

    /// Whether `p` lies in the window (edges included).
    fn contains(&self, p: (f64, f64)) -> bool {
        let (win, side) = (self.corner, self.side);
        p.0 >= win.0 && p.0 <= win.0 + side && p.1 >= win.1 && p.1 <= win.1 + side
    }

    /// The pixel of `p` in the panel whose left edge is at `x0`.
    fn pixel(&self, x0: i32, p: (f64, f64)) -> (i32, i32) {
        let (win, side) = (self.corner, self.side);
        (
            x0 + ((p.0 - win.0) * SCALE).round() as i32,
            // y grows downwards in the image; flip so the picture matches the coordinates.
            ((win.1 + side - p.1) * SCALE).round() as i32,
        )
    }

    /// The closed pixel path of ring `r` in the panel whose left edge is at `x0`; `None` when
    /// no vertex lies in the window.
    fn ring_path(&self, x0: i32, r: &Ring) -> Option<Vec<(i32, i32)>> {
        if !r.iter().any(|&p| self.contains(p)) {
            return None;
        }
        let mut v: Vec<(i32, i32)> = r.iter().map(|&p| self.pixel(x0, p)).collect();
        if let (Some(&f), Some(&l)) = (v.first(), v.last()) {
            if f != l {
                v.push(f);
            }
        }
        Some(v)
    }
}

/// What every panel shows: the window, the transcripts' positions, and the cell and nucleus
/// outlines.
struct Scene {
    /// The window of tissue.
    win: Window,
    /// Transcript id → position (µm).
    pos: HashMap<i64, (f64, f64)>,
    /// Cell outlines (empty when the sample has none).
    cells: Vec<Ring>,
    /// Nucleus outlines.
    nuclei: Vec<Ring>,
}

/// Writes each non-empty title into the band above its panel (panels `px` wide); `out` names
/// the PNG in errors.
fn draw_titles(
    full: &Area<'_>,
    titled: &[(&str, &Assignments)],
    px: u32,
    out: &Path,
) -> Result<(), SimError> {
    for (k, (title, _)) in titled.iter().enumerate() {
        if !title.is_empty() {
            let x = (k as u32 * (px + GAP)) as i32 + 6;
            full.draw(&Text::new(
                title.to_string(),
                (x, 7),
                (FONT_NAME, 16).into_font().color(&BLACK),
            ))
            .map_err(|e| draw_err(out, e))?;
        }
    }
    Ok(())
}

/// Draws the outlines `rings` that reach into the window, in the panel at `x0`, with `style`.
fn draw_rings(
    root: &Area<'_>,
    x0: i32,
    win: &Window,
    rings: &[Ring],
    style: ShapeStyle,
    out: &Path,
) -> Result<(), SimError> {
    for r in rings {
        if let Some(v) = win.ring_path(x0, r) {
            root.draw(&PathElement::new(v, style))
                .map_err(|e| draw_err(out, e))?;
        }
    }
    Ok(())
}

/// Draws the transcripts of `a` in the window as dots in the panel at `x0`: the unassigned
/// ones first as small grey dots, then the assigned ones in their cell's colour on top.
fn draw_transcripts(
    root: &Area<'_>,
    x0: i32,
    scene: &Scene,
    a: &Assignments,
    out: &Path,
) -> Result<(), SimError> {
    for pass in [false, true] {
        for (i, id) in a.ids.iter().enumerate() {
            let Some(&p) = scene.pos.get(id) else {
                continue;
            };
            if !scene.win.contains(p) || a.cell[i].is_some() != pass {
                continue;
            }
            let c = scene.win.pixel(x0, p);
            match a.cell[i] {
                None => root
                    .draw(&Circle::new(c, 1, RGBColor(150, 150, 150).filled()))
                    .map_err(|e| draw_err(out, e))?,
                Some(cell) => root
                    .draw(&Circle::new(
                        c,
                        2,
                        colour(&a.cell_names[cell as usize]).filled(),
                    ))
                    .map_err(|e| draw_err(out, e))?,
            }
        }
    }
    Ok(())
}

/// Draws the panel of segmentation `a` with its left edge at `x0` of `root`: a white square,
/// the cell outlines, the transcripts and the nucleus outlines.
fn draw_panel(
    root: &Area<'_>,
    x0: i32,
    scene: &Scene,
    a: &Assignments,
    out: &Path,
) -> Result<(), SimError> {
    let px = scene.win.px;
    let panel = root.clone().shrink((x0, 0), (px, px));
    panel.fill(&WHITE).map_err(|e| draw_err(out, e))?;
    draw_rings(
        root,
        x0,
        &scene.win,
        &scene.cells,
        RGBColor(200, 200, 200).stroke_width(1),
        out,
    )?;
    // Unassigned first, so the coloured dots stay on top.
    draw_transcripts(root, x0, scene, a, out)?;
    draw_rings(
        root,
        x0,
        &scene.win,
        &scene.nuclei,
        BLACK.stroke_width(2),
        out,
    )
}

/// Covers what spilled over the edges of the `panels` panels (`px` wide) with the background,
/// in the gaps between them.
fn cover_gaps(root: &Area<'_>, panels: u32, px: u32, out: &Path) -> Result<(), SimError> {
    for k in 0..panels {
        let right = (k * (px + GAP) + px) as i32;
        if k + 1 < panels {
            root.draw(&Rectangle::new(
                [(right, 0), (right + GAP as i32 - 1, px as i32)],
                RGBColor(235, 235, 235).filled(),
            ))
            .map_err(|e| draw_err(out, e))?;
        }
    }
    Ok(())
}
