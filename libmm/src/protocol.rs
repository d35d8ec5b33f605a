//! The MM protocol: every request a client makes of the memory manager, and its reply.
//!
//! # Transport
//!
//! A request is a `Call` on the client's badged endpoint cap to the MM server
//! (the server tells clients apart by badge alone):
//!
//! | direction | label              | message registers                               |
//! |-----------|--------------------|-------------------------------------------------|
//! | request   | [`LABEL_REQUEST`]  | the postcard bytes of a [`Request`], packed little-endian into words |
//! | reply     | [`LABEL_OK`] (0)   | the postcard bytes of a [`Reply`]               |
//! | reply     | [`LABEL_ERROR`]    | MR0: an [`MmError`] code (a domain error; nothing changed) |
//! | reply     | [`LABEL_MALFORMED`]| none: the request could not be decoded — the client's fault; nothing changed |
//!
//! Requests of up to 32 bytes — most of them — travel in MR0–MR3, the
//! machine registers, with no IPC-buffer traffic. Every message is bounded:
//! lists are [`List`]s of fixed capacity, and a compile-time check proves the
//! largest request and reply fit the 120 message registers. Bulk data never
//! travels in message registers: it moves through memory mapped into both
//! sides (shared regions, or the server's copy_to/from_user).
//!
//! Page faults reach the server on the same endpoint with seL4's fault labels
//! (1, 2, 3, 5), which no protocol label uses. A VM fault in an anonymous or
//! shared region is resolved and answered (the access restarts); any other
//! fault — outside every region, in a guard region, against the region's
//! protection, in a PFNMAP region where nothing was inserted, or one that
//! cannot be served for lack of memory or quota — is fatal: the server stops
//! the client's thread and takes back everything it held. A message with a
//! fault label is taken as a fault of the sender (a forged one only hurts
//! the forger).
//!
//! # Conventions
//!
//! Addresses and lengths are bytes in the client's address space and must be
//! page-aligned where a region is concerned. "Idempotent" below means that
//! repeating the request after a lost reply leaves the same state. Every
//! request is validated whole before anything changes: a refused request
//! (an [`MmError`] or [`LABEL_MALFORMED`]) changes nothing the client can
//! observe. The server never hands out a frame with someone else's data:
//! every page a client receives is zeroed (or holds the object it maps).
//!
//! Common errors, not repeated below: `PermissionDenied` for a sender that
//! is not a client (or one already reclaimed after `Exit`, death or a fatal
//! fault); `InvalidArgument` for undefined [`Prot`] bits; `Unaligned` for an
//! unaligned address or length where pages are meant; `Overflow` when
//! address + length wraps; `QuotaExceeded` when the request would make the
//! client hold more frames than its quota; `NoMemory` when the frames (or
//! room in the address space) are not there.
//!
//! *Areas* are regions made by a dedicated call (`AllocPages`,
//! `AllocPagesExact`, `AllocContigRange`, `Vmalloc`, `Vmap`, `VmMapRam`,
//! `DmaAllocCoherent`): they are freed only by their own free call, with
//! the address the allocation returned, and `Unmap`, `Discard` or a `FIXED`
//! map over them is refused with `Busy`.
//!
//! Every reply that maps something ([`Reply::Mapped`]) says where and how
//! many bytes: the length a later `Unmap` of the whole mapping takes.

use postcard::experimental::max_size::MaxSize;
use serde::{Deserialize, Serialize};

use abi::Word;

/// Label of a request.
pub const LABEL_REQUEST: Word = 0x4d4d_0001;
/// Label of a successful reply (seL4's "no error").
pub const LABEL_OK: Word = 0;
/// Label of a reply carrying an [`MmError`] in MR0.
pub const LABEL_ERROR: Word = 0x4d4d_0002;
/// Label of the reply to a request that could not be decoded.
pub const LABEL_MALFORMED: Word = 0x4d4d_00ff;

/// Message registers available to a message.
pub const MAX_WORDS: usize = abi::message::MAX_LENGTH;
/// Bytes available to an encoded message.
pub const MAX_BYTES: usize = MAX_WORDS * 8;

/// A bounded list that travels in a message: at most `N` items.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct List<T, const N: usize>(pub heapless::Vec<T, N>);

impl<T: MaxSize, const N: usize> MaxSize for List<T, N> {
    const POSTCARD_MAX_SIZE: usize = usize::POSTCARD_MAX_SIZE + N * T::POSTCARD_MAX_SIZE;
}

impl<T, const N: usize> List<T, N> {
    /// An empty list.
    pub const fn new() -> Self {
        List(heapless::Vec::new())
    }

    /// A list of the items of `items`, or `None` when there are more than `N`.
    pub fn from_slice(items: &[T]) -> Option<Self>
    where
        T: Clone,
    {
        heapless::Vec::from_slice(items).ok().map(List)
    }

    /// The items.
    pub fn as_slice(&self) -> &[T] {
        &self.0
    }
}

/// Page protection (PROT_READ/WRITE/EXEC).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize, MaxSize)]
pub struct Prot(pub u8);

