//! The values of the enum-valued flags shared by several commands, as clap `ValueEnum`s: the
//! library enums stay free of clap, and `--help` lists the values. Each spelling the library's
//! `FromStr` accepts is a name or a hidden alias here.

use clap::ValueEnum;
use segger_data::raw::Platform;
use segger_model::backend::Accelerator;
use segger_model::mp::MatmulPrecision;

/// `--accelerator` (any letter case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AcceleratorArg {
    /// The CPU.
    Cpu,
    /// A GPU through wgpu (Vulkan, Metal, DX12).
    #[value(alias = "gpu-wgpu", alias = "vulkan")]
    Wgpu,
    /// An NVIDIA GPU through CUDA.
    #[value(alias = "gpu")]
    Cuda,
    /// CUDA when built in and a device answers, else the CPU.
    Auto,
}

impl From<AcceleratorArg> for Accelerator {
    fn from(a: AcceleratorArg) -> Self {
        match a {
            AcceleratorArg::Cpu => Accelerator::Cpu,
            AcceleratorArg::Wgpu => Accelerator::Wgpu,
            AcceleratorArg::Cuda => Accelerator::Cuda,
            AcceleratorArg::Auto => Accelerator::Auto,
        }
    }
}

/// `--float32_matmul_precision`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MatmulPrecisionArg {
    /// Plain f32 multiply-adds.
    Highest,
    /// TF32 on CUDA's tensor cores.
    High,
}

impl From<MatmulPrecisionArg> for MatmulPrecision {
    fn from(p: MatmulPrecisionArg) -> Self {
        match p {
            MatmulPrecisionArg::Highest => MatmulPrecision::Highest,
            MatmulPrecisionArg::High => MatmulPrecision::High,
        }
    }
}

/// `--platform` (any letter case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlatformArg {
    /// 10x Genomics Xenium.
    Xenium,
    /// Vizgen MERSCOPE.
    Merscope,
    /// NanoString (Bruker) CosMx.
    Cosmx,
}

impl From<PlatformArg> for Platform {
    fn from(p: PlatformArg) -> Self {
        match p {
            PlatformArg::Xenium => Platform::Xenium,
            PlatformArg::Merscope => Platform::Merscope,
            PlatformArg::Cosmx => Platform::Cosmx,
        }
    }
}

#[cfg(test)]
mod tests {
    //! Every enum-valued flag accepts exactly the spellings its library enum's `FromStr`
    //! accepts (letter case included), and maps each to the same value; clap refuses the rest
    //! as an invalid value (exit code 2).

    use std::fmt::Debug;
    use std::str::FromStr;

    use clap::error::ErrorKind;
    use clap::Parser;
    use segger_data::raw::{BoundaryKind, Platform};
    use segger_model::backend::Accelerator;
    use segger_model::mp::MatmulPrecision;
    use segger_model::Aggr;
    use segger_train::{Precision, Strategy};

    use crate::{Cli, Command};

    /// Spellings tried on every flag: all the library spellings, other letter cases, and near
    /// misses.
    const TRIES: &[&str] = &[
        "cpu",
        "CPU",
        "Cpu",
        "wgpu",
        "WGPU",
        "gpu-wgpu",
        "vulkan",
        "Vulkan",
        "cuda",
        "CUDA",
        "gpu",
        "GPU",
        "auto",
        "AUTO",
        "tpu",
        "ddp",
        "DDP",
        "ddp_spawn",
        "ddp_find_unused_parameters_true",
        "fsdp",
        "32",
        "32-true",
        "fp32",
        "FP32",
        "16-mixed",
        "16",
        "bf16-mixed",
        "bf16",
        "BF16",
        "8-bit",
        "64",
        "highest",
        "HIGHEST",
        "high",
        "High",
        "medium",
        "sum",
        "SUM",
        "add",
        "mean",
        "max",
        "min",
        "xenium",
        "Xenium",
        "XENIUM",
        "merscope",
        "MERSCOPE",
        "cosmx",
        "CosMx",
        "visium",
        "nucleus",
        "Nucleus",
        "nuclei",
        "NUCLEI",
        "cell",
        "Cell",
        "cells",
        "CELLS",
        "membrane",
        " cpu",
        "cpu ",
    ];

