//! Watermarks, lowmem reserves and per-CPU list sizes, derived from `min_free_kbytes`.
//!
//! Linux's `setup_per_zone_wmarks`: the min watermark of all zones together
//! is `min_free_kbytes`, split between zones in proportion to their managed
//! pages; low and high sit above min by a quarter of a zone's share or by
//! `watermark_scale_factor` / 10000 of the zone, whichever is larger.
//! Ordinary allocations stop at low, atomic ones at min, reserve ones go
//! below. `setup_per_zone_lowmem_reserve` keeps part of DMA32 away from
//! allocations that could have used Normal, and `zone_batchsize` sizes the
//! per-CPU lists. Everything is recomputed whenever a setting or a zone's
//! managed size changes.

use super::types::{FrameConfig, NR_ZONES};
use super::zone::{WMARK_HIGH, WMARK_LOW, WMARK_MIN, Zone};
use crate::addr::PAGE_SHIFT;

/// The integer square root of `n` (`int_sqrt`).
pub(crate) fn int_sqrt(n: u64) -> u64 {
    if n < 2 {
        return n;
    }
    let mut x = n;
    let mut y = x.div_ceil(2);
    while y < x {
        x = y;
        y = (x + n / x) / 2;
    }
    x
}

/// Linux's default `min_free_kbytes` for `lowmem_pages` of managed memory
/// (`calculate_min_free_kbytes`): `sqrt(lowmem_kbytes * 16)`, clamped to
/// 128 KiB..=256 MiB.
pub fn default_min_free_kbytes(lowmem_pages: u64) -> u64 {
    let kbytes = lowmem_pages.saturating_mul(1 << (PAGE_SHIFT - 10));
    int_sqrt(kbytes.saturating_mul(16)).clamp(128, 262_144)
}

/// Linux's `zone_batchsize`: about a quarter of a thousandth of the zone,
/// at most 64 pages, rounded to `2^n - 1`; at least 1.
pub(crate) fn zone_batchsize(managed: u64) -> u32 {
    let mut batch = (managed >> 10).min((1 << 20) >> PAGE_SHIFT) / 4;
    if batch < 1 {
        batch = 1;
    }
    let b = batch + batch / 2;
    let pow = 1u64 << (63 - b.leading_zeros());
    (pow - 1).max(1) as u32
}

/// Recomputes every zone's watermarks, lowmem reserves and per-CPU list
/// sizes. `dma_reserve` pages of DMA32 are left out of its managed size
/// (`set_dma_reserve`). Returns the `min_free_kbytes` in force.
pub(crate) fn setup_zones(
    zones: &mut [Zone; NR_ZONES],
    config: &FrameConfig,
    dma_reserve: u64,
) -> u64 {
    let effective = |z: &Zone| -> u64 {
        if z.kind == super::types::ZoneType::Dma32 {
            z.managed().saturating_sub(dma_reserve)
        } else {
            z.managed()
        }
    };
    let sizes: [u64; NR_ZONES] = [effective(&zones[0]), effective(&zones[1])];
    let lowmem: u64 = sizes.iter().sum();
    let min_free_kbytes = config
        .min_free_kbytes
        .unwrap_or_else(|| default_min_free_kbytes(lowmem));
    let pages_min = min_free_kbytes >> (PAGE_SHIFT - 10);
    for (z, &size) in zones.iter_mut().zip(&sizes) {
        let share = if lowmem == 0 {
            0
        } else {
            (pages_min as u128 * size as u128 / lowmem as u128) as u64
        };
        let scaled = (size as u128 * config.watermark_scale_factor as u128 / 10_000) as u64;
        let gap = (share >> 2).max(scaled);
        z.wmark[WMARK_MIN] = share;
        z.wmark[WMARK_LOW] = share + gap;
        z.wmark[WMARK_HIGH] = share + 2 * gap;
        z.lowmem_reserve = [0; NR_ZONES];
        let batch = config
            .pcp_batch
            .unwrap_or_else(|| zone_batchsize(size))
            .max(1);
        z.pcp_batch = batch;
        z.pcp_high = config.pcp_high.unwrap_or(6 * batch);
    }
    // setup_per_zone_lowmem_reserve: DMA32 keeps managed(Normal)/ratio from
    // allocations that could have been served by Normal.
    if config.lowmem_reserve_ratio != 0 {
        zones[0].lowmem_reserve[1] = sizes[1] / config.lowmem_reserve_ratio as u64;
    }
    min_free_kbytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqrt() {
        for n in [0u64, 1, 2, 3, 4, 15, 16, 17, 1 << 40, u64::MAX] {
            let r = int_sqrt(n);
            assert!(r as u128 * r as u128 <= n as u128);
            assert!((r as u128 + 1) * (r as u128 + 1) > n as u128);
        }
    }

    #[test]
    fn linux_defaults() {
        // 1 GiB: sqrt(1048576 * 16) = 4096 KiB.
        assert_eq!(default_min_free_kbytes(262_144), 4096);
        assert_eq!(default_min_free_kbytes(10), 128);
        assert_eq!(default_min_free_kbytes(1 << 40), 262_144);
        assert_eq!(zone_batchsize(262_144), 63);
        assert_eq!(zone_batchsize(1024), 1);
        assert_eq!(zone_batchsize(1 << 30), 63);
    }
}
