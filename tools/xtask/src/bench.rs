//! Benchmarks: host harnesses and QEMU instruction counts, gathered into one report.
//!
//! Host figures come from criterion benches (`benches/` of any workspace
//! crate), run pinned to CPU 0 with `taskset` where it works. The convention: a benchmark group is named after the figure
//! (`frame.order0.alloc_free.ns`); the function measuring our code is named
//! `ours`, and each peer measured side by side in the same run is named
//! `peer:<name>`. A group that declares `Throughput::Elements(n)` reports its
//! median divided by `n` (per element).
//!
//! QEMU figures come from the `[[bench]]` runs of `tests/qemu/*/test.toml`,
//! booted with `-icount shift=0`; the guest prints
//! `BENCH <name> <value> <unit> [peer=<name>:<value>]` lines.
//!
//! Output: `target/bench/results.json`, an array of
//! `{"name", "value", "unit", "peer": {"name", "value"}}` (peer optional),
//! and `target/bench/REPORT.md`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;

use crate::{Result, qemu, qemu_tests};

/// A peer measured in the same run.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Peer {
    /// What the peer is.
    pub name: String,
    /// Its figure, in the same unit.
    pub value: f64,
}

/// One figure of the report.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Figure {
    /// The figure's name, e.g. `frame.order0.alloc_free.ns`.
    pub name: String,
    /// Its value (a median for host timings).
    pub value: f64,
    /// `ns`, `instructions`, `ratio`, ...
    pub unit: String,
    /// The side-by-side peer, when one was measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<Peer>,
}

/// `cargo xtask bench [--host | --qemu] [FILTER]`.
pub fn run(root: &Path, args: Vec<String>) -> Result<bool> {
    let mut host = true;
    let mut guest = true;
    let mut filter = None;
    for arg in args {
        match arg.as_str() {
            "--host" => guest = false,
            "--qemu" => host = false,
            s if s.starts_with('-') => return Err(format!("bench: unknown option `{s}`")),
            s => filter = Some(s.to_string()),
        }
    }
    let mut figures = Vec::new();
    if host {
        figures.extend(host_benches(root, filter.as_deref())?);
    }
    if guest {
        figures.extend(qemu_benches(root, filter.as_deref())?);
    }
    let out = root.join("target").join("bench");
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(&figures).map_err(|e| e.to_string())?;
    std::fs::write(out.join("results.json"), json + "\n").map_err(|e| e.to_string())?;
    let report = render_report(&figures);
    std::fs::write(out.join("REPORT.md"), &report).map_err(|e| e.to_string())?;
    println!("\n{report}");
    println!(
        "bench: {} figures in {} and {}",
        figures.len(),
        out.join("results.json").display(),
        out.join("REPORT.md").display()
    );
    Ok(true)
}

/// Workspace bench targets, as (package, bench name).
fn bench_targets(root: &Path) -> Result<Vec<(String, String)>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata: Value = serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())?;
    let mut targets = Vec::new();
    for package in metadata["packages"].as_array().into_iter().flatten() {
        let package_name = package["name"].as_str().unwrap_or_default();
        for target in package["targets"].as_array().into_iter().flatten() {
            let is_bench = target["kind"]
                .as_array()
                .is_some_and(|kinds| kinds.iter().any(|k| k == "bench"));
            if is_bench {
                let name = target["name"].as_str().unwrap_or_default();
                targets.push((package_name.to_string(), name.to_string()));
            }
        }
    }
    targets.sort();
    Ok(targets)
}

