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
//! (1, 2, 3, 5), which no protocol label uses.
//!
//! # Conventions
//!
//! Addresses and lengths are bytes in the client's address space and must be
//! page-aligned where a region is concerned. "Idempotent" below means that
//! repeating the request after a lost reply leaves the same state.

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
    /// mmap(MAP_ANONYMOUS): create a region of `len` bytes with `prot`.
    /// `addr` is a hint (0: anywhere), or exact with FIXED/FIXED_NOREPLACE.
    /// Pages are demand-zero unless POPULATE. Reply: [`Reply::Mapped`].
    /// Errors: InvalidArgument (zero or unaligned length, bad flags),
    /// Overflow, AlreadyMapped (FIXED_NOREPLACE over a region), NoMemory,
    /// QuotaExceeded. Not idempotent unless FIXED.
    Map {
        /// Placement hint or fixed address.
        addr: u64,
        /// Length in bytes (page multiple).
        len: u64,
        /// Protection.
        prot: Prot,
        /// Flags.
        flags: MapFlags,
    },
    /// munmap: unmap every page in the range and free anonymous frames;
    /// regions straddling its ends are split. Reply: Done. Errors:
    /// InvalidArgument (unaligned), Overflow. Idempotent.
    Unmap {
        /// Start (page-aligned).
        addr: u64,
        /// Length in bytes.
        len: u64,
    },
    /// mprotect: change the protection of every page in the range, which must
    /// be covered by regions. Reply: Done. Errors: NotMapped (a hole),
    /// InvalidArgument. Idempotent.
    Protect {
        /// Start.
        addr: u64,
        /// Length.
        len: u64,
        /// New protection.
        prot: Prot,
    },
    /// madvise(MADV_WILLNEED)/MAP_POPULATE after the fact: back and map every
    /// page of the range now, in batches. Reply: Done. Errors: NotMapped,
    /// NoMemory, QuotaExceeded. Idempotent.
    Populate {
        /// Start.
        addr: u64,
        /// Length.
        len: u64,
    },

    // ----- page allocator --------------------------------------------------
    /// alloc_pages: `2^order` physically contiguous frames, mapped into the
    /// caller. Reply: [`Reply::Pages`]. Errors: InvalidArgument (order > 10),
    /// NoMemory, QuotaExceeded, PermissionDenied (not granted page access).
    AllocPages {
        /// log2 of the page count (0..=10).
        order: u8,
        /// Flags.
        gfp: Gfp,
    },
    /// free_pages: return pages from AllocPages (the whole block). Errors:
    /// NotOwner (not such a block of the caller), InvalidArgument.
    FreePages {
        /// The address AllocPages returned.
        addr: u64,
        /// The same order.
        order: u8,
    },
    /// alloc_pages_exact: exactly `count` contiguous frames. Reply: Pages.
    AllocPagesExact {
        /// Page count (1..=1024).
        count: u32,
        /// Flags.
        gfp: Gfp,
    },
    /// free_pages_exact.
    FreePagesExact {
        /// The address AllocPagesExact returned.
        addr: u64,
        /// The same count.
        count: u32,
    },
    /// alloc_contig_range: the frames `[start_pfn, end_pfn)` exactly, mapped
    /// into the caller; fails with Busy, changing nothing, if any is in use.
    /// Reply: Pages.
    AllocContigRange {
        /// First frame.
        start_pfn: u64,
        /// One past the last frame.
        end_pfn: u64,
    },
    /// free_contig_range.
    FreeContigRange {
        /// The address AllocContigRange returned.
        addr: u64,
        /// The frame count.
        count: u64,
    },

    // ----- virtually contiguous memory -------------------------------------
    /// vmalloc/vzalloc/vmalloc_user/vmalloc_32: `size` bytes of virtually
    /// contiguous memory (frames need not be contiguous). Reply: Mapped.
    Vmalloc {
        /// Bytes.
        size: u64,
        /// Which variant.
        kind: VmallocKind,
    },
    /// vfree: free a vmalloc area. Errors: NotOwner.
    Vfree {
        /// Its address.
        addr: u64,
    },
    /// vmap: map frames the caller owns (from AllocPages) contiguously.
    /// Reply: Mapped. Errors: NotOwner (a frame is not the caller's).
    Vmap {
        /// The frames.
        pfns: List<u64, MAX_PFNS>,
        /// Protection.
        prot: Prot,
    },
    /// vunmap: unmap a vmap area (the frames stay the caller's).
    Vunmap {
        /// Its address.
        addr: u64,
    },
    /// vm_map_ram: as Vmap, read/write.
    VmMapRam {
        /// The frames.
        pfns: List<u64, MAX_PFNS>,
    },
    /// vm_unmap_ram.
    VmUnmapRam {
        /// Its address.
        addr: u64,
        /// Page count.
        count: u32,
    },

    // ----- mapping into PFNMAP regions -------------------------------------
    /// vm_insert_page: map a frame the caller owns at `addr` inside a PFNMAP
    /// region. Errors: NotMapped (no such region), AlreadyMapped, NotOwner.
    VmInsertPage {
        /// Target address.
        addr: u64,
        /// The frame.
        pfn: u64,
    },
    /// vm_insert_pfn: as VmInsertPage for any frame the caller may map:
    /// its own, or device memory its manifest grants.
    VmInsertPfn {
        /// Target address.
        addr: u64,
        /// The frame.
        pfn: u64,
    },
    /// vm_insert_pfn_prot: with a protection.
    VmInsertPfnProt {
        /// Target address.
        addr: u64,
        /// The frame.
        pfn: u64,
        /// Protection.
        prot: Prot,
    },
    /// remap_pfn_range: map `size` bytes of frames from `pfn` at `addr`.
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
    /// vm_iomap_memory: map the device range `[phys, phys + len)` at the
    /// start of the PFNMAP region at `addr`, with device attributes.
    VmIomapMemory {
        /// Region start.
        addr: u64,
        /// Physical start.
        phys: u64,
        /// Bytes.
        len: u64,
    },
    /// zap_vma_ptes: remove the page-table entries of a range of a PFNMAP
    /// region (the region stays).
    ZapVmaPtes {
        /// Start.
        addr: u64,
        /// Bytes.
        len: u64,
    },
    /// unmap_mapping_range: unmap pages `[first, first + count)` of a shared
    /// object from every client that maps them (they fault back in).
    UnmapMappingRange {
        /// The shared object.
        handle: u64,
        /// First page.
        first: u64,
        /// Page count (0: to the end).
        count: u64,
    },
    /// follow_pfn: the frame mapped at `addr`. Reply: [`Reply::Pfn`].
    FollowPfn {
        /// Address.
        addr: u64,
    },

    // ----- shared memory ---------------------------------------------------
    /// Create a shared object of `size` bytes. Reply: [`Reply::Handle`].
    ShmCreate {
        /// Bytes.
        size: u64,
    },
    /// Allow another client to map the object.
    ShmGrant {
        /// The object.
        handle: u64,
        /// The client granted.
        to: ClientId,
        /// The most it may map it with.
        prot: Prot,
    },
    /// Map a shared object (one's own or granted). Reply: Mapped.
    ShmMap {
        /// The object.
        handle: u64,
        /// Placement hint (0: anywhere).
        addr: u64,
        /// Protection.
        prot: Prot,
    },
    /// Destroy a shared object the caller created: it disappears when the
    /// last mapping goes.
    ShmDestroy {
        /// The object.
        handle: u64,
    },

    // ----- user memory access ----------------------------------------------
    /// copy_to_user: copy `len` bytes from the caller's `src` to `client`'s
    /// `dst` (the caller itself, or any client if granted user access).
    /// Reply: [`Reply::NotCopied`] with the bytes not copied.
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
    /// copy_from_user: copy from `client`'s `src` to the caller's `dst`.
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
    /// clear_user: zero `len` bytes at `client`'s `addr`. Reply: NotCopied.
    ClearUser {
        /// Target client.
        client: ClientId,
        /// Address.
        addr: u64,
        /// Bytes.
        len: u64,
    },
    /// memdup_user: copy `len` bytes of `client`'s memory at `src` into new
    /// memory of the caller's. Reply: Mapped. Errors: Fault if not all copied.
    MemdupUser {
        /// Source client.
        client: ClientId,
        /// Source address.
        src: u64,
        /// Bytes.
        len: u64,
    },
    /// get_user_pages_fast: fault in and pin `count` pages from `addr` (for
    /// writing if `write`); the frames stay while pinned. Reply: [`Reply::Pfns`].
    GetUserPagesFast {
        /// Start (page-aligned).
        addr: u64,
        /// Pages (1..=90).
        count: u32,
        /// Pin for writing.
        write: bool,
    },
    /// put_page for each of the frames pinned at `addr`.
    PutUserPages {
        /// Start.
        addr: u64,
        /// Pages.
        count: u32,
    },

    // ----- DMA -------------------------------------------------------------
    /// dma_alloc_coherent: physically contiguous DMA32 frames mapped Normal
    /// non-cacheable. Reply: [`Reply::Dma`]. Errors: PermissionDenied (not
    /// granted DMA), NoMemory.
    DmaAllocCoherent {
        /// Bytes.
        size: u64,
    },
    /// dma_free_coherent.
    DmaFreeCoherent {
        /// The address returned.
        addr: u64,
        /// The same size.
        size: u64,
    },

    // ----- statistics and lifecycle ----------------------------------------
    /// Free pages per zone and order. Reply: [`Reply::Zones`].
    ZoneStats,
    /// The caller's accounting. Reply: [`Reply::Client`].
    ClientStats,
    /// The caller is exiting: release everything it holds. Reply: Done.
    Exit,
    /// From the supervisor only: `client` died; release everything it held.
    ClientDied {
        /// The dead client.
        client: ClientId,
    },
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
    /// Frames it holds.
    pub resident_pages: u64,
    /// Its quota in frames.
    pub quota_pages: u64,
    /// Its regions.
    pub regions: u64,
    /// Page faults served for it.
    pub faults: u64,
}

/// A successful reply.
// Replies live on the stack only until encoded; boxing the large variants
// would need a heap in every client.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, MaxSize)]
pub enum Reply {
    /// Done, nothing to return.
    Done,
    /// Memory mapped at `addr`.
    Mapped {
        /// Address.
        addr: u64,
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
    /// In use (EBUSY).
    Busy = 9,
    /// Over the caller's page quota (EDQUOT).
    QuotaExceeded = 10,
    /// Not the caller's to free or map.
    NotOwner = 11,
    /// Not supported by this server.
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
