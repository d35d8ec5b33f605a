//! From the entry code to the first user thread: tables, console, heap, GIC, processes.

use core::cell::UnsafeCell;
use core::panic::PanicInfo;

use aarch64_cpu::registers::{CNTKCTL_EL1, VBAR_EL1, Writeable};

use crate::arch::machine::HwMachine;
use crate::arch::mmu::phys_to_virt;
use crate::arch::{cpu, gic, heap, mmu, semihosting, timer, vectors};
use crate::bootimage::{Archive, ArchiveError};
use crate::devicetree::{BootInfo, blob_size};
use crate::kerncore::Kernel;
use crate::kerncore::object::{AddressSpace, Context};
use crate::kerncore::syscall::Event;
use crate::loader::{BootMemory, DeviceRegion};
use crate::{console, kprintln};

/// Where QEMU puts the device tree for an ELF kernel: the start of RAM on `virt`.
const DTB_AT_RAM_START: u64 = 0x4000_0000;

/// The one kernel instance.
struct Global(UnsafeCell<Option<Kernel<HwMachine>>>);

// SAFETY: the kernel runs on one core, with interrupts masked, and enters
// the kernel state only once per exception (see `kernel`).
unsafe impl Sync for Global {}

static KERNEL: Global = Global(UnsafeCell::new(None));

/// The kernel state, on the fastpath: without checking that boot made it.
///
/// # Safety
///
/// As for [`kernel`], and boot must have made the kernel (true of every
/// entry from user level: threads run only after that).
#[inline(always)]
pub unsafe fn kernel_after_boot() -> &'static mut Kernel<HwMachine> {
    // SAFETY: the caller guarantees exclusivity and that `kernel_main`
    // filled the cell.
    unsafe { (*KERNEL.0.get()).as_mut().unwrap_unchecked() }
}

/// The kernel state.
///
/// # Safety
///
/// Call once per kernel entry (exception or boot) and drop the reference
/// before returning to user level: no two references may be live. The
/// kernel runs on one core with interrupts masked, so entries never nest.
pub unsafe fn kernel() -> &'static mut Kernel<HwMachine> {
    // SAFETY: the caller guarantees exclusivity; `kernel_main` fills the
    // cell before the first entry from user level.
    unsafe { (*KERNEL.0.get()).as_mut().expect("kernel initialised") }
}

unsafe extern "C" {
    static __boot_archive_start: u8;
    static __boot_archive_end: u8;
}

/// The boot archive in the image (filled in by `cargo xtask`).
fn boot_archive() -> &'static [u8] {
    // SAFETY: the linker script reserves `.boot_archive` between these
    // symbols inside the read-only, mapped image; nothing writes it.
    unsafe {
        let start = &__boot_archive_start as *const u8;
        let end = &__boot_archive_end as *const u8;
        core::slice::from_raw_parts(start, end as usize - start as usize)
    }
}

