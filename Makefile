# The two commands of the README, and the benchmarks. Each first installs the
# toolchain it needs (tools/setup.sh: Debian's Rust 1.96, lld, QEMU).
.PHONY: run test bench setup

setup:
	@./tools/setup.sh

## Build the boot image and boot the demo in QEMU virt.
run: setup
	cargo xtask run

## Run every test: host unit/property/simulator tests, then the QEMU test images.
test: setup
	cargo xtask test

## Run the benchmarks; report in target/bench/REPORT.md and results.json.
bench: setup
	cargo xtask bench
