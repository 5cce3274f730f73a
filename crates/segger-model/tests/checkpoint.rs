//! Lightning checkpoints: a small `.ckpt` is written here by hand (zip + protocol-2 pickle, as
//! `torch.save` lays it out), read by segger-data and imported as model weights.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use burn::backend::Flex;
use safetensors::SafeTensors;
use segger_data::torch::checkpoint::{parse_checkpoint, HyperValue};
use segger_data::torch::zip::ZipWriter;
use segger_model::checkpoint::{import_checkpoint, CheckpointError, ConfigOverrides, ImportReport};
use segger_model::pyg::{check_names, read_safetensors};
use segger_model::{Aggr, Segger, SeggerConfig};

/// Writes protocol-2 pickles the way `torch.save` does (a subset of opcodes).
#[derive(Default)]
struct Pickler {
    out: Vec<u8>,
    memo: u32,
    storages: Vec<(String, Vec<u8>)>,
}

impl Pickler {
    fn op(&mut self, b: &[u8]) -> &mut Self {
        self.out.extend_from_slice(b);
        self
    }
    fn put(&mut self) -> &mut Self {
        if self.memo < 256 {
            self.out.extend_from_slice(&[b'q', self.memo as u8]);
        } else {
            self.out.push(b'r');
            self.out.extend_from_slice(&self.memo.to_le_bytes());
        }
        self.memo += 1;
        self
    }
    fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.out.push(b'c');
        self.out
            .extend_from_slice(format!("{module}\n{name}\n").as_bytes());
        self.put()
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.out.push(b'X');
        self.out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.out.extend_from_slice(s.as_bytes());
        self.put()
    }
    fn int(&mut self, v: i64) -> &mut Self {
        if (0..256).contains(&v) {
            self.op(&[b'K', v as u8])
        } else if (0..65536).contains(&v) {
            self.out.push(b'M');
            self.op(&(v as u16).to_le_bytes())
        } else if i32::try_from(v).is_ok() {
            self.out.push(b'J');
            self.op(&(v as i32).to_le_bytes())
        } else {
            self.op(&[0x8a, 8]).op(&v.to_le_bytes())
        }
    }
    fn float(&mut self, v: f64) -> &mut Self {
        self.out.push(b'G');
        self.op(&v.to_be_bytes())
    }
    fn tuple(&mut self, ints: &[usize]) -> &mut Self {
        match ints.len() {
            0 => self.op(b")"),
            1..=3 => {
                for &i in ints {
                    self.int(i as i64);
                }
                self.op(&[0x84 + ints.len() as u8]).put()
            }
            _ => {
                self.op(b"(");
                for &i in ints {
                    self.int(i as i64);
                }
                self.op(b"t").put()
            }
        }
    }
    /// `_rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())` over a new
    /// float32 storage.
    fn tensor(&mut self, storage: &[f32], offset: usize, size: &[usize], stride: &[usize]) {
        let key = self.storages.len().to_string();
        self.storages.push((
            key.clone(),
            storage.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ));
        self.global("torch._utils", "_rebuild_tensor_v2").op(b"((");
        self.str("storage")
            .global("torch", "FloatStorage")
            .str(&key)
            .str("cpu")
            .int(storage.len() as i64)
            .op(b"t")
            .put()
            .op(b"Q")
            .int(offset as i64)
            .tuple(size)
            .tuple(stride)
            .op(&[0x89])
            .global("collections", "OrderedDict")
            .op(b")R")
            .put()
            .op(b"t")
            .put()
            .op(b"R")
            .put();
    }
    /// A contiguous tensor.
    fn dense(&mut self, shape: &[usize], values: &[f32]) {
        let mut stride = vec![1; shape.len()];
        for k in (0..shape.len().saturating_sub(1)).rev() {
            stride[k] = stride[k + 1] * shape[k + 1];
        }
        self.tensor(values, 0, shape, &stride);
    }

    fn archive(mut self, prefix: &str) -> Vec<u8> {
        self.out.push(b'.');
        let mut w = ZipWriter::new();
        w.add(&format!("{prefix}/data.pkl"), &self.out).unwrap();
        w.add(&format!("{prefix}/.format_version"), b"1").unwrap();
        w.add(&format!("{prefix}/byteorder"), b"little").unwrap();
        for (k, b) in &self.storages {
            w.add(&format!("{prefix}/data/{k}"), b).unwrap();
        }
        w.add(&format!("{prefix}/version"), b"3\n").unwrap();
        w.finish().unwrap()
    }
}

