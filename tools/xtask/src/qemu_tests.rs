//! QEMU test images: boot, then judge by exit status and console output.
//!
//! Each folder `tests/qemu/<name>/` holds a `test.toml` and the expected
//! console output of each run:
//!
//! ```toml
//! description = "what the image shows"
//!
//! [[run]]                        # one or more
//! name = "a53-1g"                # the run's name, unique within the test
//! cpu = "cortex-a53"             # QEMU -cpu (default cortex-a53)
//! memory = "1G"                  # QEMU -m (default 1G)
//! append = ""                    # kernel command line (default empty)
//! expected = "a53-1g.expected"   # expected console output
//! timeout_secs = 60              # default 60
//! status = 0                     # the exit status that passes (default 0)
//! ```
//!
//! A run passes when QEMU exits with the expected status (0 unless the run
//! tests a failure path, such as the kernel's panic) **and** its console
//! matches the expected file line by line, where `{*}` in an expected line
//! matches any text. Runs use `-icount shift=0`, so what they print is deterministic.
//! A test may also declare `[[bench]]` runs (`name`, `cpu`, `memory`,
//! `append`), which `cargo xtask bench` boots to read the figures the guest
//! prints as `BENCH <name> <value> <unit>` lines.
//!
//! `cargo xtask qemu-test --bless NAME` rewrites the expected files from the
//! actual output (review the diff before committing it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::host_tests::Tally;
use crate::{Result, cross, image, qemu};

/// A test's `test.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    description: String,
    #[serde(default)]
    run: Vec<RunSpec>,
    /// Benchmark runs of the image.
    #[serde(default)]
    pub bench: Vec<BenchSpec>,
}

/// A benchmark run of a test image.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BenchSpec {
    /// Names the run in messages.
    pub name: String,
    /// QEMU -cpu.
    #[serde(default = "default_cpu")]
    pub cpu: String,
    /// QEMU -m.
    #[serde(default = "default_memory")]
    pub memory: String,
    /// Kernel command line.
    #[serde(default)]
    pub append: String,
    /// Kill QEMU after this long.
    #[serde(default = "bench_timeout")]
    pub timeout_secs: u64,
}

fn bench_timeout() -> u64 {
    600
}

/// One QEMU run of a test image.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RunSpec {
    name: String,
    #[serde(default = "default_cpu")]
    cpu: String,
    #[serde(default = "default_memory")]
    memory: String,
    #[serde(default)]
    append: String,
    expected: String,
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
    #[serde(default)]
    status: i32,
}

fn default_cpu() -> String {
    "cortex-a53".into()
}
fn default_memory() -> String {
    "1G".into()
}
fn default_timeout() -> u64 {
    60
}

/// A test folder and its parsed spec.
pub struct Test {
    /// The folder's name.
    pub name: String,
    dir: PathBuf,
    /// Its `test.toml`.
    pub spec: Spec,
}

/// Reads every `tests/qemu/*/test.toml`, sorted by folder name.
pub fn discover(root: &Path) -> Result<Vec<Test>> {
    let base = root.join("tests").join("qemu");
    let mut tests = Vec::new();
    let entries = std::fs::read_dir(&base).map_err(|e| format!("{}: {e}", base.display()))?;
    for entry in entries {
        let dir = entry.map_err(|e| e.to_string())?.path();
        let file = dir.join("test.toml");
        if !file.is_file() {
            continue;
        }
        let text =
            std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let spec: Spec = toml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        tests.push(Test { name, dir, spec });
    }
    tests.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tests)
}

