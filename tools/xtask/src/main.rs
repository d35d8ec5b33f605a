//! The build tool: builds boot images, boots them in QEMU, runs every test and the benchmarks.
//!
//! ```text
//! cargo xtask run [--cpu C] [--memory M] [--append ARGS] [--image TEST]
//!                                                           build a boot image (default: the
//!                                                           demo, tests/qemu/demo) and boot it
//! cargo xtask build                                         build the demo's boot image only
//! cargo xtask test [--host | --qemu] [FILTER]               every test; ends with `N passed, M failed`
//! cargo xtask qemu-test [--bless] [FILTER]                  the QEMU test images only
//! cargo xtask bench [--host | --qemu] [FILTER]              benchmarks: target/bench/{results.json,REPORT.md}
//! ```
//!
//! The aarch64 images are built with Debian's Rust and `-Zbuild-std` (see
//! `cross`); QEMU test images live in `tests/qemu/<name>/` (see `qemu_tests`).
#![forbid(unsafe_code)]

mod bench;
mod cross;
mod host_tests;
mod image;
mod qemu;
mod qemu_tests;

use std::path::PathBuf;
use std::process::ExitCode;

/// A failure that ends the command, with what to tell the user.
type Result<T> = std::result::Result<T, String>;

/// The workspace root (two levels above this crate).
fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .nth(2)
        .expect("tools/xtask lies two levels below the workspace root")
        .to_path_buf()
}

const USAGE: &str = "usage: cargo xtask <run|build|test|qemu-test|bench|help> [options]
  run [--cpu C] [--memory M] [--append ARGS] [--image TEST]
                                               build the boot image of TEST (default: demo) and boot it
  build                                        build the demo's boot image
  test [--host | --qemu] [FILTER]              host tests and QEMU test images; summary line
  qemu-test [--bless] [FILTER]                 QEMU test images only (--bless rewrites expected output)
  bench [--host | --qemu] [FILTER]             benchmarks; writes target/bench/results.json and REPORT.md";

/// Takes the value after a `--flag`, or fails with a clear message.
fn take_value(args: &mut impl Iterator<Item = String>, flag: &str) -> Result<String> {
    args.next()
        .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_else(|| "help".into());
    let root = workspace_root();
    let outcome = match command.as_str() {
        "run" => cmd_run(&root, args),
        "build" => build_image(&root, DEMO).map(|p| {
            println!("boot image: {}", p.display());
            true
        }),
        "test" => cmd_test(&root, args),
        "qemu-test" => cmd_qemu_test(&root, args),
        "bench" => bench::run(&root, args.collect()),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(true)
        }
        other => Err(format!("unknown command `{other}`\n{USAGE}")),
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The test image `cargo xtask run` boots by default: the MM server and
/// the demo's clients.
const DEMO: &str = "demo";

/// Builds the boot image of the QEMU test `name` (kernel, programs, archive).
fn build_image(root: &std::path::Path, name: &str) -> Result<PathBuf> {
    let tests = qemu_tests::discover(root)?;
    let test = tests
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| format!("no test image `{name}` in tests/qemu"))?;
    let bin_dir = qemu_tests::build_for(root, &[test])?;
    test.image(root, &bin_dir)
}

fn cmd_run(root: &std::path::Path, mut args: impl Iterator<Item = String>) -> Result<bool> {
    let mut config = qemu::Config::default();
    let mut image = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--image" => image = Some(take_value(&mut args, "--image")?),
            "--cpu" => config.cpu = take_value(&mut args, "--cpu")?,
            "--memory" => config.memory = take_value(&mut args, "--memory")?,
            "--append" => config.append = take_value(&mut args, "--append")?,
            other => return Err(format!("run: unknown option `{other}`\n{USAGE}")),
        }
    }
    config.kernel = build_image(root, image.as_deref().unwrap_or(DEMO))?;
    config.echo = true;
    config.interactive = true;
    println!(
        "xtask: booting {} on QEMU virt ({}, {})",
        config.kernel.display(),
        config.cpu,
        config.memory
    );
    let outcome = qemu::run(&config)?;
    match outcome.status {
        Some(0) => {
            println!("xtask: QEMU exited with status 0");
            Ok(true)
        }
        Some(status) => {
            println!("xtask: QEMU exited with status {status}");
            Ok(false)
        }
        None => {
            println!(
                "xtask: QEMU did not finish within {} s",
                config.timeout.as_secs()
            );
            Ok(false)
        }
    }
}

/// Which halves of the test suite to run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Halves {
    Both,
    Host,
    Qemu,
}

fn cmd_test(root: &std::path::Path, args: impl Iterator<Item = String>) -> Result<bool> {
    let mut halves = Halves::Both;
    let mut filter = None;
    for arg in args {
        match arg.as_str() {
            "--host" => halves = Halves::Host,
            "--qemu" => halves = Halves::Qemu,
            s if s.starts_with('-') => return Err(format!("test: unknown option `{s}`\n{USAGE}")),
            s => filter = Some(s.to_string()),
        }
    }
    let mut tally = host_tests::Tally::default();
    if halves != Halves::Qemu {
        tally.add(host_tests::run(root, filter.as_deref())?);
    }
    if halves != Halves::Host {
        tally.add(qemu_tests::run(root, filter.as_deref(), false)?);
    }
    println!();
    println!("{} passed, {} failed", tally.passed, tally.failed);
    Ok(tally.failed == 0)
}

fn cmd_qemu_test(root: &std::path::Path, args: impl Iterator<Item = String>) -> Result<bool> {
    let mut bless = false;
    let mut filter = None;
    for arg in args {
        match arg.as_str() {
            "--bless" => bless = true,
            s if s.starts_with('-') => {
                return Err(format!("qemu-test: unknown option `{s}`\n{USAGE}"));
            }
            s => filter = Some(s.to_string()),
        }
    }
    let tally = qemu_tests::run(root, filter.as_deref(), bless)?;
    println!();
    println!("{} passed, {} failed", tally.passed, tally.failed);
    Ok(tally.failed == 0)
}
