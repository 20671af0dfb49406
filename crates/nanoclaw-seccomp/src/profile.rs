//! The default seccomp profile `nanoclaw spec` writes.
//!
//! Coverage equals the profile Docker/moby ships (`profiles/seccomp/default.json`): deny by
//! default with `EPERM`, an allowlist of ordinary syscalls, and the same argument-filtered and
//! capability-conditional exceptions:
//!
//! * `clone` only without any namespace flag (`CLONE_NEWNS|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|
//!   NEWCGROUP`, checked with `SCMP_CMP_MASKED_EQ`), and `clone3` answers `ENOSYS` (its flags sit
//!   in memory seccomp cannot read; libc falls back to `clone`) — unless CAP_SYS_ADMIN is granted;
//! * `personality` only for the harmless personas (`PER_LINUX`, `PER_LINUX32`, `UNAME26`,
//!   `UNAME26|PER_LINUX32`, and `0xffffffff` = query);
//! * `socket` for every family but `AF_VSOCK` (host ↔ guest channel);
//! * `ptrace`, `process_vm_readv/writev` (safe since Linux 4.8 checks seccomp after ptrace);
//! * privileged syscalls (mount, unshare, setns, bpf, perf_event_open, module loading, reboot,
//!   kexec is never allowed, keyctl/add_key/request_key never, ...) only when the capability that
//!   the kernel would require anyway is in the container's bounding set.
//!
//! * `io_uring_setup`, `io_uring_enter` and `io_uring_register` are denied: io_uring's
//!   operations bypass the per-syscall filter (each submitted op is a syscall seccomp never
//!   sees) and the subsystem has been a steady source of kernel privilege escalations. moby
//!   removed them from its default profile in v25 (moby/moby#46762) and the containers-common
//!   profile podman applies never had them.
//!
//! `tests/engine_profile.rs` diffs this allowlist against the profile the installed engine
//! (podman's containers-common) applies by default.
//!
//! OCI profiles carry no capability conditions, so the conditions are evaluated here, when the
//! profile is generated, against the capabilities the same config grants (as Docker does when it
//! builds a container's profile).

use oci_spec::runtime::{
    Arch, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompArgBuilder,
    LinuxSeccompOperator, LinuxSyscall,
};

/// `EPERM`, the default action's errno.
const EPERM: u32 = 1;
/// `ENOSYS`: "not implemented", which makes libc fall back (clone3 → clone).
const ENOSYS: u32 = 38;
/// `AF_VSOCK`.
const AF_VSOCK: u64 = 40;
/// CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
/// CLONE_NEWNET.
pub const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;
/// personality(2) values the default profile allows.
pub const ALLOWED_PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// Syscalls every container may use.
const ALLOWED: &str = "
accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2
dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait
epoll_wait_old eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64
fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchown fchown32 fchownat fcntl
fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64
fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_time64 futex_waitv futimesat getcpu
getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups
getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid
getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid getsockname
getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch
inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents
io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit ipc kill landlock_add_rule landlock_create_ruleset
landlock_restrict_self lchown lchown32 lgetxattr link linkat listen listxattr llistxattr _llseek
lremovexattr lseek lsetxattr lstat lstat64 madvise membarrier memfd_create memfd_secret mincore
mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify
mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap
msgctl msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep
newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2
pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2
prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead
readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages
removexattr rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending
rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64
rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam sched_get_priority_max
sched_get_priority_min sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64
sched_setaffinity sched_setattr sched_setparam sched_setscheduler sched_yield seccomp select
semctl semget semop semtimedop semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto
setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid
setpriority setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32
setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32
setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn
socketcall socketpair splice stat stat64 statfs statfs64 statx symlink symlinkat sync
sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete timer_getoverrun
timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create timerfd_gettime
timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit
umask uname unlink unlinkat utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid
waitpid write writev
process_vm_readv process_vm_writev ptrace
";

/// Architecture-specific syscalls, for the architecture this runtime was built for.
#[cfg(target_arch = "x86_64")]
const ARCH_ALLOWED: &str = "arch_prctl modify_ldt";
#[cfg(target_arch = "aarch64")]
const ARCH_ALLOWED: &str =
    "arm_fadvise64_64 arm_sync_file_range sync_file_range2 breakpoint cacheflush set_tls";
#[cfg(target_arch = "riscv64")]
const ARCH_ALLOWED: &str = "riscv_flush_icache";
#[cfg(target_arch = "s390x")]
const ARCH_ALLOWED: &str = "s390_pci_mmio_read s390_pci_mmio_write s390_runtime_instr";
#[cfg(target_arch = "powerpc64")]
const ARCH_ALLOWED: &str = "sync_file_range2 swapcontext";
#[cfg(not(any(
    target_arch = "x86_64",
    target_arch = "aarch64",
    target_arch = "riscv64",
    target_arch = "s390x",
    target_arch = "powerpc64"
)))]
const ARCH_ALLOWED: &str = "";