/// Imports `ckpt` into the new folder `out` with no flags.
fn import_fresh(ckpt: &Path, out: &Path) -> Result<ImportReport, CheckpointError> {
    import_checkpoint(ckpt, out, &ConfigOverrides::default(), false)
}

fn values(name: &str, n: usize) -> Vec<f32> {
    let seed = name
        .bytes()
        .fold(7u32, |a, b| a.wrapping_mul(31).wrapping_add(b as u32));
    (0..n)
        .map(|i| {
            ((seed.wrapping_add((i as u32).wrapping_mul(2654435761)) >> 8) % 2001) as f32 / 1000.0
                - 1.0
        })
        .collect()
}

/// A small reference model (token ids, 4 boundary features, the two reference relations).
fn small() -> SeggerConfig {
    SeggerConfig {
        init_emb: 4,
        hidden_channels: 3,
        out_channels: 2,
        heads: 2,
        num_mid_layers: 1,
        ..SeggerConfig::new(20)
    }
}

/// The state dict of a Segger model with `cfg`: names and shapes, as segger-model has them.
fn model_tensors(cfg: &SeggerConfig) -> Vec<(String, Vec<usize>)> {
    let m = Segger::<Flex>::init(cfg, &Default::default(), 0).unwrap();
    segger_model::pyg::model_tensors(&m)
        .into_iter()
        .map(|(n, t)| (n, t.shape))
        .collect()
}