/// The new expected text for `actual` output: its lines, except that where
/// a line of the `old` expected text (searched in order, a little ahead of
/// the last one kept) still matches, that line is kept — so blessing keeps
/// the `{*}` wildcards of lines that did not change.
pub fn blessed(old: &str, actual: &str) -> String {
    const LOOKAHEAD: usize = 64;
    let old: Vec<&str> = old.lines().collect();
    let mut next = 0;
    let mut out = String::with_capacity(actual.len());
    for line in actual.lines() {
        let end = old.len().min(next + LOOKAHEAD);
        match (next..end).find(|&i| line_matches(old[i], line)) {
            Some(i) => {
                out.push_str(old[i]);
                next = i + 1;
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Whether `actual` matches the `expected` line, where `{*}` matches any text.
pub fn line_matches(expected: &str, actual: &str) -> bool {
    let mut parts = expected.split("{*}");
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = actual.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Compares console output with the expected text; `None` when they match,
/// otherwise a description of the first difference.
pub fn compare(expected: &str, actual: &str) -> Option<String> {
    let expected: Vec<&str> = expected.lines().collect();
    let actual: Vec<&str> = actual.lines().collect();
    for (index, want) in expected.iter().enumerate() {
        match actual.get(index) {
            Some(got) if line_matches(want, got) => {}
            Some(got) => {
                return Some(format!(
                    "line {}: expected `{want}`\n{:>width$}got      `{got}`",
                    index + 1,
                    "",
                    width = format!("line {}: ", index + 1).len()
                ));
            }
            None => {
                return Some(format!(
                    "line {}: expected `{want}`, output ended",
                    index + 1
                ));
            }
        }
    }
    if actual.len() > expected.len() {
        return Some(format!(
            "line {}: unexpected extra output `{}`",
            expected.len() + 1,
            actual[expected.len()]
        ));
    }
    None
}

impl Test {
    /// The test's boot manifest, when it boots processes.
    pub fn manifest_path(&self) -> Option<PathBuf> {
        let path = self.dir.join("manifest.toml");
        path.is_file().then_some(path)
    }

    /// The image this test boots: the plain kernel, or the kernel with the
    /// processes of its manifest. `bin_dir` holds the built binaries.
    pub fn image(&self, root: &Path, bin_dir: &Path) -> Result<PathBuf> {
        match self.manifest_path() {
            None => Ok(bin_dir.join("kernel")),
            Some(path) => {
                let manifest = image::read_manifest(&path)?;
                image::make_image(root, bin_dir, &self.name, &manifest)
            }
        }
    }
}

/// Builds what the tests need: the kernel, and the test programs when any
/// test has a manifest. Returns the directory of the binaries.
pub fn build_for(root: &Path, tests: &[&Test]) -> Result<PathBuf> {
    if tests.iter().any(|t| t.manifest_path().is_some()) {
        image::build_all(root)
    } else {
        cross::build(root, &["kernel"])
    }
}

/// Runs every QEMU test whose name (or `name/run`) contains `filter`.
pub fn run(root: &Path, filter: Option<&str>, bless: bool) -> Result<Tally> {
    let tests = discover(root)?;
    let selected: Vec<(&Test, &RunSpec)> = tests
        .iter()
        .flat_map(|t| t.spec.run.iter().map(move |r| (t, r)))
        .filter(|(t, r)| filter.is_none_or(|f| format!("{}/{}", t.name, r.name).contains(f)))
        .collect();
    let mut tally = Tally::default();
    if selected.is_empty() {
        println!("qemu tests: none selected");
        return Ok(tally);
    }
    let mut tests_used: Vec<&Test> = selected.iter().map(|(t, _)| *t).collect();
    tests_used.dedup_by(|a, b| a.name == b.name);
    let bin_dir = build_for(root, &tests_used)?;
    let mut images = std::collections::HashMap::new();
    for t in &tests_used {
        images.insert(t.name.clone(), t.image(root, &bin_dir)?);
    }
    let out_dir = root.join("target").join("qemu-tests");
    std::fs::create_dir_all(&out_dir).map_err(|e| e.to_string())?;
    println!("\nrunning {} QEMU test runs", selected.len());
    for (test, run) in selected {
        let id = format!("{}/{}", test.name, run.name);
        let config = qemu::Config {
            kernel: images[&test.name].clone(),
            cpu: run.cpu.clone(),
            memory: run.memory.clone(),
            append: run.append.clone(),
            icount: true,
            timeout: Duration::from_secs(run.timeout_secs),
            echo: false,
            interactive: false,
        };
        let outcome = qemu::run(&config)?;
        let actual_file = out_dir.join(format!("{}-{}.out", test.name, run.name));
        let _ = std::fs::write(&actual_file, &outcome.console);
        let expected_file = test.dir.join(&run.expected);
        if bless && outcome.status == Some(run.status) {
            let old = std::fs::read_to_string(&expected_file).unwrap_or_default();
            std::fs::write(&expected_file, blessed(&old, &outcome.console))
                .map_err(|e| e.to_string())?;
        }
        let expected = std::fs::read_to_string(&expected_file).unwrap_or_default();
        let verdict = match outcome.status {
            None => Some(format!("timed out after {} s", run.timeout_secs)),
            Some(status) if status == run.status => compare(&expected, &outcome.console),
            Some(status) => Some(format!("exit status {status} (expected {})", run.status)),
        };
        match verdict {
            None => {
                tally.passed += 1;
                println!("TEST_PASS {id} ({:.1} s)", outcome.elapsed.as_secs_f64());
            }
            Some(why) => {
                tally.failed += 1;
                println!("TEST_FAIL {id}: {why}");
                println!("  ({}; {})", test.spec.description, run.cpu);
                println!("  console: {}", actual_file.display());
                let tail: Vec<&str> = outcome.console.lines().rev().take(15).collect();
                for line in tail.iter().rev() {
                    println!("  | {line}");
                }
                for line in outcome.stderr.lines().take(10) {
                    println!("  qemu: {line}");
                }
            }
        }
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_any_text() {
        assert!(line_matches("a {*} c", "a b c"));
        assert_eq!(
            blessed("x {*}\nold\ny = {*}\n", "x 1\nnew\ny = 2\nz\n"),
            "x {*}\nnew\ny = {*}\nz\n"
        );
        assert!(line_matches("a {*} c", "a  c"));
        assert!(line_matches("{*}", "anything"));
        assert!(line_matches("x{*}", "x"));
        assert!(!line_matches("a {*} c", "a b d"));
        assert!(!line_matches("abc", "abcd"));
        assert!(line_matches("abc", "abc"));
        assert!(line_matches("{*}b{*}d", "abcd"));
        assert!(!line_matches("ab{*}ba", "aba"));
    }

    #[test]
    fn reports_the_first_difference() {
        assert_eq!(compare("a\nb\n", "a\nb\n"), None);
        assert!(compare("a\nb\n", "a\nc\n").unwrap().starts_with("line 2"));
        assert!(compare("a\nb\n", "a\n").unwrap().contains("output ended"));
        assert!(compare("a\n", "a\nb\n").unwrap().contains("extra output"));
    }
}
