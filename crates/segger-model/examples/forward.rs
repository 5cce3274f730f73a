//! Reads a tile, builds the model's input graph on the CPU and runs one forward pass of a
//! freshly initialised Segger model: the embeddings' shapes and the logits of the tile's first
//! transcript-to-boundary label pairs (untrained, so they say nothing yet).
//!
//! ```sh
//! cargo run --release -p segger-model --example forward -- tests/data/parity/tile.safetensors
//! ```

use burn::backend::Flex;
use segger_graph::{EdgeType, NodeFeatures, NodeType, BELONGS};
use segger_model::{decode, GraphInput, RowIndex, Segger, SeggerConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args_os()
        .nth(1)
        .ok_or("usage: forward TILE.safetensors")?;
    let tile = segger_data::read_tile(std::path::Path::new(&path), None)?;
    let g = &tile.graph;
    // The seed architecture, sized to the tile: its vocabulary and its boundary features.
    let tokens = match &g.tx.x {
        NodeFeatures::Tokens(t) => t.iter().copied().max().unwrap_or(0) as usize + 1,
        NodeFeatures::Dense { .. } => {
            return Err("this example wants a tile with gene tokens".into())
        }
    };
    let mut config = SeggerConfig::new(tokens);
    if let NodeFeatures::Dense { width, .. } = &g.bd.x {
        config.bd_features = *width;
    }
    let config = config.bidirectional();

    // Any backend of Burn with Segger's kernels works here (`GatBackend`): Flex on the CPU.
    let device = Default::default();
    let model = Segger::<Flex>::init(&config, &device, 0)?;
    let input = GraphInput::<Flex>::from_graph(g, &config, &device)?;
    let z = model.forward(&input);
    println!(
        "{}: {} transcripts, {} boundaries -> embeddings tx {:?}, bd {:?}",
        std::path::Path::new(&path).display(),
        g.num_nodes(NodeType::Tx),
        g.num_nodes(NodeType::Bd),
        z.tx.dims(),
        z.bd.dims()
    );

    // Logits of the labelled pairs (tx-belongs-bd), as training sees them.
    let belongs = EdgeType::parse(BELONGS).expect("a relation key");
    if let Some(e) = g.edges.get(&belongs) {
        let n = e.src.len().min(5);
        let tx = RowIndex::new(&e.src[..n], z.tx.dims()[0], &device);
        let bd = RowIndex::new(&e.dst[..n], z.bd.dims()[0], &device);
        let logits: Vec<f32> = decode(&z, tx, bd).into_data().to_vec()?;
        for (k, l) in logits.iter().enumerate() {
            println!("  tx {} - bd {}: logit {l:.2}", e.src[k], e.dst[k]);
        }
    }
    Ok(())
}
