//! Reads one tile (a segger `.safetensors` tile or a reference `.pt` tile) with `segger-data`
//! alone (no tensor library) and prints what it holds.
//!
//! ```sh
//! cargo run --release -p segger-data --example inspect_tile -- tests/data/parity/tile.safetensors
//! ```

use segger_graph::NodeType;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os()
        .nth(1)
        .map(std::path::PathBuf::from)
        .ok_or("usage: inspect_tile TILE")?;
    // `None`: no vocabulary to check the gene tokens against.
    let tile = segger_data::read_tile(&path, None)?;
    let g = &tile.graph;
    println!("{}", path.display());
    println!("  layout       {}", g.layout());
    println!(
        "  nodes        {} transcripts, {} boundaries",
        g.num_nodes(NodeType::Tx),
        g.num_nodes(NodeType::Bd)
    );
    for (kind, edges) in &g.edges {
        println!("  edges        {kind}: {}", edges.src.len());
    }
    println!(
        "  labels       {} pairs, {} positive",
        g.labels().map_or(0, |l| l.len()),
        g.num_positive()
    );
    match &tile.bounds {
        Some(b) => println!(
            "  core         x {} .. {}, y {} .. {} (µm)",
            b.x,
            b.x + b.width,
            b.y,
            b.y + b.height
        ),
        None => println!("  core         none stored: every transcript is decided here"),
    }
    Ok(())
}
