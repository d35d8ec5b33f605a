//! The runtime's shared code on the simulator backend: console buffering,
//! memory helpers, message-register bounds.

use rt::abi::boot::SLOT_VSPACE;
use rt::abi::object::ObjectType;
use rt::{Badge, CPtr, CapRights, MessageInfo, Word};
use sim::{Pid, Sim, SimConfig};

fn slot(boot: &rt::BootInfo, name: &str) -> CPtr {
    CPtr(boot.find(name).map(|d| d.slot).unwrap_or(0))
}

/// Maps `pages` fresh pages at `va` in the calling process.
fn map_pages(ut: CPtr, first_free: Word, va: Word, pages: Word) {
    let root = CPtr(rt::abi::boot::SLOT_CNODE);
    let vs = CPtr(SLOT_VSPACE);
    let mut s = first_free;
    for _ in 0..3 {
        rt::invoke::untyped_retype(ut, ObjectType::PageTable, 0, root, 0, 0, s, 1).unwrap();
        rt::invoke::page_table_map(CPtr(s), vs, va, 0).unwrap();
        s += 1;
    }
    rt::invoke::untyped_retype(ut, ObjectType::SmallPage, 0, root, 0, 0, s, pages).unwrap();
    rt::invoke::vspace_map_frames(vs, CPtr(s), pages, va, CapRights::READ_WRITE, 1).unwrap();
}

#[test]
fn console_lines_are_whole_and_long_text_survives() {
    let sim = Sim::new(SimConfig::small());
    let p = sim
        .process("p")
        .spawn(|_| {
            let long: String = "é".repeat(200); // 400 bytes: crosses the 256-byte buffer
            rt::println!("{long}");
            rt::print!("a");
            rt::print!("b\n");
            rt::println!();
            rt::console::write_str("raw\n");
        })
        .unwrap();
    sim.run().unwrap();
    let expected = format!("{}\nab\n\nraw\n", "é".repeat(200));
    assert_eq!(sim.console_of(p), expected);
}

#[test]
fn memory_helpers_copy_fill_and_overlap() {
    let sim = Sim::new(SimConfig::small());
    let ut = sim.untyped(18).unwrap();
    sim.process("p")
        .untyped("ut", &ut)
        .spawn(|boot| {
            let va: Word = 0x1000_0000;
            map_pages(slot(boot, "ut"), boot.first_free_slot, va, 4);
            let data: Vec<u8> = (0..=255).cycle().take(5000).collect();
            rt::mem::write_bytes(va + 10, &data).unwrap();
            // Overlapping copy forwards (dst after src) behaves as memmove.
            rt::mem::copy(va + 100, va + 10, 5000).unwrap();
            let mut back = vec![0; 5000];
            rt::mem::read_bytes(va + 100, &mut back).unwrap();
            assert_eq!(back, data);
            // And backwards.
            rt::mem::copy(va + 5, va + 100, 5000).unwrap();
            rt::mem::read_bytes(va + 5, &mut back).unwrap();
            assert_eq!(back, data);
            rt::mem::fill_bytes(va, 3, 0xaa).unwrap();
            rt::mem::zero(va + 1, 1).unwrap();
            assert_eq!(rt::mem::read_u32(va).unwrap(), 0x00aa_00aa);
            rt::mem::write_u16(va + 4094, 0xbeef).unwrap(); // across a page boundary
            assert_eq!(rt::mem::read_u16(va + 4094).unwrap(), 0xbeef);
            assert_eq!(
                rt::mem::copy(va, u64::MAX - 2, 10),
                Err(rt::MemoryError::InvalidRange)
            );
        })
        .unwrap();
    sim.run().unwrap();
}

#[test]
fn message_registers_out_of_range_are_ignored() {
    let sim = Sim::new(SimConfig::small());
    let ep = sim.endpoint().unwrap();
    sim.process("server")
        .endpoint("ep", &ep, Badge(0), CapRights::ALL)
        .daemon()
        .spawn(|boot| {
            let ep = slot(boot, "ep");
            let (info, badge) = rt::recv(ep);
            rt::println!("{} {} {}", info.length(), rt::get_mr(5), badge.0);
            rt::reply(MessageInfo::new(0, 0, 0, 0));
        })
        .unwrap();
    sim.process("client")
        .endpoint("ep", &ep, Badge(3), CapRights::ALL)
        .spawn(|boot| {
            rt::set_mr(120, 1);
            rt::set_mr(5, 55);
            assert_eq!(rt::get_mr(120), 0);
            assert_eq!(rt::get_badge(3), Badge(0));
            rt::set_cap(3, CPtr(1));
            // A length over 120 is clamped, as the kernel clamps it.
            rt::call(slot(boot, "ep"), MessageInfo::from_word(127));
        })
        .unwrap();
    sim.run().unwrap();
    assert_eq!(sim.console_of(Pid(0)), "120 55 3\n");
}

#[test]
#[should_panic(expected = "outside a simulated thread")]
fn the_runtime_outside_a_simulated_thread_is_a_misuse() {
    rt::yield_now();
}

fn portable_main(_boot: &'static rt::BootInfo) {
    rt::println!("portable");
}

rt::qemu_main!(portable_main);

#[test]
fn one_main_serves_both_places() {
    let sim = Sim::new(SimConfig::small());
    let p = sim.process("p").spawn(portable_main).unwrap();
    sim.run().unwrap();
    assert_eq!(sim.console_of(p), "portable\n");
}

#[test]
fn batch_errors_before_the_invocation_name_no_frame() {
    let sim = Sim::new(SimConfig::small());
    sim.process("p")
        .spawn(|boot| {
            let empty = CPtr(boot.first_free_slot);
            // A batched map or unmap on an empty slot fails before the
            // invocation runs: the error carries no frame index.
            let e = rt::invoke::vspace_unmap_frames(empty, CPtr(SLOT_VSPACE), 1).unwrap_err();
            assert_eq!(e.frame, None);
            assert_eq!(e.error, rt::ErrorReply::InvalidCapability { index: 0 });
            let e =
                rt::invoke::vspace_map_frames(empty, CPtr(1), 1, 0x1000_0000, CapRights::READ, 0)
                    .unwrap_err();
            assert_eq!(e.frame, None);
            assert_eq!(e.error, rt::ErrorReply::InvalidCapability { index: 0 });
            // On a cap that is not a VSpace: IllegalOperation, no frame.
            let e = rt::invoke::vspace_unmap_frames(CPtr(rt::abi::boot::SLOT_TCB), CPtr(1), 1)
                .unwrap_err();
            assert_eq!((e.frame, e.error), (None, rt::ErrorReply::IllegalOperation));
            // The invocation's own errors still name the frame at fault.
            let e = rt::invoke::vspace_map_frames(
                CPtr(SLOT_VSPACE),
                CPtr(rt::abi::boot::SLOT_TCB),
                1,
                0x1000_0000,
                CapRights::READ,
                0,
            )
            .unwrap_err();
            assert_eq!(e.frame, Some(0));
            assert_eq!(e.error, rt::ErrorReply::InvalidCapability { index: 0 });
        })
        .unwrap();
    sim.run().unwrap();
}