struct CkptOptions {
    cfg: SeggerConfig,
    /// Hyper-parameters to store (`None`: the old `LitSegger(model)` with only an opaque model
    /// object and the learning rate).
    hparams: Option<Vec<(&'static str, i64)>>,
    /// Store `lin0.bd.weight` transposed (column-major), to exercise strides.
    transposed: bool,
    /// Extra state-dict entry holding a non-allowed object instead of a tensor.
    poisoned: bool,
    /// Store the hyper-parameters as Lightning's `AttributeDict` (a dict subclass outside the
    /// allow-list) instead of a plain dict.
    attribute_dict: bool,
    /// Writes more hyper-parameter entries (key, value) into the open dict.
    more_hparams: Option<fn(&mut Pickler)>,
}

fn write_ckpt(o: &CkptOptions) -> Vec<u8> {
    let mut p = Pickler::default();
    p.op(&[0x80, 2]).op(b"}").put().op(b"(");
    p.str("epoch").int(3);
    p.str("global_step").int(120);
    p.str("pytorch-lightning_version").str("2.4.0");
    // state_dict: OrderedDict, filled by SETITEMS.
    p.str("state_dict")
        .global("collections", "OrderedDict")
        .op(b")R")
        .put()
        .op(b"(");
    for (name, shape) in model_tensors(&o.cfg) {
        p.str(&format!("model.{name}"));
        let n: usize = shape.iter().product();
        let v = values(&name, n);
        if o.transposed && name == "lin0.bd.weight" {
            // Storage holds the transpose; the view [out, in] has stride [1, out].
            let (r, c) = (shape[0], shape[1]);
            let mut storage = vec![0f32; n];
            for i in 0..r {
                for j in 0..c {
                    storage[j * r + i] = v[i * c + j];
                }
            }
            p.tensor(&storage, 0, &shape, &[1, r]);
        } else if name == "tx_embedding.tx.weight" {
            // A view at an offset into a larger storage, wrapped as a Parameter.
            let mut storage = vec![9.0f32; 5];
            storage.extend(&v);
            p.global("torch._utils", "_rebuild_parameter").op(b"(");
            p.tensor(&storage, 5, &shape, &[shape[1], 1]);
            p.op(&[0x88])
                .global("collections", "OrderedDict")
                .op(b")R")
                .put()
                .op(b"t")
                .put()
                .op(b"R")
                .put();
        } else {
            p.dense(&shape, &v);
        }
    }
    if o.poisoned {
        p.str("model.extra")
            .global("os", "system")
            .str("echo hi")
            .op(&[0x85])
            .put()
            .op(b"R")
            .put();
    }
    p.op(b"u");
    // Optimiser state with its own tensors, and callbacks with arbitrary objects.
    p.str("optimizer_states").op(b"]").put().op(b"(");
    p.op(b"}").put().op(b"(");
    p.str("state")
        .op(b"}")
        .put()
        .op(b"(")
        .int(0)
        .op(b"}")
        .put()
        .op(b"(");
    p.str("step");
    p.dense(&[], &[120.0]);
    p.str("exp_avg");
    p.dense(&[2, 2], &[0.1, 0.2, 0.3, 0.4]);
    p.op(b"uu");
    p.str("param_groups")
        .op(b"]")
        .put()
        .op(b"(")
        .op(b"}")
        .put()
        .op(b"(");
    p.str("lr")
        .float(1e-3)
        .str("betas")
        .float(0.9)
        .float(0.999)
        .op(&[0x86])
        .put();
    p.op(b"ue"); // param_groups dict into its list
    p.op(b"ue"); // optimiser dict into optimizer_states
    p.str("callbacks").op(b"}").put().op(b"(");
    p.str("ModelCheckpoint{'monitor': None}")
        .global(
            "lightning.pytorch.callbacks.model_checkpoint",
            "ModelCheckpoint",
        )
        .op(b")")
        .op(&[0x81])
        .put()
        .op(b"}")
        .put()
        .str("dirpath")
        .str("/tmp/x")
        .op(b"sb");
    p.op(b"u");
    p.str("hparams_name").str("kwargs");
    p.str("hyper_parameters");
    if o.attribute_dict {
        p.global("lightning.fabric.utilities.data", "AttributeDict")
            .op(b")")
            .op(&[0x81])
            .put()
            .op(b"(");
    } else {
        p.op(b"}").put().op(b"(");
    }
    match &o.hparams {
        Some(h) => {
            for (k, v) in h {
                p.str(k).int(*v);
            }
        }
        None => {
            // LitSegger(model): the whole to_hetero GraphModule is pickled as a hyper-parameter.
            p.str("model")
                .global("torch.fx.graph_module", "reduce_graph_module")
                .op(b"}")
                .put()
                .str("training")
                .op(&[0x88])
                .op(b"s")
                .str("import torch")
                .op(&[0x86])
                .put()
                .op(b"R")
                .put();
        }
    }
    if let Some(more) = o.more_hparams {
        more(&mut p);
    }
    p.str("learning_rate").float(1e-3);
    p.op(b"u");
    p.op(b"u");
    p.archive("archive")
}

fn opts(cfg: SeggerConfig) -> CkptOptions {
    CkptOptions {
        cfg,
        hparams: None,
        transposed: true,
        poisoned: false,
        attribute_dict: false,
        more_hparams: None,
    }
}

/// Tensors by name: shape and values.
type Weights = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

fn read_weights(dir: &Path) -> (Weights, String) {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let config = meta.metadata().as_ref().unwrap()["config"].clone();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut out = BTreeMap::new();
    for (n, v) in st.tensors() {
        assert_eq!(v.dtype(), safetensors::Dtype::F32, "{n}");
        let vals = v
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        out.insert(n, (v.shape().to_vec(), vals));
    }
    (out, config)
}

#[test]
fn checkpoint_imports_to_safetensors_and_config() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("epoch=2-step=120.ckpt");
    std::fs::write(&ckpt, write_ckpt(&opts(small()))).unwrap();
    let out = dir.path().join("model");
    let rep = import_fresh(&ckpt, &out).unwrap();
    assert_eq!(rep.config, small());
    for (k, s) in &rep.sources {
        let want = if ["aggr", "relations"].contains(k) {
            "default"
        } else {
            "weights"
        };
        assert_eq!(*s, want, "{k}: {:?}", rep.sources);
    }
    assert_eq!(rep.sources.len(), 10, "{:?}", rep.sources);
    let (w, meta_cfg) = read_weights(&out);
    let expected = model_tensors(&small());
    assert_eq!(w.len(), expected.len());
    assert_eq!(rep.tensors, expected.len());
    for (name, shape) in &expected {
        let (s, v) = &w[name];
        assert_eq!(s, shape, "{name}");
        // Values come back in row-major order whatever the stored layout.
        assert_eq!(*v, values(name, shape.iter().product()), "{name}");
    }
    // config.json and the metadata hold exactly the parity fixture's keys.
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    let keys: Vec<&str> = cfg
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut want = vec![
        "num_tx_tokens",
        "init_emb",
        "hidden_channels",
        "out_channels",
        "heads",
        "num_mid_layers",
    ];
    let mut got = keys.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    assert_eq!(cfg["heads"], 2);
    assert_eq!(SeggerConfig::from_json(&meta_cfg).unwrap(), small());
    // The written model loads.
    let (w, _) = read_safetensors(&out.join("model.safetensors")).unwrap();
    assert!(check_names(&small(), &w).is_empty());
}

