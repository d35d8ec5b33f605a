//! What the server is told besides its boot info: its clients, their grants and quotas, tunables.
//!
//! The capabilities come in the [`BootInfo`](abi::boot::BootInfo): the
//! endpoint named [`ENDPOINT_NAME`], every `Untyped` (free RAM) and
//! `DeviceUntyped` (MMIO) descriptor, and per client the caps named
//! `pid<N>/vspace` and `pid<N>/tcb` (`N` the client's process index in the
//! boot manifest, as the simulator's `process_caps` and the QEMU loader name
//! them). What the boot info cannot say — which badge is which client, what
//! each may do and how much memory it may hold — is the [`ServerConfig`]:
//! the manifest's policy, built by the image that starts the server (the
//! simulator scenario, or the QEMU image's manifest).

use alloc::vec::Vec;

/// The name of the server's endpoint cap in its boot info.
pub const ENDPOINT_NAME: &str = "mm";

/// What a client may do beyond anonymous memory, shared memory and copies
/// within its own address space (which every client may use).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Grants {
    /// The page-allocator family: alloc_pages, alloc_pages_exact,
    /// alloc_contig_range and their frees, and through them vmap,
    /// vm_map_ram and inserting its own frames (`vm_insert_page`...).
    pub pages: bool,
    /// Coherent DMA memory (`dma_alloc_coherent`).
    pub dma: bool,
    /// copy_to_user / copy_from_user / clear_user / memdup_user on *other*
    /// clients' memory (a driver or a file server acting for them).
    pub user_access: bool,
    /// Device ranges `(physical start, bytes)` the client may map with
    /// `vm_insert_pfn`, `remap_pfn_range` and `vm_iomap_memory`.
    pub devices: Vec<(u64, u64)>,
}

impl Grants {
    /// Everything: pages, DMA, user access (device ranges stay empty).
    pub fn all() -> Grants {
        Grants {
            pages: true,
            dma: true,
            user_access: true,
            devices: Vec::new(),
        }
    }

    /// Whether `[phys, phys + len)` lies inside one granted device range.
    pub fn covers_device(&self, phys: u64, len: u64) -> bool {
        let Some(end) = phys.checked_add(len) else {
            return false;
        };
        self.devices
            .iter()
            .any(|&(s, l)| phys >= s && s.checked_add(l).is_some_and(|e| end <= e))
    }
}

/// One client of the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientSpec {
    /// The badge of its endpoint cap (and of its fault-endpoint cap): the
    /// only way the server tells clients apart. Never 0.
    pub badge: u64,
    /// Its process index `N`: the server finds `pid<N>/vspace` and
    /// `pid<N>/tcb` in its boot info.
    pub process: u64,
    /// The most frames it may hold at once (anonymous pages, page blocks,
    /// vmalloc, DMA, shared objects it created).
    pub quota_pages: u64,
    /// What else it may do.
    pub grants: Grants,
    /// The part of its address space the server manages for it
    /// `[lower, upper)`: regions are placed only there. The default keeps
    /// the first 256 MiB (null-pointer catch, program image) and the last
    /// 512 GiB (stack, IPC buffer, boot info) out.
    pub window: (u64, u64),
}

/// The default client window (see [`ClientSpec::window`]).
pub const DEFAULT_CLIENT_WINDOW: (u64, u64) = (0x1000_0000, 0x7f80_0000_0000);

impl ClientSpec {
    /// A client with no grants, the default window and `quota_pages`.
    pub fn new(badge: u64, process: u64, quota_pages: u64) -> ClientSpec {
        ClientSpec {
            badge,
            process,
            quota_pages,
            grants: Grants::default(),
            window: DEFAULT_CLIENT_WINDOW,
        }
    }

    /// The same client with these grants.
    pub fn with_grants(mut self, grants: Grants) -> ClientSpec {
        self.grants = grants;
        self
    }
}

/// The server's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// The clients.
    pub clients: Vec<ClientSpec>,
    /// The badge of the supervisor, the only sender allowed `ClientDied`.
    pub supervisor: Option<u64>,
    /// The end of the DMA32 zone (default 4 GiB, as Linux on arm64).
    pub dma32_end: Option<u64>,
    /// Slots for extra frame caps (a frame mapped at a second place: shared
    /// memory, vmap, inserted pages); `None`: an eighth of the frames, at
    /// least 1024.
    pub extra_caps: Option<u64>,
    /// 2 MiB chunks turned into page tables at start (more are converted on
    /// demand); `None`: one per 64 chunks of RAM, at least one.
    pub page_table_chunks: Option<u64>,
    /// Frames kept pre-zeroed (per zone: unmovable, movable, reclaimable),
    /// refilled while the server is idle.
    pub zero_pool: [u32; 3],
    /// Run the full invariant and conservation check after every message
    /// (tests): a violation is reported on the console and stops the server
    /// with a panic that names it.
    pub self_check: bool,
    /// Print every fatal fault and client death on the console.
    pub verbose: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            clients: Vec::new(),
            supervisor: None,
            dma32_end: None,
            extra_caps: None,
            page_table_chunks: None,
            zero_pool: [64, 256, 0],
            self_check: false,
            verbose: true,
        }
    }
}
