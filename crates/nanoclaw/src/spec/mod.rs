//! The first untrusted input boundary: the bundle's `config.json`.
//!
//! [`load`] parses config.json with oci-spec and turns it into a [`Plan`]: every value the
//! container init will need, already checked and converted (namespace flags, mount flags,
//! device numbers, rlimit resources, id mappings). Nothing on the host is touched until a
//! `Plan` exists, so a bad config leaves nothing behind. Every error names the JSON field it
//! is about (`linux.namespaces[2].type`, `mounts[4].destination`, ...).

pub mod features;
pub mod template;

use std::collections::HashSet;
use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use nix::sys::resource::Resource;
use oci_spec::runtime::{
    LinuxDeviceType, LinuxIdMapping, LinuxNamespaceType, PosixRlimitType, Spec,
};

/// Largest config.json accepted (runc has no limit; 4 MiB is far above any real bundle and
/// keeps a hostile file from exhausting memory).
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("bundle {path}: {source}")]
    Bundle {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: config.json is larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path}: malformed JSON at line {line}, column {column}: {msg}")]
    Malformed {
        path: PathBuf,
        line: usize,
        column: usize,
        msg: String,
    },
    #[error("config.json field `{field}`: {msg}")]
    Field { field: String, msg: String },
    /// process.capabilities, linux.seccomp, sysctl, masked/readonly paths, personality,
    /// LSM labels: the message starts with the field (see `security`).
    #[error("config.json field {0}")]
    Security(#[from] crate::security::SecurityError),
}

fn field(field: impl Into<String>, msg: impl Into<String>) -> SpecError {
    SpecError::Field {
        field: field.into(),
        msg: msg.into(),
    }
}

/// One namespace from `linux.namespaces`: created by clone, or joined through `path`.
#[derive(Debug, Clone)]
pub struct NamespacePlan {
    /// Namespaces created with the init (`CLONE_NEW*` flags for clone3).
    pub create: CloneFlags,
    /// Namespaces joined with setns, in the order they are listed: (flag, path, json field).
    pub join: Vec<(CloneFlags, PathBuf, String)>,
}

impl NamespacePlan {
    pub fn creates(&self, flag: CloneFlags) -> bool {
        self.create.contains(flag)
    }
    pub fn joins(&self, flag: CloneFlags) -> bool {
        self.join.iter().any(|(f, _, _)| *f == flag)
    }
    /// True when the init runs in a user namespace other than the runtime's.
    pub fn has_userns(&self) -> bool {
        self.creates(CloneFlags::CLONE_NEWUSER) || self.joins(CloneFlags::CLONE_NEWUSER)
    }
}

/// A validated uid/gid mapping range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    pub container_id: u32,
    pub host_id: u32,
    pub size: u32,
}

/// What kind of mount a `mounts[]` entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// A bind mount of a host path (`MS_BIND`, recursive for `rbind`).
    Bind {
        recursive: bool,
        source_is_dir: bool,
    },
    /// cgroup filesystem: the host's hierarchies as seen by the init (see rootfs.rs).
    Cgroup,
    /// Any other filesystem mounted by type (proc, sysfs, tmpfs, devpts, mqueue, cgroup2, ...).
    Fs { fstype: String },
}

#[derive(Debug, Clone)]
pub struct MountPlan {
    /// `mounts[i]`, for error messages from the child.
    pub field: String,
    pub kind: MountKind,
    /// Host path for binds (absolute, bundle-relative resolved); the `source` string for fs.
    pub source: Option<PathBuf>,
    /// Absolute path inside the container (resolved in the rootfs at mount time).
    pub destination: PathBuf,
    /// Flags for the mount call itself (no propagation flags).
    pub flags: MsFlags,
    /// Propagation changes applied after the mount, in order (MS_PRIVATE|MS_REC, ...).
    pub propagation: Vec<MsFlags>,
    /// Filesystem data options (`mode=755,size=65536k`), comma-joined.
    pub data: Option<String>,
    /// `tmpcopyup` (tmpfs only): the directory's content in the image is copied into the new
    /// tmpfs, owners and modes kept, as runc does (podman's `--read-only` and `--tmpfs`).
    pub copy_up: bool,
    /// Recursive mount attributes (`rro`, `rnosuid`, `rnoatime`, ...): applied with
    /// mount_setattr(AT_RECURSIVE) to the mount and every mount below it, after the mount.
    pub recursive_attr: Option<RecursiveAttr>,
}

/// `struct mount_attr`'s set and clear masks for mount_setattr(2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecursiveAttr {
    pub set: u64,
    pub clear: u64,
}

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
/// The access-time field: cleared as a whole, then one of RELATIME (0), NOATIME, STRICTATIME.
pub const MOUNT_ATTR_ATIME_MASK: u64 = 0x70;
pub const MOUNT_ATTR_RELATIME: u64 = 0x0;
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

