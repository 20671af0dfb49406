//! The VMM: one KVM VM with one vCPU and fixed memory, entered directly in 64-bit long
//! mode at CPL3. See [`layout`] for the guest's system structures and ARCHITECTURE.md for
//! why (on the `kvm_pvm` backend CPL0 is emulated, CPL3 runs natively; the same setup is
//! valid on hardware VMX/SVM).
//!
//! Teardown is `Drop`: the vCPU fd, the VM fd and the guest memory mapping are released
//! when [`Vm`] goes out of scope, on every path.

pub mod layout;
pub mod memory;
pub mod watchdog;

use std::sync::OnceLock;

use ironclaw_abi::layout as l;
use kvm_bindings::{kvm_segment, kvm_userspace_memory_region, CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap, GuestRegionMmap, MmapRegion};

/// A KVM operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("KVM is not usable: opening /dev/kvm failed: {0}")]
    Open(kvm_ioctls::Error),
    #[error("KVM {op} failed: {source}")]
    Kvm {
        op: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("allocating {bytes} bytes of guest memory failed: {reason}")]
    Memory { bytes: u64, reason: String },
    #[error("writing guest memory at {addr:#x} ({what}) failed: {reason}")]
    Write {
        addr: u64,
        what: &'static str,
        reason: String,
    },
}

fn kvm_err(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmmError {
    move |source| VmmError::Kvm { op, source }
}

struct KvmHandle {
    kvm: Kvm,
    cpuid: CpuId,
}

static KVM: OnceLock<KvmHandle> = OnceLock::new();

/// The process-wide /dev/kvm handle and supported CPUID (opened once: one fd for the
/// process, not one per launch).
fn kvm() -> Result<&'static KvmHandle, VmmError> {
    if let Some(h) = KVM.get() {
        return Ok(h);
    }
    let kvm = Kvm::new().map_err(VmmError::Open)?;
    let cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm_err("KVM_GET_SUPPORTED_CPUID"))?;
    Ok(KVM.get_or_init(|| KvmHandle { kvm, cpuid }))
}

/// Opens KVM (cached); used by `ironclaw check`.
pub fn probe() -> Result<(), VmmError> {
    kvm().map(|_| ())
}

/// A created VM with guest memory and one vCPU, not yet running.
pub struct Vm {
    // Field order is drop order: vCPU, then VM, then the memory view, then the mapping.
    vcpu: VcpuFd,
    _vm: VmFd,
    mem: GuestMemoryMmap,
    _ram: memory::GuestRam,
    tsc_khz: u64,
}

/// A CPU exception the guest took (reported by the CPL0 stubs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestFault {
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    /// CR2 (faulting address) for page faults, else 0.
    pub address: u64,
}

impl std::fmt::Display for GuestFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "vector {} ({}) at rip {:#x}",
            self.vector,
            layout::vector_name(self.vector),
            self.rip
        )?;
        if self.vector == 14 {
            write!(f, ", address {:#x}", self.address)?;
            if (l::STACK_GUARD_BOTTOM..l::SHIM_STACK_BOTTOM).contains(&self.address) {
                write!(f, " (shim stack overflow)")?;
            } else if self.address < l::NULL_GUARD_END {
                write!(f, " (null pointer)")?;
            }
        }
        write!(f, ", error code {:#x}", self.error_code)
    }
}

/// Why the vCPU stopped.
#[derive(Debug)]
pub enum Exit {
    /// `out` to the hypercall port.
    Hypercall,
    /// A CPU exception, reported by the stubs.
    Fault(GuestFault),
    /// `KVM_RUN` was interrupted by a signal (the watchdog).
    Interrupted,
    /// Anything else: triple fault, unexpected port, MMIO, internal error.
    Unexpected(String),
}

