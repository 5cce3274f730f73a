use std::path::PathBuf;

use burn::record::{FileRecorder, Recorder, RecorderError};
use burn::tensor::backend::Backend;
use serde::{de::DeserializeOwned, Serialize};

/// A file recorder that writes atomically: the inner recorder writes a temporary file in the
/// same directory, which is then renamed over the destination. A killed process leaves either
/// the old checkpoint or the new one, never a torn file.
#[derive(Debug, Clone, Default)]
pub struct AtomicRecorder<R> {
    inner: R,
}

impl<R> AtomicRecorder<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        Self { inner }
    }
}

impl<B: Backend, R: FileRecorder<B>> FileRecorder<B> for AtomicRecorder<R> {
    fn file_extension() -> &'static str {
        R::file_extension()
    }
}

impl<B: Backend, R: FileRecorder<B>> Recorder<B> for AtomicRecorder<R> {
    type Settings = R::Settings;
    type RecordArgs = PathBuf;
    type RecordOutput = ();
    type LoadArgs = PathBuf;

    fn save_item<I: Serialize>(
        &self,
        item: I,
        file: Self::RecordArgs,
    ) -> Result<(), RecorderError> {
        let ext = <R as FileRecorder<B>>::file_extension();
        let final_path = file.with_extension(ext);
        let name = final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp_stem = final_path.with_file_name(format!(".{name}.tmp"));
        self.inner.save_item(item, tmp_stem.clone())?;
        let tmp = tmp_stem.with_extension(ext);
        std::fs::rename(&tmp, &final_path)
            .map_err(|e| RecorderError::Unknown(format!("{}: {e}", final_path.display())))
    }

    fn load_item<I: DeserializeOwned>(
        &self,
        file: &mut Self::LoadArgs,
    ) -> Result<I, RecorderError> {
        self.inner.load_item(file)
    }
}