#[test]
fn parity_fixture_config_keys_match() {
    for fixture in ["seed", "small"] {
        // The config metadata of the parity weights is the reference's arguments: it parses as
        // SeggerConfig, and reference_args gives back exactly those keys and values.
        let p = common::test_data(&format!("parity/{fixture}.weights.safetensors"));
        let (tensors, meta) = read_safetensors(&p).unwrap();
        let text = &meta["config"];
        let cfg = SeggerConfig::from_json(text).unwrap();
        let back = serde_json::to_value(cfg.reference_args().unwrap()).unwrap();
        let orig: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(back, orig);
        // And the model's parameter table is exactly the fixture's tensors.
        assert_eq!(check_names(&cfg, &tensors), Vec::<String>::new());
    }
    // A config the six arguments do not describe has none.
    assert!(SeggerConfig::new(5)
        .bidirectional()
        .reference_args()
        .is_none());
    let mut c = SeggerConfig::new(5);
    c.bd_features = 5;
    assert!(c.reference_args().is_none());
}

#[test]
fn hyper_parameters_win_and_contradictions_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("a.ckpt");
    let mut o = opts(small());
    o.hparams = Some(vec![
        ("hidden_channels", 3),
        ("heads", 2),
        ("num_mid_layers", 1),
    ]);
    o.attribute_dict = true;
    std::fs::write(&ckpt, write_ckpt(&o)).unwrap();
    let rep = import_fresh(&ckpt, &dir.path().join("m")).unwrap();
    assert_eq!(rep.sources["heads"], "hyper_parameters");
    assert_eq!(rep.sources["init_emb"], "weights");
    let parsed = parse_checkpoint(&ckpt, &std::fs::read(&ckpt).unwrap()).unwrap();
    assert_eq!(parsed.hyper_parameters["heads"], HyperValue::Int(2));
    assert!(parsed.lightning);
    // The ModelCheckpoint callback is named but never interpreted.
    assert!(parsed
        .globals
        .contains("lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint"));

    // A flag that contradicts the weights.
    let flags = ConfigOverrides {
        out_channels: Some(5),
        ..Default::default()
    };
    let e = import_checkpoint(&ckpt, &dir.path().join("m2"), &flags, false).unwrap_err();
    assert!(
        matches!(&e, CheckpointError::Field { field, .. } if field == "out_channels"),
        "{e:?}"
    );
    assert_eq!(e.exit_code(), 2);
    let e = e.to_string();
    assert!(
        e.contains("a.ckpt") && e.contains("out_channels") && e.contains("flag says 5"),
        "{e}"
    );
    assert!(!dir.path().join("m2").exists());

    // Hyper-parameters that contradict the weights.
    o.hparams = Some(vec![("heads", 4)]);
    std::fs::write(&ckpt, write_ckpt(&o)).unwrap();
    let e = import_fresh(&ckpt, &dir.path().join("m3"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("heads") && e.contains("hyper_parameters says 4"),
        "{e}"
    );

    // num_node_features = {"tx": N} (the CLI flavour of LitSegger) is read too.
    let mut p = Pickler::default();
    p.op(&[0x80, 2]).op(b"}").put().op(b"(");
    p.str("state_dict").op(b"}").put().op(b"(");
    p.str("model.w");
    p.dense(&[1], &[1.0]);
    p.op(b"u");
    p.str("hyper_parameters").op(b"}").put().op(b"(");
    p.str("num_node_features").op(b"}").put().op(b"(");
    p.str("tx").int(500).str("bd").int(4);
    p.op(b"uu");
    p.op(b"u");
    let bytes = p.archive("archive");
    let c = parse_checkpoint(Path::new("x.ckpt"), &bytes).unwrap();
    assert!(
        matches!(&c.hyper_parameters["num_node_features"], HyperValue::Dict(d) if d["tx"] == HyperValue::Int(500))
    );
}

