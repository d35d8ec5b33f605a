//! The console: text output for people, and the `print!`/`println!` macros.
//!
//! In QEMU the text goes to the kernel console (DebugPutString); in the
//! simulator to the simulated console, which the harness captures per
//! process (`sim::Sim::console_of`).

use core::fmt;

/// Writes text on the console.
pub fn write_str(text: &str) {
    crate::backend::console_write(text)
}

/// The console as a `core::fmt::Write` sink: text is gathered in a
/// 256-byte buffer and written in as few console writes as it takes.
pub struct Console {
    buf: [u8; 256],
    len: usize,
}

impl Console {
    /// An empty console buffer.
    pub const fn new() -> Console {
        Console {
            buf: [0; 256],
            len: 0,
        }
    }

    /// Writes out what is gathered.
    pub fn flush(&mut self) {
        if self.len > 0 {
            let mut end = self.len;
            // Never split a character: keep an incomplete tail for later.
            while core::str::from_utf8(&self.buf[..end]).is_err() && end > 0 {
                end -= 1;
            }
            if let Ok(text) = core::str::from_utf8(&self.buf[..end]) {
                write_str(text);
            }
            self.buf.copy_within(end..self.len, 0);
            self.len -= end;
        }
    }
}

impl Default for Console {
    fn default() -> Self {
        Console::new()
    }
}

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if self.len == self.buf.len() {
                self.flush();
                if self.len == self.buf.len() {
                    self.len = 0; // not UTF-8 at all: cannot happen with &str input
                }
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}

/// Formats onto the console (used by the macros), with a newline if asked,
/// in one console write when the text fits 256 bytes.
pub fn print_fmt(args: fmt::Arguments<'_>, newline: bool) {
    let mut c = Console::new();
    let _ = fmt::Write::write_fmt(&mut c, args);
    if newline {
        let _ = fmt::Write::write_str(&mut c, "\n");
    }
    c.flush();
}

/// Prints to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {
        $crate::console::print_fmt(core::format_args!($($arg)*), false)
    };
}

/// Prints to the console, with a newline.
#[macro_export]
macro_rules! println {
    () => {
        $crate::console::write_str("\n")
    };
    ($($arg:tt)*) => {
        $crate::console::print_fmt(core::format_args!($($arg)*), true)
    };
}
