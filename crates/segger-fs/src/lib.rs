//! The rules every `segger` command follows when it writes to disk.
//!
//! - **An output never overlaps an input.** An output folder that is, contains or lies inside
//!   one of the command's inputs (a raw sample, a dataset, a model) is refused, with or
//!   without `--overwrite` ([`check_overlap`]).
//! - **Only a command's own earlier output is replaced.** A missing or empty output folder is
//!   written; a non-empty one is replaced only with `--overwrite`, and only when it is this
//!   command's earlier output: it holds the command's signature file and nothing the command
//!   does not write ([`OutputSpec`], [`prepare_output`]). Anything else is refused, so no user
//!   file is ever deleted.
//! - **Outputs appear whole.** A command writes into a temporary sibling (`.NAME.tmp-PID`) and
//!   renames it into place at the end ([`temp_sibling`], [`replace_dir`]); siblings left by
//!   killed runs are removed by the next run ([`remove_stale_siblings`],
//!   [`remove_stale_temps_in`]).
//! - **The same result, the same bytes.** Safetensors headers are written with sorted keys
//!   ([`sorted_safetensors_header`]).
//!
//! Paths are compared after resolving symbolic links and `.`/`..` components, so two spellings
//! of one folder are recognised as the same.

use std::path::{Component, Path, PathBuf};

/// Why an output cannot be written where it was asked for.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// The output is one of the inputs.
    #[error("{name} {output}: is the same folder as {input_name} {input}; choose another output")]
    SameAsInput {
        /// How the user named the output (the CLI passes its flag).
        name: String,
        /// The output path as given.
        output: PathBuf,
        /// How the user named the input.
        input_name: String,
        /// The input path as given.
        input: PathBuf,
    },
    /// The output lies inside an input.
    #[error("{name} {output}: lies inside {input_name} {input}; choose an output outside it")]
    InsideInput {
        /// How the user named the output.
        name: String,
        /// The output path as given.
        output: PathBuf,
        /// How the user named the input.
        input_name: String,
        /// The input path as given.
        input: PathBuf,
    },
    /// The output contains an input.
    #[error("{name} {output}: contains {input_name} {input}; choose an output that does not hold the input")]
    ContainsInput {
        /// How the user named the output.
        name: String,
        /// The output path as given.
        output: PathBuf,
        /// How the user named the input.
        input_name: String,
        /// The input path as given.
        input: PathBuf,
    },
    /// The output exists, is not empty, and `--overwrite` was not given.
    #[error("{name} {output}: already exists and is not empty (pass --overwrite to replace an earlier `segger {command}` output)")]
    Exists {
        /// How the user named the output.
        name: String,
        /// The output path as given.
        output: PathBuf,
        /// The command that writes this output.
        command: String,
    },
    /// The output is a non-empty folder that this command did not write.
    #[error("{name} {output}: is not an earlier `segger {command}` output (it has no {signature}); refusing to replace it, even with --overwrite")]
    NotOwn {
        /// How the user named the output.
        name: String,
        /// The output path as given.
        output: PathBuf,
        /// The command that writes this output.
        command: String,
        /// The file that marks this command's output.
        signature: String,
    },
    /// The output is this command's earlier output but also holds something else.
    #[error("{name} {output}: holds {entry}, which `segger {command}` does not write; refusing to replace the folder (move that file out, or choose another output)")]
    Foreign {
        /// How the user named the output.
        name: String,
        /// The output path as given.
        output: PathBuf,
        /// The command that writes this output.
        command: String,
        /// The first entry the command does not write.
        entry: String,
    },
    /// The output exists and is a file, not a folder.
    #[error("{name} {output}: is a file, not a folder")]
    NotADirectory {
        /// How the user named the output.
        name: String,
        /// The output path as given.
        output: PathBuf,
    },
    /// The file system refused an operation.
    #[error("{path}: {source}")]
    Io {
        /// The path the operation was on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl OutputError {
    /// The process exit code for this error: 2 (bad usage) for every refusal, 1 for a failure
    /// of the file system.
    pub fn exit_code(&self) -> u8 {
        match self {
            OutputError::Io { .. } => 1,
            _ => 2,
        }
    }

    fn io(path: &Path, source: std::io::Error) -> Self {
        OutputError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Refuses a path that is not valid UTF-8, for commands that record their paths in a JSON
/// file (`record`), which holds UTF-8 text only: the message names the flag and the file.
pub fn require_utf8(paths: &[(&str, &Path)], record: &str) -> Result<(), String> {
    match paths.iter().find(|(_, p)| p.to_str().is_none()) {
        Some((flag, p)) => Err(format!(
            "{flag} {}: the path is not valid UTF-8 (it is recorded in {record}); rename it",
            p.display()
        )),
        None => Ok(()),
    }
}

/// What a command writes into its output folder.
#[derive(Debug, Clone, Copy)]
pub struct OutputSpec<'a> {
    /// The command's name, as the user types it (`create_dataset`).
    pub command: &'a str,
    /// The top-level entries (files and folders) the command may write.
    pub writes: &'a [&'a str],
    /// The entry whose presence marks a folder as this command's output; one of `writes`.
    pub signature: &'a str,
}