#[test]
fn mid_layers_inferred_for_other_depths() {
    for mid in [0, 2] {
        let cfg = SeggerConfig {
            num_mid_layers: mid,
            ..small()
        };
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("a.ckpt");
        std::fs::write(&ckpt, write_ckpt(&opts(cfg.clone()))).unwrap();
        let rep = import_fresh(&ckpt, &dir.path().join("m")).unwrap();
        assert_eq!(rep.config, cfg);
    }
}

#[test]
fn non_allowed_objects_in_the_weights_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("bad.ckpt");
    let mut o = opts(small());
    o.poisoned = true;
    std::fs::write(&ckpt, write_ckpt(&o)).unwrap();
    let e = import_fresh(&ckpt, &dir.path().join("m"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bad.ckpt") && e.contains("model.extra") && e.contains("os.system"),
        "{e}"
    );
    // The tile reader refuses every non-tile global outright.
    let e = segger_data::torch::parse_torch(
        &ckpt,
        &std::fs::read(&ckpt).unwrap(),
        segger_data::torch::Policy::Tile,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("is not allowed"), "{e}");
}

#[test]
fn missing_weights_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("a.ckpt");
    let mut p = Pickler::default();
    p.op(&[0x80, 2]).op(b"}").put().op(b"(");
    p.str("state_dict").op(b"}").put().op(b"(");
    for (name, shape) in model_tensors(&small()) {
        if name == "conv_last.tx__neighbors__bd.lin_r.bias" {
            continue;
        }
        p.str(&format!("model.{name}"));
        p.dense(&shape, &values(&name, shape.iter().product()));
    }
    p.op(b"uu");
    std::fs::write(&ckpt, p.archive("archive")).unwrap();
    let e = import_fresh(&ckpt, &dir.path().join("m")).unwrap_err();
    assert!(
        matches!(&e, CheckpointError::Field { field, .. }
            if field == "state_dict.model.conv_last.tx__neighbors__bd.lin_r.bias"),
        "{e:?}"
    );
    let e = e.to_string();
    assert!(
        e.contains("conv_last.tx__neighbors__bd.lin_r.bias") && e.contains("missing"),
        "{e}"
    );
    // An extra model tensor (another architecture) is refused by name, as the model loader
    // would refuse the weights.
    let mut t: Vec<(String, Vec<usize>, Vec<f32>)> = model_tensors(&small())
        .into_iter()
        .map(|(n, s)| {
            let v = values(&n, s.iter().product());
            (format!("model.{n}"), s, v)
        })
        .collect();
    t.push((
        "model.conv_last.tx__neighbors__tx.res.weight".into(),
        vec![2],
        vec![0.0; 2],
    ));
    std::fs::write(
        &ckpt,
        segger_data::torch::save::state_dict_bytes(&t, "archive").unwrap(),
    )
    .unwrap();
    let e = import_fresh(&ckpt, &dir.path().join("m"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("conv_last.tx__neighbors__tx.res.weight"), "{e}");
}

