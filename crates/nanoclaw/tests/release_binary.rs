//! The binary as shipped (`scripts/build-nanoclaw`: static-pie, libseccomp linked in) runs
//! containers like the dynamic debug binary the other tests use. `scripts/test` builds it and
//! passes its path in `NANOCLAW_RELEASE_BIN`; without that variable the test skips loudly.

mod common;

use claw_testsupport::bundle::{Bundle, Runtime};
use common::*;
use serde_json::json;

fn release_bin(test: &str) -> Option<String> {
    if !root(test) {
        return None;
    }
    match std::env::var("NANOCLAW_RELEASE_BIN") {
        Ok(bin) => Some(bin),
        Err(_) => {
            claw_testsupport::skip(test, "NANOCLAW_RELEASE_BIN not set (scripts/test sets it)");
            None
        }
    }
}

/// ELF program headers of `bin`: (has PT_INTERP, ELF type is ET_DYN).
fn elf_shape(bin: &str) -> (bool, bool) {
    let bytes = std::fs::read(bin).expect("read binary");
    let get = |off: usize, len: usize| -> u64 {
        let b = bytes.get(off..off + len).expect("truncated ELF");
        b.iter()
            .rev()
            .fold(0u64, |acc, x| (acc << 8) | u64::from(*x))
    };
    assert_eq!(bytes.get(..4), Some(&b"\x7fELF"[..]));
    let e_type = get(16, 2);
    let phoff = get(32, 8) as usize;
    let phentsize = get(54, 2) as usize;
    let phnum = get(56, 2) as usize;
    let interp = (0..phnum).any(|i| get(phoff + i * phentsize, 4) == 3 /* PT_INTERP */);
    (interp, e_type == 3 /* ET_DYN */)
}

#[test]
fn shipped_static_binary_runs_a_container_from_a_read_only_image() {
    let test = "shipped_static_binary_runs_a_container_from_a_read_only_image";
    let Some(bin) = release_bin(test) else {
        return;
    };
    assert_eq!(elf_shape(&bin), (false, true), "{bin}: not static-pie");

    let runtime = Runtime::new(&bin).expect("runtime");
    let bundle = Bundle::busybox().expect("bundle");
    let mut spec = sh("echo $$; hostname; id -u");
    spec["hostname"] = json!("shipped");
    spec["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    bundle.write_config(&spec).expect("config");
    let out = runtime.run(bundle.path(), "shipped").expect("run");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1\nshipped\n1000\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());

    // The seccomp profile (libseccomp linked in) still refuses what it should.
    let mut spec = sh("mkdir /tmp/refused 2>&1; echo mkdir=$?");
    spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 18}]
    });
    bundle.write_config(&spec).expect("config");
    let out = runtime.run(bundle.path(), "shipped").expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Invalid cross-device link"), "{stdout}");
    assert!(stdout.ends_with("mkdir=1\n"), "{stdout}");

    // `create` leaves the init as the runtime's image: a read-only clone of this binary.
    bundle.write_config(&sh("true")).expect("config");
    let exe = format!("/proc/{}/exe", create_waiting(&runtime, &bundle, "shipped"));
    let read_only = std::fs::File::open(&exe)
        .and_then(|f| Ok(nix::sys::statvfs::fstatvfs(&f)?))
        .map(|st| st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    let image = std::fs::read(&exe).expect("read image");
    delete_leaving_nothing(&runtime, "shipped");
    assert_eq!(read_only.ok(), Some(true));
    assert!(image == std::fs::read(&bin).expect("read binary"));
}