impl Prot {
    /// No access (PROT_NONE): a reserved range that faults on any access.
    pub const NONE: Prot = Prot(0);
    /// Readable.
    pub const READ: Prot = Prot(1);
    /// Writable (implies readable on aarch64).
    pub const WRITE: Prot = Prot(2);
    /// Executable.
    pub const EXEC: Prot = Prot(4);
    /// Read and write.
    pub const READ_WRITE: Prot = Prot(3);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Prot) -> bool {
        self.0 & other.0 == other.0
    }
    /// Whether only defined bits are set.
    pub const fn is_valid(self) -> bool {
        self.0 & !7 == 0
    }
}

/// Flags of [`Request::Map`] (after mmap's MAP_* flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize, MaxSize)]
pub struct MapFlags(pub u16);

impl MapFlags {
    /// Place exactly at `addr`, replacing what is there (MAP_FIXED).
    pub const FIXED: MapFlags = MapFlags(1 << 0);
    /// Place exactly at `addr`, failing if anything is there (MAP_FIXED_NOREPLACE).
    pub const FIXED_NOREPLACE: MapFlags = MapFlags(1 << 1);
    /// Allocate and map every page now (MAP_POPULATE), in batches.
    pub const POPULATE: MapFlags = MapFlags(1 << 2);
    /// Use 2 MiB blocks where size and alignment allow (MAP_HUGETLB-like, best effort).
    pub const HUGE: MapFlags = MapFlags(1 << 3);
    /// A guard region: never backed, every access faults and is reported.
    pub const GUARD: MapFlags = MapFlags(1 << 4);
    /// A region for [`Request::VmInsertPage`] and friends (VM_MIXEDMAP): no
    /// anonymous backing; pages arrive only by insertion.
    pub const PFNMAP: MapFlags = MapFlags(1 << 5);
    /// Frames from the DMA32 zone (below 4 GiB physical).
    pub const DMA32: MapFlags = MapFlags(1 << 6);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: MapFlags) -> bool {
        self.0 & other.0 == other.0
    }
    /// Both sets of flags.
    pub const fn union(self, other: MapFlags) -> MapFlags {
        MapFlags(self.0 | other.0)
    }
}

/// Allocation flags of the page-allocator requests (after GFP flags).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize, MaxSize)]
pub struct Gfp(pub u8);

impl Gfp {
    /// Zero the pages (__GFP_ZERO).
    pub const ZERO: Gfp = Gfp(1 << 0);
    /// Only from the DMA32 zone (GFP_DMA32).
    pub const DMA32: Gfp = Gfp(1 << 1);
    /// High priority: may dip below the low watermark to min (GFP_ATOMIC).
    pub const ATOMIC: Gfp = Gfp(1 << 2);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Gfp) -> bool {
        self.0 & other.0 == other.0
    }
}

/// An alignment: `2^log2` bytes, for the address a request places (and,
/// for [`Request::DmaAllocCoherent`], the bus address too).
///
/// Anything below a page (`log2` < 12, the default 0 included) means page
/// alignment. Each request bounds it ([`Align::MAX_MAP`],
/// [`Align::MAX_DMA`]) and refuses more with `InvalidArgument`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize, MaxSize)]
pub struct Align(pub u8);

impl Align {
    /// Page alignment (the default).
    pub const PAGE: Align = Align(12);
    /// 2 MiB: a block mapping's alignment.
    pub const LARGE: Align = Align(21);
    /// The largest alignment [`Request::Map`] takes: 1 GiB.
    pub const MAX_MAP: Align = Align(30);
    /// The largest alignment [`Request::DmaAllocCoherent`] takes: 4 MiB,
    /// the largest physically contiguous run.
    pub const MAX_DMA: Align = Align(22);

    /// The alignment of `bytes`, a power of two (below a page: page
    /// alignment); `None` otherwise.
    pub const fn from_bytes(bytes: u64) -> Option<Align> {
        if bytes.is_power_of_two() {
            Some(Align(bytes.trailing_zeros() as u8))
        } else {
            None
        }
    }

    /// The alignment in bytes (at least a page); `None` beyond 2^63.
    pub const fn bytes(self) -> Option<u64> {
        match self.0 {
            0..12 => Some(4096),
            64.. => None,
            n => Some(1 << n),
        }
    }

    /// Whether it is at most `max`.
    pub const fn within(self, max: Align) -> bool {
        self.0 <= max.0
    }
}

/// What kind of vmalloc (vmalloc, vzalloc, vmalloc_user, vmalloc_32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
pub enum VmallocKind {
    /// vmalloc: contents unspecified.
    Plain,
    /// vzalloc: zeroed.
    Zeroed,
    /// vmalloc_user: zeroed, and suitable for mapping to user space (here:
    /// shareable by handle).
    User,
    /// vmalloc_32: frames from the DMA32 zone.
    Dma32,
}

/// A client, as other clients and the supervisor name it: its badge.
pub type ClientId = u64;

/// The most frame numbers one request or reply carries.
pub const MAX_PFNS: usize = 90;