/// The kernel's Rust entry point, called once by the boot core in the high half.
///
/// `dtb` is the address the boot loader passed in `x0` (0 when none was);
/// `boot_counter` is `CNTVCT_EL0` as read by the first instruction.
pub extern "C" fn kernel_main(dtb: u64, boot_counter: u64) -> ! {
    // SAFETY: the vector table is in the mapped kernel text.
    unsafe { set_vector_table() };
    let dtb = if dtb != 0 { dtb } else { DTB_AT_RAM_START };
    // SAFETY: the boot map covers RAM in the high half; the 8-byte header
    // at `dtb` is in RAM and only read.
    let header: &[u8; 8] = unsafe { &*(phys_to_virt(dtb) as *const [u8; 8]) };
    let Some(size) = blob_size(header) else {
        semihosting::exit(2);
    };
    // SAFETY: the header says the blob spans `size` bytes from `dtb`; QEMU
    // placed it in RAM, which is mapped, and nothing writes it.
    let blob = unsafe { core::slice::from_raw_parts(phys_to_virt(dtb) as *const u8, size) };
    let Ok(info) = BootInfo::parse(blob) else {
        semihosting::exit(3);
    };
    if let Some(uart) = info.uart {
        // SAFETY: the device tree names this a PL011; the first GiB (where
        // `virt` puts its MMIO) is mapped as Device memory by both the boot
        // table and the kernel's own tables.
        unsafe { console::init(phys_to_virt(uart.base) as usize) };
    }
    // SAFETY: once, on the boot core, before any user thread; the RAM
    // ranges come from the device tree and contain the image.
    unsafe { mmu::install_kernel_tables(info.memory()) };
    let banner_counter = cpu::counter();

    kprintln!(
        "mm-kernel {} (aarch64, QEMU virt)",
        env!("CARGO_PKG_VERSION")
    );
    kprintln!("cpu: {} (MIDR_EL1 {:#010x})", cpu::model(), cpu::midr());
    for range in info.memory() {
        kprintln!(
            "memory: {:#x}..{:#x} ({} MiB)",
            range.base,
            range.end(),
            range.size >> 20
        );
    }
    kprintln!("memory total: {} MiB", info.total_memory() >> 20);
    kprintln!("device tree: {dtb:#x} ({} KiB)", info.dtb_size >> 10);
    if info.has_flag("bench") {
        // Under -icount shift=0 the counter ticks once per 16 instructions.
        let instructions = (banner_counter - boot_counter) * 16;
        kprintln!("BENCH boot.to_banner.qemu.instructions {instructions} instructions");
    }
    if info.has_flag("selftest-mem") {
        // The kernel's memcpy and memset (`memfns`; tests/qemu/boot).
        match memfns::self_test() {
            Ok(()) => kprintln!("selftest: memcpy and memset ok"),
            Err((len, from, to)) => {
                kprintln!("selftest: memcpy or memset wrong: {len} bytes, offsets {from} -> {to}");
                semihosting::exit(1);
            }
        }
    }
    if info.has_flag("selftest-panic") {
        // The panic path's own test (tests/qemu/panic): print the cause, stop
        // with a failure status.
        panic!("self-test: the kernel was asked to panic");
    }
    if info.has_flag("selftest-fault") {
        // An exception taken in the kernel goes the same way.
        // SAFETY: deliberately reads an unmapped kernel address to take a
        // data abort at EL1; nothing is accessed (the abort stops the kernel).
        unsafe { core::ptr::read_volatile(0xffff_ffff_fff0_0000 as *const u64) };
    }
    let archive = match Archive::parse(boot_archive()) {
        Ok(a) => a,
        Err(ArchiveError::NoArchive) => {
            kprintln!("poweroff: status 0");
            semihosting::exit(0);
        }
        Err(e) => panic!("the boot archive is damaged: {e:?}"),
    };

    // Free RAM: all of it but the device tree and the image.
    let mut mem = BootMemory::new(info.memory());
    mem.reserve(dtb, info.dtb_size as u64);
    let image = mmu::image_range();
    mem.reserve(image.base, image.size);
    // An eighth of RAM, as a power of two between 4 and 512 MiB: the slots
    // of every CNode live here, and the MM server's CSpace holds two caps
    // per frame of RAM (4 GiB of RAM needs about 300 MiB of slots).
    let target = (info.total_memory() / 8).max(4 << 20);
    let heap_size = (1u64 << (63 - target.leading_zeros())).min(512 << 20);
    let Some(heap_base) = mem.alloc(heap_size) else {
        panic!("no room for a {heap_size}-byte kernel heap");
    };
    // SAFETY: the region was just taken out of free RAM, is mapped
    // read/write by the linear map, and nothing else will use it.
    unsafe { heap::init(phys_to_virt(heap_base) as usize, heap_size as usize) };

    let Some((dist, cpu_if)) = info.gic else {
        panic!("the device tree names no GICv2");
    };
    // SAFETY: the device tree names a GICv2 there; the first GiB is mapped
    // as Device memory.
    let lines = unsafe { gic::init(phys_to_virt(dist.base), phys_to_virt(cpu_if.base)) };
    let mut k = Kernel::new(HwMachine::new(info.memory()), lines);
    for irq in k.irqs.iter_mut().take(32) {
        irq.reserved = true;
    }
    let none = DeviceRegion {
        name: "none",
        base: 0,
        size: 0,
        irq: None,
    };
    let devices = [
        info.virtio.map_or(none, |v| DeviceRegion {
            name: "virtio",
            base: v.base,
            size: v.size,
            irq: None,
        }),
        info.rtc.map_or(none, |(r, irq)| DeviceRegion {
            name: "rtc",
            base: r.base,
            size: r.size,
            irq: Some(irq),
        }),
    ];
    let devices = &devices[..];
    if let Err(e) = k.load_boot_processes(&archive, &mut mem, devices) {
        panic!("cannot start the boot processes: {}", e.0);
    }
    mmu::sync_instruction_cache();
    kprintln!(
        "boot: {} processes, kernel heap {} MiB",
        archive.len(),
        heap_size >> 20
    );
    // SAFETY: boot is the only user of the cell; no reference exists yet.
    unsafe { *KERNEL.0.get() = Some(k) };

    // EL0 may read the virtual counter (CNTKCTL_EL1.EL0VCTEN): the
    // benchmarks count instructions with it.
    CNTKCTL_EL1.write(CNTKCTL_EL1::EL0VCTEN::SET);
    gic::set_enabled(timer::TIMER_IRQ, true);
    timer::rearm();
    // SAFETY: first kernel "entry": no other reference is live.
    let k = unsafe { kernel() };
    k.schedule();
    k.activate();
    let ctx = next_context(k);
    // SAFETY: `ctx` is the context of a live thread (next_context), whose
    // address space is installed.
    unsafe { vectors::return_to_user(ctx) }
}

