//! Per-process scheduling attributes of runtime-spec 1.2/1.3: `process.scheduler`
//! (sched_setattr), `process.ioPriority` (ioprio_set) and `process.execCPUAffinity`
//! (sched_setaffinity). Validated with the rest of the config ([`plan`]); applied by finish.rs
//! for the init and every `exec`'d process (scheduler, I/O priority), and by exec.rs around the
//! cgroup move (CPU affinity: the spec makes it an `exec` setting, not the init's).

use oci_spec::runtime::{
    IOPriorityClass, LinuxSchedulerFlag, LinuxSchedulerPolicy, Process, Scheduler,
};

#[derive(Debug, thiserror::Error)]
pub enum SchedError {
    #[error("{field}: {why}")]
    Invalid { field: &'static str, why: String },
    #[error("{field}: {source}")]
    Sys {
        field: &'static str,
        source: nix::Error,
    },
}

fn invalid(field: &'static str, why: impl Into<String>) -> SchedError {
    SchedError::Invalid {
        field,
        why: why.into(),
    }
}

/// `struct sched_attr` (SCHED_ATTR_SIZE_VER0, 48 bytes): the fields the spec sets.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

/// What to apply to one process, checked before anything is created.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchedPlan {
    pub attr: Option<SchedAttr>,
    /// The packed ioprio value (class << 13 | level).
    pub ioprio: Option<i32>,
    /// execCPUAffinity.initial / .final, as CPU lists.
    pub affinity_initial: Option<Vec<usize>>,
    pub affinity_final: Option<Vec<usize>>,
}

const SCHED_OTHER: u32 = 0;
const SCHED_FIFO: u32 = 1;
const SCHED_RR: u32 = 2;
const SCHED_BATCH: u32 = 3;
const SCHED_IDLE: u32 = 5;
const SCHED_DEADLINE: u32 = 6;

fn scheduler_attr(s: &Scheduler) -> Result<SchedAttr, SchedError> {
    const F: &str = "process.scheduler";
    let policy = match s.policy() {
        LinuxSchedulerPolicy::SchedOther => SCHED_OTHER,
        LinuxSchedulerPolicy::SchedFifo => SCHED_FIFO,
        LinuxSchedulerPolicy::SchedRr => SCHED_RR,
        LinuxSchedulerPolicy::SchedBatch => SCHED_BATCH,
        LinuxSchedulerPolicy::SchedIdle => SCHED_IDLE,
        LinuxSchedulerPolicy::SchedDeadline => SCHED_DEADLINE,
        LinuxSchedulerPolicy::SchedIso => {
            return Err(invalid(
                "process.scheduler.policy",
                "SCHED_ISO is not implemented by Linux",
            ))
        }
    };
    let nice = s.nice().unwrap_or(0);
    if !(-20..=19).contains(&nice) {
        return Err(invalid(
            "process.scheduler.nice",
            format!("{nice} is outside -20..19"),
        ));
    }
    let priority = s.priority().unwrap_or(0);
    let realtime = matches!(policy, SCHED_FIFO | SCHED_RR);
    if realtime && !(1..=99).contains(&priority) {
        return Err(invalid(
            "process.scheduler.priority",
            format!("{priority} is outside 1..99 (required for SCHED_FIFO and SCHED_RR)"),
        ));
    }
    if !realtime && priority != 0 {
        return Err(invalid(
            "process.scheduler.priority",
            format!("{priority}: only SCHED_FIFO and SCHED_RR take a priority (0 otherwise)"),
        ));
    }
    let mut flags = 0u64;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            LinuxSchedulerFlag::SchedResetOnFork => 0x01,
            LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
            LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
            LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
            LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
            LinuxSchedulerFlag::SchedFlagUtilClampMin
            | LinuxSchedulerFlag::SchedFlagUtilClampMax => {
                return Err(invalid(
                    "process.scheduler.flags",
                    "utilization clamping needs values the spec has no field for",
                ))
            }
        };
    }
    let (runtime, deadline, period) = (
        s.runtime().unwrap_or(0),
        s.deadline().unwrap_or(0),
        s.period().unwrap_or(0),
    );
    if policy == SCHED_DEADLINE {
        if runtime == 0 || deadline == 0 || runtime > deadline || (period != 0 && deadline > period)
        {
            return Err(invalid(
                F,
                "SCHED_DEADLINE needs 0 < runtime <= deadline <= period (period 0 = deadline)",
            ));
        }
    } else if runtime != 0 || deadline != 0 || period != 0 {
        return Err(invalid(
            F,
            "runtime, deadline and period apply to SCHED_DEADLINE only",
        ));
    }
    Ok(SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy,
        flags,
        nice,
        priority: u32::try_from(priority).unwrap_or(0),
        runtime,
        deadline,
        period,
    })
}

