//! The machine below the kernel's logic: physical memory, the TLB, interrupts, the console.
//!
//! The kernel's logic (capabilities, objects, IPC, scheduling) is plain safe
//! Rust over this trait, so it runs unchanged in host unit tests against a
//! fake machine (`kerncore::testing::FakeMachine`) and on QEMU against
//! the real one (`arch::machine`), where physical memory is reached through
//! the kernel's linear map.

/// What the kernel's logic needs from the hardware.
pub trait Machine {
    /// Reads the 64-bit word at physical address `paddr` (8-byte aligned, in RAM).
    fn read_word(&self, paddr: u64) -> u64;
    /// Writes the 64-bit word at `paddr` (8-byte aligned, in RAM).
    fn write_word(&mut self, paddr: u64, value: u64);
    /// Fills `len` bytes of RAM from `paddr` (both page-aligned) with zeros.
    fn zero(&mut self, paddr: u64, len: u64);
    /// Copies bytes of RAM from `paddr` into `out`.
    fn read_bytes(&self, paddr: u64, out: &mut [u8]);
    /// Copies `data` into RAM at `paddr`.
    fn write_bytes(&mut self, paddr: u64, data: &[u8]);
    /// Makes a new translation-table entry visible to the table walker.
    fn table_write_barrier(&mut self) {}
    /// Invalidates the TLB entries of one page of an address space.
    fn tlb_flush_page(&mut self, asid: u16, vaddr: u64);
    /// Invalidates every TLB entry of an address space.
    fn tlb_flush_asid(&mut self, asid: u16);
    /// Enables (unmasks) or disables (masks) an interrupt at the interrupt controller.
    fn irq_set_enabled(&mut self, irq: u32, enabled: bool);
    /// Writes bytes on the kernel console.
    fn console_write(&mut self, bytes: &[u8]);
    /// Stops the system with an exit status (QEMU exits with it). On the
    /// host the fake machine records the status and returns.
    fn halt(&mut self, status: u32);
}