/// A request to the MM server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, MaxSize)]
pub enum Request {
    // ----- anonymous memory ------------------------------------------------
    /// mmap(MAP_ANONYMOUS): create a region of `len` bytes with `prot`,
    /// starting at a multiple of `align` (at least a page). `addr` is a hint
    /// used when so aligned and free (0: anywhere), or the exact place with
    /// FIXED (replacing what is there) or FIXED_NOREPLACE, where it must be
    /// so aligned. Placed regions keep a one-page guard gap from their
    /// neighbours. Pages are demand-zero unless POPULATE (not for
    /// PROT_NONE); with HUGE the region is 2 MiB aligned (when at least
    /// 2 MiB long, whatever smaller `align` says) and every 2 MiB block of
    /// it is backed by a 2 MiB frame mapped as a block. GUARD makes an
    /// inaccessible region (prot must be NONE, no other flag but FIXED*);
    /// PFNMAP a region with no backing, for `VmInsertPage` and friends.
    /// Reply: [`Reply::Mapped`] with `len`. Errors: InvalidArgument (zero
    /// length, undefined flags, FIXED with FIXED_NOREPLACE, GUARD or PFNMAP
    /// with flags they exclude, `align` above [`Align::MAX_MAP`]), Unaligned
    /// (length; address with FIXED* not a multiple of `align`), Overflow (a
    /// FIXED range outside the client's window), AlreadyMapped
    /// (FIXED_NOREPLACE over a region), Busy (FIXED over an area or a
    /// pinned page), NoMemory (also: no free range so aligned),
    /// QuotaExceeded (POPULATE). All or nothing. Not idempotent unless
    /// FIXED.
    Map {
        /// Placement hint or fixed address.
        addr: u64,
        /// Length in bytes (page multiple).
        len: u64,
        /// Protection.
        prot: Prot,
        /// Flags.
        flags: MapFlags,
        /// The alignment of the start (default: a page).
        align: Align,
    },
    /// munmap: unmap every page in the range and free anonymous frames;
    /// regions straddling its ends are split (a 2 MiB block straddling an
    /// end is split into pages first, contents kept); a shared object
    /// destroyed by its creator goes with its last mapping. Reply: Done.
    /// Errors: InvalidArgument (zero length), Unaligned, Overflow (outside
    /// the client's window), Busy (the range touches an area or a pinned
    /// page). An empty range succeeds. Idempotent.
    Unmap {
        /// Start (page-aligned).
        addr: u64,
        /// Length in bytes.
        len: u64,
    },
    /// mprotect: change the protection of every page in the range, which must
    /// be covered by regions; mapped pages are re-mapped with the new rights
    /// (PROT_NONE: unmapped, frames kept). Reply: Done. Errors: NotMapped (a
    /// hole), InvalidArgument (zero length, a guard region in the range),
    /// PermissionDenied (more than the grant of a shared object mapped
    /// there). Idempotent.
    Protect {
        /// Start.
        addr: u64,
        /// Length.
        len: u64,
        /// New protection.
        prot: Prot,
    },
    /// madvise(MADV_DONTNEED): drop the pages of `[addr, addr + len)` and
    /// keep the regions (their protection, flags and placement unchanged).
    /// Anonymous pages are freed and uncharged; the next access faults in
    /// a fresh zeroed page (so the range reads as zero, and a populated
    /// range is demand-zero again). Pages of shared objects are unmapped
    /// from the caller only: their contents stay in the object and fault
    /// back in. Guard regions and PROT_NONE ranges are accepted (a
    /// PROT_NONE anonymous range loses the frames it kept). A 2 MiB block
    /// straddling an end is split into pages first (contents kept). Reply:
    /// Done. Errors: InvalidArgument (zero length; a PFNMAP region in the
    /// range — use `ZapVmaPtes`), Unaligned, Overflow (address + length
    /// wraps), NotMapped (a hole, or outside the client's window), Busy
    /// (an area or a pinned page in the range), NoMemory (a block to split
    /// and no frames for it; a block already split at the other end stays
    /// split, contents kept). Otherwise nothing changes on error.
    /// Idempotent.
    Discard {
        /// Start (page-aligned).
        addr: u64,
        /// Length in bytes (page multiple).
        len: u64,
    },
    /// madvise(MADV_WILLNEED)/MAP_POPULATE after the fact: back and map every
    /// page of the range's anonymous and shared regions now, in batches
    /// (PROT_NONE, PFNMAP regions and areas are left as they are). Reply:
    /// Done. Errors: NotMapped (a hole), InvalidArgument (zero length, a
    /// guard region), NoMemory, QuotaExceeded; all or nothing. Idempotent.
    Populate {
        /// Start.
        addr: u64,
        /// Length.
        len: u64,
    },