#[test]
fn mutated_checkpoints_give_errors_not_panics() {
    use rand::{Rng, SeedableRng};
    use segger_data::torch::zip::ZipArchive;
    let orig = write_ckpt(&opts(small()));
    let z = ZipArchive::new(&orig).unwrap();
    let pkl = z.read("archive/data.pkl").unwrap().unwrap().to_vec();
    // The archive with data.pkl replaced, so that the pickle reader sees the mutation.
    let with_pickle = |p: &[u8]| {
        let mut w = ZipWriter::new();
        for e in z.entries() {
            let data = if e.name == "archive/data.pkl" {
                p
            } else {
                z.read(&e.name).unwrap().unwrap()
            };
            w.add(&e.name, data).unwrap();
        }
        w.finish().unwrap()
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let path = Path::new("fuzz.ckpt");
    let mut ok = 0;
    for i in 0..3000 {
        let b = if i % 2 == 0 {
            let mut b = orig.clone();
            if i % 4 == 0 {
                b.truncate(rng.random_range(0..b.len()));
            } else {
                for _ in 0..rng.random_range(1..5) {
                    let at = rng.random_range(0..b.len());
                    b[at] = rng.random();
                }
            }
            b
        } else {
            let mut p = pkl.clone();
            if i % 4 == 1 {
                p.truncate(rng.random_range(0..p.len()));
            } else {
                for _ in 0..rng.random_range(1..4) {
                    let at = rng.random_range(0..p.len());
                    p[at] = rng.random();
                }
            }
            with_pickle(&p)
        };
        match parse_checkpoint(path, &b) {
            Ok(_) => ok += 1,
            Err(e) => assert!(e.to_string().contains("fuzz.ckpt"), "{e}"),
        }
    }
    // Some mutations are harmless (inside strings or floats), most are not.
    assert!(
        ok > 0 && ok < 1500,
        "{ok} of 3000 mutated checkpoints parsed"
    );
}

#[test]
fn parity_weights_round_trip_through_a_checkpoint() {
    // A checkpoint holding the parity fixture's seed weights (as `model.*`) imports back to
    // exactly those tensors, with the fixture's config inferred from the shapes alone.
    let fixture = common::test_data("parity/seed.weights.safetensors");
    let bytes = std::fs::read(&fixture).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut p = Pickler::default();
    p.op(&[0x80, 2]).op(b"}").put().op(b"(");
    p.str("state_dict")
        .global("collections", "OrderedDict")
        .op(b")R")
        .put()
        .op(b"(");
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    for n in &names {
        let v = st.tensor(n).unwrap();
        let vals: Vec<f32> = v
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        p.str(&format!("model.{n}"));
        p.dense(v.shape(), &vals);
    }
    p.op(b"uu");
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("seed.ckpt");
    std::fs::write(&ckpt, p.archive("seed")).unwrap();
    let out = dir.path().join("model");
    let rep = import_fresh(&ckpt, &out).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let want = SeggerConfig::from_json(&meta.metadata().as_ref().unwrap()["config"]).unwrap();
    assert_eq!(rep.config, want);
    assert_eq!(rep.parameters, 348_520);
    let (w, _) = read_weights(&out);
    assert_eq!(w.len(), names.len());
    for n in &names {
        let v = st.tensor(n).unwrap();
        let (shape, vals) = &w[n];
        assert_eq!(shape.as_slice(), v.shape(), "{n}");
        let got: Vec<u8> = vals.iter().flat_map(|x| x.to_le_bytes()).collect();
        assert_eq!(got, v.data(), "{n}");
    }
}

#[test]
fn lin0_widths_and_aggr_are_mapped() {
    // Other input widths than the reference's token ids and 4 boundary features: the config
    // records them, written whole, and the import loads as a model.
    let mut cfg = small();
    cfg.bd_features = 5;
    cfg.tx_features = Some(3);
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("wide.ckpt");
    std::fs::write(&ckpt, write_ckpt(&opts(cfg.clone()))).unwrap();
    let out = dir.path().join("wide");
    let rep = import_fresh(&ckpt, &out).unwrap();
    assert_eq!(rep.config, cfg);
    assert_eq!(rep.sources["bd_features"], "weights");
    let text = std::fs::read_to_string(out.join("config.json")).unwrap();
    assert_eq!(text, cfg.to_json() + "\n");
    let (w, meta) = read_safetensors(&out.join("model.safetensors")).unwrap();
    assert_eq!(SeggerConfig::from_json(&meta["config"]).unwrap(), cfg);
    assert!(check_names(&cfg, &w).is_empty());
    let m = segger_model::pyg::load_pyg_state_dict::<Flex>(
        &out.join("model.safetensors"),
        None,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(m.config, cfg);

    // `aggr` among the hyper-parameters: `sum` is the default, and writes the same files as
    // none; `mean` is recorded; an aggregation the model does not have is refused by name.
    let plain = dir.path().join("plain");
    let mut o = opts(small());
    std::fs::write(&ckpt, write_ckpt(&o)).unwrap();
    import_fresh(&ckpt, &plain).unwrap();
    o.more_hparams = Some(|p| {
        p.str("aggr").str("sum");
    });
    std::fs::write(&ckpt, write_ckpt(&o)).unwrap();
    let sum = dir.path().join("sum");
    let rep = import_fresh(&ckpt, &sum).unwrap();
    assert_eq!(rep.sources["aggr"], "hyper_parameters");
    for f in ["model.safetensors", "config.json"] {
        assert_eq!(
            std::fs::read(plain.join(f)).unwrap(),
            std::fs::read(sum.join(f)).unwrap(),
            "{f}"
        );
    }
    o.more_hparams = Some(|p| {
        p.str("aggr").str("mean");
    });
    std::fs::write(&ckpt, write_ckpt(&o)).unwrap();
    let rep = import_fresh(&ckpt, &dir.path().join("mean")).unwrap();
    assert_eq!(rep.config.aggr, Aggr::Mean);
    let text = std::fs::read_to_string(dir.path().join("mean/config.json")).unwrap();
    assert_eq!(SeggerConfig::from_json(&text).unwrap(), rep.config);
    o.more_hparams = Some(|p| {
        p.str("aggr").str("min");
    });
    std::fs::write(&ckpt, write_ckpt(&o)).unwrap();
    let e = import_fresh(&ckpt, &dir.path().join("min")).unwrap_err();
    assert!(
        matches!(&e, CheckpointError::Field { field, .. } if field == "aggr"),
        "{e:?}"
    );
    assert!(e.to_string().contains("\"min\""), "{e}");

    // num_node_features["bd"] is the boundary feature count, checked against lin0.bd.weight.
    o.more_hparams = Some(|p| {
        p.str("num_node_features").op(b"}").put().op(b"(");
        p.str("tx").int(20).str("bd").int(6);
        p.op(b"u");
    });
    std::fs::write(&ckpt, write_ckpt(&o)).unwrap();
    let e = import_fresh(&ckpt, &dir.path().join("bd")).unwrap_err();
    assert!(
        e.to_string()
            .contains("bd_features: hyper_parameters says 6 but the weights imply 4"),
        "{e}"
    );
    assert!(!dir.path().join("bd").exists());
}

#[test]
fn invalid_configurations_are_refused_by_field() {
    // A configuration the model cannot build (no attention heads) is refused with the model's
    // own check, naming the file and the field.
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("a.ckpt");
    let mut o = opts(small());
    o.hparams = Some(vec![("init_emb", 0)]);
    std::fs::write(&ckpt, write_ckpt(&o)).unwrap();
    let e = import_fresh(&ckpt, &dir.path().join("m")).unwrap_err();
    // The weights imply 4: the contradiction comes first.
    assert!(e.to_string().contains("init_emb"), "{e}");
    // Without the weights to say otherwise, the model's check speaks.
    let mut p = Pickler::default();
    p.op(&[0x80, 2]).op(b"}").put().op(b"(");
    p.str("state_dict").op(b"}").put().op(b"(");
    p.str("model.w");
    p.dense(&[1], &[1.0]);
    p.op(b"u");
    p.str("hyper_parameters").op(b"}").put().op(b"(");
    for (k, v) in [
        ("num_tx_tokens", 5),
        ("init_emb", 4),
        ("hidden_channels", 3),
        ("out_channels", 2),
        ("heads", 0),
        ("num_mid_layers", 0),
    ] {
        p.str(k).int(v);
    }
    p.op(b"uu");
    std::fs::write(&ckpt, p.archive("archive")).unwrap();
    let e = import_fresh(&ckpt, &dir.path().join("m")).unwrap_err();
    match &e {
        CheckpointError::Config { path, source } => {
            assert_eq!(path, &ckpt);
            assert_eq!(source.field, "heads");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("a.ckpt"), "{e}");
    // Sizes whose product overflows are refused before any table is built.
    let mut p = Pickler::default();
    p.op(&[0x80, 2]).op(b"}").put().op(b"(");
    p.str("state_dict").op(b"}").put().op(b"(");
    p.str("model.w");
    p.dense(&[1], &[1.0]);
    p.op(b"u");
    p.str("hyper_parameters").op(b"}").put().op(b"(");
    for (k, v) in [
        ("num_tx_tokens", 5),
        ("init_emb", 4),
        ("hidden_channels", i64::MAX),
        ("out_channels", 2),
        ("heads", 4),
        ("num_mid_layers", 0),
    ] {
        p.str(k).int(v);
    }
    p.op(b"uu");
    std::fs::write(&ckpt, p.archive("archive")).unwrap();
    let e = import_fresh(&ckpt, &dir.path().join("m")).unwrap_err();
    assert!(
        matches!(&e, CheckpointError::Field { field, .. } if field == "heads"),
        "{e:?}"
    );
    assert!(!dir.path().join("m").exists());
}
