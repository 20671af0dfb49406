//! The cgroup v2 device filter: a `BPF_PROG_TYPE_CGROUP_DEVICE` program built from the rules
//! and attached to the container's cgroup2 directory (cgroup v2 has no devices controller).
//!
//! The program is tiny and fixed in shape, so it is emitted here instruction by instruction (as
//! runc and crun do) instead of pulling in a BPF toolchain crate; the kernel verifier checks it
//! on load. Loading and attaching need bpf(2), which neither rustix nor nix wraps: that one
//! syscall is the only `unsafe` in this crate.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use crate::devices::{Kind, Rule, ACC_ALL};
use crate::error::{CgroupError, Result};

/// One eBPF instruction (struct bpf_insn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | (dst & 0x0f),
        off,
        imm,
    }
}

// Opcodes (linux/bpf_common.h, linux/bpf.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU64_AND_K: u8 = 0x57;
const ALU64_RSH_K: u8 = 0x77;
const ALU64_MOV_K: u8 = 0xb7;
const ALU64_MOV_X: u8 = 0xbf;
const JMP_JNE_K: u8 = 0x55;
const JMP_EXIT: u8 = 0x95;

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

/// Builds the filter. Rules are checked last-first (the last matching rule decides, as with the
/// v1 controller); a request no rule matches is allowed, which is the v1 starting state — a rule
/// list that starts with a deny-all therefore denies it.
pub fn build_program(rules: &[Rule]) -> Vec<Insn> {
    // struct bpf_cgroup_dev_ctx { u32 access_type /* (access << 16) | type */; u32 major; u32 minor; }
    let mut p = vec![
        insn(LDX_MEM_W, R2, R1, 0, 0), // r2 = access_type
        insn(ALU64_MOV_X, R3, R2, 0, 0),
        insn(ALU64_AND_K, R3, 0, 0, 0xffff), // r3 = type
        insn(ALU64_RSH_K, R2, 0, 0, 16),     // r2 = access
        insn(LDX_MEM_W, R4, R1, 4, 0),       // r4 = major
        insn(LDX_MEM_W, R5, R1, 8, 0),       // r5 = minor
    ];
    for r in rules.iter().rev() {
        let mut block: Vec<Insn> = Vec::new();
        // Each check jumps past the block (to the next rule) on mismatch; offsets fixed below.
        let mut jumps = Vec::new();
        match r.kind {
            Kind::All => {}
            Kind::Block => {
                jumps.push(block.len());
                block.push(insn(JMP_JNE_K, R3, 0, 0, 1));
            }
            Kind::Char => {
                jumps.push(block.len());
                block.push(insn(JMP_JNE_K, R3, 0, 0, 2));
            }
        }
        if r.access != ACC_ALL {
            // Matches only when the request asks for nothing outside the rule's access.
            block.push(insn(ALU64_MOV_X, R1, R2, 0, 0));
            block.push(insn(ALU64_AND_K, R1, 0, 0, !(r.access as i32)));
            jumps.push(block.len());
            block.push(insn(JMP_JNE_K, R1, 0, 0, 0));
        }
        if let Some(m) = r.major {
            jumps.push(block.len());
            block.push(insn(JMP_JNE_K, R4, 0, 0, m as i32));
        }
        if let Some(m) = r.minor {
            jumps.push(block.len());
            block.push(insn(JMP_JNE_K, R5, 0, 0, m as i32));
        }
        block.push(insn(ALU64_MOV_K, R0, 0, 0, i32::from(r.allow)));
        block.push(insn(JMP_EXIT, 0, 0, 0, 0));
        let len = block.len();
        for j in jumps {
            // Jump from j to the first instruction after the block: off = len - j - 1 (< 16).
            block[j].off = (len - j - 1) as i16;
        }
        p.extend(block);
        if r.is_reset() {
            // Nothing before a reset can match, and the verifier refuses unreachable code.
            return p;
        }
    }
    p.push(insn(ALU64_MOV_K, R0, 0, 0, 1));
    p.push(insn(JMP_EXIT, 0, 0, 0, 0));
    p
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// bpf(2).
///
/// # Safety
/// `attr` must be the attribute struct the kernel expects for `cmd`, and every pointer stored in
/// it must be valid for the access the command makes for the duration of the call.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: forwarded from the caller's contract; the size passed is the size of `*attr`.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(fd: libc::c_long, op: &'static str) -> Result<OwnedFd> {
    let fd = RawFd::try_from(fd).map_err(|_| CgroupError::Bpf {
        op,
        source: std::io::Error::other("fd out of range"),
    })?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Loads the program; on a verifier error the message includes the verifier log.
pub fn load(prog: &[Insn]) -> Result<OwnedFd> {
    let license = b"Apache-2.0\0";
    let mut log = vec![0u8; 1 << 16];
    let mut attempt = |with_log: bool| {
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: u32::try_from(prog.len()).unwrap_or(u32::MAX),
            insns: prog.as_ptr() as u64,
            license: license.as_ptr() as u64,
            expected_attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        attr.prog_name[..9].copy_from_slice(b"nanoclaw\0");
        if with_log {
            attr.log_level = 1;
            attr.log_size = u32::try_from(log.len()).unwrap_or(0);
            attr.log_buf = log.as_mut_ptr() as u64;
        }
        // SAFETY: attr is a BPF_PROG_LOAD attribute; insns/license/log point to live buffers of
        // the sizes given, which outlive the call.
        unsafe { bpf(BPF_PROG_LOAD, &mut attr) }
    };
    match attempt(false) {
        Ok(fd) => owned(fd, "BPF_PROG_LOAD"),
        Err(e) => {
            let _ = attempt(true);
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            let msg = String::from_utf8_lossy(&log[..end]).trim().to_string();
            Err(CgroupError::Bpf {
                op: "BPF_PROG_LOAD",
                source: std::io::Error::new(e.kind(), format!("{e}; verifier log: {msg}")),
            })
        }
    }
}

/// Ids of the device programs attached directly to the cgroup.
fn query(cgroup: &OwnedFd) -> Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    // SAFETY: BPF_PROG_QUERY attribute; prog_ids points to `prog_cnt` writable u32s.
    unsafe { bpf(BPF_PROG_QUERY, &mut attr) }.map_err(|source| CgroupError::Bpf {
        op: "BPF_PROG_QUERY",
        source,
    })?;
    ids.truncate(attr.prog_cnt.min(64) as usize);
    Ok(ids)
}

