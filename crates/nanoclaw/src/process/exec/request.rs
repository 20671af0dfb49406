//! The exec request: runc's `exec` flags and `--process` file, turned into the OCI `Process`
//! to run (`build_process`). Pure parsing, no syscalls: the fuzz target
//! `nanoclaw_lifecycle_inputs` drives it with untrusted bytes.

use std::io::Read;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Process;

use super::ExecError;

/// Upper bound for a `--process` file (runc has none; a process.json is a few KiB).
pub(super) const MAX_PROCESS_JSON: u64 = 1 << 20;

/// The command-line view of an exec request (runc's flags).
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// `--process`: an OCI `process` object; when given, `args` and the overrides are ignored
    /// (as runc does).
    pub process_file: Option<PathBuf>,
    pub args: Vec<String>,
    /// `--env KEY=VALUE`, appended to config.json's environment (replacing equal keys).
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// `--user UID[:GID]`.
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub tty: bool,
    pub no_new_privs: bool,
    /// `--cap CAP_X`: added to the bounding, effective, permitted and ambient sets (runc).
    pub caps: Vec<String>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// `--preserve-fds N`: fds 3..3+N are passed to the process.
    pub preserve_fds: u32,
    /// `--ignore-paused`: exec into a paused container (the process starts frozen and runs
    /// once the container is resumed).
    pub ignore_paused: bool,
    /// `--cgroup [CONTROLLER[,CONTROLLER]:]PATH`: run the process in an existing sub-cgroup
    /// of the container's cgroup.
    pub cgroups: Vec<String>,
}

/// `--cap` as runc takes it: with or without the `CAP_` prefix, in any case.
pub fn parse_cap(name: &str) -> Result<oci_spec::runtime::Capability, ExecError> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    if bare.is_empty() {
        return Err(ExecError::BadCap(name.to_string()));
    }
    bare.parse()
        .map_err(|_| ExecError::BadCap(name.to_string()))
}

/// The `--cgroup` flags: a sub-cgroup for every hierarchy (`PATH`) and per controller
/// (`cpu,memory:PATH`, v1 hierarchies by any of their controllers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubCgroups {
    pub all: Option<PathBuf>,
    pub per_controller: std::collections::BTreeMap<String, PathBuf>,
}

impl SubCgroups {
    /// Parses runc's `[<controller>:]<cgroup>` forms. The path is relative to the container's
    /// cgroup (a leading `/` is ignored) and may not climb out of it.
    pub fn parse(args: &[String]) -> Result<Self, ExecError> {
        let mut out = SubCgroups::default();
        for arg in args {
            let bad = |why: &str| ExecError::BadCgroup {
                arg: arg.clone(),
                why: why.to_string(),
            };
            let (ctrls, path) = match arg.split_once(':') {
                Some((c, p)) => (Some(c), p),
                None => (None, arg.as_str()),
            };
            let rel = PathBuf::from(path.trim_start_matches('/'));
            if rel.as_os_str().is_empty() {
                return Err(bad("empty sub-cgroup path"));
            }
            if rel
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(bad(
                    "the sub-cgroup path may not contain `..` or `.` (it must stay inside the container's cgroup)",
                ));
            }
            match ctrls {
                None => out.all = Some(rel),
                Some(c) => {
                    for ctrl in c.split(',') {
                        if ctrl.is_empty() {
                            return Err(bad("empty controller name before `:`"));
                        }
                        out.per_controller.insert(ctrl.to_string(), rel.clone());
                    }
                }
            }
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_none() && self.per_controller.is_empty()
    }

    /// The directory each hierarchy's `cgroup.procs` is written in: the container's own
    /// directory, or the sub-cgroup chosen for one of its controllers (else the bare `PATH`).
    /// The unified (v2) hierarchy takes the bare `PATH`, else the path given for one of the
    /// controllers it has.
    pub fn targets(&self, paths: &nanoclaw_cgroups::CgroupPaths) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for (ctrls, h) in &paths.v1 {
            let sub = ctrls
                .split(',')
                .find_map(|c| self.per_controller.get(c))
                .or(self.all.as_ref());
            out.push(match sub {
                Some(s) => h.dir.join(s),
                None => h.dir.clone(),
            });
        }
        if let Some(u) = &paths.unified {
            // cgroup2 is one hierarchy: the bare PATH, else the sub-cgroup named for one of
            // the controllers it has (pure v2: `memory:sub` works as in runc).
            let has = std::fs::read_to_string(u.dir.join("cgroup.controllers")).unwrap_or_default();
            let sub = self.all.as_ref().or_else(|| {
                has.split_whitespace()
                    .find_map(|c| self.per_controller.get(c))
            });
            out.push(match sub {
                Some(s) => u.dir.join(s),
                None => u.dir.clone(),
            });
        }
        out.dedup();
        out
    }
}

