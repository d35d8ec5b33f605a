//! A hostile client of the MM server: garbage labels, lengths, words and caps, bad addresses and requests it has no right to; every one refused, the server unharmed.
//!
//! It starts when the driver (`svc-driver`) grants it the mailbox (shared
//! object 1), prints one line per kind of abuse, and reports in the
//! mailbox: STATE 1 when every check passed, 2 otherwise.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod program {
    use abi::fault::FaultLabel;
    use abi::{CPtr, MessageInfo, Word};
    use libmm::protocol::{
        self, Gfp, LABEL_ERROR, LABEL_MALFORMED, LABEL_OK, LABEL_REQUEST, List, MapFlags, MmError,
        Prot, Request,
    };
    use libmm::{Error, Mm};
    use qemu_test_programs::mailbox::{self, STATE};
    use rt::BootInfo;

    #[global_allocator]
    static HEAP: libmm::RtGlobalHeap = libmm::RtGlobalHeap::rt();

    struct Checks {
        passed: u32,
        failed: u32,
    }

    impl Checks {
        fn check(&mut self, what: &str, ok: bool) {
            if ok {
                self.passed += 1;
            } else {
                self.failed += 1;
                rt::println!("hostile: FAIL {what}");
            }
        }
    }

    /// A raw Call on the MM endpoint: label, words; returns the reply's label.
    fn raw(ep: CPtr, label: Word, words: &[Word], caps: &[CPtr]) -> Word {
        for (i, &w) in words.iter().enumerate() {
            rt::set_mr(i, w);
        }
        for (i, &c) in caps.iter().enumerate() {
            rt::set_cap(i, c);
        }
        let mut mrs = [0; 4];
        for (m, &w) in mrs.iter_mut().zip(words) {
            *m = w;
        }
        let info = MessageInfo::new(label, 0, caps.len(), words.len());
        rt::call_with_mrs(ep, info, &mut mrs).label()
    }

    fn refused(r: Result<impl Sized, Error>, want: MmError) -> bool {
        matches!(r, Err(Error::Mm(e)) if e == want)
    }

    fn main(info: &'static BootInfo) {
        let Ok(mm) = Mm::from_boot_info(info) else {
            return;
        };
        let ep = CPtr(info.find("mm").map_or(0, |d| d.slot));
        let Ok(mb) = mailbox::attach(|h| mm.shm_map(h, 0, Prot::READ_WRITE)) else {
            return;
        };
        let mut c = Checks {
            passed: 0,
            failed: 0,
        };

        // Garbage labels and lengths.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut malformed = 0;
        let mut valid = 0;
        let mut answered = 0;
        for i in 0..200u64 {
            let len = (next() % 121) as usize;
            let mut words = [0; 120];
            for w in words.iter_mut().take(len) {
                *w = next();
            }
            let label = match i % 4 {
                0 => LABEL_REQUEST,
                1 => next() & 0xffff_ffff,
                2 => LABEL_REQUEST,
                _ => next() % 16,
            };
            // Not a fault label: the endpoint is also this client's fault
            // endpoint, so a message with one is taken for a fault of its
            // own (a forged fatal fault kills the forger; below).
            let fault_labels = [
                FaultLabel::CapFault,
                FaultLabel::UnknownSyscall,
                FaultLabel::UserException,
                FaultLabel::VmFault,
            ];
            let label = if fault_labels.iter().any(|l| *l as Word == label) {
                0x77
            } else {
                label
            };
            let got = raw(ep, label, &words[..len], &[]);
            answered += 1;
            if got == LABEL_MALFORMED {
                malformed += 1;
            } else if got == LABEL_OK {
                // Random words that decode into a valid request.
                c.check("only a request can succeed", label == LABEL_REQUEST);
                valid += 1;
            } else {
                c.check(
                    "a garbage message gets an error",
                    got == LABEL_ERROR && label == LABEL_REQUEST,
                );
            }
        }
        rt::println!(
            "hostile: {answered} messages of random labels, lengths and words: all answered, {malformed} as malformed, {valid} decoded into valid requests, the rest with errors"
        );
        // A valid request with garbage extra caps, and one truncated.
        let mut words = [0; protocol::MAX_WORDS];
        let n = protocol::encode(&Request::ZoneStats, &mut words);
        let with_caps = raw(
            ep,
            LABEL_REQUEST,
            &words[..n],
            &[CPtr(1), CPtr(2), CPtr(999)],
        );
        let mut words = [0; protocol::MAX_WORDS];
        let n = protocol::encode(
            &Request::Map {
                addr: 0,
                len: 1 << 20,
                prot: Prot::READ_WRITE,
                flags: MapFlags::default(),
                align: libmm::protocol::Align::PAGE,
            },
            &mut words,
        );
        let truncated = raw(ep, LABEL_REQUEST, &words[..n - 1], &[]);
        rt::println!(
            "hostile: extra caps ignored (reply label {with_caps:#x}), a truncated request malformed: {}",
            truncated == LABEL_MALFORMED || truncated == LABEL_ERROR
        );
        c.check("caps", with_caps == 0);
        c.check(
            "truncated",
            truncated == LABEL_MALFORMED || truncated == LABEL_ERROR,
        );

        // A forged page fault inside its own region is served like a real
        // one (the server cannot tell them apart, and it only concerns the
        // forger's own memory).
        let own = mm.mmap(0, 4096, Prot::READ_WRITE, MapFlags::default());
        if let Ok(own) = &own {
            let fsr = 0b00_0111 | 1 << 6; // a level-3 translation fault, write
            let forged = raw(
                ep,
                FaultLabel::VmFault as Word,
                &[0x40_0000, own.addr(), 0, fsr],
                &[],
            );
            let mapped = mm.follow_pfn(own.addr()).is_ok();
            rt::println!(
                "hostile: a forged page fault in its own region: reply {forged:#x}, page mapped: {mapped}"
            );
            c.check("forged fault", forged == 0 && mapped);
        }
        drop(own);

        // Bad addresses and lengths.
        let kernel = mm.mmap(
            0xffff_0000_0000_0000,
            4096,
            Prot::READ_WRITE,
            MapFlags::FIXED,
        );
        let huge = mm.mmap(0, u64::MAX - 4095, Prot::READ_WRITE, MapFlags::default());
        let wrap = mm.mm_populate(u64::MAX - 4095, 8192);
        let nothing = mm.munmap(0x5000_0000, 4096);
        let prot = mm.mprotect(0, 1 << 40, Prot::READ);
        let zero = mm.mmap(0, 0, Prot::READ_WRITE, MapFlags::default());
        let flags = mm.request(&Request::Map {
            addr: 0,
            len: 4096,
            prot: Prot(0xf0),
            flags: MapFlags(0xff00),
            align: libmm::protocol::Align::PAGE,
        });
        rt::println!(
            "hostile: kernel address {:?}, huge length {:?}, wrapping populate {:?}, unmapping nothing {:?}, protecting 1 TiB {:?}, zero length {:?}, bad flags {:?}",
            kernel.as_ref().err(),
            huge.as_ref().err(),
            wrap.err(),
            nothing.err(),
            prot.err(),
            zero.as_ref().err(),
            flags.as_ref().err()
        );
        c.check(
            "bad addresses refused",
            kernel.is_err()
                && huge.is_err()
                && wrap.is_err()
                && zero.is_err()
                && flags.is_err()
                && prot.is_err(),
        );

        // What it has no right to.
        let other = mm.copy_to_user(0x201, 0x1000_0000, 0x1000_0000, 64);
        let died = mm.client_died(0x201);
        let pages = mm.alloc_pages(0, Gfp::ZERO);
        let dma = mm.dma_alloc_coherent(4096);
        let mut pfns = List::new();
        let _ = pfns.0.push(0x4_0000);
        let vmap = mm.request(&Request::Vmap {
            pfns,
            prot: Prot::READ,
        });
        let pfn = mm.vm_insert_pfn(0x1000_0000, 0x9000);
        let shm = mm.shm_map(77, 0, Prot::READ);
        let free = mm.free_pages(0x1000_0000, 0);
        let quota = mm.mmap(0, 64 << 20, Prot::READ_WRITE, MapFlags::POPULATE);
        rt::println!(
            "hostile: copy_to_user {:?}, ClientDied {:?}, alloc_pages {:?}, dma {:?}, vmap {:?}, vm_insert_pfn {:?}, foreign shm {:?}, free_pages {:?}, 64 MiB over quota {:?}",
            other.err(),
            died.err(),
            pages.as_ref().err(),
            dma.as_ref().err(),
            vmap.as_ref().err(),
            pfn.err(),
            shm.as_ref().err(),
            free.err(),
            quota.as_ref().err()
        );
        c.check(
            "no user access grant",
            refused(other, MmError::PermissionDenied),
        );
        c.check(
            "not the supervisor",
            refused(died, MmError::PermissionDenied),
        );
        c.check(
            "no page grant",
            pages.is_err() && dma.is_err() && vmap.is_err(),
        );
        c.check("no device grant", pfn.is_err());
        c.check("foreign objects", shm.is_err() && free.is_err());
        c.check("quota", quota.is_err());

        // Kernel objects it does not hold.
        let retype = rt::invoke::untyped_retype(
            CPtr(100),
            abi::object::ObjectType::SmallPage,
            0,
            CPtr(2),
            0,
            0,
            200,
            1,
        );
        let ep_as_cnode = rt::invoke::cnode_delete(ep, 1, 64);
        rt::println!(
            "hostile: retype from an empty slot {retype:?}, a CNode call on the endpoint {ep_as_cnode:?}"
        );
        c.check("kernel refusals", retype.is_err());

        // The server is unharmed: ordinary memory works.
        let alive = mm
            .mmap(0, 64 << 10, Prot::READ_WRITE, MapFlags::default())
            .is_ok_and(|m| {
                (0..16).all(|i| rt::mem::write_u64(m.addr() + i * 4096, i).is_ok())
                    && (0..16).all(|i| rt::mem::read_u64(m.addr() + i * 4096) == Ok(i))
            });
        rt::println!("hostile: afterwards ordinary memory still works: {alive}");
        c.check("alive", alive);
        mailbox::put(mb.addr(), STATE, if c.failed == 0 { 1 } else { 2 });
        core::mem::forget(mb);
        let _ = mm.exit();
    }

    rt::qemu_main!(main);
}

#[cfg(not(target_os = "none"))]
fn main() {}
