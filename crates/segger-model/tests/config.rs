//! Architecture variants: relation lists (incl. the reference's old `tx__belongs__bd` message
//! passing), aggregation modes, dense transcript features, config JSON and weight checks.

mod common;

use std::collections::HashMap;

use burn::backend::Flex;
use segger_graph::{NodeFeatures, BELONGS, NEIGHBORS_BD, NEIGHBORS_TX};
use segger_model::pyg::{check_names, tensor_values, HostTensor};
use segger_model::{Aggr, GraphInput, Segger, SeggerConfig};

fn tile() -> segger_data::Tile {
    segger_data::read_tile(&common::test_data("parity/tile.safetensors"), None).unwrap()
}

/// Weights that depend on the parameter's name only, so that models of different relation
/// lists share the weights of the relations they have in common.
fn by_name(name: &str, shape: &[usize]) -> Vec<f32> {
    let mut h: u64 = 1469598103934665603;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(1099511628211);
    }
    let n: usize = shape.iter().product();
    (0..n)
        .map(|i| {
            let x = h
                .wrapping_add(i as u64)
                .wrapping_mul(6364136223846793005)
                .rotate_right(29);
            ((x % 2000) as f32 / 1000.0 - 1.0) * 0.3
        })
        .collect()
}

fn embed(cfg: &SeggerConfig, g: &segger_graph::HeteroGraph) -> (Vec<f32>, Vec<f32>) {
    let dev = Default::default();
    let m = Segger::<Flex>::build(cfg, &dev, by_name).unwrap();
    let input = GraphInput::<Flex>::from_graph(g, cfg, &dev).unwrap();
    let z = m.forward(&input);
    assert_eq!(z.tx.dims(), [g.tx.num_nodes(), cfg.embedding_width()]);
    assert_eq!(z.bd.dims(), [g.bd.num_nodes(), cfg.embedding_width()]);
    (tensor_values(z.tx), tensor_values(z.bd))
}

#[test]
fn relations_and_aggregations() {
    let t = tile();
    let mut cfg = SeggerConfig::new(500);
    cfg.hidden_channels = 8;
    cfg.out_channels = 4;
    cfg.heads = 2;
    let (tx_a, bd_a) = embed(&cfg, &t.graph);
    // The reference's older model passed messages over tx-belongs-bd as well.
    cfg.relations = vec![NEIGHBORS_TX.into(), NEIGHBORS_BD.into(), BELONGS.into()];
    let mut outs = Vec::new();
    for aggr in [Aggr::Sum, Aggr::Mean, Aggr::Max] {
        cfg.aggr = aggr;
        let (tx, bd) = embed(&cfg, &t.graph);
        assert!(bd.iter().all(|v| v.is_finite()));
        // Transcripts receive only tx->tx messages: the extra relation does not change them.
        assert_eq!(tx, tx_a);
        outs.push(bd);
    }
    assert_ne!(
        outs[0], bd_a,
        "belongs relation had no effect on boundaries"
    );
    assert_ne!(outs[0], outs[1]);
    assert_ne!(outs[1], outs[2]);
    // A model whose relations leave a node type without messages is refused.
    cfg.relations = vec![NEIGHBORS_TX.into()];
    assert!(cfg.check().unwrap_err().to_string().contains("bd"));
}

#[test]
fn dense_transcript_features_use_lin0() {
    let mut t = tile();
    let n = t.graph.tx.num_nodes();
    t.graph.tx.x = NodeFeatures::Dense {
        values: (0..n * 6).map(|i| ((i * 7) % 13) as f32 / 13.0).collect(),
        width: 6,
    };
    let mut cfg = SeggerConfig::new(500);
    cfg.tx_features = Some(6);
    let (tx, _) = embed(&cfg, &t.graph);
    assert!(tx.iter().any(|v| *v != 0.0));
    // A token model refuses dense features and vice versa, naming the tensor.
    let dev = Default::default();
    let err = GraphInput::<Flex>::from_graph(&t.graph, &SeggerConfig::new(500), &dev).unwrap_err();
    assert!(err.to_string().contains("tx.x"), "{err}");
}