/// Parses a `--process` file into an OCI `Process`, naming the offending JSON field on error.
pub fn load_process_file(path: &Path) -> Result<Process, ExecError> {
    let file = std::fs::File::open(path).map_err(|source| ExecError::ProcessFile {
        path: path.to_path_buf(),
        source,
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_PROCESS_JSON + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ExecError::ProcessFile {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > MAX_PROCESS_JSON {
        return Err(ExecError::ProcessFileTooLarge {
            path: path.to_path_buf(),
        });
    }
    parse_process_json(path, &bytes)
}

/// Parses the bytes of a `--process` file (`path` only names it in errors). Untrusted input:
/// fuzzed by the `nanoclaw_lifecycle_inputs` target.
pub fn parse_process_json(path: &Path, bytes: &[u8]) -> Result<Process, ExecError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize::<_, Process>(de).map_err(|e| ExecError::ProcessJson {
        path: path.to_path_buf(),
        field: e.path().to_string(),
        msg: e.into_inner().to_string(),
    })
}

/// The exec'd process: `--process` as given, or config.json's process with the command line
/// applied on top (args replaced, env appended, cwd/user/terminal overridden).
pub fn build_process(
    req: &ExecRequest,
    config_process: Option<&Process>,
) -> Result<Process, ExecError> {
    if let Some(path) = &req.process_file {
        let mut p = load_process_file(path)?;
        if req.tty {
            p.set_terminal(Some(true));
        }
        return Ok(p);
    }
    if req.args.is_empty() {
        return Err(ExecError::NoCommand);
    }
    let mut p = config_process.cloned().unwrap_or_default();
    p.set_args(Some(req.args.clone()));
    p.set_terminal(Some(req.tty));
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &req.env {
        let Some((k, _)) = kv.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(ExecError::BadEnv(kv.clone()));
        };
        env.retain(|e| e.split_once('=').map(|(ek, _)| ek) != Some(k));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &req.cwd {
        if !cwd.is_absolute() {
            return Err(ExecError::BadCwd(cwd.clone()));
        }
        p.set_cwd(cwd.clone());
    }
    let mut user = p.user().clone();
    if let Some(u) = &req.user {
        let (uid, gid) = parse_user(u)?;
        user.set_uid(uid);
        if let Some(g) = gid {
            user.set_gid(g);
        }
    }
    if !req.additional_gids.is_empty() {
        user.set_additional_gids(Some(req.additional_gids.clone()));
    }
    p.set_user(user);
    if req.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if !req.caps.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_default();
        for name in &req.caps {
            let cap = parse_cap(name)?;
            let add = |set: Option<&oci_spec::runtime::Capabilities>| {
                let mut set = set.cloned().unwrap_or_default();
                set.insert(cap);
                Some(set)
            };
            caps.set_bounding(add(caps.bounding().as_ref()));
            caps.set_effective(add(caps.effective().as_ref()));
            caps.set_permitted(add(caps.permitted().as_ref()));
            caps.set_ambient(add(caps.ambient().as_ref()));
        }
        p.set_capabilities(Some(caps));
    }
    Ok(p)
}

/// `UID[:GID]`, numeric (the container's /etc/passwd is not consulted, like runc).
pub fn parse_user(s: &str) -> Result<(u32, Option<u32>), ExecError> {
    let bad = || ExecError::BadUser(s.to_string());
    match s.split_once(':') {
        Some((u, g)) => Ok((
            u.parse().map_err(|_| bad())?,
            Some(g.parse().map_err(|_| bad())?),
        )),
        None => Ok((s.parse().map_err(|_| bad())?, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cap_flag_takes_runc_forms() {
        use oci_spec::runtime::Capability;
        for name in ["CAP_KILL", "KILL", "cap_kill", "kill", "Cap_Kill"] {
            assert_eq!(parse_cap(name).unwrap(), Capability::Kill, "{name}");
        }
        assert_eq!(parse_cap("cap_sys_admin").unwrap(), Capability::SysAdmin);
        for bad in ["CAP_", "", "CAP_NOPE", "CAPKILL"] {
            let e = parse_cap(bad).unwrap_err().to_string();
            assert!(
                e.contains("--cap") && e.contains("unknown capability"),
                "{e}"
            );
        }
    }

    #[test]
    fn cgroup_flag_forms() {
        let s =
            |v: &[&str]| SubCgroups::parse(&v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        let a = s(&["sub"]).unwrap();
        assert_eq!(a.all.as_deref(), Some(Path::new("sub")));
        let b = s(&["cpu,memory:/x/y", "pids:z"]).unwrap();
        assert_eq!(b.per_controller["cpu"], Path::new("x/y"));
        assert_eq!(b.per_controller["memory"], Path::new("x/y"));
        assert_eq!(b.per_controller["pids"], Path::new("z"));
        for bad in ["../up", "a/../../b", "", "/", ":x", "cpu,:x"] {
            let e = s(&[bad]).unwrap_err().to_string();
            assert!(e.contains("--cgroup"), "{bad}: {e}");
        }
        let mut paths = nanoclaw_cgroups::CgroupPaths::default();
        let dir = |d: &str| nanoclaw_cgroups::path::HierarchyDir {
            mountpoint: "/m".into(),
            dir: d.into(),
        };
        paths.v1.insert("cpu,cpuacct".into(), dir("/m/cpu/c"));
        paths.v1.insert("memory".into(), dir("/m/memory/c"));
        paths.unified = Some(dir("/m/unified/c"));
        let t = s(&["cpu:s"]).unwrap().targets(&paths);
        assert_eq!(
            t,
            [
                PathBuf::from("/m/cpu/c/s"),
                "/m/memory/c".into(),
                "/m/unified/c".into()
            ]
        );
        let t = s(&["s"]).unwrap().targets(&paths);
        assert!(t.iter().all(|p| p.ends_with("c/s")), "{t:?}");
    }

    #[test]
    fn user_flag() {
        assert_eq!(parse_user("1000").unwrap(), (1000, None));
        assert_eq!(parse_user("1000:100").unwrap(), (1000, Some(100)));
        assert!(parse_user("bob").is_err());
        assert!(parse_user("1:x").is_err());
    }

    #[test]
    fn command_line_applies_on_top_of_config_process() {
        let mut base = Process::default();
        base.set_env(Some(vec!["PATH=/bin".into(), "A=1".into()]));
        let req = ExecRequest {
            args: vec!["sh".into()],
            env: vec!["A=2".into(), "B=3".into()],
            cwd: Some("/tmp".into()),
            user: Some("7:8".into()),
            tty: true,
            ..Default::default()
        };
        let p = build_process(&req, Some(&base)).unwrap();
        assert_eq!(p.args().as_deref(), Some(&["sh".to_string()][..]));
        assert_eq!(
            p.env().as_deref(),
            Some(
                &[
                    "PATH=/bin".to_string(),
                    "A=2".to_string(),
                    "B=3".to_string()
                ][..]
            )
        );
        assert_eq!(p.cwd(), Path::new("/tmp"));
        assert_eq!((p.user().uid(), p.user().gid()), (7, 8));
        assert_eq!(p.terminal(), Some(true));
        let bad = ExecRequest {
            args: vec!["sh".into()],
            env: vec!["=x".into()],
            ..Default::default()
        };
        assert!(matches!(
            build_process(&bad, None),
            Err(ExecError::BadEnv(_))
        ));
        assert!(matches!(
            build_process(&ExecRequest::default(), None),
            Err(ExecError::NoCommand)
        ));
    }

    #[test]
    fn process_file_errors_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p.json");
        std::fs::write(
            &f,
            br#"{"cwd":"/","args":["sh"],"user":{"uid":"zero","gid":0}}"#,
        )
        .unwrap();
        let e = load_process_file(&f).unwrap_err().to_string();
        assert!(e.contains("user.uid"), "{e}");
        std::fs::write(&f, br#"{"cwd":"/","args":["sh"],"user":{"uid":0,"gid":0}}"#).unwrap();
        assert_eq!(
            load_process_file(&f).unwrap().args().as_deref(),
            Some(&["sh".to_string()][..])
        );
    }
}