    // ----- page allocator --------------------------------------------------
    /// alloc_pages: `2^order` physically contiguous frames, aligned to their
    /// size, zeroed (with or without `Gfp::ZERO`) and mapped into the caller
    /// as an area. `Gfp::DMA32` takes them below the DMA32 limit,
    /// `Gfp::ATOMIC` may dig down to the min watermark. Reply:
    /// [`Reply::Pages`]. Errors: InvalidArgument (order > 10, undefined Gfp
    /// bits), NoMemory, QuotaExceeded, PermissionDenied (not granted page
    /// access). Not idempotent.
    AllocPages {
        /// log2 of the page count (0..=10).
        order: u8,
        /// Flags.
        gfp: Gfp,
    },
    /// free_pages: return pages from AllocPages (the whole block). Reply:
    /// Done. Errors: NotOwner (no block of that order at that address),
    /// Busy (a page is pinned, or mapped again with vmap / an insertion).
    /// A second free is NotOwner.
    FreePages {
        /// The address AllocPages returned.
        addr: u64,
        /// The same order.
        order: u8,
    },
    /// alloc_pages_exact: exactly `count` contiguous frames (the rest of the
    /// power-of-two block stays free), zeroed, mapped as an area. Reply:
    /// Pages. Errors: InvalidArgument (count 0 or above 1024, undefined Gfp
    /// bits), NoMemory, QuotaExceeded, PermissionDenied (no page grant).
    AllocPagesExact {
        /// Page count (1..=1024).
        count: u32,
        /// Flags.
        gfp: Gfp,
    },
    /// free_pages_exact. Reply: Done. Errors: NotOwner (no such area),
    /// InvalidArgument (another count), Busy (pinned or mapped again).
    FreePagesExact {
        /// The address AllocPagesExact returned.
        addr: u64,
        /// The same count.
        count: u32,
    },
    /// alloc_contig_range: the frames `[start_pfn, end_pfn)` exactly (at most
    /// 1024), zeroed, mapped into the caller as an area; nothing is migrated.
    /// Reply: Pages. Errors: Busy (a frame is in use), InvalidArgument (an
    /// empty range, more than 1024 frames, a frame that is not RAM, a range
    /// crossing zones), QuotaExceeded, PermissionDenied (no page grant).
    AllocContigRange {
        /// First frame.
        start_pfn: u64,
        /// One past the last frame.
        end_pfn: u64,
    },
    /// free_contig_range: the whole range given back. Reply: Done. Errors:
    /// NotOwner (no such area), InvalidArgument (another count), Busy.
    FreeContigRange {
        /// The address AllocContigRange returned.
        addr: u64,
        /// The frame count.
        count: u64,
    },

    // ----- virtually contiguous memory -------------------------------------
    /// vmalloc/vzalloc/vmalloc_user/vmalloc_32: `size` bytes (rounded up to
    /// pages) of virtually contiguous memory (frames need not be contiguous;
    /// DMA32 frames for `Dma32`), always zeroed, mapped now as an area with
    /// guard gaps. Reply: Mapped (`len`: `size` rounded up to pages).
    /// Errors: InvalidArgument (size 0 or above 4 GiB), NoMemory,
    /// QuotaExceeded.
    Vmalloc {
        /// Bytes.
        size: u64,
        /// Which variant.
        kind: VmallocKind,
    },
    /// vfree: free a vmalloc area. Reply: Done. Errors: NotOwner (no vmalloc
    /// area at `addr`), Busy (pinned, or a page mapped again with vmap).
    Vfree {
        /// Its address.
        addr: u64,
    },
    /// vmap: map frames the caller owns (pages of its page blocks or vmalloc
    /// areas; not DMA pages) contiguously, as an area; a frame may appear
    /// more than once. Nothing is charged: the frames stay where they are
    /// owned (which cannot be freed while vmapped). Reply: Mapped (`len`:
    /// a page per frame). Errors: NotOwner (a frame is not the caller's),
    /// InvalidArgument (no frames, PROT_NONE).
    Vmap {
        /// The frames.
        pfns: List<u64, MAX_PFNS>,
        /// Protection.
        prot: Prot,
    },
    /// vunmap: unmap a vmap area (the frames stay the caller's). Reply:
    /// Done. Errors: NotOwner (no vmap area at `addr`), Busy (pinned).
    Vunmap {
        /// Its address.
        addr: u64,
    },
    /// vm_map_ram: as Vmap, read/write. Reply: Mapped.
    VmMapRam {
        /// The frames.
        pfns: List<u64, MAX_PFNS>,
    },
    /// vm_unmap_ram. Reply: Done. Errors: NotOwner, InvalidArgument (another
    /// count), Busy (pinned).
    VmUnmapRam {
        /// Its address.
        addr: u64,
        /// Page count.
        count: u32,
    },

