//! NanoClaw: a daemonless OCI runtime.
//!
//! The `nanoclaw` binary only parses arguments (clap lives there alone); this library does the
//! work. Folders by layer, read top-down as `create` runs (the untrusted input is config.json,
//! handled by `spec` alone):
//!
//! | module | side | responsibility |
//! |---|---|---|
//! | [`spec`] | runtime | parse + validate config.json into a [`spec::Plan`] before anything is created |
//! | [`spec::features`] | runtime | the OCI features document of `nanoclaw features` |
//! | [`spec::template`] | runtime | the default config.json of `nanoclaw spec` |
//! | [`container`] | runtime | create / start / delete / run orchestration, unwinding on failure |
//! | [`container::state`] | runtime | state dir per container under --root, OCI state JSON, locking, pid file, `/proc/<pid>/stat` |
//! | [`container::ops`] | runtime | state / kill (pidfd) / list / ps / pause / resume on an existing container |
//! | [`container::list`] | runtime | `list` / `ps` output in runc's formats |
//! | [`container::update`] | runtime | `update`: runc's resource flags or `-r resources.json` applied to the live cgroup |
//! | [`container::events`] | runtime | `events`: stats every --interval and OOM events as runc's JSON lines; `--stats` |
//! | [`container::hooks`] | both | OCI hooks: state JSON on stdin, args/env/timeout, per-kind failure rules |
//! | [`container::cgroup`] | runtime | the container's cgroup: validate, create before the clone, remove on delete/unwind (nanoclaw-cgroups) |
//! | [`container::netdev`] | runtime | linux.netDevices: host links moved into the container's network namespace and back (rtnetlink) |
//! | [`container::checkpoint`] | runtime | `checkpoint` / `restore` through CRIU's command line, runc's flags |
//! | [`process`] | container | rlimits, oomScoreAdj, user/groups, umask, cwd, executable lookup |
//! | [`process::namespaces`] | both | clone3 with CLONE_NEW*, setns for joined namespaces, uid/gid maps |
//! | [`process::channel`] | both | the parent/child socket protocol (Go, Placed, Mounted, HooksDone, Ready) |
//! | [`process::init`] | container | the init's setup sequence, in order, up to execve |
//! | [`process::exec`] | both | `exec`: a new process joining the container's namespaces, cgroup and settings |
//! | [`process::finish`] | container | the last steps every container process takes (init and exec): keyring, session, caps, cwd check, seccomp, execve |
//! | [`process::console`] | both | process.terminal: pty from the container's devpts, master sent to --console-socket |
//! | [`process::stdio`] | runtime | the caller's terminal never reaches a process without its own: pipe relay or /dev/null |
//! | [`process::signal`] | runtime | signal names of `kill`, forwarding of a foreground `run`/`exec`, the workload's clean signal state |
//! | [`rootfs`] | container | mounts resolved inside the rootfs, pivot_root, readonly root |
//! | [`rootfs::hostmount`] | both | no `mount` namespace: rootfs set up in the runtime's, chroot, mounts detached on delete |
//! | [`rootfs::fsopts`] | runtime | filesystem options checked by the kernel's own parser (fsopen/fsconfig) before anything exists |
//! | [`rootfs::devices`] | container | default devices, /dev symlinks, linux.devices |
//! | [`rootfs::masked_paths`] | container | linux.maskedPaths / readonlyPaths, race-free through O_PATH fds |
//! | [`rootfs::tmpcopyup`] | container | `tmpcopyup`: the image directory's content copied into a new tmpfs |
//! | [`security`] | both | the security profile: every security field validated into a [`security::SecurityPlan`], and its apply steps |
//! | [`security::capabilities`] | container | process.capabilities, all five sets, around the uid switch |
//! | [`security::sysctl`] | both | linux.sysctl: namespaced keys only; written beneath the container's /proc/sys |
//! | [`security::personality`] | both | linux.personality |
//! | [`security::mempolicy`] | both | linux.memoryPolicy: checked, then set_mempolicy in every container process |
//! | [`security::sched`] | both | process.scheduler, ioPriority, execCPUAffinity |
//! | [`security::sealed_exe`] | runtime | re-exec from a read-only clone (root) or sealed memfd copy (rootless) of the binary (CVE-2019-5736) |
//! | [`logging`] | runtime | `log`-facade logger writing runc's text/JSON lines to --log (errors, warnings, --debug) |
//! | [`rootless`] | runtime | rootless detection as runc's "auto" (euid, user namespace), default --root |
//! | [`check`] | runtime | `nanoclaw check`: the host's isolation features |
//! | [`testpoint`] | runtime | named SIGKILL crash points for the crash-safety tests |
//!
//! Syscall trust boundary: everything in `spec` runs before the first syscall that changes
//! host state; `container` and `process::namespaces::spawn_init` are the only code that
//! creates host objects (state dir, fifo, the init process), and each of those is registered
//! for unwinding. `process::init`, `rootfs` and `process::finish` run only in the cloned child,
//! inside the new namespaces.

pub mod check;
pub mod container;
pub mod logging;
pub mod process;
pub mod rootfs;
pub mod rootless;
pub mod security;
pub mod spec;
pub mod testpoint;

pub use container::{create, delete, run, start, ContainerError, CreateOptions};
