//! What the server is told besides its boot info: its clients, their grants and quotas, tunables.
//!
//! The capabilities come in the [`BootInfo`](abi::boot::BootInfo): the
//! endpoint named [`ENDPOINT_NAME`], every `Untyped` (free RAM) and
//! `DeviceUntyped` (MMIO) descriptor, and per client its VSpace and TCB
//! caps, found by kind and by their value, the client's process index `N`
//! in the boot manifest (the simulator names them `pid<N>/vspace`, the QEMU
//! loader `<name>/vspace`; both set the value to `N`). What the boot info cannot say — which badge is which client, what
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
    /// Its process index `N`: the server finds its VSpace and TCB caps in
    /// its boot info by kind and value `N`.
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
    /// demand, and given back when whole chunks of them are free again; the
    /// pool never shrinks below its start); `None`: one per 64 chunks of
    /// RAM, at least one.
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

/// Why a configuration text was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The line (1-based).
    pub line: usize,
    /// What is wrong.
    pub what: &'static str,
}

/// The first line of a configuration text.
pub const CONFIG_MAGIC: &str = "mm-config 1";

fn number(word: &str) -> Option<u64> {
    let word = word.replace('_', "");
    match word.strip_prefix("0x").or_else(|| word.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => word.parse().ok(),
    }
}

