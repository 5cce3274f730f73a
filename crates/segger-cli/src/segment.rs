//! `segger segment --input RAW_DIR --output OUT [--model DIR]`: a whole sample in one command.
//!
//! The three stages are the library calls behind `create_dataset`, `train` and `predict`, each
//! with its defaults, writing into `OUT`:
//!
//! | stage | writes | the same as |
//! |---|---|---|
//! | dataset (unless `--model`) | `OUT/dataset/` | `segger create_dataset --input RAW_DIR --output OUT/dataset [reading flags]` |
//! | train (unless `--model`) | `OUT/model/` | `segger train --train_dir OUT/dataset/train_tiles --val_dir OUT/dataset/val_tiles --default_root_dir OUT/model --epochs E` |
//! | predict | `OUT/segmentation/` | `segger predict --model OUT/model --input RAW_DIR --output OUT/segmentation --platform P` |
//!
//! The reading flags are `create_dataset`'s ([`RawReadArgs`]: boundaries, files, columns,
//! filters, scale, gene embedding, merged nuclei); both stages that read the sample use them.
//! With `--model DIR` (a model trained elsewhere) there is no dataset or train stage: the
//! predict stage reads the sample as that model's training dataset was, or with the reading
//! flags when any is given, as `segger predict --model DIR --input RAW_DIR [reading flags]`.
//! The predict stage reads the raw sample again and predicts on 100 µm tiles
//! ([`segger_predict::DEFAULT_RAW_TILE_SIZE`]) built with the model's training dataset's
//! settings: the same assignments as on the 20 µm training tiles, about twice as fast
//! (docs/prediction.md, "Tile size"). Its temporary tiles live in `OUT` while it runs.
//!
//! `OUT/run.json` records the settings and the stages completed, rewritten (atomically) after
//! each stage. Run again after a kill, the command skips the completed stages and resumes
//! training from its last committed epoch; a run with other settings is refused unless
//! `--overwrite`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;
use segger_data::create::{create_dataset, CreateOptions};
use segger_data::raw::{Platform, RawOptions};
use segger_model::SeggerConfig;
use segger_predict::{predict, PredictConfig, PredictSummary};
use segger_train::TrainConfig;
use serde::{Deserialize, Serialize};

use crate::create_dataset::RawReadArgs;
use crate::values::{AcceleratorArg, PlatformArg};
use crate::CliError;

/// The run record's name in `OUT`.
pub const RUN_FILE: &str = "run.json";
const DATASET: &str = "dataset";
const MODEL: &str = "model";
const SEGMENTATION: &str = "segmentation";

/// What `segger segment` writes into `--output`: its own output, as segger-fs's rules see it.
const SEGMENT_OUTPUT: segger_fs::OutputSpec<'static> = segger_fs::OutputSpec {
    command: "segment",
    writes: &[RUN_FILE, DATASET, MODEL, SEGMENTATION],
    signature: RUN_FILE,
};

/// Training epochs when `--epochs` is not given: the setting docs/accuracy.md measures.
pub const DEFAULT_EPOCHS: usize = 20;

/// Arguments of `segger segment`.
#[derive(Debug, Args)]
pub struct SegmentArgs {
    /// The raw sample directory (Xenium, MERSCOPE or CosMx output).
    #[arg(long)]
    pub input: PathBuf,
    /// The output directory: dataset/, model/, segmentation/ and run.json.
    #[arg(long)]
    pub output: PathBuf,
    /// The instrument (default: detected from the transcript file in --input).
    #[arg(long, value_enum, ignore_case = true)]
    pub platform: Option<PlatformArg>,
    /// A trained model directory to use instead of training one: no dataset or train stage;
    /// the sample is read as the model's training dataset was, unless reading flags are given.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Training epochs.
    #[arg(long, default_value_t = DEFAULT_EPOCHS)]
    pub epochs: usize,
    /// Seed of the split, the weights' initialisation and the data order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Backend: cpu, wgpu, cuda or auto.
    #[arg(long, value_enum, ignore_case = true, default_value = "auto")]
    pub accelerator: AcceleratorArg,
    /// Start over when --output holds an earlier segment run (with any settings).
    #[arg(long)]
    pub overwrite: bool,
    /// How to read the sample: `create_dataset`'s flags (boundaries, files, columns, filters,
    /// scale, gene embedding, merged nuclei). The dataset and predict stages read it so (with
    /// `--model`, given flags replace the model's training dataset's reading settings).
    #[command(flatten)]
    pub raw: RawReadArgs,
}

