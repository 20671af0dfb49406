//! 200 launches in a row leave no file descriptor, thread or memory growth in the host
//! process. Its own test binary, so no other test's launches run concurrently.

mod common;

use common::{example_bytes, launch};
use ironclaw::LaunchConfig;

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn two_hundred_launches_leak_no_fd_thread_or_memory() {
    if !claw_testsupport::require_kvm("two_hundred_launches_leak_no_fd_thread_or_memory") {
        return;
    }
    let hello = example_bytes("hello.wasm");
    let trap = example_bytes("trap.wasm");
    let config = LaunchConfig::default();
    // Warm up: the process-wide /dev/kvm fd, the CPUID cache, allocator arenas.
    for _ in 0..10 {
        assert!(launch(&hello, &["h"], b"", &config).result.is_ok());
    }
    let (fd0, th0, rss0) = (fds(), threads(), rss_kib());
    for i in 0..200 {
        // Mix successful and failing runs: both paths must tear everything down.
        if i % 4 == 3 {
            assert!(launch(&trap, &["t"], b"", &config).result.is_err());
        } else {
            let ran = launch(&hello, &["h"], b"", &config);
            assert_eq!(ran.result.unwrap().exit_code, 0);
        }
    }
    let (fd1, th1, rss1) = (fds(), threads(), rss_kib());
    assert_eq!(
        fd1, fd0,
        "file descriptors: {fd0} before, {fd1} after 200 launches"
    );
    assert_eq!(th1, th0, "threads: {th0} before, {th1} after 200 launches");
    // Each launch maps 64 MiB of guest RAM: a leaked mapping would add at least the pages
    // the guest touched (several MiB) per launch. Allow 8 MiB of allocator noise in total.
    assert!(
        rss1 <= rss0 + 8 * 1024,
        "VmRSS grew from {rss0} KiB to {rss1} KiB over 200 launches"
    );
}