    // ----- mapping into PFNMAP regions -------------------------------------
    /// vm_insert_page: map a frame the caller owns (a page of its page blocks
    /// or vmalloc areas) at `addr` inside a PFNMAP region, with the region's
    /// protection. Reply: Done. Errors: NotMapped (no region at `addr`),
    /// InvalidArgument (not a PFNMAP region), AlreadyMapped, NotOwner.
    VmInsertPage {
        /// Target address.
        addr: u64,
        /// The frame.
        pfn: u64,
    },
    /// vm_insert_pfn: as VmInsertPage for any frame the caller may map:
    /// its own, or device memory its manifest grants (mapped Device-nGnRE,
    /// never executable). Errors: also PermissionDenied (device memory not
    /// granted), InvalidArgument (neither RAM nor device memory).
    VmInsertPfn {
        /// Target address.
        addr: u64,
        /// The frame.
        pfn: u64,
    },
    /// vm_insert_pfn_prot: with a protection, which must be within the
    /// region's and not PROT_NONE (PermissionDenied otherwise).
    VmInsertPfnProt {
        /// Target address.
        addr: u64,
        /// The frame.
        pfn: u64,
        /// Protection.
        prot: Prot,
    },
    /// remap_pfn_range: map `size` bytes of frames from `pfn` at `addr`,
    /// all inside one PFNMAP region with nothing inserted there yet; the
    /// frames are all the caller's own or all granted device memory.
    /// Reply: Done. Errors as VmInsertPfnProt.
    RemapPfnRange {
        /// Target address.
        addr: u64,
        /// First frame.
        pfn: u64,
        /// Bytes.
        size: u64,
        /// Protection.
        prot: Prot,
    },
    /// vm_iomap_memory: map the device range from `phys` over the whole
    /// PFNMAP region that starts at `addr` (which must not be longer than
    /// `len`), with device attributes. Reply: Done. Errors: InvalidArgument
    /// (no PFNMAP region starting at `addr`, region longer than `len`, RAM),
    /// PermissionDenied (not granted), AlreadyMapped.
    VmIomapMemory {
        /// Region start.
        addr: u64,
        /// Physical start.
        phys: u64,
        /// Bytes.
        len: u64,
    },
    /// zap_vma_ptes: remove the page-table entries of a range of PFNMAP
    /// regions (the regions stay). Reply: Done. Errors: NotMapped (a hole),
    /// InvalidArgument (a region that is not PFNMAP), Busy (pinned).
    /// Idempotent.
    ZapVmaPtes {
        /// Start.
        addr: u64,
        /// Bytes.
        len: u64,
    },
    /// unmap_mapping_range: unmap pages `[first, first + count)` of a shared
    /// object from every client that maps them (pinned pages excepted, until
    /// put); the pages stay in the object and fault back in. Only its
    /// creator may. Reply: Done. Errors:
    /// NoSuchHandle, PermissionDenied, InvalidArgument (`first` past the
    /// end). Idempotent.
    UnmapMappingRange {
        /// The shared object.
        handle: u64,
        /// First page.
        first: u64,
        /// Page count (0: to the end).
        count: u64,
    },
    /// follow_pfn: the frame mapped at `addr` (a device frame: its physical
    /// address / 4096). Reply: [`Reply::Pfn`]. Errors: NotMapped.
    FollowPfn {
        /// Address.
        addr: u64,
    },

    // ----- shared memory ---------------------------------------------------
    /// Create a shared object of `size` bytes (rounded up to pages), zeroed,
    /// charged to the creator. Reply: [`Reply::Handle`]. Errors:
    /// InvalidArgument (size 0 or above 4 GiB), NoMemory, QuotaExceeded.
    ShmCreate {
        /// Bytes.
        size: u64,
    },
    /// Allow another client to map the object with at most `prot` (a
    /// second grant replaces the first). Only the creator may. Reply: Done.
    /// Errors: NoSuchHandle (no such object, or no such client),
    /// PermissionDenied. Idempotent.
    ShmGrant {
        /// The object.
        handle: u64,
        /// The client granted.
        to: ClientId,
        /// The most it may map it with.
        prot: Prot,
    },
    /// Map the whole of a shared object (one's own with any protection, or
    /// granted, within the grant), all pages mapped now. Reply: Mapped
    /// (`len`: the object's size rounded up to pages).
    /// Errors: NoSuchHandle (none, or destroyed), PermissionDenied.
    ShmMap {
        /// The object.
        handle: u64,
        /// Placement hint (0: anywhere).
        addr: u64,
        /// Protection.
        prot: Prot,
    },
    /// Destroy a shared object the caller created: no new mapping is
    /// allowed, and it disappears when the last mapping goes (as it does
    /// when its creator dies). Reply: Done. Errors: NoSuchHandle (then),
    /// PermissionDenied.
    ShmDestroy {
        /// The object.
        handle: u64,
    },

    // ----- user memory access ----------------------------------------------
    /// copy_to_user: copy `len` bytes from the caller's `src` to `client`'s
    /// `dst` (the caller itself, or any client if granted user access),
    /// through the page maps of both and the server's window. Pages not yet
    /// backed are faulted in as the client's own access would be; the copy
    /// stops at the first byte it cannot read or write (no region, guard,
    /// protection, device memory). Reply: [`Reply::NotCopied`] with the
    /// bytes not copied (0: all). Errors: PermissionDenied (another client
    /// without the grant), NoSuchHandle (no such client), InvalidArgument
    /// (more than 64 MiB).
    CopyToUser {
        /// Target client (the caller's own id allowed).
        client: ClientId,
        /// Destination in the client.
        dst: u64,
        /// Source in the caller.
        src: u64,
        /// Bytes.
        len: u64,
    },
    /// copy_from_user: copy from `client`'s `src` to the caller's `dst`;
    /// as CopyToUser.
    CopyFromUser {
        /// Source client.
        client: ClientId,
        /// Destination in the caller.
        dst: u64,
        /// Source in the client.
        src: u64,
        /// Bytes.
        len: u64,
    },
    /// clear_user: zero `len` bytes at `client`'s `addr`. Reply: NotCopied
    /// (the bytes not cleared). Errors as CopyToUser.
    ClearUser {
        /// Target client.
        client: ClientId,
        /// Address.
        addr: u64,
        /// Bytes.
        len: u64,
    },
    /// memdup_user: copy `len` bytes of `client`'s memory at `src` into new
    /// (anonymous, populated) memory of the caller's. Reply: Mapped
    /// (`len`: `len` rounded up to pages). Errors: Fault if not all could
    /// be read (nothing is kept), InvalidArgument (len 0 or above 64 MiB),
    /// and those of CopyFromUser and Map.
    MemdupUser {
        /// Source client.
        client: ClientId,
        /// Source address.
        src: u64,
        /// Bytes.
        len: u64,
    },
    /// get_user_pages_fast: fault in and pin `count` pages from `addr` (for
    /// writing if `write`); a pinned page's frame stays where it is until
    /// put (a 2 MiB block is split into pages first), and its range cannot
    /// be unmapped (Busy). Reply: [`Reply::Pfns`]. Errors: InvalidArgument
    /// (count 0 or above 90), NotMapped (a hole), Fault (a page that cannot
    /// be reached with that access, or device memory; nothing pinned),
    /// QuotaExceeded. Pins nest.
    GetUserPagesFast {
        /// Start (page-aligned).
        addr: u64,
        /// Pages (1..=90).
        count: u32,
        /// Pin for writing.
        write: bool,
    },
    /// put_page for each of `count` pages pinned from `addr`. Reply: Done.
    /// Errors: InvalidArgument (a page not pinned; nothing changed).
    PutUserPages {
        /// Start.
        addr: u64,
        /// Pages.
        count: u32,
    },

