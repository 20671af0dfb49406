//! The binary as shipped (`scripts/build-nanoclaw`: static-pie, libseccomp linked in) runs
//! containers like the dynamic debug binary the other tests use. `scripts/test` builds it first
//! and passes its path in `NANOCLAW_RELEASE_BIN`; without that variable the test runs
//! `scripts/build-nanoclaw` itself (cargo rebuilds only what changed), so a plain
//! `cargo test -p nanoclaw` tests the shipped build too. A build that fails is a skip outside
//! CI and a failure under CI (`claw_testsupport::SkipPolicy`), never a silent pass.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use claw_testsupport::bundle::{Bundle, Runtime};
use common::*;
use serde_json::json;

/// `NANOCLAW_RELEASE_BIN`, or the path `scripts/build-nanoclaw` prints after building it; the
/// error says why neither gave a binary.
fn locate_or_build() -> Result<String, String> {
    if let Some(bin) = std::env::var_os("NANOCLAW_RELEASE_BIN").filter(|b| !b.is_empty()) {
        let bin = bin.to_string_lossy().into_owned();
        return if Path::new(&bin).is_file() {
            Ok(bin)
        } else {
            Err(format!("NANOCLAW_RELEASE_BIN={bin} is not a file"))
        };
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-nanoclaw");
    let out = Command::new(&script)
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let bin = stdout.trim();
    if !out.status.success() || bin.is_empty() {
        return Err(format!(
            "{} failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(bin.to_owned())
}

fn release_bin(test: &str) -> Option<String> {
    if !root(test) {
        return None;
    }
    // One build per test binary, however many tests ask.
    static BIN: OnceLock<Result<String, String>> = OnceLock::new();
    match BIN.get_or_init(locate_or_build) {
        Ok(bin) => Some(bin.clone()),
        Err(why) => {
            claw_testsupport::skip(test, &format!("needs the static-pie build: {why}"));
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