impl RecursiveAttr {
    /// Applies one recursive option; `None` when `opt` is not one. Later options win, as for
    /// the plain flags. The access time is one field in the kernel (clearing part of it is
    /// EINVAL), so every atime option clears the whole field and sets its mode: `ratime` and
    /// `rnostrictatime` mean the kernel default (relatime), `rnorelatime` strictatime.
    pub fn apply(&mut self, opt: &str) -> Option<()> {
        let flag = |s: &mut Self, f: u64, on: bool| {
            if on {
                s.set |= f;
                s.clear &= !f;
            } else {
                s.clear |= f;
                s.set &= !f;
            }
        };
        let atime = |s: &mut Self, mode: u64| {
            s.clear |= MOUNT_ATTR_ATIME_MASK;
            s.set = (s.set & !MOUNT_ATTR_ATIME_MASK) | mode;
        };
        match opt {
            "rro" => flag(self, MOUNT_ATTR_RDONLY, true),
            "rrw" => flag(self, MOUNT_ATTR_RDONLY, false),
            "rnosuid" => flag(self, MOUNT_ATTR_NOSUID, true),
            "rsuid" => flag(self, MOUNT_ATTR_NOSUID, false),
            "rnodev" => flag(self, MOUNT_ATTR_NODEV, true),
            "rdev" => flag(self, MOUNT_ATTR_NODEV, false),
            "rnoexec" => flag(self, MOUNT_ATTR_NOEXEC, true),
            "rexec" => flag(self, MOUNT_ATTR_NOEXEC, false),
            "rnodiratime" => flag(self, MOUNT_ATTR_NODIRATIME, true),
            "rdiratime" => flag(self, MOUNT_ATTR_NODIRATIME, false),
            "rnosymfollow" => flag(self, MOUNT_ATTR_NOSYMFOLLOW, true),
            "rsymfollow" => flag(self, MOUNT_ATTR_NOSYMFOLLOW, false),
            "rnoatime" => atime(self, MOUNT_ATTR_NOATIME),
            "rstrictatime" | "rnorelatime" => atime(self, MOUNT_ATTR_STRICTATIME),
            "rrelatime" | "ratime" | "rnostrictatime" => atime(self, MOUNT_ATTR_RELATIME),
            _ => return None,
        }
        Some(())
    }
}

/// The recursive mount options of runtime-spec 1.1+ (mount_setattr, Linux 5.12).
pub const RECURSIVE_MOUNT_OPTIONS: &[&str] = &[
    "ratime",
    "rdev",
    "rdiratime",
    "rexec",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "rrelatime",
    "rro",
    "rrw",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
];

impl MountPlan {
    /// Flags a bind mount needs a remount for (they are ignored by the initial MS_BIND).
    pub fn remount_flags(&self) -> MsFlags {
        self.flags
            & (MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC
                | MsFlags::MS_NOATIME
                | MsFlags::MS_NODIRATIME
                | MsFlags::MS_RELATIME
                | MsFlags::MS_STRICTATIME)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Char,
    Block,
    Fifo,
}

#[derive(Debug, Clone)]
pub struct DevicePlan {
    pub field: String,
    pub path: PathBuf,
    pub kind: DeviceKind,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, Copy)]
pub struct RlimitPlan {
    pub resource: Resource,
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Clone)]
pub struct ProcessPlan {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub umask: Option<u32>,
    pub rlimits: Vec<RlimitPlan>,
    pub oom_score_adj: Option<i32>,
    pub no_new_privileges: bool,
    /// process.scheduler, process.ioPriority, process.execCPUAffinity (sched.rs).
    pub sched: crate::security::sched::SchedPlan,
    pub terminal: bool,
}

/// Everything `create` needs, validated. Built only by [`load`] / [`validate`].
#[derive(Debug, Clone)]
pub struct Plan {
    /// Absolute bundle directory.
    pub bundle: PathBuf,
    /// Absolute, canonical rootfs directory on the host.
    pub rootfs: PathBuf,
    pub rootfs_readonly: bool,
    /// `linux.rootfsPropagation`: applied to `/` before the rootfs is set up (unbindable as
    /// private until then) and to the new root after pivot_root, as runc does.
    pub rootfs_propagation: Option<MsFlags>,
    pub namespaces: NamespacePlan,
    pub uid_mappings: Vec<IdMap>,
    pub gid_mappings: Vec<IdMap>,
    pub mounts: Vec<MountPlan>,
    pub devices: Vec<DevicePlan>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub process: ProcessPlan,
    /// The security settings, validated (capabilities, seccomp filter, sysctl, masked and
    /// readonly paths, personality, AppArmor).
    pub security: crate::security::SecurityPlan,
    /// The parsed spec, for the parts other modules read directly (version, annotations,
    /// hooks, linux.resources).
    pub spec: Spec,
}

/// Reads and validates `<bundle>/config.json`. `euid` is the runtime's effective uid (rootless
/// needs a user namespace).
pub fn load(bundle: &Path, euid: u32) -> Result<Plan, SpecError> {
    load_with_source(bundle, euid).map(|(plan, _)| plan)
}

