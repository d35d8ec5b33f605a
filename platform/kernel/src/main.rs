//! The kernel image: the boot code and everything else live in the `kernel` library.
//!
//! On the host this builds as an empty program so that `cargo test
//! --workspace` runs the library's unit tests.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(all(target_arch = "aarch64", target_os = "none"))]
#[used]
static ENTRY: unsafe extern "C" fn() -> ! = kernel::arch::entry::entry_point();

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the kernel runs on QEMU virt: `cargo xtask run` builds and boots it");
}
