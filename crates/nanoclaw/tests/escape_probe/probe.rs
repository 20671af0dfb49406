//! escape-probe: issues, from inside a container, the syscalls busybox cannot, and prints what
//! the kernel answered — `<name>: ok` or `<name>: errno=<n>` — one line per attempt.
//!
//! Built by the escape tests with plain `rustc -C target-feature=+crt-static` (std only, no
//! crates), so the static binary runs in a busybox rootfs. Never run it on the host: a probe
//! that succeeds really does what it says (loads nothing harmful, but e.g. a session keyring is
//! created).

use std::ffi::CString;

extern "C" {
    fn syscall(n: i64, ...) -> i64;
    fn __errno_location() -> *mut i32;
}

// x86_64 syscall numbers.
const SYS_SOCKET: i64 = 41;
const SYS_PTRACE: i64 = 101;
const SYS_MOUNT: i64 = 165;
const SYS_INIT_MODULE: i64 = 175;
const SYS_KEXEC_LOAD: i64 = 246;
const SYS_ADD_KEY: i64 = 248;
const SYS_KEYCTL: i64 = 250;
const SYS_UNSHARE: i64 = 272;
const SYS_FINIT_MODULE: i64 = 313;
const SYS_BPF: i64 = 321;
const SYS_OPEN_BY_HANDLE_AT: i64 = 304;
const SYS_IOCTL: i64 = 16;
const SYS_WAIT4: i64 = 61;
const TIOCSTI: i64 = 0x5412;
const TIOCLINUX: i64 = 0x541C;
const PTRACE_SEIZE: i64 = 0x4206;
const KEYCTL_READ: i64 = 11;
const WALL: i64 = 0x4000_0000;
const WNOHANG: i64 = 1;

fn errno() -> i32 {
    // SAFETY: __errno_location returns this thread's errno slot, valid for the thread's life.
    unsafe { *__errno_location() }
}

