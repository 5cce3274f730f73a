//! Lightning checkpoints: a small `.ckpt` is written here by hand (zip + protocol-2 pickle, as
//! `torch.save` lays it out) and imported.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use safetensors::SafeTensors;
use segger_data::torch::checkpoint::{
    expected_shapes, import_checkpoint, parse_checkpoint, ConfigOverrides, HyperValue, SeggerConfig,
};
use segger_data::torch::zip::ZipWriter;

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
fn import_fresh(
    ckpt: &Path,
    out: &Path,
) -> Result<segger_data::torch::checkpoint::ImportReport, segger_data::DataError> {
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

const SMALL: SeggerConfig = SeggerConfig {
    num_tx_tokens: 20,
    init_emb: 4,
    hidden_channels: 3,
    out_channels: 2,
    heads: 2,
    num_mid_layers: 1,
};

/// The state dict of a Segger model with `cfg`: names and shapes (lin0 in-widths 1 and 4).
fn model_tensors(cfg: &SeggerConfig) -> Vec<(String, Vec<usize>)> {
    expected_shapes(cfg)
        .into_iter()
        .map(|(n, s)| {
            let s = s
                .iter()
                .map(|d| d.unwrap_or(if n.starts_with("lin0.tx") { 1 } else { 4 }))
                .collect();
            (n, s)
        })
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
    std::fs::write(&ckpt, write_ckpt(&opts(SMALL))).unwrap();
    let out = dir.path().join("model");
    let rep = import_fresh(&ckpt, &out).unwrap();
    assert_eq!(rep.config, SMALL);
    assert!(
        rep.sources.values().all(|&s| s == "weights"),
        "{:?}",
        rep.sources
    );
    let (w, meta_cfg) = read_weights(&out);
    let expected = model_tensors(&SMALL);
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
    let meta: SeggerConfig = serde_json::from_str(&meta_cfg).unwrap();
    assert_eq!(meta, SMALL);
}

#[test]
fn parity_fixture_config_keys_match() {
    // The config metadata of the parity weights parses as SeggerConfig, with nothing extra.
    let p = common::test_data("parity/seed.weights.safetensors");
    let bytes = std::fs::read(p).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let text = &meta.metadata().as_ref().unwrap()["config"];
    let cfg: SeggerConfig = serde_json::from_str(text).unwrap();
    let back: serde_json::Value = serde_json::to_value(cfg).unwrap();
    let orig: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(back, orig);
    // And the names/shapes this module expects are exactly the fixture's tensors.
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    let mut exp: Vec<String> = expected_shapes(&cfg).into_iter().map(|(n, _)| n).collect();
    exp.sort();
    assert_eq!(names, exp);
    for (n, shape) in expected_shapes(&cfg) {
        let got = st.tensor(&n).unwrap().shape().to_vec();
        assert_eq!(got.len(), shape.len(), "{n}");
        for (g, s) in got.iter().zip(&shape) {
            assert!(s.is_none_or(|s| s == *g), "{n}: {got:?} vs {shape:?}");
        }
    }
}

#[test]
fn hyper_parameters_win_and_contradictions_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("a.ckpt");
    let mut o = opts(SMALL);
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
    let e = import_checkpoint(&ckpt, &dir.path().join("m2"), &flags, false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("out_channels") && e.contains("flag says 5"),
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
            ..SMALL
        };
        let dir = tempfile::tempdir().unwrap();
        let ckpt = dir.path().join("a.ckpt");
        std::fs::write(&ckpt, write_ckpt(&opts(cfg))).unwrap();
        let rep = import_fresh(&ckpt, &dir.path().join("m")).unwrap();
        assert_eq!(rep.config, cfg);
    }
}

#[test]
fn non_allowed_objects_in_the_weights_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("bad.ckpt");
    let mut o = opts(SMALL);
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
    for (name, shape) in model_tensors(&SMALL) {
        if name == "conv_last.tx__neighbors__bd.lin_r.bias" {
            continue;
        }
        p.str(&format!("model.{name}"));
        p.dense(&shape, &values(&name, shape.iter().product()));
    }
    p.op(b"uu");
    std::fs::write(&ckpt, p.archive("archive")).unwrap();
    let e = import_fresh(&ckpt, &dir.path().join("m"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("conv_last.tx__neighbors__bd.lin_r.bias") && e.contains("missing"),
        "{e}"
    );
    // An extra model tensor (another architecture) is refused by name, as the model loader
    // would refuse the weights.
    let mut t: Vec<(String, Vec<usize>, Vec<f32>)> = model_tensors(&SMALL)
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
    let orig = write_ckpt(&opts(SMALL));
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
    let want: SeggerConfig =
        serde_json::from_str(&meta.metadata().as_ref().unwrap()["config"]).unwrap();
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
