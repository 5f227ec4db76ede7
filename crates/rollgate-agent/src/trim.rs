//! Gives back the memory of code the agent ran once at start-up.
//!
//! The agent shares one `rollgate` binary with the server and the CLI. The kernel maps the
//! pages of a program lazily, but maps up to sixteen neighbouring pages at each fault
//! ("fault-around"), so start-up (argument parsing, enrollment, TLS set-up) leaves some 8 MiB of
//! the binary resident in the agent — mostly server and CLI code that merely sits next to what
//! ran. An idle agent then polls with a small fraction of it.
//!
//! After start-up the agent drops its page-table entries for the binary's read-only mappings
//! (`madvise(MADV_DONTNEED)`); the pages stay in the page cache, and whatever the agent runs
//! afterwards is mapped again on first use. Only mappings that hold nothing but the file's own
//! bytes are touched: read-only or executable, private, file-backed, and without a single
//! anonymous (copy-on-write) page, so no relocated or written data can be lost. Writable
//! mappings and relocated read-only data (RELRO) are never touched.

/// Bytes of mappings released by [`release_startup_pages`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Mappings released.
    pub mappings: usize,
    /// Resident bytes they held before.
    pub resident_bytes: u64,
}

/// One mapping of `/proc/self/smaps`, as far as this module cares.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Mapping {
    start: usize,
    end: usize,
    perms: String,
    path: String,
    rss_kib: u64,
    /// Copy-on-write copies of the file's pages (relocations, writes) that are resident.
    /// `Private_Dirty` is no guide: it also counts page-cache pages not yet written back (a
    /// freshly built binary).
    anonymous_kib: u64,
    /// Copy-on-write copies that were swapped out (`Anonymous` does not count them).
    swap_kib: u64,
}

/// A count smaps did not state (or that did not parse): never taken for zero.
const UNKNOWN: u64 = u64::MAX;

/// Parses `/proc/self/smaps` text.
fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some((start, end)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) = (usize::from_str_radix(start, 16), usize::from_str_radix(end, 16)) {
                let perms = fields.next().unwrap_or_default().to_string();
                // offset, device, inode, then the path (which may contain spaces).
                let path = fields.skip(3).collect::<Vec<_>>().join(" ");
                out.push(Mapping {
                    start,
                    end,
                    perms,
                    path,
                    rss_kib: UNKNOWN,
                    anonymous_kib: UNKNOWN,
                    swap_kib: UNKNOWN,
                });
                continue;
            }
        }
        let Some(current) = out.last_mut() else { continue };
        let value = || fields.clone().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(u64::MAX);
        match first {
            "Rss:" => current.rss_kib = value(),
            "Anonymous:" => current.anonymous_kib = value(),
            "Swap:" => current.swap_kib = value(),
            _ => {}
        }
    }
    out
}

/// Whether `m` is a mapping of the program file `exe` that holds only the file's bytes: no
/// copy-on-write page, resident or swapped out (MADV_DONTNEED would discard a swapped-out
/// relocated page and bring back the file's unrelocated bytes), each count stated by smaps.
fn is_pristine_code_or_rodata(m: &Mapping, exe: &str) -> bool {
    m.path == exe
        && (m.perms == "r-xp" || m.perms == "r--p")
        && m.anonymous_kib == 0
        && m.swap_kib == 0
        && m.rss_kib > 0
        && m.rss_kib != UNKNOWN
}

/// Does nothing: the release is Linux only.
#[cfg(not(target_os = "linux"))]
pub fn release_startup_pages() -> std::io::Result<Released> {
    Ok(Released::default())
}