    const TRAIN: &[&str] = &["train", "--train_dir", "t", "--val_dir", "v"];
    const PREDICT: &[&str] = &["predict", "--model", "m", "--input", "i", "--output", "o"];
    const CREATE: &[&str] = &["create_dataset", "--input", "i", "--output", "o"];
    const SEGMENT: &[&str] = &["segment", "--input", "i", "--output", "o"];
    const CREATE_XENIUM: &[&str] = &[
        "create_dataset",
        "--input",
        "i",
        "--output",
        "o",
        "--platform",
        "xenium",
    ];

    /// `segger BASE FLAG VALUE` parses to what `L::from_str(VALUE)` gives, or is an invalid
    /// value (exit 2) when that is an error; `get` reads the flag's value off the command.
    fn same<L: FromStr + PartialEq + Debug>(base: &[&str], flag: &str, get: impl Fn(Command) -> L) {
        let mut accepted = 0;
        for &v in TRIES {
            let args: Vec<&str> = ["segger"]
                .iter()
                .chain(base)
                .copied()
                .chain([flag, v])
                .collect();
            let cli = Cli::try_parse_from(args).map(|c| get(c.command));
            match (cli, L::from_str(v)) {
                (Ok(c), Ok(l)) => {
                    assert_eq!(c, l, "{flag} {v:?}");
                    accepted += 1;
                }
                (Err(e), Err(_)) => {
                    assert_eq!(e.kind(), ErrorKind::InvalidValue, "{flag} {v:?}: {e}");
                    assert_eq!(e.exit_code(), 2);
                    let msg = e.to_string();
                    assert!(msg.contains(flag) && msg.contains(v), "{msg}");
                }
                (c, l) => panic!(
                    "{flag} {v:?}: CLI {:?}, library {:?}",
                    c.map_err(|e| e.kind()),
                    l.ok()
                ),
            }
        }
        assert!(accepted >= 2, "{flag}: {accepted} spellings accepted");
    }

    #[test]
    fn enum_flags_accept_the_library_spellings() {
        fn train(c: Command) -> crate::train::TrainArgs {
            match c {
                Command::Train(a) => a,
                _ => unreachable!(),
            }
        }
        fn predict(c: Command) -> crate::predict::PredictArgs {
            match c {
                Command::Predict(a) => *a,
                _ => unreachable!(),
            }
        }
        fn create(c: Command) -> Box<crate::create_dataset::CreateDatasetArgs> {
            match c {
                Command::CreateDataset(a) => a,
                _ => unreachable!(),
            }
        }
        same::<Aggr>(TRAIN, "--aggr", |c| train(c).aggr.into());
        same::<Accelerator>(TRAIN, "--accelerator", |c| train(c).accelerator.into());
        same::<Strategy>(TRAIN, "--strategy", |c| train(c).strategy.into());
        same::<Precision>(TRAIN, "--precision", |c| train(c).precision.into());
        same::<MatmulPrecision>(TRAIN, "--float32_matmul_precision", |c| {
            train(c).float32_matmul_precision.into()
        });
        same::<Accelerator>(PREDICT, "--accelerator", |c| predict(c).accelerator.into());
        same::<MatmulPrecision>(PREDICT, "--float32_matmul_precision", |c| {
            predict(c).float32_matmul_precision.into()
        });
        same::<Platform>(PREDICT, "--platform", |c| {
            predict(c).platform.expect("given").into()
        });
        same::<Accelerator>(&["demo"], "--accelerator", |c| match c {
            Command::Demo(a) => a.accelerator.into(),
            _ => unreachable!(),
        });
        same::<Platform>(CREATE, "--platform", |c| {
            create(c).platform.expect("given").into()
        });
        same::<Platform>(SEGMENT, "--platform", |c| match c {
            Command::Segment(a) => a.platform.expect("given").into(),
            _ => unreachable!(),
        });
        same::<Accelerator>(SEGMENT, "--accelerator", |c| match c {
            Command::Segment(a) => a.accelerator.into(),
            _ => unreachable!(),
        });
        same::<BoundaryKind>(CREATE_XENIUM, "--boundaries", |c| {
            create(c).raw.options(Platform::Xenium).boundaries
        });
    }