/// The argument index of clone's flags (s390 swaps the first two arguments).
#[cfg(target_arch = "s390x")]
const CLONE_FLAGS_ARG: usize = 1;
#[cfg(not(target_arch = "s390x"))]
const CLONE_FLAGS_ARG: usize = 0;

/// Syscalls allowed only with a capability in the bounding set.
const CAP_ALLOWED: &[(Capability, &str)] = &[
    (Capability::DacReadSearch, "open_by_handle_at"),
    (
        Capability::SysAdmin,
        "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount \
         mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname \
         sethostname setns syslog umount umount2 unshare",
    ),
    (Capability::SysBoot, "reboot"),
    (Capability::SysChroot, "chroot"),
    (
        Capability::SysModule,
        "delete_module init_module finit_module",
    ),
    (Capability::SysPacct, "acct"),
    (
        Capability::SysPtrace,
        "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace",
    ),
    (Capability::SysRawio, "iopl ioperm"),
    (
        Capability::SysTime,
        "settimeofday stime clock_settime clock_settime64",
    ),
    (Capability::SysTtyConfig, "vhangup"),
    (
        Capability::SysNice,
        "get_mempolicy mbind set_mempolicy set_mempolicy_home_node",
    ),
    (Capability::Syslog, "syslog"),
    (Capability::Bpf, "bpf"),
    (Capability::Perfmon, "perf_event_open"),
];

/// The architectures a filter built on this host covers (native plus its compat ABIs, so a
/// 32-bit binary cannot slip past the filter through the compat syscall table).
pub fn default_architectures() -> Vec<Arch> {
    if cfg!(target_arch = "x86_64") {
        vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32]
    } else if cfg!(target_arch = "aarch64") {
        vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm]
    } else if cfg!(target_arch = "s390x") {
        vec![Arch::ScmpArchS390x, Arch::ScmpArchS390]
    } else if cfg!(target_arch = "riscv64") {
        vec![Arch::ScmpArchRiscv64]
    } else {
        vec![Arch::ScmpArchNative]
    }
}

fn names(list: &str) -> Vec<String> {
    list.split_whitespace().map(str::to_owned).collect()
}

fn rule(
    names: Vec<String>,
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    args: Option<Vec<LinuxSeccompArg>>,
) -> LinuxSyscall {
    let mut r = LinuxSyscall::default();
    r.set_names(names);
    r.set_action(action);
    r.set_errno_ret(errno_ret);
    r.set_args(args);
    r
}

fn arg(index: usize, value: u64, op: LinuxSeccompOperator) -> LinuxSeccompArg {
    masked_arg(index, value, op, None)
}

fn masked_arg(
    index: usize,
    value: u64,
    op: LinuxSeccompOperator,
    value_two: Option<u64>,
) -> LinuxSeccompArg {
    let builder = LinuxSeccompArgBuilder::default()
        .index(index)
        .value(value)
        .op(op);
    let builder = match value_two {
        Some(v) => builder.value_two(v),
        None => builder,
    };
    // LinuxSeccompArg's builder is declared with struct-level `default`: every field has a
    // default, so `build` has no error path for these constant inputs.
    builder
        .build()
        .expect("LinuxSeccompArgBuilder: every field has a default")
}

/// The default profile for a container whose bounding set is `bounding`.
pub fn default_profile(bounding: &[Capability]) -> LinuxSeccomp {
    let has = |cap: Capability| bounding.contains(&cap);
    let allow = LinuxSeccompAction::ScmpActAllow;
    let mut syscalls = vec![rule(names(ALLOWED), allow, None, None)];
    if !ARCH_ALLOWED.is_empty() {
        syscalls.push(rule(names(ARCH_ALLOWED), allow, None, None));
    }
    syscalls.push(rule(
        names("socket"),
        allow,
        None,
        Some(vec![arg(0, AF_VSOCK, LinuxSeccompOperator::ScmpCmpNe)]),
    ));
    for persona in ALLOWED_PERSONALITIES {
        syscalls.push(rule(
            names("personality"),
            allow,
            None,
            Some(vec![arg(0, persona, LinuxSeccompOperator::ScmpCmpEq)]),
        ));
    }
    for (cap, list) in CAP_ALLOWED {
        if has(*cap) {
            syscalls.push(rule(names(list), allow, None, None));
        }
    }
    if !has(Capability::SysAdmin) {
        // clone without namespace flags: (flags & CLONE_NAMESPACE_FLAGS) == 0.
        let masked = masked_arg(
            CLONE_FLAGS_ARG,
            CLONE_NAMESPACE_FLAGS,
            LinuxSeccompOperator::ScmpCmpMaskedEq,
            Some(0),
        );
        syscalls.push(rule(names("clone"), allow, None, Some(vec![masked])));
        syscalls.push(rule(
            names("clone3"),
            LinuxSeccompAction::ScmpActErrno,
            Some(ENOSYS),
            None,
        ));
    }

    let mut profile = LinuxSeccomp::default();
    profile.set_default_action(LinuxSeccompAction::ScmpActErrno);
    profile.set_default_errno_ret(Some(EPERM));
    profile.set_architectures(Some(default_architectures()));
    profile.set_syscalls(Some(syscalls));
    profile
}
