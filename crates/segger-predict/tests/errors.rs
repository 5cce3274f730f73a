//! `predict`'s errors are typed: the cause is kept as a source, the exit code follows the kind.

use std::error::Error as _;

use segger_predict::{predict, PredictConfig, PredictError};

#[test]
fn an_invalid_model_config_is_a_model_error_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("model.safetensors"), b"").unwrap();
    std::fs::write(model.join("config.json"), br#"{"num_tx_tokens": 0}"#).unwrap();
    let data = tmp.path().join("data");
    segger_predict::synthetic::write_dataset(&data, 200, 10, 50.0, 0).unwrap();
    let cfg = PredictConfig::new(model, data, tmp.path().join("out"));
    let e = predict(&cfg).unwrap_err();
    match &e {
        PredictError::Model { source, .. } => assert_eq!(source.field, "num_tx_tokens"),
        other => panic!("expected a model error, got {other:?}"),
    }
    assert_eq!(e.exit_code(), 2);
    assert!(e.source().is_some(), "the cause is kept");
    assert!(e.to_string().starts_with("--model: "), "{e}");
    assert!(!tmp.path().join("out").exists(), "nothing written");
}

/// Reading options are for a raw sample: with a tile dataset (read already) `predict` refuses
/// them as an input error, writing nothing.
#[test]
fn reading_options_with_a_tile_dataset_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let sample = segger_predict::synthetic::write_dataset(&data, 200, 10, 50.0, 0).unwrap();
    let model = tmp.path().join("model");
    let cfg = segger_model::SeggerConfig::new(10);
    segger_predict::synthetic::write_model(&model, &cfg, Some(&sample.genes), 0).unwrap();
    let out = tmp.path().join("out");
    let mut pc = PredictConfig::new(model, data, out.clone());
    pc.accelerator = segger_predict::Accelerator::Cpu;
    let mut raw = segger_data::raw::RawOptions::new(segger_data::raw::Platform::Xenium);
    raw.scale = Some(0.5);
    pc.raw_options = Some(raw);
    let e = predict(&pc).unwrap_err();
    assert!(matches!(e, PredictError::Input(_)), "{e:?}");
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().contains("is a tile dataset"), "{e}");
    assert!(!out.exists(), "nothing written");
    // The same call without them predicts.
    pc.raw_options = None;
    predict(&pc).unwrap();
    assert!(out.join("segger_transcripts.parquet").is_file());
}