impl ServerConfig {
    /// Reads a configuration text (see the module docs); the fields it
    /// does not set keep their defaults.
    pub fn parse(text: &[u8]) -> Result<ServerConfig, ConfigError> {
        let bad = |line: usize, what: &'static str| ConfigError { line, what };
        let text = core::str::from_utf8(text).map_err(|_| bad(0, "not UTF-8"))?;
        let mut config = ServerConfig::default();
        let mut seen_magic = false;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.split('#').next().unwrap_or("").trim();
            if content.is_empty() {
                continue;
            }
            if !seen_magic {
                if content != CONFIG_MAGIC {
                    return Err(bad(line, "the first line must be `mm-config 1`"));
                }
                seen_magic = true;
                continue;
            }
            let mut words = content.split_whitespace();
            let key = words.next().unwrap_or("");
            let mut nums = Vec::new();
            let mut names = Vec::new();
            for w in words {
                match number(w) {
                    Some(n) => nums.push(n),
                    None => names.push(w),
                }
            }
            let exact = |n: usize| {
                if nums.len() == n && names.is_empty() {
                    Ok(())
                } else {
                    Err(bad(line, "wrong number of arguments"))
                }
            };
            let client = |config: &mut ServerConfig| -> Result<usize, ConfigError> {
                config
                    .clients
                    .len()
                    .checked_sub(1)
                    .ok_or(bad(line, "a client directive before any `client` line"))
            };
            match key {
                "supervisor" => {
                    exact(1)?;
                    config.supervisor = Some(nums[0]);
                }
                "self_check" => {
                    exact(1)?;
                    config.self_check = nums[0] != 0;
                }
                "verbose" => {
                    exact(1)?;
                    config.verbose = nums[0] != 0;
                }
                "dma32_end" => {
                    exact(1)?;
                    config.dma32_end = Some(nums[0]);
                }
                "extra_caps" => {
                    exact(1)?;
                    config.extra_caps = Some(nums[0]);
                }
                "page_table_chunks" => {
                    exact(1)?;
                    config.page_table_chunks = Some(nums[0]);
                }
                "zero_pool" => {
                    exact(3)?;
                    for (slot, &n) in config.zero_pool.iter_mut().zip(&nums) {
                        *slot = u32::try_from(n).map_err(|_| bad(line, "zero pool too large"))?;
                    }
                }
                "client" => {
                    exact(3)?;
                    if nums[0] == 0 {
                        return Err(bad(line, "badge 0 is no client's"));
                    }
                    config
                        .clients
                        .push(ClientSpec::new(nums[0], nums[1], nums[2]));
                }
                "grant" => {
                    let c = client(&mut config)?;
                    if names.len() != 1 || !nums.is_empty() {
                        return Err(bad(line, "`grant` takes one name"));
                    }
                    let g = &mut config.clients[c].grants;
                    match names[0] {
                        "pages" => g.pages = true,
                        "dma" => g.dma = true,
                        "user_access" => g.user_access = true,
                        _ => return Err(bad(line, "unknown grant")),
                    }
                }
                "device" => {
                    exact(2)?;
                    let c = client(&mut config)?;
                    if nums[0].checked_add(nums[1]).is_none() || nums[1] == 0 {
                        return Err(bad(line, "bad device range"));
                    }
                    config.clients[c].grants.devices.push((nums[0], nums[1]));
                }
                "window" => {
                    exact(2)?;
                    let c = client(&mut config)?;
                    if nums[0] >= nums[1] {
                        return Err(bad(line, "empty window"));
                    }
                    config.clients[c].window = (nums[0], nums[1]);
                }
                _ => return Err(bad(line, "unknown directive")),
            }
        }
        if !seen_magic {
            return Err(bad(1, "the first line must be `mm-config 1`"));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "mm-config 1\n\
        # the demo\n\
        supervisor 0xffff\n\
        self_check 1\n\
        verbose 0\n\
        dma32_end 0x1_0000_0000\n\
        extra_caps 4096\n\
        page_table_chunks 2\n\
        zero_pool 1 2 3\n\
        client 0x101 1 4096   # the first client\n\
        grant pages\n\
        grant user_access\n\
        device 0x9000000 0x1000\n\
        client 0x102 2 100\n\
        window 0x10000000 0x20000000\n";

    #[test]
    fn parses_every_directive() {
        let c = ServerConfig::parse(EXAMPLE.as_bytes()).unwrap();
        assert_eq!(c.supervisor, Some(0xffff));
        assert!(c.self_check && !c.verbose);
        assert_eq!(c.dma32_end, Some(1 << 32));
        assert_eq!(c.extra_caps, Some(4096));
        assert_eq!(c.page_table_chunks, Some(2));
        assert_eq!(c.zero_pool, [1, 2, 3]);
        assert_eq!(c.clients.len(), 2);
        let a = &c.clients[0];
        assert_eq!((a.badge, a.process, a.quota_pages), (0x101, 1, 4096));
        assert!(a.grants.pages && a.grants.user_access && !a.grants.dma);
        assert_eq!(a.grants.devices, [(0x900_0000, 0x1000)]);
        assert_eq!(a.window, DEFAULT_CLIENT_WINDOW);
        let b = &c.clients[1];
        assert_eq!(b.grants, Grants::default());
        assert_eq!(b.window, (0x1000_0000, 0x2000_0000));
    }

    #[test]
    fn refuses_malformed_text_with_its_line() {
        let cases: [(&str, usize); 9] = [
            ("", 1),
            ("mm-config 2\n", 1),
            ("mm-config 1\nbogus 1\n", 2),
            ("mm-config 1\ngrant pages\n", 2),
            ("mm-config 1\nclient 1 2\n", 2),
            ("mm-config 1\nclient 0 1 2\n", 2),
            ("mm-config 1\nclient 1 1 1\ngrant everything\n", 3),
            ("mm-config 1\nclient 1 1 1\nwindow 5 5\n", 3),
            ("mm-config 1\nzero_pool 1 2 0x100000000\n", 2),
        ];
        for (text, line) in cases {
            let e = ServerConfig::parse(text.as_bytes()).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e:?}");
        }
        assert!(ServerConfig::parse(&[0xff, 0xfe]).is_err());
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut text = alloc::vec::Vec::from(&b"mm-config 1\n"[..]);
            text.extend_from_slice(&bytes);
            let _ = ServerConfig::parse(&text);
        }

        #[test]
        fn directive_soup_never_panics(lines in proptest::collection::vec(
            (0usize..10, proptest::collection::vec("[0-9a-z_x]{0,12}", 0..4)), 0..12)) {
            let keys = ["client", "grant", "device", "window", "supervisor", "zero_pool",
                        "extra_caps", "self_check", "pages", "dma32_end"];
            let mut text = alloc::string::String::from("mm-config 1\n");
            for (k, args) in &lines {
                text.push_str(keys[*k]);
                for a in args {
                    text.push(' ');
                    text.push_str(a);
                }
                text.push('\n');
            }
            if let Ok(c) = ServerConfig::parse(text.as_bytes()) {
                proptest::prop_assert!(c.clients.iter().all(|c| c.badge != 0));
            }
        }
    }
}