impl Vm {
    /// Creates the VM, its memory (anonymous, `memory_size` bytes) and the vCPU, and writes
    /// the system structures. The vCPU is left at the shim's entry point at CPL3.
    pub fn create(memory_size: u64, entry: u64) -> Result<Self, VmmError> {
        let handle = kvm()?;
        let vm = handle.kvm.create_vm().map_err(kvm_err("KVM_CREATE_VM"))?;
        let size = usize::try_from(memory_size).map_err(|_| VmmError::Memory {
            bytes: memory_size,
            reason: "larger than the address space".into(),
        })?;
        let mem_err = |reason: String| VmmError::Memory {
            bytes: memory_size,
            reason,
        };
        let ram = memory::GuestRam::new(size).map_err(|e| mem_err(e.to_string()))?;
        // SAFETY: `ram` is a live private mapping of exactly `size` bytes, read-write, and it
        // outlives this non-owning view (field order in `Vm`).
        let region = unsafe {
            MmapRegion::<()>::build_raw(
                ram.as_ptr(),
                ram.size(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            )
        }
        .map_err(|e| mem_err(e.to_string()))?;
        let region = GuestRegionMmap::new(region, GuestAddress(0))
            .ok_or_else(|| mem_err("region overflows".into()))?;
        let mem =
            GuestMemoryMmap::from_regions(vec![region]).map_err(|e| mem_err(e.to_string()))?;
        let host = ram.as_ptr();
        let region = kvm_userspace_memory_region {
            slot: 0,
            flags: 0,
            guest_phys_addr: 0,
            memory_size,
            userspace_addr: host as u64,
        };
        // SAFETY: `host` is the start of a live anonymous mapping of exactly `memory_size`
        // bytes owned by `ram`, which outlives the VM (field order in `Vm` drops the VM
        // first), and the slot does not overlap any other.
        unsafe { vm.set_user_memory_region(region) }
            .map_err(kvm_err("KVM_SET_USER_MEMORY_REGION"))?;
        // KVM on Intel wants a TSS address for its real-mode emulation (the KVM API document
        // calls it required on Intel hosts); the guest never runs in real mode, so where the
        // backend refuses it (AMD ignores it; PVM) that is not an error. Three pages just
        // below 4 GiB, far above any guest RAM, as Firecracker places it.
        let _ = vm.set_tss_address(0xFFFB_D000);
        let vcpu = vm.create_vcpu(0).map_err(kvm_err("KVM_CREATE_VCPU"))?;
        vcpu.set_cpuid2(&handle.cpuid)
            .map_err(kvm_err("KVM_SET_CPUID2"))?;
        let tsc_khz = vcpu.get_tsc_khz().map(u64::from).unwrap_or(0);
        let vm = Self {
            vcpu,
            _vm: vm,
            mem,
            _ram: ram,
            tsc_khz,
        };
        vm.write(0, &layout::system_area(memory_size), "system structures")?;
        vm.setup_cpu(entry)?;
        Ok(vm)
    }

    /// Guest TSC frequency (kHz), 0 if KVM does not say.
    pub fn tsc_khz(&self) -> u64 {
        self.tsc_khz
    }

    /// Guest memory, for loading and for the hypercall dispatcher.
    pub fn memory(&self) -> &GuestMemoryMmap {
        &self.mem
    }

    /// Writes `bytes` at guest-physical `addr`.
    pub fn write(&self, addr: u64, bytes: &[u8], what: &'static str) -> Result<(), VmmError> {
        self.mem
            .write_slice(bytes, GuestAddress(addr))
            .map_err(|e| VmmError::Write {
                addr,
                what,
                reason: e.to_string(),
            })
    }

    fn setup_cpu(&self, entry: u64) -> Result<(), VmmError> {
        let mut sregs = self.vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
        let user_code = kvm_segment {
            base: 0,
            limit: 0xFFFF_FFFF,
            selector: layout::USER_CS,
            type_: 0xB, // execute/read, accessed
            present: 1,
            dpl: 3,
            db: 0,
            s: 1,
            l: 1,
            g: 1,
            avl: 0,
            unusable: 0,
            padding: 0,
        };
        let user_data = kvm_segment {
            selector: layout::USER_DS,
            type_: 0x3, // read/write, accessed
            db: 1,
            l: 0,
            ..user_code
        };
        sregs.cs = user_code;
        sregs.ds = user_data;
        sregs.es = user_data;
        sregs.fs = user_data;
        sregs.gs = user_data;
        sregs.ss = user_data;
        sregs.tr = kvm_segment {
            base: l::TSS_ADDR,
            limit: layout::TSS_LIMIT,
            selector: layout::TSS_SEL,
            type_: 0xB, // busy 64-bit TSS
            present: 1,
            dpl: 0,
            db: 0,
            s: 0,
            l: 0,
            g: 0,
            avl: 0,
            unusable: 0,
            padding: 0,
        };
        sregs.gdt.base = l::GDT_ADDR;
        sregs.gdt.limit = layout::GDT_LIMIT;
        sregs.idt.base = l::IDT_ADDR;
        sregs.idt.limit = layout::IDT_LIMIT;
        const CR0_PE: u64 = 1;
        const CR0_ET: u64 = 1 << 4;
        const CR0_NE: u64 = 1 << 5;
        const CR0_WP: u64 = 1 << 16;
        const CR0_PG: u64 = 1 << 31;
        const CR0_MP: u64 = 1 << 1;
        const CR4_PAE: u64 = 1 << 5;
        const CR4_OSFXSR: u64 = 1 << 9;
        const CR4_OSXMMEXCPT: u64 = 1 << 10;
        const EFER_LME: u64 = 1 << 8;
        const EFER_LMA: u64 = 1 << 10;
        const EFER_NXE: u64 = 1 << 11;
        sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
        // SSE on (OSFXSR; SIMD float exceptions as #XM, which the fault stubs report): the
        // shim is built with the SSE2 float ABI and runs at CPL3, natively. The only CPL0
        // code, the fault stubs, has no SSE instruction (emulated CPL0 under PVM cannot
        // execute them). No XSAVE/AVX: the shim's target baseline is SSE2.
        sregs.cr4 = CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT;
        sregs.cr3 = l::PML4_ADDR;
        sregs.efer = EFER_LME | EFER_LMA | EFER_NXE;
        self.vcpu
            .set_sregs(&sregs)
            .map_err(kvm_err("KVM_SET_SREGS"))?;
        let regs = kvm_bindings::kvm_regs {
            rip: entry,
            rsp: l::SHIM_STACK_TOP - 8,
            rdi: l::BOOT_INFO_ADDR,
            rflags: 0x2 | (3 << 12), // reserved bit 1, IOPL=3, IF=0
            ..Default::default()
        };
        self.vcpu.set_regs(&regs).map_err(kvm_err("KVM_SET_REGS"))
    }

    /// Runs the vCPU until the next exit that needs the host.
    pub fn run(&mut self) -> Result<Exit, VmmError> {
        let exit = match self.vcpu.run() {
            Ok(VcpuExit::IoOut(port, _)) if port == ironclaw_abi::port::HYPERCALL => {
                return Ok(Exit::Hypercall)
            }
            Ok(VcpuExit::IoOut(port, _)) if port == ironclaw_abi::port::FAULT => None,
            Ok(VcpuExit::IoOut(port, data)) => Some(format!(
                "write of {} bytes to unexpected I/O port {port:#x}",
                data.len()
            )),
            Ok(VcpuExit::IoIn(port, _)) => Some(format!("read from unexpected I/O port {port:#x}")),
            Ok(VcpuExit::MmioRead(addr, _)) | Ok(VcpuExit::MmioWrite(addr, _)) => Some(format!(
                "access to unbacked guest-physical address {addr:#x}"
            )),
            Ok(VcpuExit::Shutdown) => Some("triple fault (the CPU shut the VM down)".into()),
            Ok(VcpuExit::Hlt) => Some("hlt".into()),
            Ok(VcpuExit::InternalError) => {
                Some("KVM internal error (instruction the backend cannot run)".into())
            }
            Ok(VcpuExit::FailEntry(reason, cpu)) => Some(format!(
                "VM entry failed: hardware reason {reason:#x} on cpu {cpu}"
            )),
            Ok(other) => Some(format!("unexpected exit {other:?}")),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                return Ok(Exit::Interrupted)
            }
            Err(e) => {
                return Err(VmmError::Kvm {
                    op: "KVM_RUN",
                    source: e,
                })
            }
        };
        if let Some(reason) = exit {
            return Ok(Exit::Unexpected(reason));
        }
        let regs = self.vcpu.get_regs().map_err(kvm_err("KVM_GET_REGS"))?;
        let sregs = self.vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
        let vector = regs.rax & 0xFF;
        Ok(Exit::Fault(GuestFault {
            vector,
            error_code: regs.rbx,
            rip: regs.rcx,
            address: if vector == 14 { sregs.cr2 } else { 0 },
        }))
    }
}