/// The settings a run is resumed only with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Settings {
    input: PathBuf,
    platform: String,
    model: Option<PathBuf>,
    epochs: usize,
    seed: u64,
    /// The reading flags as options (`RawOptions`, paths resolved): how the sample is read,
    /// except with `--model` and no reading flag, where the predict stage reads it as the
    /// model's training dataset was. Absent from the records of runs made before it was
    /// recorded, which read the sample with the platform's defaults.
    #[serde(default)]
    raw: serde_json::Value,
}

/// One completed stage in `run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StageRecord {
    stage: String,
    seconds: f64,
    /// The process's peak resident memory when the stage ended (MB; Linux only).
    peak_rss_mb: Option<f64>,
    /// Transcripts per second: kept transcripts over the stage's time (dataset), the mean of
    /// the training epochs' rate (model), the prediction's rate (segmentation).
    #[serde(default)]
    transcripts_per_second: Option<f64>,
}

/// `OUT/run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunRecord {
    settings: Settings,
    /// The equivalent commands, for reference.
    commands: Vec<String>,
    completed: Vec<StageRecord>,
}

impl RunRecord {
    fn done(&self, stage: &str) -> bool {
        self.completed.iter().any(|s| s.stage == stage)
    }
}

fn input_err(e: impl std::fmt::Display) -> CliError {
    CliError::input(anyhow::anyhow!("{e}"))
}

fn write_record(out: &Path, rec: &RunRecord) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(rec).map_err(CliError::runtime)?;
    segger_data::tile::write_atomic(&out.join(RUN_FILE), text.as_bytes())
        .map_err(|e| CliError::runtime(anyhow::anyhow!(e)))
}

/// The process's peak resident set size so far, in MB (`VmHWM`; `None` off Linux).
fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Opens `OUT`: a fresh run, or the earlier run it holds (same settings, or `--overwrite`).
fn open_run(a: &SegmentArgs, settings: Settings) -> Result<RunRecord, CliError> {
    let out = &a.output;
    let mut inputs: Vec<(&str, &Path)> = vec![("--input", &a.input)];
    if let Some(m) = &a.model {
        inputs.push(("--model", m));
    }
    if out.join(RUN_FILE).is_file() {
        // An earlier run of this command killed mid-stage left its stage's temporary folder
        // (`.dataset.tmp-PID`, ...) inside OUT: a dead process's, so removed.
        segger_fs::remove_stale_temps_in(out);
    }
    let prior = segger_fs::prepare_output(&SEGMENT_OUTPUT, "--output", out, &inputs, true)
        .map_err(|e| CliError {
            code: e.exit_code(),
            error: anyhow::anyhow!(e),
        })?;
    if prior == segger_fs::Prior::Earlier {
        let path = out.join(RUN_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| input_err(format!("{}: {e}", path.display())))?;
        let rec: RunRecord = serde_json::from_str(&text).map_err(|e| {
            input_err(format!(
                "{}: not a segment run record ({e}); pass --overwrite to start over",
                path.display()
            ))
        })?;
        if a.overwrite {
            for entry in [DATASET, MODEL, SEGMENTATION, RUN_FILE] {
                let p = out.join(entry);
                let res = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else if p.exists() {
                    std::fs::remove_file(&p)
                } else {
                    Ok(())
                };
                res.map_err(|e| CliError::runtime(anyhow::anyhow!("{}: {e}", p.display())))?;
            }
        } else if !same_settings(&rec.settings, &settings)? {
            return Err(input_err(format!(
                "--output: {} holds a segment run with other settings ({}; this call: {}); pass \
                 --overwrite to start over, or choose another --output",
                out.display(),
                serde_json::to_string(&rec.settings).unwrap_or_default(),
                serde_json::to_string(&settings).unwrap_or_default()
            )));
        } else {
            return Ok(rec);
        }
    }
    std::fs::create_dir_all(out)
        .map_err(|e| CliError::runtime(anyhow::anyhow!("{}: cannot create: {e}", out.display())))?;
    let rec = RunRecord {
        commands: commands(a, &settings, None),
        settings,
        completed: Vec::new(),
    };
    write_record(out, &rec)?;
    Ok(rec)
}