/// [`load`], also returning the exact bytes that were validated (the state's config snapshot).
pub fn load_with_source(bundle: &Path, euid: u32) -> Result<(Plan, Vec<u8>), SpecError> {
    let bundle_abs = std::path::absolute(bundle).map_err(|source| SpecError::Bundle {
        path: bundle.to_path_buf(),
        source,
    })?;
    let config = bundle_abs.join("config.json");
    let bytes = read_bounded(&config)?;
    let spec = parse(&config, &bytes)?;
    Ok((validate(&bundle_abs, spec, euid)?, bytes))
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, SpecError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|source| SpecError::Bundle {
        path: path.to_path_buf(),
        source,
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| SpecError::Bundle {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(SpecError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(bytes)
}

/// Parses config.json bytes. Syntax errors report line/column; type errors report the JSON
/// path of the offending field (`linux.namespaces[2].type`).
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Spec, SpecError> {
    // The common case, a valid file, in one pass; anything it refuses (or a duplicate key,
    // which it refuses and the value tree below accepts, last one winning) takes the slower
    // path below, whose result, error or not, is the answer.
    if let Ok(spec) = serde_json::from_slice::<Spec>(bytes) {
        return Ok(spec);
    }
    // Syntax first, so a truncated file is reported as malformed rather than as a type error.
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| SpecError::Malformed {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            msg: e.to_string(),
        })?;
    serde_path_to_error::deserialize::<_, Spec>(value).map_err(|e| {
        let p = e.path().to_string();
        let field_name = if p == "." {
            "(document)".to_string()
        } else {
            p
        };
        field(field_name, e.into_inner().to_string())
    })
}

fn ns_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        // CLONE_NEWTIME (0x80) is not in nix's CloneFlags; libc has the bit.
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// `linux.timeOffsets` in the format of `/proc/<pid>/timens_offsets` (validated by `validate`):
/// one `<clock> <secs> <nanosecs>` line per clock.
pub fn time_offsets_text(spec: &Spec) -> String {
    let mut out = String::new();
    let offsets = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().as_ref());
    let mut sorted: Vec<_> = offsets.into_iter().flatten().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    for (clock, off) in sorted {
        out.push_str(&format!(
            "{clock} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    out
}

/// Refuses a mount namespace path that is the runtime's own mount namespace or that of pid 1:
/// the rootfs setup pivot_roots the namespace it runs in, which would move the root of every
/// process there (the host's) into the container's rootfs.
fn refuse_host_mount_ns(
    f: &str,
    p: &Path,
    id: crate::process::namespaces::NsId,
) -> Result<(), SpecError> {
    for (link, whose) in [
        ("/proc/self/ns/mnt", "the runtime's own"),
        ("/proc/1/ns/mnt", "pid 1's"),
    ] {
        if crate::process::namespaces::id_of_link(Path::new(link)) == Some(id) {
            return Err(field(
                f,
                format!(
                    "{} is {whose} mount namespace; setting the rootfs up there would pivot_root it",
                    p.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Validates a parsed spec into a [`Plan`]. Pure apart from read-only `stat`s of the bundle,
/// the rootfs and bind sources, and a read-only look at namespace files (`O_PATH` open and
/// `fstatfs`, then a read open and `NS_GET_NSTYPE` only for a file on nsfs).
pub fn validate(bundle: &Path, spec: Spec, euid: u32) -> Result<Plan, SpecError> {
    if !spec.version().starts_with("1.") {
        return Err(field(
            "ociVersion",
            format!("unsupported version {:?} (1.x expected)", spec.version()),
        ));
    }

    // Sections for other platforms: a Linux runtime cannot honour them, and running the
    // container without them (a `vm` section asks for a virtual machine) would be ignoring them.
    for (name, set) in [
        ("windows", spec.windows().is_some()),
        ("solaris", spec.solaris().is_some()),
        ("vm", spec.vm().is_some()),
        ("zos", spec.zos().is_some()),
    ] {
        if set {
            return Err(field(
                name,
                "is for another platform or a VM-based runtime; nanoclaw runs Linux containers",
            ));
        }
    }

    // --- root ---
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| field("root", "missing"))?;
    if root.path().as_os_str().is_empty() {
        return Err(field("root.path", "empty"));
    }
    let rootfs_joined = bundle.join(root.path());
    let rootfs = std::fs::canonicalize(&rootfs_joined)
        .map_err(|e| field("root.path", format!("{}: {e}", rootfs_joined.display())))?;
    if !rootfs.is_dir() {
        return Err(field(
            "root.path",
            format!("{} is not a directory", rootfs.display()),
        ));
    }
    if rootfs == Path::new("/") {
        return Err(field(
            "root.path",
            "the host's / cannot be a container rootfs",
        ));
    }
    let rootfs_readonly = root.readonly().unwrap_or(false);

    let linux = spec.linux().clone().unwrap_or_default();

    // --- namespaces ---
    let mut create = CloneFlags::empty();
    let mut join = Vec::new();
    let mut seen = HashSet::new();
    for (i, ns) in linux.namespaces().iter().flatten().enumerate() {
        let f = format!("linux.namespaces[{i}]");
        let flag = ns_flag(ns.typ());
        if !seen.insert(flag.bits()) {
            return Err(field(
                format!("{f}.type"),
                format!("namespace {:?} listed twice", ns.typ()),
            ));
        }
        match ns.path() {
            Some(p) => {
                if !p.is_absolute() {
                    return Err(field(format!("{f}.path"), "must be an absolute path"));
                }
                // The file must be the namespace it is listed as (nsfs, NS_GET_NSTYPE): a
                // wrong or missing file is refused here, before anything exists.
                let (_, id) = crate::process::namespaces::open_ns(p, flag)
                    .map_err(|e| field(format!("{f}.path"), format!("{}: {e}", p.display())))?;
                if flag == CloneFlags::CLONE_NEWNS {
                    refuse_host_mount_ns(&format!("{f}.path"), p, id)?;
                }
                join.push((flag, p.clone(), format!("{f}.path")));
            }
            None => create |= flag,
        }
    }
    let namespaces = NamespacePlan { create, join };
    // No mount namespace: the runtime's is inherited (hostmount.rs), as runc does it.
    crate::rootfs::hostmount::check(&linux, &namespaces).map_err(|(f, why)| field(f, why))?;
    // A new user namespace holds no capability over an existing mount namespace (that one is
    // owned by an ancestor user namespace): setns and every mount of the rootfs setup would be
    // refused. Join the owning user namespace instead.
    if namespaces.joins(CloneFlags::CLONE_NEWNS) && namespaces.creates(CloneFlags::CLONE_NEWUSER) {
        let i = linux
            .namespaces()
            .iter()
            .flatten()
            .position(|n| n.typ() == LinuxNamespaceType::Mount)
            .unwrap_or(0);
        return Err(field(
            format!("linux.namespaces[{i}].path"),
            "a mount namespace cannot be joined from a new user namespace (it has no privilege over it); give the user namespace that owns it by path too",
        ));
    }
    if euid != 0 && !namespaces.has_userns() {
        return Err(field(
            "linux.namespaces",
            format!(
                "running as uid {euid} (rootless) needs a user namespace; see `nanoclaw spec --rootless`"
            ),
        ));
    }

    // --- id mappings ---
    let uid_mappings = id_maps("linux.uidMappings", linux.uid_mappings())?;
    let gid_mappings = id_maps("linux.gidMappings", linux.gid_mappings())?;
    if namespaces.creates(CloneFlags::CLONE_NEWUSER) {
        if uid_mappings.is_empty() {
            return Err(field(
                "linux.uidMappings",
                "required when a new user namespace is created",
            ));
        }
        if gid_mappings.is_empty() {
            return Err(field(
                "linux.gidMappings",
                "required when a new user namespace is created",
            ));
        }
    } else {
        if !uid_mappings.is_empty() {
            return Err(field(
                "linux.uidMappings",
                "set, but linux.namespaces creates no user namespace",
            ));
        }
        if !gid_mappings.is_empty() {
            return Err(field(
                "linux.gidMappings",
                "set, but linux.namespaces creates no user namespace",
            ));
        }
    }

    // --- hostname / domainname ---
    let hostname = spec.hostname().clone().filter(|h| !h.is_empty());
    let domainname = spec.domainname().clone().filter(|h| !h.is_empty());
    for (name, value) in [("hostname", &hostname), ("domainname", &domainname)] {
        if let Some(v) = value {
            if !namespaces.creates(CloneFlags::CLONE_NEWUTS) {
                return Err(field(
                    name,
                    "set, but linux.namespaces creates no uts namespace",
                ));
            }
            if v.len() > 64 || v.as_bytes().contains(&0) {
                return Err(field(name, "longer than 64 bytes or contains NUL"));
            }
        }
    }

    // --- rootfsPropagation ---
    let rootfs_propagation = match linux.rootfs_propagation().as_deref() {
        None | Some("") => None,
        Some(p) => Some(propagation_flag(p).ok_or_else(|| {
            field(
                "linux.rootfsPropagation",
                format!("unknown propagation {p:?} (private, rprivate, slave, rslave, shared, rshared, unbindable, runbindable)"),
            )
        })?),
    };

    // --- mounts ---
    let mut mounts = Vec::new();
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        mounts.push(mount_plan(bundle, i, m)?);
    }

    // --- devices ---
    let mut devices = Vec::new();
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        devices.push(device_plan(i, d)?);
    }

    // --- process ---
    let process = process_plan(&spec, &namespaces, &uid_mappings, &gid_mappings)?;

    // --- features not implemented yet: refuse what would otherwise be silently ignored ---
    if let Some(hooks) = spec.hooks() {
        // Paths absolute, timeouts positive; the hooks themselves run in `container`/`init`.
        crate::container::hooks::validate(hooks).map_err(|e| field("hooks", e.to_string()))?;
    }
    if let Some(offsets) = linux.time_offsets() {
        let newtime = CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
        if !namespaces.creates(newtime) {
            return Err(field(
                "linux.timeOffsets",
                "needs a new time namespace: add {\"type\": \"time\"} without a path to linux.namespaces",
            ));
        }
        for (clock, off) in offsets {
            if !matches!(clock.as_str(), "monotonic" | "boottime") {
                return Err(field(
                    format!("linux.timeOffsets.{clock}"),
                    "unknown clock: expected monotonic or boottime",
                ));
            }
            if off.nanosecs().unwrap_or(0) >= 1_000_000_000 {
                return Err(field(
                    format!("linux.timeOffsets.{clock}.nanosecs"),
                    "must be below 1000000000",
                ));
            }
        }
    }
    // Security profile: capabilities, seccomp (compiled in memory), sysctl, masked/readonly
    // paths, personality, LSM labels — before anything is created.
    let security = crate::security::validate(&spec, &namespaces)?;
    // Cgroup step: validate linux.resources and linux.cgroupsPath here.
    crate::container::cgroup::validate(&spec).map_err(|(f, m)| field(f, m))?;

    Ok(Plan {
        bundle: bundle.to_path_buf(),
        rootfs,
        rootfs_readonly,
        rootfs_propagation,
        namespaces,
        uid_mappings,
        gid_mappings,
        mounts,
        devices,
        hostname,
        domainname,
        process,
        security,
        spec,
    })
}

fn id_maps(name: &str, maps: &Option<Vec<LinuxIdMapping>>) -> Result<Vec<IdMap>, SpecError> {
    let mut out: Vec<IdMap> = Vec::new();
    // The kernel accepts at most 340 lines in uid_map/gid_map.
    let list = maps.as_deref().unwrap_or_default();
    if list.len() > 340 {
        return Err(field(name, "more than 340 ranges"));
    }
    for (i, m) in list.iter().enumerate() {
        let f = format!("{name}[{i}]");
        let map = IdMap {
            container_id: m.container_id(),
            host_id: m.host_id(),
            size: m.size(),
        };
        if map.size == 0 {
            return Err(field(format!("{f}.size"), "must be at least 1"));
        }
        let c_end = map.container_id.checked_add(map.size - 1);
        let h_end = map.host_id.checked_add(map.size - 1);
        if c_end.is_none() || h_end.is_none() {
            return Err(field(f, "range overflows 32-bit ids"));
        }
        for other in &out {
            let overlaps = |a: u32, b: u32| {
                a <= b.saturating_add(other.size - 1) && b <= a.saturating_add(map.size - 1)
            };
            if overlaps(map.container_id, other.container_id) {
                return Err(field(f, "containerID range overlaps an earlier range"));
            }
            if overlaps(map.host_id, other.host_id) {
                return Err(field(f, "hostID range overlaps an earlier range"));
            }
        }
        out.push(map);
    }
    Ok(out)
}

fn is_mapped(maps: &[IdMap], id: u32) -> bool {
    maps.iter()
        .any(|m| id >= m.container_id && id - m.container_id < m.size)
}

/// Maps a propagation name to its mount flags.
pub fn propagation_flag(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

/// Filesystem types every kernel this runtime targets has; anything else is checked against
/// /proc/filesystems.
const KNOWN_FS: &[&str] = &[
    "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "bind", "none",
];

fn kernel_has_fs(fstype: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .map(|s| {
            s.lines()
                .any(|l| l.split_whitespace().last() == Some(fstype))
        })
        .unwrap_or(false)
}

/// Checks that a container path is absolute and clean (no `..`): it is resolved inside the
/// rootfs later, but a clean path keeps error messages and intent obvious.
fn container_path(f: &str, p: &Path) -> Result<PathBuf, SpecError> {
    if !p.is_absolute() {
        return Err(field(
            f,
            format!("{} must be an absolute path", p.display()),
        ));
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                return Err(field(f, format!("{} contains `..`", p.display())));
            }
            Component::Prefix(_) => return Err(field(f, "invalid path")),
        }
    }
    if out.as_os_str().len() > 4096 {
        return Err(field(f, "path longer than PATH_MAX"));
    }
    Ok(out)
}

fn mount_plan(
    bundle: &Path,
    i: usize,
    m: &oci_spec::runtime::Mount,
) -> Result<MountPlan, SpecError> {
    let f = format!("mounts[{i}]");
    let destination = container_path(&format!("{f}.destination"), m.destination())?;
    for (name, set) in [
        ("uidMappings", m.uid_mappings().is_some()),
        ("gidMappings", m.gid_mappings().is_some()),
    ] {
        if set {
            return Err(field(
                format!("{f}.{name}"),
                "id-mapped mounts are not supported by nanoclaw",
            ));
        }
    }
    let mut flags = MsFlags::empty();
    let mut propagation = Vec::new();
    let mut data = Vec::new();
    // `options[j]` index of each `data` entry, to name a refused one.
    let mut data_index = Vec::new();
    let mut bind = None;
    let mut copy_up = None;
    let mut recursive_attr: Option<RecursiveAttr> = None;
    for (j, opt) in m.options().iter().flatten().enumerate() {
        let mut attr = recursive_attr.unwrap_or_default();
        if attr.apply(opt).is_some() {
            recursive_attr = Some(attr);
            continue;
        }
        let (set, clear) = match opt.as_str() {
            "tmpcopyup" => {
                copy_up = Some(j);
                continue;
            }
            "notmpcopyup" => {
                copy_up = None;
                continue;
            }
            "defaults" | "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "lazytime" => (MsFlags::MS_LAZYTIME, MsFlags::empty()),
            "nolazytime" => (MsFlags::empty(), MsFlags::MS_LAZYTIME),
            "silent" => (MsFlags::MS_SILENT, MsFlags::empty()),
            "loud" => (MsFlags::empty(), MsFlags::MS_SILENT),
            "bind" => {
                bind = Some(false);
                continue;
            }
            "rbind" => {
                bind = Some(true);
                continue;
            }
            "remount" => {
                return Err(field(
                    format!("{f}.options[{j}]"),
                    "\"remount\" is not supported in a container mount",
                ))
            }
            other => {
                if let Some(p) = propagation_flag(other) {
                    propagation.push(p);
                } else if other.is_empty() || other.contains(',') || other.contains('\0') {
                    return Err(field(format!("{f}.options[{j}]"), "invalid option"));
                } else if let Some(why) = runtime_only_option(other) {
                    return Err(field(
                        format!("{f}.options[{j}]"),
                        format!("{other}: {why}"),
                    ));
                } else {
                    // Unknown to the VFS layer: a filesystem option (mode=755, size=..., newinstance).
                    data.push(other.to_string());
                    data_index.push(j);
                }
                continue;
            }
        };
        flags = (flags | set) & !clear;
    }
    let typ = m.typ().as_deref().unwrap_or("");
    if let Some(j) = copy_up {
        if typ != "tmpfs" || bind.is_some() {
            return Err(field(
                format!("{f}.options[{j}]"),
                "tmpcopyup applies to tmpfs mounts only",
            ));
        }
    }
    let kind = match (typ, bind) {
        ("bind", recursive) | ("" | "none", recursive @ Some(_)) => {
            let recursive = recursive.unwrap_or(false);
            let src = m
                .source()
                .as_ref()
                .filter(|s| !s.as_os_str().is_empty())
                .ok_or_else(|| field(format!("{f}.source"), "a bind mount needs a source"))?;
            let src = if src.is_absolute() {
                src.clone()
            } else {
                bundle.join(src)
            };
            let meta = std::fs::metadata(&src)
                .map_err(|e| field(format!("{f}.source"), format!("{}: {e}", src.display())))?;
            if !data.is_empty() {
                return Err(field(
                    format!("{f}.options"),
                    format!("unknown bind mount option(s) {data:?}"),
                ));
            }
            return Ok(MountPlan {
                field: f,
                kind: MountKind::Bind {
                    recursive,
                    source_is_dir: meta.is_dir(),
                },
                source: Some(src),
                destination,
                flags,
                propagation,
                data: None,
                copy_up: false,
                recursive_attr,
            });
        }
        ("", None) => return Err(field(format!("{f}.type"), "missing (and no bind option)")),
        ("cgroup", _) => MountKind::Cgroup,
        (t, _) => {
            if t.contains('\0') || (!KNOWN_FS.contains(&t) && !kernel_has_fs(t)) {
                return Err(field(
                    format!("{f}.type"),
                    format!("unknown filesystem type {t:?} (not in /proc/filesystems)"),
                ));
            }
            if t == "none" {
                return Err(field(format!("{f}.type"), "\"none\" without a bind option"));
            }
            // The filesystem's own parser judges its options now, before anything exists.
            let opts: Vec<&str> = data.iter().map(String::as_str).collect();
            if let Err(r) = crate::rootfs::fsopts::check(t, &opts) {
                let j = data_index.get(r.index).copied().unwrap_or(r.index);
                return Err(field(
                    format!("{f}.options[{j}]"),
                    format!("{}: {}", opts.get(r.index).unwrap_or(&""), r.reason),
                ));
            }
            MountKind::Fs {
                fstype: t.to_string(),
            }
        }
    };
    if destination == Path::new("/") {
        return Err(field(
            format!("{f}.destination"),
            "mounting over the container's / is not supported",
        ));
    }
    Ok(MountPlan {
        field: f,
        kind,
        source: m.source().clone(),
        destination,
        flags,
        propagation,
        data: if data.is_empty() {
            None
        } else {
            Some(data.join(","))
        },
        copy_up: copy_up.is_some(),
        recursive_attr,
    })
}

/// Options that engines or mount(8) understand but that are neither a mount(2) flag nor a
/// filesystem option: passed on as filesystem data they would fail the mount with a bare
/// EINVAL (or, worse, be taken by a filesystem with a different meaning). Returns why each
/// is refused; `None` for anything else (a filesystem option such as `size=64m`).
fn runtime_only_option(opt: &str) -> Option<&'static str> {
    let name = opt.split_once('=').map_or(opt, |(k, _)| k);
    let why = match name {
        "idmap" | "ridmap" => "id-mapped mounts are not supported by nanoclaw",
        "z" | "Z" => "SELinux relabeling is an engine option (nanoclaw has no LSM support)",
        "U" | "copy" | "nocopy" if opt == name => {
            "an engine (podman/docker) volume option, not a runtime mount option"
        }
        "auto" | "noauto" | "user" | "nouser" | "users" | "owner" | "group" | "nofail"
        | "_netdev" | "comment" | "loop" => "a mount(8)/fstab option, not a mount(2) option",
        _ if name.starts_with("x-") || name.starts_with("X-") => {
            "a userspace (x-*) option, not a mount(2) option"
        }
        _ => return None,
    };
    Some(why)
}

fn device_plan(i: usize, d: &oci_spec::runtime::LinuxDevice) -> Result<DevicePlan, SpecError> {
    let f = format!("linux.devices[{i}]");
    // Anywhere in the rootfs, as runc allows (`ctr run --device /srv/x` makes the container
    // path the host path); the node is made by a RESOLVE_IN_ROOT walk, so it stays inside.
    let path = container_path(&format!("{f}.path"), d.path())?;
    if path == Path::new("/") {
        return Err(field(
            format!("{f}.path"),
            "a device cannot replace the rootfs /",
        ));
    }
    let kind = match d.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => DeviceKind::Char,
        LinuxDeviceType::B => DeviceKind::Block,
        LinuxDeviceType::P => DeviceKind::Fifo,
        LinuxDeviceType::A => {
            return Err(field(
                format!("{f}.type"),
                "\"a\" is only valid in a cgroup device rule",
            ))
        }
    };
    let num = |v: i64, name: &str| -> Result<u64, SpecError> {
        u64::try_from(v)
            .ok()
            .filter(|n| *n <= u32::MAX as u64)
            .ok_or_else(|| field(format!("{f}.{name}"), format!("{v} is out of range")))
    };
    let major = num(d.major(), "major")?;
    let minor = num(d.minor(), "minor")?;
    let mode = device_mode(&f, kind, d.file_mode())?;
    Ok(DevicePlan {
        field: f,
        path,
        kind,
        major,
        minor,
        mode,
        uid: d.uid(),
        gid: d.gid(),
    })
}

/// `linux.devices[].fileMode`: the permission bits of the node (default 0666). Engines copy
/// the host node's whole `st_mode` here (podman writes 0o20660 for a character device), so
/// file-type bits are accepted as runc does; runc drops them silently and lets `type` decide,
/// while here they must at least agree with `type` (a block-device or regular-file mode on a
/// `"c"` entry is a contradiction in the config, not something to guess about).
fn device_mode(f: &str, kind: DeviceKind, mode: Option<u32>) -> Result<u32, SpecError> {
    const S_IFMT: u32 = 0o170000;
    let Some(mode) = mode else {
        return Ok(0o666);
    };
    let type_bits = mode & S_IFMT;
    let expected = match kind {
        DeviceKind::Char => 0o020000,
        DeviceKind::Block => 0o060000,
        DeviceKind::Fifo => 0o010000,
    };
    if mode & !(S_IFMT | 0o7777) != 0 {
        return Err(field(
            format!("{f}.fileMode"),
            format!("{mode:#o} has bits outside the file type and 07777"),
        ));
    }
    if type_bits != 0 && type_bits != expected {
        return Err(field(
            format!("{f}.fileMode"),
            format!(
                "{mode:#o} has file-type bits {type_bits:#o} that contradict `type` (expected {expected:#o} or none)"
            ),
        ));
    }
    Ok(mode & 0o7777)
}

fn rlimit_resource(t: PosixRlimitType) -> Resource {
    match t {
        PosixRlimitType::RlimitCpu => Resource::RLIMIT_CPU,
        PosixRlimitType::RlimitFsize => Resource::RLIMIT_FSIZE,
        PosixRlimitType::RlimitData => Resource::RLIMIT_DATA,
        PosixRlimitType::RlimitStack => Resource::RLIMIT_STACK,
        PosixRlimitType::RlimitCore => Resource::RLIMIT_CORE,
        PosixRlimitType::RlimitRss => Resource::RLIMIT_RSS,
        PosixRlimitType::RlimitNproc => Resource::RLIMIT_NPROC,
        PosixRlimitType::RlimitNofile => Resource::RLIMIT_NOFILE,
        PosixRlimitType::RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        PosixRlimitType::RlimitAs => Resource::RLIMIT_AS,
        PosixRlimitType::RlimitLocks => Resource::RLIMIT_LOCKS,
        PosixRlimitType::RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        PosixRlimitType::RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        PosixRlimitType::RlimitNice => Resource::RLIMIT_NICE,
        PosixRlimitType::RlimitRtprio => Resource::RLIMIT_RTPRIO,
        PosixRlimitType::RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

fn process_plan(
    spec: &Spec,
    ns: &NamespacePlan,
    uid_maps: &[IdMap],
    gid_maps: &[IdMap],
) -> Result<ProcessPlan, SpecError> {
    let p = spec
        .process()
        .as_ref()
        .ok_or_else(|| field("process", "missing"))?;
    let args = p.args().clone().unwrap_or_default();
    if args.is_empty() || args[0].is_empty() {
        return Err(field("process.args", "must name a program"));
    }
    if p.command_line().is_some() {
        return Err(field("process.commandLine", "is for Windows only"));
    }
    for (i, a) in args.iter().enumerate() {
        if a.contains('\0') {
            return Err(field(format!("process.args[{i}]"), "contains NUL"));
        }
    }
    let env = p.env().clone().unwrap_or_default();
    for (i, e) in env.iter().enumerate() {
        match e.split_once('=') {
            Some((k, _)) if !k.is_empty() && !e.contains('\0') => {}
            _ => {
                return Err(field(
                    format!("process.env[{i}]"),
                    format!("{e:?} is not KEY=VALUE"),
                ))
            }
        }
    }
    let cwd = container_path("process.cwd", p.cwd())?;
    let user = p.user();
    if user.username().is_some() {
        return Err(field("process.user.username", "is for Windows only"));
    }
    let gids = user.additional_gids().clone().unwrap_or_default();
    // (uid_t)-1 means "leave unchanged" to setresuid/setresgid/chown: the process would keep
    // the runtime's ids (root) instead of switching.
    let unchanged = u32::MAX;
    if user.uid() == unchanged {
        return Err(field(
            "process.user.uid",
            "4294967295 (-1) is not a valid id",
        ));
    }
    if user.gid() == unchanged {
        return Err(field(
            "process.user.gid",
            "4294967295 (-1) is not a valid id",
        ));
    }
    if let Some(i) = gids.iter().position(|g| *g == unchanged) {
        return Err(field(
            format!("process.user.additionalGids[{i}]"),
            "4294967295 (-1) is not a valid id",
        ));
    }
    if ns.creates(CloneFlags::CLONE_NEWUSER) {
        if !is_mapped(uid_maps, user.uid()) {
            return Err(field(
                "process.user.uid",
                format!("{} is not mapped by linux.uidMappings", user.uid()),
            ));
        }
        for (name, g) in std::iter::once(("process.user.gid".to_string(), user.gid())).chain(
            gids.iter()
                .enumerate()
                .map(|(i, g)| (format!("process.user.additionalGids[{i}]"), *g)),
        ) {
            if !is_mapped(gid_maps, g) {
                return Err(field(
                    name,
                    format!("{g} is not mapped by linux.gidMappings"),
                ));
            }
        }
    }
    if gids.len() > 65536 {
        return Err(field("process.user.additionalGids", "too many groups"));
    }
    if let Some(u) = user.umask() {
        if u > 0o777 {
            return Err(field(
                "process.user.umask",
                format!("{u:#o} has bits outside 0777"),
            ));
        }
    }
    let mut rlimits = Vec::new();
    let mut seen = HashSet::new();
    for (i, r) in p.rlimits().iter().flatten().enumerate() {
        let f = format!("process.rlimits[{i}]");
        if !seen.insert(r.typ() as u32) {
            return Err(field(
                format!("{f}.type"),
                format!("{:?} given twice", r.typ()),
            ));
        }
        if r.soft() > r.hard() {
            return Err(field(
                f,
                format!("soft limit {} exceeds hard limit {}", r.soft(), r.hard()),
            ));
        }
        rlimits.push(RlimitPlan {
            resource: rlimit_resource(r.typ()),
            soft: r.soft(),
            hard: r.hard(),
        });
    }
    if let Some(adj) = p.oom_score_adj() {
        if !(-1000..=1000).contains(&adj) {
            return Err(field(
                "process.oomScoreAdj",
                format!("{adj} is outside -1000..1000"),
            ));
        }
    }
    // A terminal needs --console-socket (checked by `create`, which knows the flags).
    let terminal = p.terminal().unwrap_or(false);
    let sched = crate::security::sched::plan(p).map_err(|e| match e {
        crate::security::sched::SchedError::Invalid { field: f, why } => field(f, why),
        other => field("process", other.to_string()),
    })?;
    Ok(ProcessPlan {
        args,
        env,
        cwd,
        uid: user.uid(),
        gid: user.gid(),
        additional_gids: gids,
        umask: user.umask(),
        rlimits,
        oom_score_adj: p.oom_score_adj(),
        no_new_privileges: p.no_new_privileges().unwrap_or(false),
        terminal,
        sched,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recursive_mount_options_build_setattr_masks() {
        let attr = |opts: &[&str]| {
            let mut a = RecursiveAttr::default();
            for o in opts {
                a.apply(o).unwrap();
            }
            a
        };
        assert_eq!(
            attr(&["rro", "rnosuid", "rnodev", "rnoexec"]),
            RecursiveAttr {
                set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
                clear: 0
            }
        );
        assert_eq!(
            attr(&["rro", "rrw"]),
            RecursiveAttr {
                set: 0,
                clear: MOUNT_ATTR_RDONLY
            }
        );
        // The atime field is always cleared whole (a partial clear is EINVAL in the kernel).
        for (o, mode) in [
            ("rnoatime", MOUNT_ATTR_NOATIME),
            ("rstrictatime", MOUNT_ATTR_STRICTATIME),
            ("rnorelatime", MOUNT_ATTR_STRICTATIME),
            ("rrelatime", MOUNT_ATTR_RELATIME),
            ("ratime", MOUNT_ATTR_RELATIME),
            ("rnostrictatime", MOUNT_ATTR_RELATIME),
        ] {
            let a = attr(&["rnoatime", o]);
            assert_eq!(
                a.clear & MOUNT_ATTR_ATIME_MASK,
                MOUNT_ATTR_ATIME_MASK,
                "{o}"
            );
            assert_eq!(a.set & MOUNT_ATTR_ATIME_MASK, mode, "{o}");
        }
        for o in RECURSIVE_MOUNT_OPTIONS {
            assert!(RecursiveAttr::default().apply(o).is_some(), "{o}");
        }
        assert!(RecursiveAttr::default().apply("ro").is_none());
    }
}

#[cfg(test)]
mod refusals;
