//! Cross builds: the aarch64 bare-metal images, with Debian's Rust and `-Zbuild-std`.
//!
//! The kernel and every EL0 process are built for `aarch64-unknown-none-softfloat`
//! (no FP/SIMD state to switch) with `core` and `alloc` built from source.
//! `-Zbuild-std` is unstable; Debian's stable compiler allows it when the cargo
//! process itself runs with `RUSTC_BOOTSTRAP=1`, which is set for that child
//! only. Target builds go to `target/cross` so they never invalidate the host
//! build's artifacts.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Result;

/// The bare-metal target of the kernel and of every process.
pub const TARGET: &str = "aarch64-unknown-none-softfloat";

/// The Cargo profile of the images: release with whole-program
/// optimization (see the workspace's Cargo.toml).
pub const PROFILE: &str = "image";

/// Builds `packages` with [`PROFILE`] for [`TARGET`]; returns the directory
/// that holds their binaries.
pub fn build(root: &Path, packages: &[&str]) -> Result<PathBuf> {
    let target_dir = root.join("target").join("cross");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .env("RUSTC_BOOTSTRAP", "1")
        .args(["build", "--profile", PROFILE, "--target", TARGET])
        .arg("-Zbuild-std=core,alloc,compiler_builtins")
        .arg("-Zbuild-std-features=compiler-builtins-mem")
        .arg("--target-dir")
        .arg(&target_dir);
    for package in packages {
        command.args(["--package", package]);
    }
    let status = command
        .status()
        .map_err(|e| format!("cannot start cargo for the {TARGET} build: {e}"))?;
    if !status.success() {
        return Err(format!(
            "the {TARGET} build of {packages:?} failed ({status})"
        ));
    }
    Ok(target_dir.join(TARGET).join(PROFILE))
}
