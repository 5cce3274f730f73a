//! `train`'s errors are typed: the cause is kept as a source, the exit code follows the kind.

use std::error::Error as _;

use segger_model::SeggerConfig;
use segger_train::{train, TrainConfig, TrainError};

#[test]
fn an_invalid_model_is_a_model_error_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let mut model = SeggerConfig::new(10);
    model.relations = vec!["tx__neighbors__tx".into()]; // nothing reaches the boundaries
    let cfg = TrainConfig::new(
        tmp.path().join("train"),
        tmp.path().join("val"),
        tmp.path().join("run"),
        model,
    );
    let e = train(&cfg).unwrap_err();
    match &e {
        TrainError::Model { source, .. } => assert_eq!(source.field, "relations"),
        other => panic!("expected a model error, got {other:?}"),
    }
    assert_eq!(e.exit_code(), 2);
    assert!(e.source().is_some(), "the cause is kept");
    assert!(!tmp.path().join("run").exists(), "nothing written");
}

#[test]
fn an_unreadable_split_is_a_data_error_with_its_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let split = tmp.path().join("train");
    std::fs::create_dir_all(split.join("processed")).unwrap();
    std::fs::write(
        split.join("processed").join("tile_0.safetensors"),
        b"not a tile",
    )
    .unwrap();
    let cfg = TrainConfig::new(
        split.clone(),
        split,
        tmp.path().join("run"),
        SeggerConfig::new(10),
    );
    let e = train(&cfg).unwrap_err();
    assert!(
        matches!(
            &e,
            TrainError::Data {
                flag: "train_dir",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.exit_code(), 2);
    assert!(e.to_string().starts_with("--train_dir: "), "{e}");
    assert!(e.to_string().contains("tile_0.safetensors"), "{e}");
}