    // ----- DMA -------------------------------------------------------------
    /// dma_alloc_coherent: `size` bytes (rounded up to pages) of physically
    /// contiguous DMA32 frames, zeroed, mapped Normal non-cacheable as an
    /// area whose virtual **and** bus addresses are multiples of `align`
    /// (at least a page; the bus address is in any case a multiple of the
    /// size rounded up to a power-of-two number of pages, as the buddy
    /// allocator hands runs out). The bus address is the physical
    /// address (no IOMMU on QEMU virt). Reply: [`Reply::Dma`]. Errors:
    /// PermissionDenied (not granted DMA), InvalidArgument (size 0 or above
    /// 4 MiB, `align` above [`Align::MAX_DMA`]), NoMemory (also: no free
    /// run so aligned), QuotaExceeded. Not idempotent.
    DmaAllocCoherent {
        /// Bytes.
        size: u64,
        /// The alignment of both addresses (default: a page).
        align: Align,
    },
    /// dma_free_coherent. Reply: Done. Errors: NotOwner (no DMA area at
    /// `addr`), InvalidArgument (another size), Busy (pinned).
    DmaFreeCoherent {
        /// The address returned.
        addr: u64,
        /// The same size.
        size: u64,
    },

    // ----- statistics and lifecycle ----------------------------------------
    /// Free pages per zone and order (both zones, even an empty one).
    /// Any client may ask, and the supervisor. Reply: [`Reply::Zones`].
    ZoneStats,
    /// The caller's accounting. Reply: [`Reply::Client`].
    ClientStats,
    /// The caller is exiting: release everything it holds (shared objects it
    /// created are destroyed). Reply: Done. The server serves it no more:
    /// later requests, a second Exit included, get PermissionDenied.
    Exit,
    /// From the supervisor only (the badge the server's manifest names; it
    /// is no client, and besides this may only ask `ZoneStats` and
    /// `MemInfo`: anything else gets PermissionDenied): `client` died; stop
    /// its threads and release everything it held. Reply: Done (also for a
    /// client already reclaimed). Errors: PermissionDenied (not the
    /// supervisor), NoSuchHandle (no such client). Idempotent.
    ClientDied {
        /// The dead client.
        client: ClientId,
    },
    /// Every frame the server manages, by class: free, pre-zeroed,
    /// clients', shared objects', page tables, the server's own objects.
    /// The classes add up to `total` (frame conservation), so a client can
    /// check that what it gave back really came back. Any client may ask,
    /// and the supervisor.
    /// Reply: [`Reply::Mem`]. Idempotent. Linux: `/proc/meminfo`.
    MemInfo,
}

/// Free pages of one zone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, MaxSize)]
pub struct ZoneInfo {
    /// 0: DMA32, 1: Normal.
    pub zone: u8,
    /// Frames the zone manages.
    pub managed: u64,
    /// Free frames.
    pub free: u64,
    /// Free blocks per order 0..=10 (/proc/buddyinfo).
    pub free_blocks: [u32; 11],
}

/// A client's accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, MaxSize)]
pub struct ClientInfo {
    /// The client's id (its badge).
    pub id: ClientId,
    /// Frames it holds (charged against its quota: anonymous pages, page
    /// blocks, vmalloc, DMA, shared objects it created).
    pub resident_pages: u64,
    /// Its quota in frames.
    pub quota_pages: u64,
    /// Its regions.
    pub regions: u64,
    /// Page faults served for it.
    pub faults: u64,
    /// Of `resident_pages`, frames of coherent DMA memory
    /// (`dma_alloc_coherent` buffers and DMA pool chunks).
    pub dma_pages: u64,
}

