//! Readers for a server process's `/proc` counters: bytes written, CPU time, memory.
//!
//! Bytes written per request is Bramble's headline metric (SD cards wear out),
//! and `/proc/PID/io` measures it for any server, etcd included, without
//! instrumenting it. The parsers take the file's text so tests can feed them
//! samples; the `read_*` functions only add the file access.

use std::collections::HashMap;

use anyhow::{anyhow, Context, Result};

/// `/proc/PID/io`: I/O counters summed over all of a process's threads
/// (live and exited).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct IoCounters {
    /// Bytes passed to read-like syscalls (page cache hits included).
    pub(crate) rchar: u64,
    /// Bytes passed to write-like syscalls, whether or not they reach a disk.
    pub(crate) wchar: u64,
    /// Bytes the process caused to be read from storage.
    pub(crate) read_bytes: u64,
    /// Bytes the process caused to be sent to storage, counted when a page is
    /// dirtied. Writes to tmpfs are not counted, and neither are the
    /// filesystem's own journal writes (ext4's jbd2 thread does those).
    pub(crate) write_bytes: u64,
    /// Dirty page-cache bytes that were truncated before being written back:
    /// counted in `write_bytes` but never reached the disk.
    pub(crate) cancelled_write_bytes: u64,
    /// Write-like syscalls made.
    pub(crate) syscw: u64,
}

impl IoCounters {
    /// Counters accumulated from `before` to `self` (saturating, so a PID
    /// that was reused by another process reads as zero, not as garbage).
    pub(crate) fn since(&self, before: &IoCounters) -> IoCounters {
        IoCounters {
            rchar: self.rchar.saturating_sub(before.rchar),
            wchar: self.wchar.saturating_sub(before.wchar),
            read_bytes: self.read_bytes.saturating_sub(before.read_bytes),
            write_bytes: self.write_bytes.saturating_sub(before.write_bytes),
            cancelled_write_bytes: self
                .cancelled_write_bytes
                .saturating_sub(before.cancelled_write_bytes),
            syscw: self.syscw.saturating_sub(before.syscw),
        }
    }
}

/// Parses the text of `/proc/PID/io` (`name: value` lines).
pub(crate) fn parse_io(text: &str) -> Result<IoCounters> {
    let fields = colon_fields(text);
    let get = |name: &str| -> Result<u64> {
        let v = fields
            .get(name)
            .ok_or_else(|| anyhow!("no {name:?} line in /proc/PID/io"))?;
        v.parse::<u64>()
            .with_context(|| format!("bad {name:?} value {v:?} in /proc/PID/io"))
    };
    Ok(IoCounters {
        rchar: get("rchar")?,
        wchar: get("wchar")?,
        read_bytes: get("read_bytes")?,
        write_bytes: get("write_bytes")?,
        cancelled_write_bytes: get("cancelled_write_bytes")?,
        syscw: get("syscw")?,
    })
}

/// Memory use from `/proc/PID/status`, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Memory {
    /// Resident set size now (`VmRSS`).
    pub(crate) rss_kib: u64,
    /// Peak resident set size over the process's life (`VmHWM`).
    pub(crate) peak_rss_kib: u64,
}

/// Parses the text of `/proc/PID/status` for `VmRSS` and `VmHWM`
/// (lines such as `VmRSS:\t   12345 kB`).
pub(crate) fn parse_status(text: &str) -> Result<Memory> {
    let fields = colon_fields(text);
    let kib = |name: &str| -> Result<u64> {
        let v = fields
            .get(name)
            .ok_or_else(|| anyhow!("no {name} line in /proc/PID/status"))?;
        let num = v.strip_suffix("kB").unwrap_or(v).trim();
        num.parse::<u64>()
            .with_context(|| format!("bad {name} value {v:?} in /proc/PID/status"))
    };
    Ok(Memory {
        rss_kib: kib("VmRSS")?,
        peak_rss_kib: kib("VmHWM")?,
    })
}

/// CPU time a process has used, in clock ticks (`/proc/PID/stat`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CpuTicks {
    /// Time in user mode.
    pub(crate) user: u64,
    /// Time in the kernel on the process's behalf (syscalls, fsync, ...).
    pub(crate) system: u64,
}

impl CpuTicks {
    /// Ticks used from `before` to `self`.
    pub(crate) fn since(&self, before: &CpuTicks) -> CpuTicks {
        CpuTicks {
            user: self.user.saturating_sub(before.user),
            system: self.system.saturating_sub(before.system),
        }
    }
}

/// Parses the text of `/proc/PID/stat` for `utime` and `stime` (fields 14
/// and 15). The command name (field 2) is in parentheses and may itself hold
/// spaces or parentheses, so fields are counted from the *last* `)`.
pub(crate) fn parse_stat(text: &str) -> Result<CpuTicks> {
    let close = text
        .rfind(')')
        .ok_or_else(|| anyhow!("no ')' after the command name in /proc/PID/stat"))?;
    // After ") " come field 3 (state) onwards, so field N is at index N - 3.
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        let v = rest
            .get(n - 3)
            .ok_or_else(|| anyhow!("/proc/PID/stat has no field {n}"))?;
        v.parse::<u64>()
            .with_context(|| format!("bad field {n} {v:?} in /proc/PID/stat"))
    };
    Ok(CpuTicks {
        user: field(14)?,
        system: field(15)?,
    })
}