/// What [`prepare_output`] found at the output path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prior {
    /// Nothing there.
    Absent,
    /// An empty folder.
    Empty,
    /// This command's earlier output, to be replaced (`--overwrite` was given).
    Earlier,
}

/// The absolute form of `path` with symbolic links and `.`/`..` resolved: its longest
/// existing ancestor is canonicalised and the rest appended, so paths that do not exist yet
/// compare correctly too.
pub fn resolve(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    let parts: Vec<Component<'_>> = abs.components().collect();
    for i in (1..=parts.len()).rev() {
        let prefix: PathBuf = parts[..i].iter().collect();
        if let Ok(mut out) = prefix.canonicalize() {
            let rest: PathBuf = parts[i..].iter().collect();
            push_normalised(&mut out, &rest);
            return out;
        }
    }
    normalise(&abs)
}

fn push_normalised(out: &mut PathBuf, part: &Path) {
    for c in part.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
}

fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    push_normalised(&mut out, p);
    out
}

/// Refuses an output that is, contains or lies inside one of `inputs`. `name` and each
/// input's name are how the user named the paths (the CLI passes its flags).
pub fn check_overlap(
    name: &str,
    output: &Path,
    inputs: &[(&str, &Path)],
) -> Result<(), OutputError> {
    let out = resolve(output);
    for &(input_name, input) in inputs {
        let inp = resolve(input);
        let err = if out == inp {
            OutputError::SameAsInput {
                name: name.into(),
                output: output.into(),
                input_name: input_name.into(),
                input: input.into(),
            }
        } else if out.starts_with(&inp) {
            OutputError::InsideInput {
                name: name.into(),
                output: output.into(),
                input_name: input_name.into(),
                input: input.into(),
            }
        } else if inp.starts_with(&out) {
            OutputError::ContainsInput {
                name: name.into(),
                output: output.into(),
                input_name: input_name.into(),
                input: input.into(),
            }
        } else {
            continue;
        };
        return Err(err);
    }
    Ok(())
}

/// Checks that the command described by `spec` may write its output folder `output`: no
/// overlap with `inputs` ([`check_overlap`]); a missing or empty folder is fine; a non-empty
/// one needs `overwrite` and must be this command's earlier output (its signature present,
/// nothing it does not write, hidden temporary siblings aside). Writes nothing.
pub fn prepare_output(
    spec: &OutputSpec<'_>,
    name: &str,
    output: &Path,
    inputs: &[(&str, &Path)],
    overwrite: bool,
) -> Result<Prior, OutputError> {
    check_overlap(name, output, inputs)?;
    let meta = match std::fs::metadata(output) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Prior::Absent),
        Err(e) => return Err(OutputError::io(output, e)),
    };
    if !meta.is_dir() {
        return Err(OutputError::NotADirectory {
            name: name.into(),
            output: output.into(),
        });
    }
    let mut entries = Vec::new();
    for e in std::fs::read_dir(output).map_err(|e| OutputError::io(output, e))? {
        let e = e.map_err(|e| OutputError::io(output, e))?;
        entries.push(e.file_name());
    }
    if entries.is_empty() {
        return Ok(Prior::Empty);
    }
    let own = entries.iter().any(|e| e == spec.signature);
    if !own {
        return Err(OutputError::NotOwn {
            name: name.into(),
            output: output.into(),
            command: spec.command.into(),
            signature: spec.signature.into(),
        });
    }
    let mut foreign: Vec<String> = entries
        .iter()
        .filter(|e| !spec.writes.iter().any(|w| *e == *w))
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    foreign.sort();
    if let Some(entry) = foreign.into_iter().next() {
        return Err(OutputError::Foreign {
            name: name.into(),
            output: output.into(),
            command: spec.command.into(),
            entry,
        });
    }
    if !overwrite {
        return Err(OutputError::Exists {
            name: name.into(),
            output: output.into(),
            command: spec.command.into(),
        });
    }
    Ok(Prior::Earlier)
}

/// Writes `bytes` to the file `path` whole or not at all: into its hidden sibling
/// `.NAME.tmp-PID` ([`temp_sibling`]), synced, then renamed over `path`. On failure the
/// temporary file is removed and `path` is untouched. The one single-file writer of the
/// workspace (tiles, weights, JSON records).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = temp_sibling(path, "tmp");
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// The hidden sibling `.NAME.TAG-PID` of `out` that a run of this process uses while it writes
/// (`tag` is `tmp` for the output being built, `old` for the one being replaced).
pub fn temp_sibling(out: &Path, tag: &str) -> PathBuf {
    let parent = parent_of(out);
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "segger_output".into());
    parent.join(format!(".{name}.{tag}-{}", std::process::id()))
}