fn host_benches(root: &Path, filter: Option<&str>) -> Result<Vec<Figure>> {
    let targets = bench_targets(root)?;
    if targets.is_empty() {
        println!("bench: no host benchmarks in the workspace");
        return Ok(Vec::new());
    }
    let started = SystemTime::now() - Duration::from_secs(1);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for (package, bench) in &targets {
        println!("bench: {package} / {bench}");
        // Pinned to one CPU: hand-off figures (the simulator's IPC) are then
        // same-core, as their targets are stated, and single-threaded
        // figures do not migrate between cores mid-measurement.
        let mut command = if pin_available() {
            let mut c = Command::new("taskset");
            c.args(["--cpu-list", "0"]).arg(&cargo);
            c
        } else {
            Command::new(&cargo)
        };
        command
            .current_dir(root)
            .args(["bench", "--package", package, "--bench", bench, "--"]);
        if let Some(filter) = filter {
            command.arg(filter);
        }
        let status = command.status().map_err(|e| format!("cargo bench: {e}"))?;
        if !status.success() {
            return Err(format!(
                "cargo bench --package {package} --bench {bench} failed"
            ));
        }
    }
    // Criterion writes under cargo's target directory, wherever
    // CARGO_TARGET_DIR puts it.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                root.join(dir)
            }
        })
        .unwrap_or_else(|| root.join("target"));
    read_criterion(&target.join("criterion"), started)
}

