//! The kernel heap runs out: retype refuses cleanly, and everything else keeps working.
//!
//! The kernel keeps its objects' bookkeeping on its heap, a fixed region
//! of RAM. The server first starts worker threads, then fills the heap
//! with CNodes (whose slots the kernel keeps there) until `Untyped_Retype`
//! says NotEnoughMemory although the Untyped still has room. On the full
//! heap the workers queue on an endpoint and on a notification (queues
//! that never allocate), calls and replies go both ways, caps are copied,
//! revoked and deleted; then freed memory serves new objects again.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod program {
    use core::sync::atomic::{AtomicU64, Ordering};

    use abi::boot::SLOT_CNODE;
    use abi::object::ObjectType;
    use abi::{CPtr, CapRights, ErrorReply, MessageInfo, Word};
    use qemu_test_programs::{DEPTH, Objects, Tester};
    use rt::invoke;

    const WORKERS: usize = 16;
    static EP: AtomicU64 = AtomicU64::new(0);
    static GO: AtomicU64 = AtomicU64::new(0);
    static DONE: AtomicU64 = AtomicU64::new(0);
    static WRONG_REPLIES: AtomicU64 = AtomicU64::new(0);

    /// Waits for the go signal, calls the server with its number, waits
    /// again, then counts itself done.
    fn worker(i: Word) -> ! {
        let (ep, go) = (
            CPtr(EP.load(Ordering::SeqCst)),
            CPtr(GO.load(Ordering::SeqCst)),
        );
        rt::wait(go);
        let mut mrs = [i, 0, 0, 0];
        let reply = rt::call_with_mrs(ep, MessageInfo::new(1, 0, 0, 1), &mut mrs);
        if reply.label() != 2 || mrs[0] != i * 10 {
            rt::println!("worker {i}: wrong reply {reply:?} {}", mrs[0]);
            WRONG_REPLIES.fetch_add(1, Ordering::SeqCst);
        }
        rt::wait(go);
        DONE.fetch_add(1, Ordering::SeqCst);
        loop {
            rt::wait(go);
        }
    }

    fn main(info: &'static rt::BootInfo) {
        let mut t = Tester::new("heap");
        let Some(mut o) = Objects::new(info) else {
            t.check("the server has Untyped memory", false);
            t.finish();
        };
        let ep = o.create(ObjectType::Endpoint);
        let go = o.create(ObjectType::Notification);
        EP.store(ep.0, Ordering::SeqCst);
        GO.store(go.0, Ordering::SeqCst);
        for i in 0..WORKERS {
            o.spawn(worker, i as Word, 100, 0);
        }
        // Let every worker reach its first wait.
        rt::yield_now();

        // Fill the heap: big CNodes, then ever smaller ones, until none fits.
        let mut big = [CPtr(0); 64];
        let mut made = 0;
        let mut refused_with_room = true;
        for radix in (1..=16).rev() {
            loop {
                match o.retype(ObjectType::CNode, radix, 1) {
                    Ok(c) => {
                        if radix == 16 && made < big.len() {
                            big[made] = c;
                            made += 1;
                        }
                    }
                    Err(ErrorReply::NotEnoughMemory { available }) => {
                        refused_with_room &= available >= 1 << 20;
                        break;
                    }
                    Err(e) => {
                        rt::println!("retype CNode radix {radix}: {e:?}");
                        refused_with_room = false;
                        break;
                    }
                }
            }
        }
        t.check("the heap fills: big CNodes are made first", made > 0);
        t.check(
            "retype refuses with NotEnoughMemory while the Untyped still has room",
            refused_with_room,
        );

        // On the full heap: sixteen workers wake one by one, all call
        // while the server does not receive, and queue on the endpoint.
        for _ in 0..WORKERS {
            rt::signal(go);
        }
        rt::yield_now();
        let mut order = [Word::MAX; WORKERS];
        for slot in order.iter_mut() {
            let mut mrs = [0; 4];
            let (m, _) = rt::recv_with_mrs(ep, &mut mrs);
            *slot = if m.label() == 1 { mrs[0] } else { Word::MAX };
            // Reply through a saved reply cap half of the time, through
            // Reply the other half.
            if mrs[0] % 2 == 0 {
                let saved = o.slot();
                let r = invoke::cnode_save_caller(CPtr(SLOT_CNODE), saved.0, DEPTH);
                t.check("the reply cap is saved", r.is_ok());
                rt::set_mr(0, mrs[0] * 10);
                rt::send(saved, MessageInfo::new(2, 0, 0, 1));
            } else {
                rt::set_mr(0, mrs[0] * 10);
                rt::reply(MessageInfo::new(2, 0, 0, 1));
            }
        }
        let want: [Word; WORKERS] = core::array::from_fn(|i| i as Word);
        t.eq("the calls queued in order on a full heap", order, want);
        // They all wait on the notification now; each signal wakes one.
        rt::yield_now();
        for _ in 0..WORKERS {
            rt::signal(go);
        }
        rt::yield_now();
        t.eq(
            "sixteen waiters woke, one per signal",
            DONE.load(Ordering::SeqCst),
            WORKERS as u64,
        );
        t.eq(
            "every worker got its own reply",
            WRONG_REPLIES.load(Ordering::SeqCst),
            0,
        );

        // Caps: copies, badges and revocation need no memory.
        let copies = [o.slot(), o.slot(), o.slot()];
        for (i, c) in copies.iter().enumerate() {
            let r = invoke::cnode_mint(
                CPtr(SLOT_CNODE),
                c.0,
                DEPTH,
                CPtr(SLOT_CNODE),
                ep.0,
                DEPTH,
                CapRights::ALL,
                abi::Badge(i as Word + 1),
            );
            t.check("mint on a full heap", r.is_ok());
        }
        t.check(
            "revoke on a full heap",
            invoke::cnode_revoke(CPtr(SLOT_CNODE), ep.0, DEPTH).is_ok(),
        );

        // Freed memory serves new objects again: delete a big CNode, and
        // threads (smaller blocks) can be made from its memory.
        let r = invoke::cnode_delete(CPtr(SLOT_CNODE), big[0].0, DEPTH);
        t.check("a big CNode is deleted", r.is_ok());
        let tcbs = o.retype(ObjectType::Tcb, 0, 4);
        t.check("freed heap memory serves smaller objects", tcbs.is_ok());
        t.finish();
    }

    rt::qemu_main!(main);
}

#[cfg(not(target_os = "none"))]
fn main() {}