/// Parses a CPU list such as `0-3,7` (the format of execCPUAffinity and cpuset.cpus).
pub fn parse_cpu_list(field: &'static str, s: &str) -> Result<Vec<usize>, SchedError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim) {
        let num = |v: &str| {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n < libc::CPU_SETSIZE as usize)
                .ok_or_else(|| invalid(field, format!("{s:?}: bad CPU number {v:?}")))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(invalid(
                        field,
                        format!("{s:?}: range {a}-{b} runs backwards"),
                    ));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Checks the process's scheduling fields; nothing is applied.
pub fn plan(p: &Process) -> Result<SchedPlan, SchedError> {
    let attr = p.scheduler().as_ref().map(scheduler_attr).transpose()?;
    let ioprio = match p.io_priority() {
        None => None,
        Some(io) => {
            let level = io.priority();
            if !(0..=7).contains(&level) {
                return Err(invalid(
                    "process.ioPriority.priority",
                    format!("{level} is outside 0..7"),
                ));
            }
            let class = match io.class() {
                IOPriorityClass::IoprioClassRt => 1,
                IOPriorityClass::IoprioClassBe => 2,
                IOPriorityClass::IoprioClassIdle => 3,
            };
            Some((class << 13) | level as i32)
        }
    };
    let list = |field, v: Option<&String>| {
        v.filter(|s| !s.trim().is_empty())
            .map(|s| parse_cpu_list(field, s))
            .transpose()
    };
    let (affinity_initial, affinity_final) = match p.exec_cpu_affinity() {
        None => (None, None),
        Some(a) => (
            list("process.execCPUAffinity.initial", a.initial().as_ref())?,
            list(
                "process.execCPUAffinity.final",
                a.cpu_affinity_final().as_ref(),
            )?,
        ),
    };
    Ok(SchedPlan {
        attr,
        ioprio,
        affinity_initial,
        affinity_final,
    })
}

impl SchedPlan {
    /// Scheduler and I/O priority of the calling process (kept across execve).
    pub fn apply(&self) -> Result<(), SchedError> {
        if let Some(attr) = &self.attr {
            // SAFETY: sched_setattr reads `size` bytes of a valid, initialised #[repr(C)]
            // struct sched_attr that outlives the call; pid 0 is the caller.
            let r =
                unsafe { libc::syscall(libc::SYS_sched_setattr, 0, attr as *const SchedAttr, 0) };
            nix::errno::Errno::result(r).map_err(|source| SchedError::Sys {
                field: "process.scheduler",
                source,
            })?;
        }
        if let Some(v) = self.ioprio {
            // SAFETY: ioprio_set(IOPRIO_WHO_PROCESS, 0 = the caller, value) passes integers.
            let r = unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, v) };
            nix::errno::Errno::result(r).map_err(|source| SchedError::Sys {
                field: "process.ioPriority",
                source,
            })?;
        }
        Ok(())
    }
}

/// sched_setaffinity of the calling process to `cpus`.
pub fn set_affinity(field: &'static str, cpus: &[usize]) -> Result<(), SchedError> {
    let mut set = nix::sched::CpuSet::new();
    for &c in cpus {
        set.set(c)
            .map_err(|source| SchedError::Sys { field, source })?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .map_err(|source| SchedError::Sys { field, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn process(json: serde_json::Value) -> Process {
        let mut base = serde_json::json!({"cwd": "/", "user": {"uid": 0, "gid": 0}});
        for (k, v) in json.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("f", "0-2,5,1").unwrap(), [0, 1, 2, 5]);
        for bad in ["", "3-1", "x", "1,,2", "99999"] {
            assert!(parse_cpu_list("f", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn plans_and_refusals_name_the_field() {
        let p = plan(&process(serde_json::json!({
            "scheduler": {"policy": "SCHED_FIFO", "priority": 10},
            "ioPriority": {"class": "IOPRIO_CLASS_IDLE", "priority": 7},
            "execCPUAffinity": {"initial": "0", "final": "0-1"}
        })))
        .unwrap();
        let a = p.attr.unwrap();
        assert_eq!((a.policy, a.priority, a.size), (SCHED_FIFO, 10, 48));
        assert_eq!(p.ioprio, Some((3 << 13) | 7));
        assert_eq!(p.affinity_initial.as_deref(), Some(&[0][..]));
        assert_eq!(p.affinity_final.as_deref(), Some(&[0, 1][..]));
        for (json, field) in [
            (
                serde_json::json!({"scheduler": {"policy": "SCHED_RR"}}),
                "process.scheduler.priority",
            ),
            (
                serde_json::json!({"scheduler": {"policy": "SCHED_OTHER", "nice": 40}}),
                "process.scheduler.nice",
            ),
            (
                serde_json::json!({"scheduler": {"policy": "SCHED_DEADLINE"}}),
                "process.scheduler",
            ),
            (
                serde_json::json!({"scheduler": {"policy": "SCHED_ISO"}}),
                "process.scheduler.policy",
            ),
            (
                serde_json::json!({"ioPriority": {"class": "IOPRIO_CLASS_BE", "priority": 8}}),
                "process.ioPriority.priority",
            ),
        ] {
            let e = plan(&process(json.clone())).unwrap_err().to_string();
            assert!(e.starts_with(field), "{json}: {e}");
        }
    }
}
