//! The real transport over the simulator's IPC, against the mock server run as a simulated process.
//!
//! `RtTransport` is what every client uses: a `Call` on the `"mm"` endpoint
//! through `platform/rt`, MR0–MR3 in registers and the rest in the IPC
//! buffer. Here the server at the other end is libmm's `MockServer` in a
//! simulated process with a plain Recv/ReplyRecv loop, so the test checks
//! the transport itself — register and buffer messages both ways, every
//! reply label, and RAII releases — over the simulated kernel's IPC. The
//! same calls against the real MM server are `tests/sim`'s scenarios.

use libmm::heap::{Heap, HeapConfig};
use libmm::memory::RtMemory;
use libmm::mm::Mm;
use libmm::mock::MockServer;
use libmm::protocol::{
    Gfp, LABEL_MALFORMED, MAX_PFNS, MAX_WORDS, MapFlags, MmError, Prot, Request,
};
use libmm::{CallError, Error, Transport};
use rt::{Badge, CPtr, CapRights, MessageInfo};
use sim::{Sim, SimConfig};

/// The mock server's receive loop.
fn serve(boot: &'static rt::BootInfo) {
    let ep = CPtr(boot.find("ep").map(|d| d.slot).unwrap_or(0));
    let mut server = MockServer::default();
    let (mut info, _) = rt::recv(ep);
    loop {
        let n = info.length().min(MAX_WORDS);
        let mut words = [0; MAX_WORDS];
        rt::get_mrs(&mut words[..n]);
        // A message that is not a request at all answers itself.
        let (reply, out) = if info.label() == 0xbad {
            (MessageInfo::new(LABEL_MALFORMED, 0, 0, 0), Vec::new())
        } else {
            server.serve(info, &words[..n])
        };
        rt::set_mrs(&out);
        (info, _) = rt::reply_recv(ep, reply);
    }
}

/// The client: typed calls over `RtTransport`.
fn client(boot: &'static rt::BootInfo) {
    let mm = Mm::from_boot_info(boot).expect("an \"mm\" endpoint");
    // Register-sized request and reply.
    let m = mm
        .mmap(0, 1 << 20, Prot::READ_WRITE, MapFlags::default())
        .expect("mmap");
    assert_eq!(m.len(), 1 << 20);
    // A domain error.
    assert_eq!(
        mm.mprotect(m.addr() + (1 << 20), 4096, Prot::READ),
        Err(Error::Mm(MmError::NotMapped))
    );
    // A request that needs the IPC buffer: vmap of 90 frames.
    let pages = mm
        .alloc_pages_exact(MAX_PFNS as u64 * 4096, Gfp::default())
        .expect("pages");
    let pfns: Vec<u64> = (0..MAX_PFNS as u64).map(|i| pages.pfn() + i).collect();
    let area = mm.vmap(&pfns, Prot::READ_WRITE).expect("vmap");
    // A reply that needs the IPC buffer: 90 frames pinned.
    let anon = mm
        .mmap(
            0,
            MAX_PFNS as u64 * 4096,
            Prot::READ_WRITE,
            MapFlags::default(),
        )
        .expect("mmap");
    let pins = mm
        .get_user_pages_fast(anon.addr(), MAX_PFNS as u32, true)
        .expect("pin");
    assert_eq!(pins.pfns().len(), MAX_PFNS);
    assert!(pins.pfns().windows(2).all(|w| w[1] == w[0] + 1));
    drop(pins);
    drop(area);
    drop(pages);
    drop(anon);
    drop(m);
    let me = mm.client_stats().expect("stats");
    // Everything was released by the handles.
    assert_eq!((me.resident_pages, me.regions), (0, 0));
    // The client-side slab over the real transport: one chunk mapped, then
    // kmalloc and kfree without IPC (they never touch the memory, which the
    // mock server does not back).
    let mut heap = Heap::new(mm.clone(), RtMemory, HeapConfig::default());
    let objs: Vec<u64> = (0..1000)
        .map(|i| heap.kmalloc(8 + i % 500).expect("kmalloc"))
        .collect();
    assert_eq!(mm.client_stats().expect("stats").regions, 1);
    for a in objs {
        heap.kfree(a).expect("kfree");
    }
    heap.validate().expect("validate");
    drop(heap);
    assert_eq!(mm.client_stats().expect("stats").regions, 0);
    // A label the server does not take as a request.
    let t = *mm.transport();
    let mut mrs = [0; 4];
    let reply = rt::call_with_mrs(t.endpoint(), MessageInfo::new(0xbad, 0, 0, 0), &mut mrs);
    assert_eq!(reply.label(), LABEL_MALFORMED);
    // And a request on a slot that holds no endpoint.
    let nowhere = libmm::RtTransport::new(CPtr(boot.first_free_slot + 5));
    assert!(matches!(
        nowhere.call(&Request::ZoneStats),
        Err(Error::Call(CallError::UnexpectedLabel(_)))
    ));
    rt::println!("client: ok");
}

#[test]
fn the_real_transport_over_simulated_ipc() {
    let sim = Sim::new(SimConfig::small());
    let ep = sim.endpoint().expect("endpoint");
    sim.process("mock-mm")
        .endpoint("ep", &ep, Badge(0), CapRights::ALL)
        .daemon()
        .spawn(serve)
        .expect("server");
    let c = sim
        .process("client")
        .endpoint("mm", &ep, Badge(1), CapRights::ALL)
        .spawn(client)
        .expect("client");
    sim.run().expect("run");
    assert_eq!(sim.console_of(c), "client: ok\n");
}
