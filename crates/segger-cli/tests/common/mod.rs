//! Helpers shared by this crate's test files.

/// `rel` under the workspace's `tests/data` (origin and licence: `tests/data/README.md`).
#[allow(dead_code)]
pub fn test_data(rel: &str) -> std::path::PathBuf {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/data");
    let p = std::path::Path::new(root).join(rel);
    assert!(p.exists(), "test data {} is missing", p.display());
    p
}

/// The stages a `segger segment` run record (`run.json`) lists as completed, in order.
#[allow(dead_code)]
pub fn completed_stages(rec: &serde_json::Value) -> Vec<String> {
    rec["completed"]
        .as_array()
        .expect("run.json: completed is a list")
        .iter()
        .map(|s| s["stage"].as_str().expect("a stage name").to_string())
        .collect()
}
