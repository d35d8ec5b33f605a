//! Runs a boot image in QEMU `virt` with a time limit and captures its console.
//!
//! The guest ends the run through semihosting `SYS_EXIT`, so QEMU's exit
//! status is the guest's verdict. With `icount` QEMU runs with
//! `-icount shift=0`: one nanosecond of guest time per instruction, which makes
//! both the schedule and the instruction counts read from the guest's counter
//! deterministic.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::Result;

/// How to boot one image.
#[derive(Clone, Debug)]
pub struct Config {
    /// The ELF image QEMU loads with `-kernel`.
    pub kernel: PathBuf,
    /// `-cpu` model.
    pub cpu: String,
    /// `-m` size, e.g. `1G`.
    pub memory: String,
    /// The kernel command line (`-append`), seen by the guest in `/chosen/bootargs`.
    pub append: String,
    /// Count instructions deterministically (`-icount shift=0`).
    pub icount: bool,
    /// Kill QEMU after this long.
    pub timeout: Duration,
    /// Copy the console to our stdout as it arrives.
    pub echo: bool,
    /// Give QEMU our stdin (for a person at the console).
    pub interactive: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            kernel: PathBuf::new(),
            cpu: "cortex-a53".into(),
            memory: "1G".into(),
            append: String::new(),
            icount: false,
            timeout: Duration::from_secs(120),
            echo: false,
            interactive: false,
        }
    }
}

/// What a QEMU run produced.
#[derive(Debug)]
pub struct Outcome {
    /// QEMU's exit status; `None` when it was killed at the time limit.
    pub status: Option<i32>,
    /// The guest console (the PL011), with `\r` removed.
    pub console: String,
    /// What QEMU itself printed on stderr.
    pub stderr: String,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
}

/// The QEMU command line for `config`.
pub fn command(config: &Config) -> Command {
    let mut command = Command::new("qemu-system-aarch64");
    command
        .args([
            "-machine",
            "virt",
            "-cpu",
            &config.cpu,
            "-m",
            &config.memory,
        ])
        .args([
            "-nographic",
            "-nic",
            "none",
            "-monitor",
            "none",
            "-serial",
            "stdio",
        ])
        .args(["-semihosting-config", "enable=on,target=native"])
        .arg("-kernel")
        .arg(&config.kernel);
    if !config.append.is_empty() {
        command.args(["-append", &config.append]);
    }
    if config.icount {
        command.args(["-icount", "shift=0"]);
    }
    command
}

/// Boots `config.kernel` and waits for QEMU to exit or the time limit.
pub fn run(config: &Config) -> Result<Outcome> {
    let started = Instant::now();
    let mut child = command(config)
        .stdin(if config.interactive {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start qemu-system-aarch64 (run tools/setup.sh): {e}"))?;

    let stdout = child.stdout.take().expect("stdout is piped");
    let echo = config.echo;
    let reader = std::thread::spawn(move || {
        let mut console = String::new();
        let mut lines = BufReader::new(stdout);
        let mut line = Vec::new();
        while lines.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
            let text = String::from_utf8_lossy(&line).replace('\r', "");
            if echo {
                print!("{text}");
                let _ = std::io::stdout().flush();
            }
            console.push_str(&text);
            line.clear();
        }
        console
    });
    let mut stderr_pipe = child.stderr.take().expect("stderr is piped");
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });

    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.code(),
            Ok(None) if started.elapsed() >= config.timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for QEMU: {e}")),
        }
    };
    let console = reader.join().unwrap_or_default();
    let stderr = stderr_reader.join().unwrap_or_default();
    Ok(Outcome {
        status,
        console,
        stderr,
        elapsed: started.elapsed(),
    })
}