#[test]
fn token_ids_outside_the_vocabulary_are_refused() {
    let t = tile();
    let dev = Default::default();
    let NodeFeatures::Tokens(tokens) = &t.graph.tx.x else {
        panic!("the parity tile has token ids")
    };
    let max = *tokens.iter().max().unwrap() as usize;
    // A vocabulary that holds every token id is accepted, one that stops short is refused.
    assert!(GraphInput::<Flex>::from_graph(&t.graph, &SeggerConfig::new(max + 1), &dev).is_ok());
    let err = GraphInput::<Flex>::from_graph(&t.graph, &SeggerConfig::new(max), &dev).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("tx.x") && msg.contains(&format!("token id {max}")),
        "{msg}"
    );
}

#[test]
fn config_json_matches_the_reference_keys_and_weights_are_checked() {
    let cfg = SeggerConfig::from_json(r#"{"num_tx_tokens": 500, "init_emb": 8, "hidden_channels": 64, "out_channels": 16, "heads": 4, "num_mid_layers": 1}"#).unwrap();
    assert_eq!(cfg, SeggerConfig::new(500));
    assert_eq!(SeggerConfig::from_json(&cfg.to_json()).unwrap(), cfg);
    let e = SeggerConfig::from_json(r#"{"num_tx_tokens": 0}"#).unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.problem.as_str()),
        ("num_tx_tokens", "must be at least 1")
    );
    let e = SeggerConfig::from_json(r#"{"num_tx_tokens": 5, "relations": ["tx__x"]}"#).unwrap_err();
    assert_eq!(e.field, "relations", "{e}");
    assert!(e.problem.contains("\"tx__x\""), "{e}");
    // Missing, extra and mis-shaped tensors are all listed.
    let mut t: HashMap<String, HostTensor> =
        segger_model::Segger::<Flex>::init(&cfg, &Default::default(), 0)
            .unwrap()
            .named_params()
            .iter()
            .map(|(n, p)| (n.clone(), segger_model::pyg::param_values(n, p)))
            .collect();
    assert!(check_names(&cfg, &t).is_empty());
    t.remove("conv_last.tx__neighbors__bd.att");
    t.insert(
        "conv_first.extra".into(),
        HostTensor {
            shape: vec![1],
            values: vec![0.0],
        },
    );
    t.get_mut("lin0.bd.weight").unwrap().shape = vec![4, 8];
    let p = check_names(&cfg, &t);
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(p
        .iter()
        .any(|l| l.contains("missing tensor conv_last.tx__neighbors__bd.att")));
    assert!(p
        .iter()
        .any(|l| l.contains("unexpected tensor conv_first.extra")));
    assert!(p.iter().any(|l| l.contains("lin0.bd.weight: shape [4, 8]")));
}

#[test]
fn bidirectional_builds_the_reversed_boundary_edges() {
    let t = tile();
    let mut cfg = SeggerConfig::new(500);
    cfg.hidden_channels = 8;
    cfg.out_channels = 4;
    cfg.heads = 2;
    let (tx_ref, _) = embed(&cfg, &t.graph);
    let bi = cfg.clone().bidirectional();
    assert_eq!(bi.relations.len(), 3);
    assert_eq!(bi.clone().bidirectional(), bi, "adding it twice is a no-op");
    // The relation is built from tx__neighbors__bd with source and destination swapped ...
    let (tx_bi, bd_bi) = embed(&bi, &t.graph);
    assert_ne!(
        tx_bi, tx_ref,
        "boundary messages had no effect on transcripts"
    );
    // ... which is what an explicit bd__neighbors__tx edge store gives.
    let mut g = t.graph.clone();
    let fwd = g.edges[&segger_graph::EdgeType::parse(NEIGHBORS_BD).unwrap()].clone();
    g.edges.insert(
        segger_graph::EdgeType::parse(segger_model::BD_TO_TX).unwrap(),
        segger_graph::EdgeStore::new(fwd.dst.clone(), fwd.src.clone()),
    );
    let (tx_x, bd_x) = embed(&bi, &g);
    assert_eq!(tx_x, tx_bi);
    assert_eq!(bd_x, bd_bi);
    // A graph without either direction is refused, naming the relation.
    let mut g = t.graph.clone();
    g.edges
        .remove(&segger_graph::EdgeType::parse(NEIGHBORS_BD).unwrap());
    let err = segger_model::check_layout(&g, &bi).unwrap_err().to_string();
    assert!(err.contains("tx__neighbors__bd"), "{err}");
}
