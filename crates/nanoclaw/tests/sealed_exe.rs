//! The runtime binary is never writable through `/proc/<pid>/exe` of a process that enters a
//! container (CVE-2019-5736): as root the runtime re-executes from a detached read-only clone
//! of its binary, rootless from a sealed memfd copy. `escapes.rs` attacks this from inside a
//! container; these tests look at both images directly and at which one a created container's
//! init really runs from.

mod common;

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd};

use claw_testsupport::bundle::{mounts_under, require_user, user_ids, Bundle, Runtime};
use common::*;
use nanoclaw::security::sealed_exe::{ReadOnlyClone, SealedCopy};
use serde_json::{json, Value};

fn fd_path(fd: &impl AsFd) -> String {
    format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd())
}

fn read_all(path: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .unwrap_or_else(|e| panic!("read {path}: {e}"));
    bytes
}

fn seals_of(path: &str) -> i32 {
    let f = std::fs::File::open(path).expect("open image");
    // SAFETY: F_GET_SEALS reads the seals of an fd we own; no pointers.
    unsafe { libc::fcntl(f.as_raw_fd(), libc::F_GET_SEALS) }
}

const ALL_WRITE_SEALS: i32 =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

#[test]
fn read_only_clone_has_the_binary_and_refuses_writes() {
    if !root("read_only_clone_has_the_binary_and_refuses_writes") {
        return;
    }
    // A copy nobody executes: on the running binary a write fails with ETXTBSY first, which
    // would hide what the clone itself does once the runtime has exited.
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("nanoclaw");
    std::fs::copy(NANOCLAW, &copy).expect("copy");
    let c_path = std::ffi::CString::new(copy.as_os_str().as_encoded_bytes()).expect("path");
    let clone = ReadOnlyClone::of(&c_path).expect("clone");
    let path = fd_path(&clone);
    assert_eq!(read_all(&path), read_all(NANOCLAW));
    let err = OpenOptions::new()
        .write(true)
        .open(&path)
        .expect_err("the clone must not open for writing");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    // The file itself stays writable on the host: only the clone is read-only.
    OpenOptions::new()
        .write(true)
        .open(&copy)
        .expect("the original is still writable");
    assert!(
        mounts_under(dir.path()).is_empty(),
        "the clone is never attached"
    );
}

#[test]
fn sealed_copy_has_the_binary_and_refuses_every_change() {
    let copy = SealedCopy::of_self().expect("sealed copy");
    let path = fd_path(&copy);
    assert_eq!(read_all(&path), read_all("/proc/self/exe"));
    assert_eq!(seals_of(&path) & ALL_WRITE_SEALS, ALL_WRITE_SEALS);
    // The memfd itself is read-write: the seals, not the open mode, refuse the changes.
    let mut f = OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("reopen the memfd for writing");
    let err = f.write_all(b"pwned").expect_err("sealed write");
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    let err = f.set_len(1).expect_err("sealed shrink");
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
}

#[test]
fn root_init_runs_from_a_read_only_clone() {
    if !root("root_init_runs_from_a_read_only_clone") {
        return;
    }
    let runtime = Runtime::new(NANOCLAW).expect("runtime");
    let bundle = Bundle::busybox().expect("bundle");
    bundle.write_config(&sh("true")).expect("config");
    let exe = format!(
        "/proc/{}/exe",
        create_waiting(&runtime, &bundle, "ro-clone")
    );
    let image = read_all(&exe);
    let read_only = std::fs::File::open(&exe)
        .and_then(|f| Ok(nix::sys::statvfs::fstatvfs(&f)?))
        .map(|st| st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    delete_leaving_nothing(&runtime, "ro-clone");
    assert_eq!(
        image,
        read_all(NANOCLAW),
        "the init runs the runtime's image"
    );
    // The runtime binary sits on a writable filesystem; the init's image is a read-only mount
    // of it, so once the init is gone (no ETXTBSY any more) a write through the handle fails
    // with EROFS (escapes.rs does exactly that from inside a container).
    assert_eq!(
        read_only.ok(),
        Some(true),
        "{exe} is not on a read-only mount"
    );
    let st = nix::sys::statvfs::statvfs(NANOCLAW).expect("statvfs");
    assert!(!st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
}

#[test]
fn rootless_init_runs_from_a_sealed_copy() {
    let test = "rootless_init_runs_from_a_sealed_copy";
    if !root(test) || !require_user(test, "clawtest") {
        return;
    }
    let (uid, gid) = user_ids("clawtest").expect("clawtest ids");
    let runtime = Runtime::as_user(NANOCLAW, uid, gid).expect("runtime as clawtest");
    let bundle = Bundle::busybox().expect("bundle");
    bundle.chown_recursive(uid, gid).expect("chown bundle");
    let out = runtime
        .command(["spec", "--rootless", "--bundle"])
        .arg(bundle.path())
        .output()
        .expect("spec");
    assert!(out.status.success());
    let mut spec: Value =
        serde_json::from_slice(&std::fs::read(bundle.path().join("config.json")).expect("read"))
            .expect("spec json");
    spec["process"]["args"] = json!(["true"]);
    bundle.write_config(&spec).expect("config");
    std::os::unix::fs::chown(bundle.path().join("config.json"), Some(uid), Some(gid))
        .expect("chown config");
    let exe = format!(
        "/proc/{}/exe",
        create_waiting(&runtime, &bundle, "sealed-copy")
    );
    let image = read_all(&exe);
    let seals = seals_of(&exe);
    delete_leaving_nothing(&runtime, "sealed-copy");
    assert_eq!(
        image,
        read_all(NANOCLAW),
        "the init runs the runtime's image"
    );
    assert_eq!(seals & ALL_WRITE_SEALS, ALL_WRITE_SEALS, "seals {seals:#x}");
}

/// What a container process with CAP_SYS_ADMIN would try through `/proc/<pid>/exe`: clearing
/// the read-only flag of the clone. Once the runtime's own fd of the clone is closed (execve
/// closes it), the clone belongs to no mount namespace and the kernel refuses, even to root.
#[test]
fn a_closed_clone_cannot_be_made_writable_again() {
    if !root("a_closed_clone_cannot_be_made_writable_again") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("nanoclaw");
    std::fs::copy(NANOCLAW, &copy).expect("copy");
    let c_path = std::ffi::CString::new(copy.as_os_str().as_encoded_bytes()).expect("path");
    let clone = ReadOnlyClone::of(&c_path).expect("clone");
    // A second handle on the same file, as /proc/<pid>/exe gives one.
    let handle = std::fs::File::open(fd_path(&clone)).expect("reopen");
    drop(clone);
    let attr = libc::mount_attr {
        attr_set: 0,
        attr_clr: libc::MOUNT_ATTR_RDONLY,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads size_of::<mount_attr>() bytes from `&attr`, which outlives
    // the call; the path is an empty C string used with AT_EMPTY_PATH on our fd.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            handle.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    let err = std::io::Error::last_os_error();
    assert_eq!(rc, -1, "root cleared the clone's read-only flag");
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err}");
    let err = OpenOptions::new()
        .write(true)
        .open(format!("/proc/self/fd/{}", handle.as_raw_fd()))
        .expect_err("still read-only");
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
}