/// Every frame the server manages, by class (`/proc/meminfo`). The classes
/// are disjoint and add up to `total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize, MaxSize)]
pub struct MemInfo {
    /// Every frame the server manages.
    pub total: u64,
    /// Free in the buddy and per-CPU lists.
    pub free: u64,
    /// Free and pre-zeroed, in the zero pool.
    pub zero_pool: u64,
    /// Held by clients (anonymous pages, page blocks, vmalloc, DMA).
    pub clients: u64,
    /// Held by shared objects.
    pub shared: u64,
    /// Page tables, installed in clients or pooled.
    pub page_tables: u64,
    /// The server's own kernel objects.
    pub reserved: u64,
}

impl MemInfo {
    /// Whether the classes add up to the total.
    pub fn conserved(&self) -> bool {
        [
            self.free,
            self.zero_pool,
            self.clients,
            self.shared,
            self.page_tables,
            self.reserved,
        ]
        .iter()
        .try_fold(0u64, |a, &b| a.checked_add(b))
            == Some(self.total)
    }

    /// Frames free, pre-zeroed or not.
    pub fn available(&self) -> u64 {
        self.free.saturating_add(self.zero_pool)
    }
}

/// `T frames = F free + Z pre-zeroed + C clients' + S shared + P page
/// tables + R the server's objects` (the classes adding up to the total).
impl core::fmt::Display for MemInfo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} frames = {} free + {} pre-zeroed + {} clients' + {} shared + {} page tables + {} the server's objects",
            self.total,
            self.free,
            self.zero_pool,
            self.clients,
            self.shared,
            self.page_tables,
            self.reserved
        )
    }
}

/// A successful reply.
// Replies live on the stack only until encoded; boxing the large variants
// would need a heap in every client.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, MaxSize)]
pub enum Reply {
    /// Done, nothing to return.
    Done,
    /// Memory mapped at `addr`, `len` bytes (a page multiple: what was
    /// asked for rounded up to pages, or a shared object's whole size).
    Mapped {
        /// Address.
        addr: u64,
        /// Bytes mapped.
        len: u64,
    },
    /// Contiguous frames from `pfn`, mapped at `addr`.
    Pages {
        /// Address in the caller.
        addr: u64,
        /// First frame.
        pfn: u64,
    },
    /// A new shared object.
    Handle {
        /// Its handle.
        handle: u64,
    },
    /// A frame number.
    Pfn {
        /// The frame.
        pfn: u64,
    },
    /// Frame numbers.
    Pfns {
        /// The frames.
        pfns: List<u64, MAX_PFNS>,
    },
    /// A copy ended; `bytes` were not copied (0: all were).
    NotCopied {
        /// Bytes not copied.
        bytes: u64,
    },
    /// Coherent DMA memory.
    Dma {
        /// Address in the caller.
        addr: u64,
        /// Bus address for the device.
        bus: u64,
    },
    /// Zone statistics.
    Zones {
        /// One entry per zone.
        zones: List<ZoneInfo, 4>,
    },
    /// Client statistics.
    Client(ClientInfo),
    /// Frames by class.
    Mem(MemInfo),
}

/// A domain error: the request was understood and refused; nothing changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, MaxSize)]
#[repr(u16)]
pub enum MmError {
    /// No memory (ENOMEM).
    NoMemory = 1,
    /// A malformed argument: zero length, bad flags, order too big (EINVAL).
    InvalidArgument = 2,
    /// An address or length not suitably aligned (EINVAL).
    Unaligned = 3,
    /// An address plus a length wraps or leaves the address space (EOVERFLOW).
    Overflow = 4,
    /// Nothing is mapped there (EFAULT/ENOMEM).
    NotMapped = 5,
    /// Something is mapped there already (EEXIST).
    AlreadyMapped = 6,
    /// The caller may not do this (EPERM).
    PermissionDenied = 7,
    /// No such handle or object (EBADF).
    NoSuchHandle = 8,
    /// In use (EBUSY): frames taken, or an area / pinned page in the way.
    Busy = 9,
    /// Over the caller's page quota (EDQUOT).
    QuotaExceeded = 10,
    /// Not the caller's to free or map.
    NotOwner = 11,
    /// Reserved (keeps the codes stable): the MM server supports every
    /// request of this protocol and never answers with it.
    Unsupported = 12,
    /// An access to the client's memory faulted (EFAULT).
    Fault = 13,
}

impl MmError {
    /// The code sent in MR0.
    pub const fn code(self) -> Word {
        self as Word
    }

    /// The error for a code; `None` for an unknown code.
    pub const fn from_code(code: Word) -> Option<MmError> {
        use MmError::*;
        Some(match code {
            1 => NoMemory,
            2 => InvalidArgument,
            3 => Unaligned,
            4 => Overflow,
            5 => NotMapped,
            6 => AlreadyMapped,
            7 => PermissionDenied,
            8 => NoSuchHandle,
            9 => Busy,
            10 => QuotaExceeded,
            11 => NotOwner,
            12 => Unsupported,
            13 => Fault,
            _ => return None,
        })
    }
}

// The largest request and reply fit the message registers.
const _: () = assert!(Request::POSTCARD_MAX_SIZE <= MAX_BYTES);
const _: () = assert!(Reply::POSTCARD_MAX_SIZE <= MAX_BYTES);

/// A message could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed;

