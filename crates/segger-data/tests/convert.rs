//! `convert_dataset`: a reference Segger dataset of `.pt` tiles to `segger-tile/1`.

mod common;

use std::path::{Path, PathBuf};

use segger_data::torch::convert::{convert_dataset, read_vocab_file, ConvertOptions};
use segger_data::{read_tile, DatasetInfo, Split, TileDataset};

fn fixtures() -> PathBuf {
    common::test_data("pyg")
}

/// A Segger dataset of links to the fixtures: two train tiles, one test tile.
fn segger_dataset(root: &Path) -> PathBuf {
    let ds = root.join("segger_ds");
    for (split, stem) in [
        ("train_tiles", "tiles_x=2247_y=2199_w=33_h=35"),
        ("train_tiles", "tiles_x=2218_y=2110_w=14_h=16"),
        ("test_tiles", "tiles_x=2160_y=2110_w=48_h=40"),
    ] {
        let dir = ds.join(split).join("processed");
        std::fs::create_dir_all(&dir).unwrap();
        let name = format!("{stem}.pt");
        std::os::unix::fs::symlink(fixtures().join(&name), dir.join(&name)).unwrap();
        // PyG's InMemoryDataset leaves these next to the tiles; they are not tiles.
        for other in ["pre_transform.pt", "pre_filter.pt"] {
            std::fs::write(dir.join(other), b"not a tile").unwrap();
        }
    }
    ds
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect()
}

#[test]
fn converts_a_segger_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let input = segger_dataset(tmp.path());
    let out = tmp.path().join("out");
    let r = convert_dataset(&input, &out, &ConvertOptions::default()).unwrap();
    assert_eq!((r.tiles.train, r.tiles.val, r.tiles.test), (2, 0, 1));
    assert_eq!(r.bd_x_replaced, 2);
    assert_eq!(r.max_token, Some(347));

    let info = DatasetInfo::read(&out).unwrap();
    assert!(info.vocab.is_empty());
    assert_eq!(info.settings["vocab_known"], false);
    assert_eq!(info.settings["max_token_id"], 347);
    assert_eq!(info.tiles, r.tiles);

    let train = TileDataset::open(&out.join(Split::Train.dir_name()), Some(348)).unwrap();
    let names: Vec<String> = train
        .paths()
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "tiles_x2218_y2110_14_16.safetensors",
            "tiles_x2247_y2199_33_35.safetensors"
        ]
    );
    // Every converted tile equals the .pt read directly.
    for (p, src) in train.paths().iter().zip([
        "tiles_x=2218_y=2110_w=14_h=16.pt",
        "tiles_x=2247_y=2199_w=33_h=35.pt",
    ]) {
        let a = read_tile(p, Some(348)).unwrap();
        let b = read_tile(&fixtures().join(src), Some(348)).unwrap();
        assert_eq!(a, b, "{}", p.display());
    }
    let test = TileDataset::open(&out.join(Split::Test.dir_name()), None).unwrap();
    assert_eq!(test.len(), 1);
    test.get(0).unwrap();
    assert!(
        leftovers(tmp.path()).is_empty(),
        "{:?}",
        leftovers(tmp.path())
    );

    // The output exists now: refused without overwrite, replaced with it.
    let e = convert_dataset(&input, &out, &ConvertOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("already exists"), "{e}");
    // A file the user put in it: the folder is not replaced, even with overwrite.
    std::fs::write(out.join("notes.txt"), "x").unwrap();
    let opts = ConvertOptions {
        overwrite: true,
        ..Default::default()
    };
    let e = convert_dataset(&input, &out, &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("notes.txt"), "{e}");
    assert_eq!(std::fs::read(out.join("notes.txt")).unwrap(), b"x");
    std::fs::remove_file(out.join("notes.txt")).unwrap();
    convert_dataset(&input, &out, &opts).unwrap();
    assert!(leftovers(tmp.path()).is_empty());
}

#[test]
fn a_bad_tile_leaves_no_output() {
    let tmp = tempfile::tempdir().unwrap();
    let input = segger_dataset(tmp.path());
    let bad = input.join("train_tiles/processed/tiles_x=0_y=0_w=1_h=1.pt");
    std::fs::write(&bad, b"PK garbage").unwrap();
    let out = tmp.path().join("out");
    let e = convert_dataset(&input, &out, &ConvertOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("tiles_x=0_y=0_w=1_h=1.pt"), "{e}");
    assert!(!out.exists());
    assert!(
        leftovers(tmp.path()).is_empty(),
        "{:?}",
        leftovers(tmp.path())
    );

    // Not a Segger dataset at all.
    let e = convert_dataset(
        tmp.path(),
        &tmp.path().join("o2"),
        &ConvertOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("not a Segger dataset"), "{e}");
    // Output inside the input.
    std::fs::remove_file(&bad).unwrap();
    let e = convert_dataset(&input, &input.join("x"), &ConvertOptions::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("lies inside --input"), "{e}");
}

#[test]
fn a_vocabulary_is_recorded_and_enforced() {
    let tmp = tempfile::tempdir().unwrap();
    let input = segger_dataset(tmp.path());
    let genes: Vec<String> = (0..350).map(|i| format!("GENE{i}")).collect();
    let vf = tmp.path().join("genes.txt");
    std::fs::write(&vf, genes.join("\n") + "\n").unwrap();
    let vocab = read_vocab_file(&vf).unwrap();
    assert_eq!(vocab, genes);
    let json = tmp.path().join("genes.json");
    std::fs::write(&json, serde_json::to_string(&genes).unwrap()).unwrap();
    assert_eq!(read_vocab_file(&json).unwrap(), genes);

    let out = tmp.path().join("out");
    let opts = ConvertOptions {
        vocab: Some(vocab),
        overwrite: false,
    };
    convert_dataset(&input, &out, &opts).unwrap();
    let info = DatasetInfo::read(&out).unwrap();
    assert_eq!(info.vocab, genes);
    assert_eq!(info.settings["vocab_known"], true);
    // A dataset.json is a vocabulary file too.
    assert_eq!(read_vocab_file(&out.join("dataset.json")).unwrap(), genes);

    // Too small a vocabulary: token 347 does not fit.
    let opts = ConvertOptions {
        vocab: Some(genes[..100].to_vec()),
        overwrite: false,
    };
    let e = convert_dataset(&input, &tmp.path().join("o2"), &opts)
        .unwrap_err()
        .to_string();
    assert!(e.contains("tx.x") && e.contains("vocabulary"), "{e}");
    assert!(!tmp.path().join("o2").exists());
}
