//! Puts the EL0 linker script (`link.ld`) on the link search path as
//! `rt-qemu.ld`, for programs built for the bare-metal target to link with
//! `-Trt-qemu.ld`.

fn main() {
    println!("cargo:rerun-if-changed=link.ld");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("none") {
        let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
        let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
        std::fs::copy(format!("{dir}/link.ld"), format!("{out}/rt-qemu.ld"))
            .expect("copy the linker script");
        println!("cargo:rustc-link-search={out}");
    }
}
