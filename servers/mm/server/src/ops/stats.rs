//! Statistics: free pages per zone and order, a client's accounting.

use libmm::protocol::{ClientInfo, List, Reply, ZoneInfo};
use mm_core::frame::ZoneType;

use crate::client::AreaKind;
use crate::server::Server;

impl Server {
    /// `/proc/buddyinfo` and the zone counters.
    pub(crate) fn zone_stats(&self) -> Reply {
        let mut zones = List::new();
        for z in ZoneType::ALL {
            let s = self.phys.alloc.zone_stats(z);
            let b = self.phys.alloc.buddyinfo(z);
            let info = ZoneInfo {
                zone: z.index() as u8,
                managed: s.managed,
                free: s.free,
                free_blocks: core::array::from_fn(|o| b[o].min(u32::MAX as u64) as u32),
            };
            let _ = zones.0.push(info);
        }
        Reply::Zones { zones }
    }

    /// The caller's accounting.
    pub(crate) fn client_stats(&self, ci: u32) -> Reply {
        let c = &self.clients[ci as usize];
        Reply::Client(ClientInfo {
            id: c.badge,
            resident_pages: c.charged,
            quota_pages: c.quota,
            regions: c.regions.len() as u64,
            faults: c.faults,
            dma_pages: c
                .areas
                .values()
                .filter(|a| a.kind == AreaKind::Dma)
                .map(|a| a.pages)
                .sum(),
        })
    }

    /// `/proc/meminfo`: every frame by class, from the census (one pass
    /// over the frame index: a statistics call, not a fast path).
    pub(crate) fn mem_info(&self) -> Reply {
        Reply::Mem(self.census().mem)
    }
}
