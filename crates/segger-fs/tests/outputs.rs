//! The output rules: overlap with inputs, own earlier output, atomic replacement.

use std::path::Path;

use segger_fs::{
    check_overlap, prepare_output, replace_dir, resolve, OutputError, OutputSpec, Prior, TempDir,
};

const SPEC: OutputSpec<'static> = OutputSpec {
    command: "create_dataset",
    writes: &["dataset.json", "train_tiles", "val_tiles", "test_tiles"],
    signature: "dataset.json",
};

fn touch(p: &Path) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, b"x").unwrap();
}

#[test]
fn output_equal_to_inside_or_around_an_input_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let raw = d.path().join("raw");
    touch(&raw.join("transcripts.parquet"));
    let same = check_overlap("--output", &raw, &[("--input", &raw)]).unwrap_err();
    assert!(matches!(same, OutputError::SameAsInput { .. }), "{same}");
    assert!(same.to_string().contains("--input"), "{same}");
    // Another spelling of the same folder.
    let dotted = raw.join("..").join("raw").join(".");
    let e = check_overlap("--output", &dotted, &[("--input", &raw)]).unwrap_err();
    assert!(matches!(e, OutputError::SameAsInput { .. }), "{e}");
    let e = check_overlap("--output", d.path(), &[("--input", &raw)]).unwrap_err();
    assert!(matches!(e, OutputError::ContainsInput { .. }), "{e}");
    let e = check_overlap("--output", &raw.join("ds"), &[("--input", &raw)]).unwrap_err();
    assert!(matches!(e, OutputError::InsideInput { .. }), "{e}");
    assert_eq!(e.exit_code(), 2);
    // A sibling whose name starts with the input's is not inside it.
    check_overlap("--output", &d.path().join("raw2"), &[("--input", &raw)]).unwrap();
}

#[cfg(unix)]
#[test]
fn a_symbolic_link_to_the_input_is_the_input() {
    let d = tempfile::tempdir().unwrap();
    let raw = d.path().join("raw");
    touch(&raw.join("transcripts.parquet"));
    let link = d.path().join("link");
    std::os::unix::fs::symlink(&raw, &link).unwrap();
    let e = check_overlap("--output", &link, &[("--input", &raw)]).unwrap_err();
    assert!(matches!(e, OutputError::SameAsInput { .. }), "{e}");
    assert_eq!(resolve(&link.join("sub/..")), resolve(&raw));
}

#[test]
fn missing_and_empty_outputs_are_written() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("ds");
    assert_eq!(
        prepare_output(&SPEC, "--output", &out, &[], false).unwrap(),
        Prior::Absent
    );
    std::fs::create_dir(&out).unwrap();
    assert_eq!(
        prepare_output(&SPEC, "--output", &out, &[], false).unwrap(),
        Prior::Empty
    );
}

#[test]
fn only_an_earlier_output_of_the_same_command_is_replaced() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("ds");
    touch(&out.join("dataset.json"));
    touch(&out.join("train_tiles/processed/a.safetensors"));
    let e = prepare_output(&SPEC, "--output", &out, &[], false).unwrap_err();
    assert!(matches!(e, OutputError::Exists { .. }), "{e}");
    assert!(e.to_string().contains("--overwrite"), "{e}");
    assert_eq!(
        prepare_output(&SPEC, "--output", &out, &[], true).unwrap(),
        Prior::Earlier
    );
    // A file the command does not write: refused even with --overwrite.
    touch(&out.join("notes.txt"));
    let e = prepare_output(&SPEC, "--output", &out, &[], true).unwrap_err();
    assert!(
        matches!(e, OutputError::Foreign { ref entry, .. } if entry == "notes.txt"),
        "{e}"
    );
    // A folder the command never wrote (no signature): refused even with --overwrite.
    let user = d.path().join("user");
    touch(&user.join("transcripts.parquet"));
    let e = prepare_output(&SPEC, "--output", &user, &[], true).unwrap_err();
    assert!(matches!(e, OutputError::NotOwn { .. }), "{e}");
    assert!(e.to_string().contains("dataset.json"), "{e}");
    // A file where a folder is expected.
    let file = d.path().join("file");
    touch(&file);
    let e = prepare_output(&SPEC, "--output", &file, &[], true).unwrap_err();
    assert!(matches!(e, OutputError::NotADirectory { .. }), "{e}");
}

#[test]
fn replace_dir_swaps_the_whole_folder() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("ds");
    touch(&out.join("dataset.json"));
    touch(&out.join("old_only"));
    let tmp = TempDir::next_to(&out, "tmp").unwrap();
    touch(&tmp.path().join("dataset.json"));
    replace_dir(tmp.path(), &out).unwrap();
    tmp.keep();
    assert!(out.join("dataset.json").exists());
    assert!(!out.join("old_only").exists());
    // No hidden sibling is left behind.
    let left: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, vec![std::ffi::OsString::from("ds")]);
}

#[test]
fn a_dropped_temp_dir_is_removed() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("ds");
    let p = {
        let tmp = TempDir::next_to(&out, "tmp").unwrap();
        touch(&tmp.path().join("partial"));
        tmp.path().to_path_buf()
    };
    assert!(!p.exists());
}

/// A safetensors file of `header` (JSON) and 4 data bytes.
fn st_file(header: &str) -> Vec<u8> {
    let mut b = (header.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(header.as_bytes());
    b.extend_from_slice(&[1, 2, 3, 4]);
    b
}

#[test]
fn safetensors_headers_are_sorted_to_the_byte() {
    let t = r#""t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#;
    let a = st_file(&format!(
        r#"{{"__metadata__":{{"format":"f","config":"c"}},{t}}}"#
    ));
    let b = st_file(&format!(
        r#"{{{t},"__metadata__":{{"config":"c","format":"f"}}}}  "#
    ));
    let (sa, sb) = (
        segger_fs::sorted_safetensors_header(&a).unwrap(),
        segger_fs::sorted_safetensors_header(&b).unwrap(),
    );
    assert_eq!(sa, sb);
    let n = u64::from_le_bytes(sa[..8].try_into().unwrap()) as usize;
    assert_eq!(n % 8, 0, "the header is padded to 8 bytes");
    let head = std::str::from_utf8(&sa[8..8 + n]).unwrap().trim_end();
    assert_eq!(
        head,
        r#"{"__metadata__":{"config":"c","format":"f"},"t":{"data_offsets":[0,4],"dtype":"F32","shape":[1]}}"#
    );
    assert_eq!(&sa[8 + n..], &[1, 2, 3, 4], "the data is unchanged");
    assert!(segger_fs::sorted_safetensors_header(&a[..5]).is_err());
    assert!(segger_fs::sorted_safetensors_header(&st_file("{not json")).is_err());
}