/// Encodes `value` into message words; returns how many words it took.
pub fn encode<T: Serialize>(value: &T, words: &mut [Word; MAX_WORDS]) -> usize {
    let mut bytes = [0u8; MAX_BYTES];
    // The compile-time checks above guarantee the buffer is large enough for
    // Request and Reply; any other type too big is a bug found in tests.
    let used = match postcard::to_slice(value, &mut bytes) {
        Ok(b) => b.len(),
        Err(_) => 0,
    };
    let n = used.div_ceil(8);
    for (i, word) in words.iter_mut().enumerate().take(n) {
        let mut chunk = [0u8; 8];
        chunk.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
        *word = Word::from_le_bytes(chunk);
    }
    n
}

/// Decodes a value from message words (trailing padding is ignored).
pub fn decode<T: for<'de> Deserialize<'de>>(words: &[Word]) -> Result<T, Malformed> {
    let mut bytes = [0u8; MAX_BYTES];
    let n = words.len().min(MAX_WORDS);
    for (i, w) in words.iter().take(n).enumerate() {
        bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    postcard::from_bytes(&bytes[..n * 8]).map_err(|_| Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Serialize + for<'de> Deserialize<'de> + PartialEq + core::fmt::Debug>(
        v: &T,
    ) -> usize {
        let mut words = [0; MAX_WORDS];
        let n = encode(v, &mut words);
        assert!(n > 0);
        let back: T = decode(&words[..n]).unwrap();
        assert_eq!(&back, v);
        n
    }

    #[test]
    fn common_requests_take_the_register_fast_path() {
        let small = [
            Request::Map {
                addr: 0,
                len: 1 << 20,
                prot: Prot::READ_WRITE,
                flags: MapFlags::POPULATE,
                align: Align::LARGE,
            },
            Request::Discard {
                addr: 0x7fff_ffff_0000,
                len: 1 << 30,
            },
            Request::DmaAllocCoherent {
                size: 1 << 22,
                align: Align::MAX_DMA,
            },
            Request::Unmap {
                addr: 0x1000_0000,
                len: 0x10_0000,
            },
            Request::AllocPages {
                order: 3,
                gfp: Gfp::ZERO,
            },
            Request::FreePages {
                addr: 0x7fff_0000_0000,
                order: 3,
            },
            Request::Vmalloc {
                size: 1 << 30,
                kind: VmallocKind::Zeroed,
            },
            Request::ZoneStats,
        ];
        for r in &small {
            assert!(
                round_trip(r) <= abi::syscall::FAST_MESSAGE_REGISTERS,
                "{r:?}"
            );
        }
    }

    #[test]
    fn alignments() {
        assert_eq!(Align::default().bytes(), Some(4096));
        assert_eq!(Align(11).bytes(), Some(4096));
        assert_eq!(Align::PAGE.bytes(), Some(4096));
        assert_eq!(Align::LARGE.bytes(), Some(2 << 20));
        assert_eq!(Align(63).bytes(), Some(1 << 63));
        assert_eq!(Align(64).bytes(), None);
        assert_eq!(Align::from_bytes(1 << 22), Some(Align::MAX_DMA));
        assert_eq!(Align::from_bytes(64), Some(Align(6)));
        assert_eq!(Align::from_bytes(0), None);
        assert_eq!(Align::from_bytes(3 << 12), None);
        assert!(Align::LARGE.within(Align::MAX_MAP) && !Align(31).within(Align::MAX_MAP));
    }

    #[test]
    fn map_replies_with_their_length_take_the_register_fast_path() {
        let n = round_trip(&Reply::Mapped {
            addr: 0x7fff_ffff_f000,
            len: 1 << 40,
        });
        assert!(n <= abi::syscall::FAST_MESSAGE_REGISTERS);
    }

    #[test]
    fn the_largest_messages_fit() {
        let pfns = List::from_slice(&[u64::MAX; MAX_PFNS]).unwrap();
        let n = round_trip(&Request::Vmap {
            pfns: pfns.clone(),
            prot: Prot::READ_WRITE,
        });
        assert!(n <= MAX_WORDS);
        round_trip(&Reply::Pfns { pfns });
        let zones = List::from_slice(
            &[ZoneInfo {
                zone: 1,
                managed: u64::MAX,
                free: u64::MAX,
                free_blocks: [u32::MAX; 11],
            }; 4],
        )
        .unwrap();
        round_trip(&Reply::Zones { zones });
        assert!(List::<u64, 2>::from_slice(&[1, 2, 3]).is_none());
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        assert_eq!(decode::<Request>(&[]), Err(Malformed));
        assert_eq!(decode::<Request>(&[u64::MAX; 4]), Err(Malformed));
    }

    #[test]
    fn error_codes_round_trip_and_are_never_zero() {
        assert_eq!(MmError::from_code(0), None);
        for code in 1..=13 {
            assert_eq!(MmError::from_code(code).unwrap().code(), code);
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            /// Arbitrary words never panic the decoder.
            #[test]
            fn decoding_arbitrary_words_never_panics(words in prop::collection::vec(any::<u64>(), 0..130)) {
                let _ = decode::<Request>(&words);
                let _ = decode::<Reply>(&words);
            }
        }
    }
}