/// Whether an earlier run's settings are this call's. A record without reading options read
/// the sample with the platform's defaults.
fn same_settings(prior: &Settings, now: &Settings) -> Result<bool, CliError> {
    if prior.raw.is_null() {
        let platform: Platform = prior.platform.parse().map_err(input_err)?;
        let defaults =
            serde_json::to_value(RawOptions::new(platform)).map_err(CliError::runtime)?;
        let prior = Settings {
            raw: defaults,
            ..prior.clone()
        };
        return Ok(&prior == now);
    }
    Ok(prior == now)
}

/// The commands the run is equivalent to (three, or the predict command alone with
/// `--model`); `genes`: the dataset's vocabulary size, the token count the train stage uses
/// (unknown before the dataset stage: `GENES`).
fn commands(a: &SegmentArgs, s: &Settings, genes: Option<usize>) -> Vec<String> {
    let out = a.output.display();
    let with_flags = |mut cmd: String| {
        for f in a.raw.flags() {
            cmd.push(' ');
            cmd.push_str(&f);
        }
        cmd
    };
    let mut c = Vec::new();
    let model = match &s.model {
        // No dataset stage: the model's training dataset has the graph settings.
        Some(m) => m.display().to_string(),
        None => {
            c.push(with_flags(format!(
                "segger create_dataset --input {} --output {out}/{DATASET} --platform {} --seed {}",
                a.input.display(),
                s.platform,
                s.seed
            )));
            c.push(format!(
                "segger train --train_dir {out}/{DATASET}/train_tiles --val_dir {out}/{DATASET}/val_tiles \
                 --default_root_dir {out}/{MODEL} --epochs {} --seed {} --num_tx_tokens {}",
                s.epochs,
                s.seed,
                genes.map_or_else(|| "GENES".to_string(), |g| g.max(1).to_string())
            ));
            format!("{out}/{MODEL}")
        }
    };
    let predict = format!(
        "segger predict --model {model} --input {} --output {out}/{SEGMENTATION} --platform {}",
        a.input.display(),
        s.platform
    );
    // With its own model the sample is read as its dataset stage read it, which is how the
    // model's training dataset read it: no flag needed.
    c.push(match s.model {
        Some(_) => with_flags(predict),
        None => predict,
    });
    c
}