    #[test]
    fn defaults_are_unchanged() {
        let Command::Train(t) = Cli::parse_from(["segger"].iter().chain(TRAIN)).command else {
            unreachable!()
        };
        assert_eq!(Aggr::from(t.aggr), Aggr::Sum);
        assert_eq!(Accelerator::from(t.accelerator), Accelerator::Auto);
        assert_eq!(Strategy::from(t.strategy), Strategy::Auto);
        assert_eq!(Precision::from(t.precision), Precision::F32);
        let m: MatmulPrecision = t.float32_matmul_precision.into();
        assert_eq!(m, MatmulPrecision::Highest);
        let Command::Predict(p) = Cli::parse_from(["segger"].iter().chain(PREDICT)).command else {
            unreachable!()
        };
        assert_eq!(Accelerator::from(p.accelerator), Accelerator::Auto);
        let m: MatmulPrecision = p.float32_matmul_precision.into();
        assert_eq!(m, MatmulPrecision::Highest);
        // No default: detected from the raw folder (or the training dataset's).
        assert!(p.platform.is_none());
        let Command::Demo(d) = Cli::parse_from(["segger", "demo"]).command else {
            unreachable!()
        };
        assert_eq!(Accelerator::from(d.accelerator), Accelerator::Cpu);
        let Command::CreateDataset(c) =
            Cli::parse_from(["segger"].iter().chain(CREATE_XENIUM)).command
        else {
            unreachable!()
        };
        assert_eq!(c.raw.boundaries, None);
        assert_eq!(
            c.raw.options(Platform::Xenium).boundaries,
            BoundaryKind::Nucleus
        );
        assert!(c.raw.options(Platform::Xenium).split_merged);
        assert!(!c.raw.given());
        // --platform is detected when left out.
        let Command::CreateDataset(c) = Cli::parse_from(["segger"].iter().chain(CREATE)).command
        else {
            unreachable!()
        };
        assert_eq!(c.platform, None);
    }

    #[test]
    fn help_lists_the_values() {
        let help = |cmd: &str, flag: &str| {
            let e = Cli::try_parse_from(["segger", cmd, "-h"]).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::DisplayHelp);
            let text = e.to_string();
            let at = text
                .find(&format!("{flag} <"))
                .unwrap_or_else(|| panic!("{flag} not in {text}"));
            text[at..].to_string()
        };
        for (cmd, flag, values) in [
            ("train", "--aggr", "sum, mean, max"),
            ("train", "--accelerator", "cpu, wgpu, cuda, auto"),
            ("train", "--strategy", "auto, ddp"),
            ("train", "--precision", "32, 16-mixed, bf16-mixed"),
            ("train", "--float32_matmul_precision", "highest, high"),
            ("predict", "--accelerator", "cpu, wgpu, cuda, auto"),
            ("predict", "--float32_matmul_precision", "highest, high"),
            ("predict", "--platform", "xenium, merscope, cosmx"),
            ("demo", "--accelerator", "cpu, wgpu, cuda, auto"),
            ("create_dataset", "--platform", "xenium, merscope, cosmx"),
            ("create_dataset", "--boundaries", "nucleus, cell"),
        ] {
            let h = help(cmd, flag);
            // `-h` style: `[possible values: a, b]` after the flag's text.
            let first = h
                .find("[possible values: ")
                .unwrap_or_else(|| panic!("{cmd} {flag}: {h}"));
            assert!(
                h[first..].starts_with(&format!("[possible values: {values}]")),
                "{cmd} {flag}: {h}"
            );
        }
    }
}