/// Installs the exception vectors.
///
/// # Safety
///
/// The table must be the kernel's (`vectors`), mapped executable.
unsafe fn set_vector_table() {
    // SAFETY: only the address is taken.
    let table = unsafe { &vectors::exception_vectors as *const u8 as u64 };
    VBAR_EL1.set(table);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Takes every pending interrupt.
pub fn dispatch_interrupts(k: &mut Kernel<HwMachine>) {
    while let Some(iar) = gic::acknowledge() {
        let irq = iar & 0x3ff;
        if irq == timer::TIMER_IRQ {
            timer::rearm();
            gic::end_of_interrupt(iar);
            k.handle_event(Event::Timer);
        } else {
            k.handle_event(Event::Irq(irq));
            gic::end_of_interrupt(iar);
        }
    }
}

/// The context to resume: the current thread's, with its address space
/// installed; idles (`wfi`) while no thread can run.
pub fn next_context(k: &mut Kernel<HwMachine>) -> *mut Context {
    loop {
        if let Some(cur) = k.sched.current {
            switch_space(user_space_of(k, cur));
            if let Some(t) = k.tcbs.get_mut(cur) {
                return &mut t.context as *mut Context;
            }
        }
        idle(k);
    }
}

/// Installs a user address space, unless it is installed already.
#[inline(always)]
pub fn switch_space(space: AddressSpace) {
    if mmu::user_space() != space.root | u64::from(space.asid) << 48 {
        // SAFETY: `space` is a VSpace whose ASID the kernel assigned and
        // whose root is still that ASID's (checked by `user_space_of`, or
        // by the fastpath's cached view, which is dropped whenever caps or
        // ASIDs change), or the empty table with ASID 0.
        unsafe { mmu::set_user_space(space.root, space.asid) };
    }
}

/// Installs a user address space on the fastpath, unless it is installed
/// already: as [`switch_space`], without the barrier (the exception return
/// that follows synchronises the context — `SCTLR_EL1.EOS`, set at boot —
/// and the kernel does not touch user memory before it).
#[inline(always)]
pub fn switch_space_fast(space: AddressSpace) {
    if mmu::user_space() != space.root | u64::from(space.asid) << 48 {
        // SAFETY: the fastpath's `space` is a VSpace whose ASID the kernel
        // assigned and whose root is still that ASID's: its cached view is
        // dropped whenever caps or ASIDs change. No user access happens
        // before `eret`, which synchronises the new TTBR0.
        unsafe { mmu::set_user_space_unsynchronised(space.root, space.asid) };
    }
}

/// A thread's address space (root table, ASID): its VSpace, or the empty
/// one when it has no valid VSpace (it will fault at once).
#[inline(never)]
fn user_space_of(k: &Kernel<HwMachine>, tcb: crate::kerncore::cap::ObjId) -> AddressSpace {
    match k.thread_asid(tcb) {
        Some((asid, root)) => AddressSpace { root, asid },
        None => AddressSpace {
            root: mmu::empty_user_table(),
            asid: 0,
        },
    }
}

/// Waits for an interrupt while no thread can run; stops the system when
/// nothing ever could.
#[cold]
#[inline(never)]
fn idle(k: &mut Kernel<HwMachine>) {
    let wake_source = k.irqs.iter().any(|s| s.issued && s.notification.is_some());
    if !wake_source && !k.anything_runnable() {
        kprintln!("kernel: no thread can ever run again; halting");
        semihosting::exit(1);
    }
    aarch64_cpu::asm::wfi();
    dispatch_interrupts(k);
}

/// The kernel's panic: print the cause, stop QEMU with a failure status.
#[panic_handler]
fn panic(info: &PanicInfo<'_>) -> ! {
    kprintln!("kernel panic: {info}");
    vectors::fatal()
}