fn report(name: &str, ret: i64) {
    if ret < 0 {
        println!("{name}: errno={}", errno());
    } else {
        println!("{name}: ok");
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(what) = it.next() {
        let c = |s: &str| CString::new(s).unwrap_or_default();
        let ret = match what.as_str() {
            // SAFETY (all arms): raw syscalls with integer arguments or pointers to live,
            // NUL-terminated CStrings / zeroed buffers that outlive the call.
            "mount" => {
                let (src, dst, ty) = (c("none"), c("/tmp"), c("tmpfs"));
                unsafe {
                    syscall(
                        SYS_MOUNT,
                        src.as_ptr(),
                        dst.as_ptr(),
                        ty.as_ptr(),
                        0i64,
                        0i64,
                    )
                }
            }
            "unshare-user" => unsafe { syscall(SYS_UNSHARE, 0x1000_0000i64) },
            "unshare-mnt" => unsafe { syscall(SYS_UNSHARE, 0x0002_0000i64) },
            // KEYCTL_GET_KEYRING_ID(KEY_SPEC_SESSION_KEYRING, create=1)
            "keyctl" => unsafe { syscall(SYS_KEYCTL, 0i64, -3i64, 1i64) },
            "add_key" => {
                let (ty, desc, payload) = (c("user"), c("probe"), c("secret"));
                unsafe {
                    syscall(
                        SYS_ADD_KEY,
                        ty.as_ptr(),
                        desc.as_ptr(),
                        payload.as_ptr(),
                        6i64,
                        -3i64,
                    )
                }
            }
            "init_module" => {
                let image = [0u8; 64];
                let params = c("");
                unsafe {
                    syscall(
                        SYS_INIT_MODULE,
                        image.as_ptr(),
                        image.len() as i64,
                        params.as_ptr(),
                    )
                }
            }
            "finit_module" => {
                let params = c("");
                unsafe { syscall(SYS_FINIT_MODULE, 0i64, params.as_ptr(), 0i64) }
            }
            // BPF_PROG_LOAD with an empty attr: refused before the attr is even looked at.
            "bpf" => {
                let attr = [0u8; 128];
                unsafe { syscall(SYS_BPF, 5i64, attr.as_ptr(), attr.len() as i64) }
            }
            "kexec_load" => unsafe { syscall(SYS_KEXEC_LOAD, 0i64, 0i64, 0i64, 0i64) },
            "open_by_handle_at" => {
                let handle = [0u8; 16];
                unsafe { syscall(SYS_OPEN_BY_HANDLE_AT, -100i64, handle.as_ptr(), 0i64) }
            }
            // AF_INET, SOCK_RAW, IPPROTO_ICMP / AF_PACKET, SOCK_RAW, ETH_P_ALL
            "raw-socket" => unsafe { syscall(SYS_SOCKET, 2i64, 3i64, 1i64) },
            "packet-socket" => unsafe { syscall(SYS_SOCKET, 17i64, 3i64, 0x0300i64) },
            "ptrace" => {
                let pid: i64 = it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                // PTRACE_ATTACH
                unsafe { syscall(SYS_PTRACE, 16i64, pid, 0i64, 0i64) }
            }
            "threads" => {
                let handles: Vec<_> = (0..4u64)
                    .map(|i| std::thread::spawn(move || (0..100_000u64).fold(i, |a, b| a ^ b)))
                    .collect();
                let ok = handles.into_iter().all(|h| h.join().is_ok());
                if ok {
                    0
                } else {
                    -1
                }
            }
            // Push a command into the input queue of the terminal on fds 0-2 (one byte each).
            "tiocsti" => {
                let mut ret = -1;
                for fd in 0..3i64 {
                    for b in b"echo INJECTED\n" {
                        ret = unsafe { syscall(SYS_IOCTL, fd, TIOCSTI, b as *const u8) };
                        if ret < 0 {
                            break;
                        }
                    }
                    report(&format!("tiocsti-fd{fd}"), ret);
                }
                continue;
            }
            // TIOCLINUX subcode 6 (TIOCL_GETSHIFTSTATE), a read-only query on a virtual
            // console; any answer but ENOTTY/EINVAL means the fd is a console we could drive.
            "tioclinux" => {
                for fd in 0..3i64 {
                    let mut arg = [6u8; 2];
                    let ret = unsafe { syscall(SYS_IOCTL, fd, TIOCLINUX, arg.as_mut_ptr()) };
                    report(&format!("tioclinux-fd{fd}"), ret);
                }
                continue;
            }
            "isatty" => {
                for fd in 0..3i64 {
                    let mut termios = [0u8; 64];
                    // TCGETS
                    let ret = unsafe { syscall(SYS_IOCTL, fd, 0x5401i64, termios.as_mut_ptr()) };
                    println!("isatty-fd{fd}: {}", if ret == 0 { "yes" } else { "no" });
                }
                continue;
            }
            // keyctl_read KEY: the payload of a key we should not possess.
            "keyread" => {
                let serial: i64 = it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
                let mut buf = [0u8; 256];
                let ret =
                    unsafe { syscall(SYS_KEYCTL, KEYCTL_READ, serial, buf.as_mut_ptr(), 256i64) };
                if ret > 0 {
                    let n = (ret as usize).min(buf.len());
                    println!("keyread-payload: {}", String::from_utf8_lossy(&buf[..n]));
                }
                ret
            }
            // keyctl_search on the user keyring (KEY_SPEC_USER_KEYRING: always "possessed" by
            // a process of that uid), then read what it found.
            "keysearch-user" => {
                let desc = c(it.next().map(String::as_str).unwrap_or(""));
                let ty = c("user");
                let id = unsafe { syscall(SYS_KEYCTL, 10i64, -4i64, ty.as_ptr(), desc.as_ptr(), 0i64) };
                if id > 0 {
                    let mut buf = [0u8; 256];
                    let n = unsafe { syscall(SYS_KEYCTL, KEYCTL_READ, id, buf.as_mut_ptr(), 256i64) };
                    if n > 0 {
                        let n = (n as usize).min(buf.len());
                        println!("keyread-payload: {}", String::from_utf8_lossy(&buf[..n]));
                    }
                }
                id
            }
            // Attaches to every new process that appears until the file /stop-race exists and
            // counts attaches that caught a process before it became the workload `COMM` (the
            // runtime's exec child, between fork and execve). Writes the counts to /race.out.
            "ptrace-race" => {
                let comm = it.next().cloned().unwrap_or_default();
                let me = std::process::id();
                let mut seen = std::collections::BTreeSet::new();
                let (mut wins, mut after_exec, mut denied) = (0u32, 0u32, 0u32);
                let mut win_comms = Vec::new();
                while !std::path::Path::new("/stop-race").exists() {
                    let Ok(dir) = std::fs::read_dir("/proc") else { break };
                    for e in dir.flatten() {
                        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                            continue;
                        };
                        // A refused pid is tried again on every pass (it may become attachable
                        // later, e.g. after its capability drop); an attached one only once.
                        if pid == me || pid == 1 || seen.contains(&pid) {
                            continue;
                        }
                        // SEIZE does not stop the tracee; it stays traced until it exits, and
                        // its exit is collected below so its real parent sees it.
                        let r = unsafe { syscall(SYS_PTRACE, PTRACE_SEIZE, pid as i64, 0i64, 0i64) };
                        if r < 0 {
                            denied += 1;
                            continue;
                        }
                        seen.insert(pid);
                        let c = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                            .unwrap_or_default()
                            .trim()
                            .to_string();
                        if c == comm {
                            after_exec += 1;
                        } else {
                            wins += 1;
                            win_comms.push(c);
                        }
                    }
                    let mut status = 0i32;
                    while unsafe {
                        syscall(SYS_WAIT4, -1i64, &mut status as *mut i32, WALL | WNOHANG, 0i64)
                    } > 0
                    {}
                }
                let out = format!(
                    "wins={wins} after_exec={after_exec} denied={denied} attached={} win_comms={win_comms:?}\n",
                    seen.len()
                );
                // Written whole, then renamed: the test never reads half a report.
                if std::fs::write("/race.tmp", out).is_ok() {
                    let _ = std::fs::rename("/race.tmp", "/race.out");
                }
                0
            }
            other => {
                println!("{other}: unknown probe");
                continue;
            }
        };
        report(what, ret);
    }
}
