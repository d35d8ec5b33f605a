//! The kernel console: the PL011 UART named by the device tree.
//!
//! [`Pl011`] implements `embedded_io::Write`, `embedded_hal_nb::serial::Write`
//! and `core::fmt::Write`; the [`kprintln!`](crate::kprintln) macro prints
//! through the one global console once [`init`] has given it the UART's
//! (mapped) address.

use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

/// UARTDR: the data register; a write transmits one byte.
const UARTDR: usize = 0x000;
/// UARTFR: the flag register.
const UARTFR: usize = 0x018;
/// `UARTFR.TXFF`: the transmit FIFO is full.
const FR_TXFF: u32 = 1 << 5;

/// A PL011 UART's register block, used for transmission only.
pub struct Pl011 {
    base: usize,
}

impl Pl011 {
    /// A handle on the UART whose registers are mapped at `base`.
    ///
    /// # Safety
    ///
    /// `base` must be the mapped (Device-memory) register block of a PL011,
    /// valid for as long as the handle is used.
    pub const unsafe fn new(base: usize) -> Self {
        Pl011 { base }
    }

    fn tx_full(&self) -> bool {
        // SAFETY: `base` is a mapped PL011 register block (the constructor's
        // contract); UARTFR is a 32-bit register read with a volatile access.
        unsafe { core::ptr::read_volatile((self.base + UARTFR) as *const u32) & FR_TXFF != 0 }
    }

    fn put(&mut self, byte: u8) {
        // SAFETY: as in `tx_full`, for the 32-bit UARTDR.
        unsafe { core::ptr::write_volatile((self.base + UARTDR) as *mut u32, u32::from(byte)) }
    }

    fn write_byte(&mut self, byte: u8) {
        while self.tx_full() {}
        self.put(byte);
    }
}

impl embedded_io::ErrorType for Pl011 {
    type Error = core::convert::Infallible;
}

impl embedded_io::Write for Pl011 {
    fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        for &b in buf {
            self.write_byte(b);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

impl embedded_hal_nb::serial::ErrorType for Pl011 {
    type Error = core::convert::Infallible;
}

impl embedded_hal_nb::serial::Write<u8> for Pl011 {
    fn write(&mut self, word: u8) -> embedded_hal_nb::nb::Result<(), Self::Error> {
        if self.tx_full() {
            return Err(embedded_hal_nb::nb::Error::WouldBlock);
        }
        self.put(word);
        Ok(())
    }

    fn flush(&mut self) -> embedded_hal_nb::nb::Result<(), Self::Error> {
        Ok(())
    }
}

impl fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(b);
        }
        Ok(())
    }
}

/// The console UART's base address; 0 until [`init`].
static CONSOLE_BASE: AtomicUsize = AtomicUsize::new(0);

/// Makes the UART at `base` the kernel console.
///
/// # Safety
///
/// As for [`Pl011::new`], for the rest of the kernel's life.
pub unsafe fn init(base: usize) {
    CONSOLE_BASE.store(base, Ordering::Release);
}

fn console() -> Option<Pl011> {
    let base = CONSOLE_BASE.load(Ordering::Acquire);
    // SAFETY: a non-zero base was stored by `init`, whose contract makes it
    // a valid PL011 register block for the rest of the kernel's life.
    (base != 0).then(|| unsafe { Pl011::new(base) })
}

/// Writes formatted text to the console; does nothing before [`init`].
pub fn print(args: fmt::Arguments<'_>) {
    if let Some(mut uart) = console() {
        let _ = fmt::Write::write_fmt(&mut uart, args);
    }
}

/// Writes raw bytes (a process's DebugPutString), turning `\n` into `\r\n`.
pub fn write_bytes(bytes: &[u8]) {
    if let Some(mut uart) = console() {
        for &b in bytes {
            if b == b'\n' {
                uart.write_byte(b'\r');
            }
            uart.write_byte(b);
        }
    }
}

/// Prints a line on the kernel console.
#[macro_export]
macro_rules! kprintln {
    () => { $crate::console::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}
