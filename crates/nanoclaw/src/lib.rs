//! NanoClaw: a daemonless OCI runtime.
//!
//! The `nanoclaw` binary only parses arguments; this library does the work. Modules by
//! responsibility (the untrusted input is config.json, handled by `spec` alone):
//!
//! | module | side | responsibility |
//! |---|---|---|
//! | [`spec`] | runtime | parse + validate config.json into a [`spec::Plan`] before anything is created |
//! | [`fsopts`] | runtime | filesystem options checked by the kernel's own parser (fsopen/fsconfig) before anything exists |
//! | [`spec_template`] | runtime | the default config.json of `nanoclaw spec` |
//! | [`state`] | runtime | state dir per container under --root, OCI state JSON, locking |
//! | [`container`] | runtime | create / start / delete / run orchestration, unwinding on failure |
//! | [`namespaces`] | both | clone3 with CLONE_NEW*, setns for joined namespaces, uid/gid maps |
//! | [`sync`] | both | the parent/child socket protocol |
//! | [`init`] | container | the init's setup sequence, in order, up to execve |
//! | [`rootfs`] | container | mounts resolved inside the rootfs, pivot_root, readonly root |
//! | [`hostmount`] | both | no `mount` namespace: rootfs set up in the runtime's, chroot, mounts detached on delete |
//! | [`tmpcopyup`] | container | `tmpcopyup`: the image directory's content copied into a new tmpfs |
//! | [`devices`] | container | default devices, /dev symlinks, linux.devices |
//! | [`process`] | container | rlimits, oomScoreAdj, user/groups, umask, cwd, executable lookup |
//! | [`log`] | runtime | runc-style --log/--log-format error records |
//! | [`logging`] | runtime | `log`-facade logger writing runc's text/JSON lines to --log (warnings, --debug) |
//! | [`hooks`] | both | OCI hooks: state JSON on stdin, args/env/timeout, per-kind failure rules |
//! | [`console`] | both | process.terminal: pty from the container's devpts, master sent to --console-socket |
//! | [`features`] | runtime | the OCI features document of `nanoclaw features` |
//! | [`list`] | runtime | `list` / `ps` output in runc's formats |
//! | [`signal`] | runtime | signal names/numbers of `kill` |
//! | [`cgroup`] | runtime | the container's cgroup: validate, create before the clone, remove on delete/unwind (nanoclaw-cgroups) |
//! | [`update`] | runtime | `update`: runc's resource flags or `-r resources.json` applied to the live cgroup |
//! | [`events`] | runtime | `events`: stats every --interval and OOM events as runc's JSON lines; `--stats` |
//! | [`finish`] | container | the last steps every container process takes (init and exec): keyring, session, caps, cwd check, seccomp, execve |
//! | [`stdio`] | runtime | the caller's terminal never reaches a process without its own: pipe relay or /dev/null |
//! | [`exec`] | both | `exec`: a new process joining the container's namespaces, cgroup and settings |
//! | [`testpoint`] | runtime | named SIGKILL crash points for the crash-safety tests |
//! | [`ops`] | runtime | state / kill (pidfd) / list / ps / pause / resume on an existing container |
//! | [`security`] | both | the security profile: validation of every security field, and the init's apply steps |
//! | [`capabilities`] | container | process.capabilities, all five sets, around the uid switch |
//! | [`masked_paths`] | container | linux.maskedPaths / readonlyPaths, race-free through O_PATH fds |
//! | [`sysctl`] | both | linux.sysctl: namespaced keys only; written beneath the container's /proc/sys |
//! | [`personality`] | both | linux.personality |
//! | [`mempolicy`] | both | linux.memoryPolicy: checked, then set_mempolicy in every container process |
//! | [`netdev`] | runtime | linux.netDevices: host links moved into the container's network namespace and back (rtnetlink) |
//! | [`rootless`] | runtime | rootless detection as runc's "auto" (euid, user namespace), default --root |
//! | [`checkpoint`] | runtime | `checkpoint` / `restore` through CRIU's command line, runc's flags |
//! | [`check`] | runtime | `nanoclaw check`: the host's isolation features |
//! | [`sealed_exe`] | runtime | re-exec from a read-only clone (root) or sealed memfd copy (rootless) of the binary (CVE-2019-5736) |
//!
//! Syscall trust boundary: everything in `spec` runs before the first syscall that changes
//! host state; `container` and `namespaces::spawn_init` are the only code that creates host
//! objects (state dir, fifo, the init process), and each of those is registered for unwinding.
//! `init`, `rootfs`, `devices` and `process` run only in the cloned child, inside the new
//! namespaces.

pub mod capabilities;
pub mod cgroup;
pub mod check;
pub mod checkpoint;
pub mod console;
pub mod container;
pub mod devices;
pub mod events;
pub mod exec;
pub mod features;
pub mod finish;
pub mod fsopts;
pub mod hooks;
pub mod hostmount;
pub mod init;
pub mod list;
pub mod logging;
pub mod masked_paths;
pub mod mempolicy;
pub mod namespaces;
pub mod netdev;
pub mod ops;
pub mod personality;
pub mod process;
pub mod rootfs;
pub mod rootless;
pub mod sched;
pub mod sealed_exe;
pub mod security;
pub mod signal;
pub mod spec;
pub mod spec_template;
pub mod state;
pub mod stdio;
pub mod sync;
pub mod sysctl;
pub mod testpoint;
pub mod tmpcopyup;
pub mod update;

pub use container::{create, delete, run, start, ContainerError, CreateOptions};
