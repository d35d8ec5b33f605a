//! The client of the semantics image: IPC, capabilities and faults seen from another address space.
//!
//! It runs a fixed script against the server (`sem-server`), which checks
//! each step from its side; this side checks what comes back and reports
//! its own failure count in the last message.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod program {
    use abi::boot::{SLOT_CNODE, SLOT_VSPACE};
    use abi::{CPtr, ErrorReply, MessageInfo, Word};
    use qemu_test_programs::Tester;
    use rt::{BootInfo, invoke};

    /// Loads a word with one instruction, so the fault handler can skip it.
    fn load(addr: Word) -> Word {
        let v: Word;
        // SAFETY: a single load; if the address is not readable the
        // thread faults to its handler (the server), which either maps it
        // and retries or skips this instruction. Nothing else is touched.
        unsafe { core::arch::asm!("ldr {0}, [{1}]", out(reg) v, in(reg) addr, options(nostack)) };
        v
    }

    /// Stores a word with one instruction (see `load`).
    fn store(addr: Word, value: Word) {
        // SAFETY: as in `load`.
        unsafe {
            core::arch::asm!("str {0}, [{1}]", in(reg) value, in(reg) addr, options(nostack))
        };
    }

    fn main(info: &'static BootInfo) {
        let mut t = Tester::new("sem-client");
        let mm = CPtr(info.find("mm").map_or(16, |d| d.slot));

        // 1. A register-only Call and its reply.
        for (i, v) in [11, 22, 33, 44].into_iter().enumerate() {
            rt::set_mr(i, v);
        }
        let r = rt::call(mm, MessageInfo::new(1, 0, 0, 4));
        t.eq("client: reply label", r.label(), 2);
        t.eq(
            "client: reply registers",
            [rt::get_mr(0), rt::get_mr(1), rt::get_mr(2), rt::get_mr(3)],
            [44, 33, 22, 11],
        );

        // 2. A ten-word message through the IPC buffer.
        for i in 0..10 {
            rt::set_mr(i, 100 + i as Word);
        }
        let r = rt::call(mm, MessageInfo::new(3, 0, 0, 10));
        t.eq("client: long reply length", r.length(), 10);
        let doubled: [Word; 10] = core::array::from_fn(rt::get_mr);
        t.eq(
            "client: long reply words",
            doubled,
            core::array::from_fn(|i| 2 * (100 + i as Word)),
        );

        // 3. Sending the server its own endpoint: it arrives unwrapped.
        rt::set_cap(0, mm);
        let r = rt::call(mm, MessageInfo::new(5, 0, 1, 0));
        t.eq("client: unwrap step acknowledged", r.label(), 6);

        // 4. Granting our VSpace: the server maps a page into it for us.
        rt::set_cap(0, CPtr(SLOT_VSPACE));
        let r = rt::call(mm, MessageInfo::new(7, 0, 1, 0));
        t.eq("client: grant step acknowledged", r.label(), 8);
        t.eq(
            "client: page mapped by the server holds its value",
            load(0x3000_0000),
            0xfeed,
        );

        // 5. Invocations on caps we do not hold, or of the wrong kind.
        t.eq(
            "client: invoking an empty slot is InvalidCapability 0",
            invoke::tcb_suspend(CPtr(200)),
            Err(ErrorReply::InvalidCapability { index: 0 }),
        );
        t.eq(
            "client: a frame operation on a CNode is IllegalOperation",
            invoke::page_get_address(CPtr(SLOT_CNODE)),
            Err(ErrorReply::IllegalOperation),
        );
        t.eq(
            "client: a slot index beyond the CNode is FailedLookup",
            invoke::cnode_delete(CPtr(SLOT_CNODE), 1 << 20, 64).map_err(|e| e.code()),
            Err(abi::Error::FailedLookup),
        );

        // 6. Receiving on a cap without the Read right: a cap fault to our
        //    fault handler, which resumes us after the syscall.
        let _ = rt::recv(mm);
        t.check("client: resumed after the receive-phase cap fault", true);

        // 7. Isolation: kernel memory, the server's memory, our own text.
        let _ = load(0xffff_ff80_4020_0000);
        t.check("client: resumed after reading kernel memory", true);
        store(0xffff_ff80_4100_0000, 0xbad);
        t.check("client: resumed after writing kernel memory", true);
        let _ = load(0x1000_0000);
        t.check(
            "client: resumed after reading at the server's address",
            true,
        );
        store(main as fn(&'static BootInfo) as usize as Word, 0);
        t.check("client: resumed after writing our own text", true);

        // 8. Demand paging: the server maps the page and we retry.
        t.eq(
            "client: demand-paged page holds the server's value",
            load(0x4000_0000),
            0xd00d,
        );
        store(0x4000_0008, 0xbeef);
        t.eq("client: and is writable", load(0x4000_0008), 0xbeef);

        // Report.
        rt::set_mr(0, t.failed() as Word);
        let r = rt::call(mm, MessageInfo::new(99, 0, 0, 1));
        t.eq("client: done acknowledged", r.label(), 100);
        rt::exit(0);
    }

    rt::qemu_main!(main);
}

#[cfg(not(target_os = "none"))]
fn main() {}