/// Whether `taskset` (util-linux) can pin a command to a CPU here.
fn pin_available() -> bool {
    Command::new("taskset")
        .args(["--cpu-list", "0", "true"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Collects every criterion result under `dir` written since `since`.
fn read_criterion(dir: &Path, since: SystemTime) -> Result<Vec<Figure>> {
    let mut files = Vec::new();
    collect_files(dir, "benchmark.json", &mut files);
    // group -> (ours, [(peer name, value)])
    let mut groups: std::collections::BTreeMap<String, (Option<f64>, Vec<Peer>)> =
        Default::default();
    for file in files {
        let Some(new_dir) = file.parent() else {
            continue;
        };
        if new_dir.file_name().is_none_or(|n| n != "new") {
            continue;
        }
        let fresh = std::fs::metadata(&file)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= since);
        if !fresh {
            continue;
        }
        let Some(benchmark) = read_json(&file) else {
            continue;
        };
        let Some(estimates) = read_json(&new_dir.join("estimates.json")) else {
            continue;
        };
        let Some(mut median) = estimates["median"]["point_estimate"].as_f64() else {
            continue;
        };
        if let Some(elements) = benchmark["throughput"]["Elements"].as_f64()
            && elements > 0.0
        {
            median /= elements;
        }
        let group = benchmark["group_id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let function = benchmark["function_id"]
            .as_str()
            .unwrap_or("ours")
            .to_string();
        let entry = groups.entry(group).or_default();
        match function.strip_prefix("peer:") {
            Some(peer) => entry.1.push(Peer {
                name: peer.to_string(),
                value: median,
            }),
            None => entry.0 = Some(median),
        }
    }
    let mut figures = Vec::new();
    for (name, (ours, peers)) in groups {
        let Some(value) = ours else { continue };
        let unit = name.rsplit('.').next().unwrap_or("ns").to_string();
        if peers.is_empty() {
            figures.push(Figure {
                name,
                value,
                unit,
                peer: None,
            });
            continue;
        }
        for peer in peers {
            figures.push(Figure {
                name: name.clone(),
                value,
                unit: unit.clone(),
                peer: Some(peer),
            });
        }
    }
    Ok(figures)
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn collect_files(dir: &Path, file_name: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, file_name, out);
        } else if path.file_name().is_some_and(|n| n == file_name) {
            out.push(path);
        }
    }
}

/// Parses a guest line `BENCH <name> <value> <unit> [peer=<name>:<value>]`.
pub fn parse_bench_line(line: &str) -> Option<Figure> {
    let mut words = line.trim().strip_prefix("BENCH ")?.split_whitespace();
    let name = words.next()?.to_string();
    let value = words.next()?.parse().ok()?;
    let unit = words.next()?.to_string();
    let peer = words.next().and_then(|w| {
        let (peer_name, peer_value) = w.strip_prefix("peer=")?.rsplit_once(':')?;
        Some(Peer {
            name: peer_name.to_string(),
            value: peer_value.parse().ok()?,
        })
    });
    Some(Figure {
        name,
        value,
        unit,
        peer,
    })
}

fn qemu_benches(root: &Path, filter: Option<&str>) -> Result<Vec<Figure>> {
    let tests = qemu_tests::discover(root)?;
    let runs: Vec<_> = tests
        .iter()
        .flat_map(|t| t.spec.bench.iter().map(move |b| (t, b)))
        .filter(|(t, b)| filter.is_none_or(|f| format!("{}/{}", t.name, b.name).contains(f)))
        .collect();
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let mut tests_used: Vec<&qemu_tests::Test> = runs.iter().map(|(t, _)| *t).collect();
    tests_used.dedup_by(|a, b| a.name == b.name);
    let bin_dir = qemu_tests::build_for(root, &tests_used)?;
    let mut figures = Vec::new();
    for (test, bench) in runs {
        let kernel = test.image(root, &bin_dir)?;
        println!("bench: QEMU {}/{} (-icount shift=0)", test.name, bench.name);
        let config = qemu::Config {
            kernel,
            cpu: bench.cpu.clone(),
            memory: bench.memory.clone(),
            append: bench.append.clone(),
            icount: true,
            timeout: Duration::from_secs(bench.timeout_secs),
            echo: false,
            interactive: false,
        };
        let outcome = qemu::run(&config)?;
        if outcome.status != Some(0) {
            return Err(format!(
                "QEMU bench {}/{} ended with {:?}:\n{}",
                test.name, bench.name, outcome.status, outcome.console
            ));
        }
        figures.extend(outcome.console.lines().filter_map(parse_bench_line));
    }
    Ok(figures)
}

/// The human-readable report.
pub fn render_report(figures: &[Figure]) -> String {
    let mut out = String::from("# Benchmark report\n\n");
    out.push_str(
        "Host figures are criterion medians (per element where a group declares a \
         throughput); QEMU figures are guest instructions under `-icount shift=0`. \
         `ratio` is ours / peer: below 1 means faster than the peer.\n\n",
    );
    out.push_str("| figure | value | unit | peer | peer value | ratio |\n");
    out.push_str("|---|---:|---|---|---:|---:|\n");
    for f in figures {
        let (peer, peer_value, ratio) = match &f.peer {
            Some(p) => (
                p.name.clone(),
                format!("{:.1}", p.value),
                if p.value > 0.0 {
                    format!("{:.2}", f.value / p.value)
                } else {
                    "-".into()
                },
            ),
            None => ("-".into(), "-".into(), "-".into()),
        };
        out.push_str(&format!(
            "| {} | {:.1} | {} | {} | {} | {} |\n",
            f.name, f.value, f.unit, peer, peer_value, ratio
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_guest_bench_lines() {
        let f = parse_bench_line("BENCH ipc.roundtrip.qemu.instructions 380 instructions").unwrap();
        assert_eq!(f.name, "ipc.roundtrip.qemu.instructions");
        assert_eq!(f.value, 380.0);
        assert_eq!(f.unit, "instructions");
        assert!(f.peer.is_none());
        let f = parse_bench_line("BENCH x 2 ns peer=linux:4.5").unwrap();
        assert_eq!(
            f.peer,
            Some(Peer {
                name: "linux".into(),
                value: 4.5
            })
        );
        assert!(parse_bench_line("memory: 1024 MiB").is_none());
        assert!(parse_bench_line("BENCH x notanumber ns").is_none());
    }

    #[test]
    fn report_shows_ratio_to_peer() {
        let report = render_report(&[Figure {
            name: "a.ns".into(),
            value: 10.0,
            unit: "ns".into(),
            peer: Some(Peer {
                name: "p".into(),
                value: 20.0,
            }),
        }]);
        assert!(report.contains("| a.ns | 10.0 | ns | p | 20.0 | 0.50 |"));
    }
}