/// Attaches `prog` to the cgroup directory `dir`, then detaches the device programs that were
/// attached before (an update replaces the filter; during the switch both apply, so access is
/// never wider than either).
pub fn attach_replacing(dir: &Path, prog: &OwnedFd) -> Result<()> {
    let cgroup: OwnedFd = rustix::fs::open(
        dir,
        rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC | rustix::fs::OFlags::RDONLY,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| CgroupError::Read {
        path: dir.to_path_buf(),
        source: e.into(),
    })?;
    let old = query(&cgroup)?;
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_fd().as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        ..Default::default()
    };
    // SAFETY: BPF_PROG_ATTACH attribute with two fds we hold open for the call.
    unsafe { bpf(BPF_PROG_ATTACH, &mut attr) }.map_err(|source| CgroupError::Bpf {
        op: "BPF_PROG_ATTACH",
        source,
    })?;
    for id in old {
        let mut g = GetFdAttr {
            prog_id: id,
            ..Default::default()
        };
        // SAFETY: BPF_PROG_GET_FD_BY_ID attribute, no pointers.
        let fd =
            unsafe { bpf(BPF_PROG_GET_FD_BY_ID, &mut g) }.map_err(|source| CgroupError::Bpf {
                op: "BPF_PROG_GET_FD_BY_ID",
                source,
            })?;
        let fd = owned(fd, "BPF_PROG_GET_FD_BY_ID")?;
        let mut d = AttachAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_bpf_fd: fd.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        // SAFETY: BPF_PROG_DETACH attribute with two fds we hold open for the call.
        unsafe { bpf(BPF_PROG_DETACH, &mut d) }.map_err(|source| CgroupError::Bpf {
            op: "BPF_PROG_DETACH",
            source,
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::{ACC_READ, ACC_WRITE};

    #[test]
    fn jumps_land_on_the_next_rule() {
        let rules = vec![
            Rule {
                allow: false,
                kind: Kind::All,
                major: None,
                minor: None,
                access: ACC_ALL,
            },
            Rule {
                allow: true,
                kind: Kind::Char,
                major: Some(1),
                minor: Some(3),
                access: ACC_READ | ACC_WRITE,
            },
        ];
        let p = build_program(&rules);
        // prologue 6; rule "c 1:3 rw": type jne, mov, and, jne, jne major, jne minor, mov, exit = 8;
        // the reset rule: mov, exit = 2, and nothing after it (unreachable code fails the verifier).
        assert_eq!(p.len(), 6 + 8 + 2);
        // Every jump in the first rule block targets index 14 (the reset rule).
        for (i, ins) in p.iter().enumerate().take(14).skip(6) {
            if ins.code == JMP_JNE_K {
                assert_eq!(i as i64 + 1 + i64::from(ins.off), 14, "insn {i}");
            }
        }
        assert_eq!(p[14], insn(ALU64_MOV_K, R0, 0, 0, 0));
    }
}