/// Runs `segger segment`.
pub fn run(a: SegmentArgs) -> Result<(), CliError> {
    let t0 = Instant::now();
    if a.epochs == 0 {
        return Err(input_err("--epochs must be at least 1"));
    }
    let platform: Platform = match a.platform {
        Some(p) => p.into(),
        None => {
            let p = Platform::detect(&a.input).map_err(input_err)?;
            eprintln!("platform      {p} (detected from the transcript file in --input)");
            p
        }
    };
    // Paths made absolute for the run record, as the readers find them: a file named relative
    // to the working directory when it is there (a data file's name relative to --input is
    // left so: the reader looks for it there).
    let mut raw = a.raw.options(platform);
    for p in [
        &mut raw.transcripts_file,
        &mut raw.boundaries_file,
        &mut raw.gene_embedding,
    ]
    .into_iter()
    .flatten()
    {
        if p.is_absolute() || p.exists() {
            *p = segger_fs::resolve(p);
        }
    }
    let settings = Settings {
        input: segger_fs::resolve(&a.input),
        platform: platform.name().to_string(),
        model: a.model.as_deref().map(segger_fs::resolve),
        epochs: a.epochs,
        seed: a.seed,
        raw: serde_json::to_value(&raw).map_err(CliError::runtime)?,
    };
    let mut rec = open_run(&a, settings)?;
    let out = a.output.clone();
    let dataset = out.join(DATASET);
    let model_dir = a.model.clone().unwrap_or_else(|| out.join(MODEL));

    let stage = |rec: &mut RunRecord,
                 name: &str,
                 started: Instant,
                 rate: Option<f64>|
     -> Result<(), CliError> {
        let seconds = started.elapsed().as_secs_f64();
        rec.completed.push(StageRecord {
            stage: name.to_string(),
            seconds,
            peak_rss_mb: peak_rss_mb(),
            transcripts_per_second: rate,
        });
        write_record(&out, rec)
    };

    if a.model.is_some() {
        eprintln!("dataset       skipped: --model {}", model_dir.display());
    } else if rec.done(DATASET) {
        eprintln!(
            "dataset       done in an earlier run: {}",
            dataset.display()
        );
    } else {
        eprintln!("dataset       building {}", dataset.display());
        let started = Instant::now();
        let mut opts = CreateOptions::new(a.input.clone(), dataset.clone(), raw.clone());
        opts.seed = a.seed;
        opts.overwrite = true;
        let s = create_dataset(&opts, &|_| {}).map_err(|e| {
            let c = crate::create_dataset::to_cli(e);
            CliError {
                code: c.code,
                error: c.error.context("dataset stage"),
            }
        })?;
        eprintln!(
            "dataset       {} genes, tiles train {} / val {} / test {}, {} transcripts",
            s.genes, s.tiles.train, s.tiles.val, s.tiles.test, s.core_transcripts
        );
        let rate = s.core_transcripts as f64 / started.elapsed().as_secs_f64().max(1e-9);
        rec.commands = commands(&a, &rec.settings, Some(s.genes));
        stage(&mut rec, DATASET, started, Some(rate))?;
    }

    if a.model.is_some() {
        eprintln!("train         skipped: --model {}", model_dir.display());
    } else if rec.done(MODEL) {
        eprintln!(
            "train         done in an earlier run: {}",
            model_dir.display()
        );
    } else {
        let started = Instant::now();
        let info = segger_data::DatasetInfo::read(&dataset)
            .map_err(|e| CliError::input(anyhow::anyhow!(e)))?;
        if info.tiles.train == 0 {
            return Err(input_err(format!(
                "train stage: {} has no training tiles ({} tiles in all, none with a transcript \
                 inside a boundary to learn from); pass --model DIR to segment with a trained model",
                dataset.display(),
                info.tiles.train + info.tiles.val + info.tiles.test
            )));
        }
        // A sample too small for a validation split validates on its training tiles: train
        // falls back to them when dataset.json counts no validation tile, as `segger train`
        // does.
        let val = dataset.join("val_tiles");
        let mut cfg = TrainConfig::new(
            dataset.join("train_tiles"),
            val,
            model_dir.clone(),
            SeggerConfig::new(info.vocab.len().max(1)).bidirectional(),
        );
        cfg.epochs = a.epochs;
        cfg.seed = a.seed;
        cfg.accelerator = a.accelerator.into();
        cfg.resume = model_dir.join("run_config.json").is_file();
        eprintln!(
            "train         {} epochs into {}{}",
            cfg.epochs,
            model_dir.display(),
            if cfg.resume { " (resuming)" } else { "" }
        );
        let s = segger_train::train(&cfg).map_err(|e| CliError {
            code: e.exit_code(),
            error: anyhow::anyhow!(e).context("train stage"),
        })?;
        if let Some(r) = s.rows.last() {
            eprintln!(
                "train         {} epochs, last validation AUROC {:.3}",
                s.rows.len(),
                r.validation_auroc
            );
        }
        let rate = (!s.rows.is_empty()).then(|| {
            s.rows.iter().map(|r| r.transcripts_per_second).sum::<f64>() / s.rows.len() as f64
        });
        stage(&mut rec, MODEL, started, rate)?;
    }

    let seg_dir = out.join(SEGMENTATION);
    let summary: Option<PredictSummary> = if rec.done(SEGMENTATION) {
        eprintln!(
            "predict       done in an earlier run: {}",
            seg_dir.display()
        );
        None
    } else {
        let started = Instant::now();
        // The raw sample, tiled for prediction (100 µm tiles), not the training tiles.
        let mut pc = PredictConfig::new(model_dir.clone(), a.input.clone(), seg_dir.clone());
        pc.platform = Some(platform.name().to_string());
        // Read as the dataset stage read it; with --model, as the model's training dataset
        // was unless reading flags are given (as `segger predict` does).
        pc.raw_options = (a.model.is_none() || a.raw.given()).then(|| raw.clone());
        pc.accelerator = a.accelerator.into();
        pc.overwrite = true;
        let s = predict(&pc).map_err(|e| CliError {
            code: e.exit_code(),
            error: anyhow::anyhow!(e).context("predict stage"),
        })?;
        stage(
            &mut rec,
            SEGMENTATION,
            started,
            Some(s.transcripts_per_second),
        )?;
        Some(s)
    };
    print_summary(&rec, summary.as_ref(), &seg_dir, t0);
    Ok(())
}