/// The `name: value` lines of a `/proc` file, values trimmed.
fn colon_fields(text: &str) -> HashMap<&str, &str> {
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect()
}

/// Kernel clock ticks per second, the unit of `/proc/PID/stat` CPU times.
pub(crate) fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions; it returns -1 for unknown names.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // 100 is what Linux reports on every architecture we run on; use it if
    // sysconf fails rather than refusing to report CPU time.
    u64::try_from(t).ok().filter(|&t| t > 0).unwrap_or(100)
}

/// One reading of a process's counters, taken before and after a run.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sample {
    /// I/O counters.
    pub(crate) io: IoCounters,
    /// CPU time.
    pub(crate) cpu: CpuTicks,
}

/// Reads a `/proc/PID/...` file.
fn read(pid: u32, file: &str) -> Result<String> {
    let path = format!("/proc/{pid}/{file}");
    std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))
}

/// Reads the I/O and CPU counters of process `pid`.
pub(crate) fn sample(pid: u32) -> Result<Sample> {
    Ok(Sample {
        io: parse_io(&read(pid, "io")?)?,
        cpu: parse_stat(&read(pid, "stat")?)?,
    })
}

/// Reads the memory use of process `pid`.
pub(crate) fn memory(pid: u32) -> Result<Memory> {
    parse_status(&read(pid, "status")?)
}

/// The command name of process `pid` (`/proc/PID/comm`), to show in reports
/// which process was measured (the server, not a wrapper like strace).
pub(crate) fn name(pid: u32) -> Result<String> {
    Ok(read(pid, "comm")?.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const IO: &str = "rchar: 323934931\nwchar: 323929600\nsyscr: 632687\nsyscw: 632675\n\
                      read_bytes: 4096\nwrite_bytes: 323932160\ncancelled_write_bytes: 8192\n";

    #[test]
    fn io_parses_every_counter() {
        let io = parse_io(IO).expect("valid");
        assert_eq!(
            io,
            IoCounters {
                rchar: 323_934_931,
                wchar: 323_929_600,
                read_bytes: 4096,
                write_bytes: 323_932_160,
                cancelled_write_bytes: 8192,
                syscw: 632_675,
            }
        );
    }

    #[test]
    fn io_missing_or_bad_fields_are_errors() {
        let missing = IO.replace("write_bytes: 323932160\n", "");
        let err = parse_io(&missing).expect_err("missing write_bytes");
        assert!(err.to_string().contains("write_bytes"), "{err}");
        let bad = IO.replace("wchar: 323929600", "wchar: lots");
        assert!(parse_io(&bad).is_err());
        assert!(parse_io("").is_err());
    }

    #[test]
    fn io_delta_saturates() {
        let before = parse_io(IO).expect("valid");
        let mut after = before;
        after.write_bytes += 1000;
        after.wchar += 300;
        let d = after.since(&before);
        assert_eq!((d.write_bytes, d.wchar, d.rchar), (1000, 300, 0));
        assert_eq!(before.since(&after).write_bytes, 0);
    }

    #[test]
    fn status_parses_rss_and_peak() {
        let text = "Name:\tetcd\nUmask:\t0022\nState:\tS (sleeping)\nVmPeak:\t 11610188 kB\n\
                    VmSize:\t 11610188 kB\nVmHWM:\t   54320 kB\nVmRSS:\t   48212 kB\n\
                    RssAnon:\t   20000 kB\nThreads:\t12\n";
        let m = parse_status(text).expect("valid");
        assert_eq!(
            m,
            Memory {
                rss_kib: 48_212,
                peak_rss_kib: 54_320
            }
        );
        // A kernel thread or zombie has no VmRSS line.
        assert!(parse_status("Name:\tkworker/0:1\nState:\tI (idle)\n").is_err());
    }

    #[test]
    fn stat_counts_fields_after_the_last_paren() {
        let text = "4242 (bramble) S 1 4242 4242 0 -1 4194560 1500 0 3 0 \
                    250 75 0 0 20 0 9 0 123456 1234567 890 18446744073709551615\n";
        assert_eq!(
            parse_stat(text).expect("valid"),
            CpuTicks {
                user: 250,
                system: 75
            }
        );
        // A command name with spaces and parentheses does not shift fields.
        let tricky = text.replace("(bramble)", "(a) b (c))");
        assert_eq!(parse_stat(&tricky).expect("valid").user, 250);
        assert!(parse_stat("4242 (x) S 1 2").is_err());
        assert!(parse_stat("no paren").is_err());
    }

    #[test]
    fn reads_own_process() {
        // /proc/self is always readable by the process itself.
        let pid = std::process::id();
        let s = sample(pid).expect("own /proc counters");
        let later = sample(pid).expect("own /proc counters");
        assert!(later.io.rchar >= s.io.rchar);
        assert!(memory(pid).expect("own status").rss_kib > 0);
        assert!(!name(pid).expect("own comm").is_empty());
        assert!(clock_ticks_per_sec() > 0);
    }
}
