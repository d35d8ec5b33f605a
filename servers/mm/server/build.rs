//! Links the server's binary (`mm-server`) with the runtime's EL0 linker script on the bare-metal target.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        println!("cargo:rustc-link-arg-bins=-Trt-qemu.ld");
    }
}