fn parent_of(out: &Path) -> &Path {
    out.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Removes the temporary siblings of `out` (`.NAME.TAG-PID`: `tmp`, `old`, ...) whose process
/// no longer runs: what killed runs left behind. Only on systems with `/proc`; elsewhere it
/// does nothing (a running process's folder is never removed).
pub fn remove_stale_siblings(out: &Path) {
    let Some(name) = out.file_name().map(|n| n.to_string_lossy().into_owned()) else {
        return;
    };
    remove_stale(parent_of(out), |file| {
        file.strip_prefix(&format!(".{name}.")).map(str::to_string)
    });
}

/// Removes, inside `dir`, every temporary file or folder `.NAME.TAG-PID` (any `NAME`) whose
/// process no longer runs: the half-written files a killed run left in its own folder. Only on
/// systems with `/proc`; elsewhere it does nothing.
pub fn remove_stale_temps_in(dir: &Path) {
    remove_stale(dir, |file| {
        let rest = file.strip_prefix('.')?;
        let (_, tail) = rest.rsplit_once('.')?;
        Some(tail.to_string())
    });
}

/// Removes the entries of `dir` whose name, after `tail_of`, reads `TAG-PID` with a dead PID.
fn remove_stale(dir: &Path, tail_of: impl Fn(&str) -> Option<String>) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        // `TAG-PID`, TAG a word (tmp, old, dataset, ...).
        let pid = tail_of(&file).and_then(|rest| {
            let (tag, pid) = rest.rsplit_once('-')?;
            (!tag.is_empty() && tag.bytes().all(|b| b.is_ascii_alphabetic()))
                .then(|| pid.parse::<u32>().ok())
                .flatten()
        });
        if let Some(pid) = pid {
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                tracing::info!("removing {} left by an interrupted run", e.path().display());
                let path = e.path();
                let _ = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
            }
        }
    }
}

/// Moves the finished folder `tmp` to `out`. An existing `out` (checked by [`prepare_output`])
/// is moved aside first and removed after, so `out` is at every moment either the old output
/// or the new one.
pub fn replace_dir(tmp: &Path, out: &Path) -> Result<(), OutputError> {
    if out.exists() {
        let old = temp_sibling(out, "old");
        if old.exists() {
            std::fs::remove_dir_all(&old).map_err(|e| OutputError::io(&old, e))?;
        }
        std::fs::rename(out, &old).map_err(|e| OutputError::io(out, e))?;
        if let Err(e) = std::fs::rename(tmp, out) {
            // Put the old output back rather than leave nothing.
            let _ = std::fs::rename(&old, out);
            return Err(OutputError::io(out, e));
        }
        let _ = std::fs::remove_dir_all(&old);
    } else {
        std::fs::rename(tmp, out).map_err(|e| OutputError::io(out, e))?;
    }
    Ok(())
}

/// Removes a temporary folder when dropped, unless [`TempDir::keep`] was called: the cleanup
/// of a run that fails half-way.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    /// Creates the folder `.NAME.TAG-PID` next to `out` (removing what a previous attempt of
    /// this process left there), and its parents.
    pub fn next_to(out: &Path, tag: &str) -> Result<Self, OutputError> {
        let path = temp_sibling(out, tag);
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(|e| OutputError::io(&path, e))?;
        }
        std::fs::create_dir_all(&path).map_err(|e| OutputError::io(&path, e))?;
        Ok(Self { path, keep: false })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the folder in place when dropped (it was renamed into place).
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The safetensors file `bytes` with its JSON header rewritten with every key sorted, the
/// `__metadata__` entries included. The `safetensors` crate writes its metadata from a
/// `HashMap`, in an order that changes from one process to the next, so that the same tensors
/// gave files that differ in their bytes; segger's outputs are reproducible to the byte.
pub fn sorted_safetensors_header(bytes: &[u8]) -> Result<Vec<u8>, String> {
    /// The value with every object's keys in sorted order, whether `serde_json` keeps maps
    /// sorted or (with its `preserve_order` feature, which a dependency may turn on) in
    /// insertion order.
    fn sort_keys(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(m) => {
                let sorted: BTreeMap<String, serde_json::Value> =
                    m.into_iter().map(|(k, v)| (k, sort_keys(v))).collect();
                serde_json::Value::Object(sorted.into_iter().collect())
            }
            serde_json::Value::Array(a) => {
                serde_json::Value::Array(a.into_iter().map(sort_keys).collect())
            }
            other => other,
        }
    }
    use std::collections::BTreeMap;
    let n = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
        .ok_or("safetensors: shorter than its header size")?;
    let head = bytes
        .get(8..8usize.saturating_add(n))
        .ok_or("safetensors: header longer than the file")?;
    let header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(head).map_err(|e| format!("safetensors header: {e}"))?;
    let mut sorted = BTreeMap::new();
    for (k, v) in header {
        let v = if k == "__metadata__" {
            let m: BTreeMap<String, String> =
                serde_json::from_value(v).map_err(|e| format!("safetensors metadata: {e}"))?;
            serde_json::to_value(m).map_err(|e| e.to_string())?
        } else {
            sort_keys(v)
        };
        sorted.insert(k, v);
    }
    let mut head = serde_json::to_vec(&sorted).map_err(|e| e.to_string())?;
    head.resize(head.len().next_multiple_of(8), b' ');
    let data = &bytes[8 + n..];
    let mut out = Vec::with_capacity(8 + head.len() + data.len());
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(data);
    Ok(out)
}