/// The one-screen summary: per stage time and peak memory, then the segmentation's counts.
fn print_summary(rec: &RunRecord, s: Option<&PredictSummary>, seg_dir: &Path, t0: Instant) {
    println!();
    println!(
        "{:<14}{:>10}{:>16}{:>16}",
        "stage", "seconds", "peak RSS (MB)", "transcripts/s"
    );
    for st in &rec.completed {
        println!(
            "{:<14}{:>10.1}{:>16}{:>16}",
            st.stage,
            st.seconds,
            st.peak_rss_mb.map_or("-".into(), |m| format!("{m:.0}")),
            st.transcripts_per_second
                .map_or("-".into(), |r| format!("{r:.0}"))
        );
    }
    if let Some(s) = s {
        println!(
            "\n{} transcripts, {:.1} % assigned ({} to nuclei, {} to new cells), {} cells; {:.0} transcripts/s in prediction",
            s.transcripts,
            s.assigned_percent,
            s.assigned_to_boundary,
            s.assigned_to_component,
            s.cells,
            s.transcripts_per_second
        );
    }
    println!("segmentation  {}", seg_dir.display());
    println!("this call     {:.1} s", t0.elapsed().as_secs_f64());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(raw: serde_json::Value) -> Settings {
        Settings {
            input: PathBuf::from("/data/sample"),
            platform: "xenium".into(),
            model: None,
            epochs: 20,
            seed: 0,
            raw,
        }
    }

    /// A record written before the reading options were recorded read the sample with the
    /// platform's defaults: it matches a call with the defaults and no other.
    #[test]
    fn records_without_reading_options_match_the_defaults_only() {
        let defaults = serde_json::to_value(RawOptions::new(Platform::Xenium)).unwrap();
        let old = settings(serde_json::Value::Null);
        assert!(same_settings(&old, &settings(defaults.clone())).unwrap());
        let mut scaled = RawOptions::new(Platform::Xenium);
        scaled.scale = Some(0.5);
        let scaled = serde_json::to_value(scaled).unwrap();
        assert!(!same_settings(&old, &settings(scaled.clone())).unwrap());
        assert!(same_settings(&settings(scaled.clone()), &settings(scaled.clone())).unwrap());
        assert!(!same_settings(&settings(scaled), &settings(defaults)).unwrap());
    }
}
