use serde::{Deserialize, Serialize};
use thiserror::Error;

use segger_graph::{EdgeType, NodeType, NEIGHBORS_BD, NEIGHBORS_TX};

/// How the outputs of several relations that reach the same node type are combined
/// (`to_hetero`'s `aggr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Aggr {
    /// Sum of the relation outputs (the reference's default).
    #[default]
    Sum,
    /// Mean of the relation outputs.
    Mean,
    /// Element-wise maximum of the relation outputs.
    Max,
}

impl std::str::FromStr for Aggr {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sum" | "add" => Ok(Aggr::Sum),
            "mean" => Ok(Aggr::Mean),
            "max" => Ok(Aggr::Max),
            other => Err(ConfigError::new(
                "aggr",
                format!("unknown aggregation {other:?}, expected sum, mean or max"),
            )),
        }
    }
}

/// An invalid model configuration, or a graph that does not fit one.
#[derive(Debug, Error, Clone, PartialEq)]
#[error("invalid model config: {field}: {problem}")]
pub struct ConfigError {
    /// The configuration field (`heads`, `relations`, ...) or graph tensor (`tx.x`, ...).
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl ConfigError {
    /// The error for `field`.
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// The boundary-to-transcript relation of [`SeggerConfig::bidirectional`]: built from the
/// graph's `tx__neighbors__bd` edges, reversed.
pub const BD_TO_TX: &str = "bd__neighbors__tx";

fn default_relations() -> Vec<String> {
    vec![NEIGHBORS_TX.to_string(), NEIGHBORS_BD.to_string()]
}
fn default_init_emb() -> usize {
    8
}
fn default_hidden() -> usize {
    64
}
fn default_out() -> usize {
    16
}
fn default_heads() -> usize {
    4
}
fn default_mid() -> usize {
    1
}
fn default_bd_features() -> usize {
    4
}

/// The fields of [`SeggerConfig`] that the reference's `Segger(...)` takes, in the order of the
/// parity fixtures' `config` metadata; for serialising only ([`SeggerConfig::reference_args`]).
#[derive(Serialize)]
struct ReferenceArgs {
    num_tx_tokens: usize,
    init_emb: usize,
    hidden_channels: usize,
    out_channels: usize,
    heads: usize,
    num_mid_layers: usize,
}

/// The Segger architecture. Reads the JSON the reference fixtures use
/// (`{"num_tx_tokens": 500, "init_emb": 8, "hidden_channels": 64, "out_channels": 16,
/// "heads": 4, "num_mid_layers": 1}`, which [`Self::reference_args`] writes); the other fields
/// have defaults. Serialises every field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeggerConfig {
    /// Size of the gene token vocabulary.
    pub num_tx_tokens: usize,
    /// Width of the input embedding of both node types.
    #[serde(default = "default_init_emb")]
    pub init_emb: usize,
    /// Per-head width of the first and middle GATv2 layers.
    #[serde(default = "default_hidden")]
    pub hidden_channels: usize,
    /// Per-head width of the last GATv2 layer; embeddings have `heads * out_channels` columns.
    #[serde(default = "default_out")]
    pub out_channels: usize,
    /// Number of attention heads.
    #[serde(default = "default_heads")]
    pub heads: usize,
    /// Number of middle GATv2 layers.
    #[serde(default = "default_mid", alias = "mid_layers")]
    pub num_mid_layers: usize,
    /// Combination of relations that reach the same node type.
    #[serde(default)]
    pub aggr: Aggr,
    /// Message-passing relations, as `src__rel__dst` keys. Defaults to
    /// `tx__neighbors__tx` and `tx__neighbors__bd`; `tx__belongs__bd` is also accepted.
    #[serde(default = "default_relations")]
    pub relations: Vec<String>,
    /// Width of dense transcript features (gene embeddings); `None` for token ids.
    #[serde(default)]
    pub tx_features: Option<usize>,
    /// Number of boundary features.
    #[serde(default = "default_bd_features")]
    pub bd_features: usize,
    /// Link logits divided by √[`Self::embedding_width`], as in scaled dot-product attention:
    /// both embeddings come out of [`crate::Segger::forward`] multiplied by the width's −¼
    /// power, so every consumer of the embeddings sees the same scale. The reference has
    /// plain dot products (`false`, the value of configs written without the field);
    /// [`Self::bidirectional`] turns it on.
    #[serde(default)]
    pub scaled_logits: bool,
}

impl SeggerConfig {
    /// The seed configuration with a vocabulary of `num_tx_tokens` genes.
    pub fn new(num_tx_tokens: usize) -> Self {
        Self {
            num_tx_tokens,
            init_emb: default_init_emb(),
            hidden_channels: default_hidden(),
            out_channels: default_out(),
            heads: default_heads(),
            num_mid_layers: default_mid(),
            aggr: Aggr::Sum,
            relations: default_relations(),
            tx_features: None,
            bd_features: default_bd_features(),
            scaled_logits: false,
        }
    }