/// Drops this process's page-table entries for the pristine read-only mappings of its own
/// program file (see the module documentation).
#[allow(unsafe_code)]
#[cfg(target_os = "linux")]
pub fn release_startup_pages() -> std::io::Result<Released> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let exe = exe.to_string_lossy();
    let smaps = std::fs::read_to_string("/proc/self/smaps")?;
    let mut released = Released::default();
    for m in parse_smaps(&smaps).iter().filter(|m| is_pristine_code_or_rodata(m, &exe)) {
        // SAFETY: the range is a whole mapping of this process, private and backed by the
        // program file, with no copy-on-write page, resident or swapped (smaps says so for
        // each), so every page holds the file's bytes; MADV_DONTNEED on such a mapping only
        // drops page-table entries, and the next access maps the page from the file again,
        // exactly as after the kernel reclaimed a clean file page, which it may do at any time.
        unsafe {
            rustix::mm::madvise(m.start as *mut _, m.end - m.start, rustix::mm::Advice::LinuxDontNeed)?;
        }
        released.mappings += 1;
        released.resident_bytes = released.resident_bytes.saturating_add(m.rss_kib.saturating_mul(1024));
    }
    Ok(released)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
55d0c0a00000-55d0c0b00000 r--p 00000000 fd:01 1234 /usr/bin/rollgate agent
Size:               1024 kB
Rss:                 512 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
Swap:                  0 kB
55d0c0b00000-55d0c0c00000 r-xp 00100000 fd:01 1234 /usr/bin/rollgate agent
Rss:                 900 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
Swap:                  0 kB
55d0c0c00000-55d0c0c10000 r--p 00200000 fd:01 1234 /usr/bin/rollgate agent
Rss:                  64 kB
Private_Dirty:        64 kB
Anonymous:            64 kB
55d0c0c10000-55d0c0c20000 rw-p 00210000 fd:01 1234 /usr/bin/rollgate agent
Rss:                  32 kB
Private_Dirty:        32 kB
Anonymous:            32 kB
7f0000000000-7f0000100000 r-xp 00000000 fd:01 99 /usr/lib/libc.so.6
Rss:                 800 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
Swap:                  0 kB
55d0c0d00000-55d0c0d10000 r--p 00300000 fd:01 1234 /usr/bin/rollgate agent
Rss:                  64 kB
Anonymous:             0 kB
Swap:                  8 kB
55d0c0e00000-55d0c0e10000 r-xp 00400000 fd:01 1234 /usr/bin/rollgate agent
Rss:                  64 kB
Swap:                  0 kB
";

    #[test]
    fn only_pristine_read_only_mappings_of_the_program_are_chosen() {
        let maps = parse_smaps(SAMPLE);
        assert_eq!(maps.len(), 7);
        assert_eq!(maps[0].path, "/usr/bin/rollgate agent", "paths with spaces survive");
        let chosen: Vec<&str> = maps
            .iter()
            .filter(|m| is_pristine_code_or_rodata(m, "/usr/bin/rollgate agent"))
            .map(|m| m.perms.as_str())
            .collect();
        // Not the relocated read-only data (it has anonymous pages), not the writable data, not
        // another file, not a mapping with swapped-out copies, not one whose `Anonymous` count
        // smaps did not state.
        assert_eq!(chosen, ["r--p", "r-xp"]);
    }

    #[test]
    fn a_mapping_with_an_unreadable_count_is_left_alone() {
        let text = "55d0c0a00000-55d0c0b00000 r-xp 00000000 fd:01 1234 /x\nRss: 4 kB\nAnonymous: ? kB\n";
        let maps = parse_smaps(text);
        assert!(!is_pristine_code_or_rodata(&maps[0], "/x"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn released_code_runs_again_and_memory_goes_down() {
        fn rss_file_kib() -> u64 {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            status
                .lines()
                .find_map(|l| l.strip_prefix("RssFile:")?.trim().strip_suffix("kB")?.trim().parse().ok())
                .unwrap()
        }
        let before = rss_file_kib();
        let released = release_startup_pages().unwrap();
        assert!(released.mappings >= 1, "{released:?}");
        assert!(released.resident_bytes > 0);
        assert!(rss_file_kib() < before, "resident file pages went down");
        // Code and constant data of the program still work after the release.
        let text = format!("{:?}", parse_smaps(SAMPLE).len());
        assert_eq!(text, "7");
        let mut sum = 0u64;
        for (i, b) in SAMPLE.bytes().enumerate() {
            sum = sum.wrapping_add(u64::from(b) * i as u64);
        }
        assert!(sum > 0);
    }
}