    /// This architecture with boundary-to-transcript messages added ([`BD_TO_TX`]: the
    /// `tx__neighbors__bd` edges reversed), so that each transcript's embedding sees its
    /// nearest nuclei, and with [`Self::scaled_logits`]. The reference has transcript-to-boundary
    /// messages only and plain dot products. Idempotent.
    pub fn bidirectional(mut self) -> Self {
        if !self.relations.iter().any(|r| r == BD_TO_TX) {
            self.relations.push(BD_TO_TX.to_string());
        }
        self.scaled_logits = true;
        self
    }

    /// Parses the JSON config (as stored in weight-file metadata or `config.json`).
    pub fn from_json(s: &str) -> Result<Self, ConfigError> {
        let c: SeggerConfig = serde_json::from_str(s)
            .map_err(|e| ConfigError::new("config", format!("not a valid config JSON ({e})")))?;
        c.check()?;
        Ok(c)
    }

    /// The config as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("config serialises")
    }

    /// The config as the keyword arguments of the reference's `Segger(...)`: `num_tx_tokens`,
    /// `init_emb`, `hidden_channels`, `out_channels`, `heads`, `num_mid_layers`, in the order of
    /// the parity fixtures' `config` metadata, which [`Self::from_json`] reads back to this
    /// config. `None` when those six do not describe the config: another aggregation, other
    /// relations, dense transcript features, other than 4 boundary features or scaled logits.
    pub fn reference_args(&self) -> Option<impl Serialize> {
        let d = Self::new(self.num_tx_tokens);
        let plain = self.aggr == d.aggr
            && self.relations == d.relations
            && self.tx_features == d.tx_features
            && self.bd_features == d.bd_features
            && self.scaled_logits == d.scaled_logits;
        plain.then_some(ReferenceArgs {
            num_tx_tokens: self.num_tx_tokens,
            init_emb: self.init_emb,
            hidden_channels: self.hidden_channels,
            out_channels: self.out_channels,
            heads: self.heads,
            num_mid_layers: self.num_mid_layers,
        })
    }

    /// The relations, parsed.
    pub fn edge_types(&self) -> Vec<EdgeType> {
        self.relations
            .iter()
            .filter_map(|r| EdgeType::parse(r))
            .collect()
    }

    /// Width of the final embeddings: `heads * out_channels`.
    pub fn embedding_width(&self) -> usize {
        self.heads * self.out_channels
    }

    /// Checks sizes and relations.
    pub fn check(&self) -> Result<(), ConfigError> {
        for (name, v) in [
            ("num_tx_tokens", self.num_tx_tokens),
            ("init_emb", self.init_emb),
            ("hidden_channels", self.hidden_channels),
            ("out_channels", self.out_channels),
            ("heads", self.heads),
            ("bd_features", self.bd_features),
        ] {
            if v == 0 {
                return Err(ConfigError::new(name, "must be at least 1"));
            }
        }
        if self.tx_features == Some(0) {
            return Err(ConfigError::new(
                "tx_features",
                "must be at least 1 when set",
            ));
        }
        if self.relations.is_empty() {
            return Err(ConfigError::new(
                "relations",
                "at least one relation is needed",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for r in &self.relations {
            let et = EdgeType::parse(r).ok_or_else(|| {
                ConfigError::new(
                    "relations",
                    format!("{r:?} is not a src__rel__dst key over tx and bd"),
                )
            })?;
            if !seen.insert(r.clone()) {
                return Err(ConfigError::new(
                    "relations",
                    format!("{r:?} is listed twice"),
                ));
            }
            let _ = et;
        }
        for t in [NodeType::Tx, NodeType::Bd] {
            if !self.edge_types().iter().any(|e| e.dst == t) {
                return Err(ConfigError::new(
                    "relations",
                    format!("no relation reaches node type {t}, so it would get no embedding"),
                ));
            }
        }
        Ok(())
    }
}
