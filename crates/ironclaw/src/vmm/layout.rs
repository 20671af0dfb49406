//! The guest's system structures, built by the host before the first instruction:
//! identity-mapped page tables, GDT, TSS, IDT and the CPL0 fault stubs.
//!
//! Everything here is plain data computed from the memory size; [`system_area`] returns the
//! bytes of guest-physical `0..SYSTEM_AREA_END` that the VMM writes in one copy. The layout
//! is fixed by `ironclaw_abi::layout` and documented in ARCHITECTURE.md:
//!
//! | range | contents | mapping |
//! |---|---|---|
//! | `0x0000..0x1000` | null guard | not present |
//! | `0x1000..0x5000` | PML4, PDPT, PD, low PT | supervisor |
//! | `0x5000..0x6000` | GDT, TSS | supervisor |
//! | `0x6000..0x7000` | IDT (32 exception gates) | supervisor |
//! | `0x7000..0x8000` | CPL0 fault stubs | supervisor, executable |
//! | `0x8000..0xA000` | CPL0 stack (TSS.RSP0) | supervisor, NX |
//! | `0xA000..0xB000` | boot block | user, read-only, NX |
//! | `0x10_0000..0x14_0000` | shared hypercall buffer | user, NX |
//! | `0x14_0000..0x15_0000` | stack guard | not present |
//! | `0x15_0000..0x20_0000` | shim stack | user, NX |
//! | `0x20_0000..memory end` | shim image, module, args, heap | user (2 MiB pages) |
//!
//! Nothing here is specific to PVM: the same tables are what hardware VMX/SVM expect.

use ironclaw_abi::layout as l;

/// End of the area [`system_area`] produces (exclusive).
pub const SYSTEM_AREA_END: u64 = l::BOOT_INFO_ADDR;

/// User code selector (GDT index 4, RPL 3).
pub const USER_CS: u16 = 0x20 | 3;
/// User data/stack selector (GDT index 3, RPL 3).
pub const USER_DS: u16 = 0x18 | 3;
/// Kernel code selector used by the IDT gates.
pub const KERNEL_CS: u16 = 0x08;
/// TSS selector (GDT index 5, two slots).
pub const TSS_SEL: u16 = 0x28;
/// Byte of the I/O permission bitmap that holds the hypercall port's bit.
const IOMAP_PORT_BYTE: u64 = ironclaw_abi::port::HYPERCALL as u64 / 8;
/// TSS limit: the 104-byte 64-bit TSS, the I/O permission bitmap up to the hypercall port's
/// byte, and the mandatory all-ones terminator byte.
pub const TSS_LIMIT: u32 = (104 + IOMAP_PORT_BYTE + 1) as u32;
/// Number of IDT gates (the architectural exceptions).
pub const IDT_ENTRIES: u64 = 32;

const P: u64 = 1; // present
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2; // user accessible
const A: u64 = 1 << 5; // accessed (preset so the CPU never writes the tables)
const D: u64 = 1 << 6; // dirty
const PS: u64 = 1 << 7; // 2 MiB page
const NX: u64 = 1 << 63;

/// Page-table flags for one 4 KiB page of the low 2 MiB, `None` = not present.
fn low_page_flags(addr: u64) -> Option<u64> {
    let sup = P | RW | A | D;
    match addr {
        a if a < l::NULL_GUARD_END => None,
        a if a < l::FAULT_STUBS_ADDR => Some(sup | NX),
        a if a < l::CPL0_STACK_BOTTOM => Some(P | A), // stubs: supervisor, read-only, executable
        a if a < l::CPL0_STACK_TOP => Some(sup | NX),
        a if a < l::BOOT_INFO_ADDR + l::BOOT_INFO_SIZE => Some(P | US | A | NX), // boot block: user RO
        a if a < l::SHARED_BUF_ADDR => None,
        a if a < l::SHARED_BUF_ADDR + l::SHARED_BUF_SIZE => Some(P | RW | US | A | D | NX),
        a if a < l::SHIM_STACK_BOTTOM => None, // stack guard
        a if a < l::SHIM_STACK_TOP => Some(P | RW | US | A | D | NX),
        _ => None,
    }
}

fn put_u64(buf: &mut [u8], at: u64, v: u64) {
    let at = at as usize;
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Vectors for which the CPU pushes an error code.
pub fn has_error_code(vector: u64) -> bool {
    matches!(vector, 8 | 10 | 11 | 12 | 13 | 14 | 17 | 21 | 29 | 30)
}

/// Address of the stub for `vector`.
fn stub_addr(vector: u64) -> u64 {
    l::FAULT_STUBS_ADDR + vector * 16
}

/// Address of the common tail all stubs jump to.
const COMMON_STUB: u64 = l::FAULT_STUBS_ADDR + IDT_ENTRIES * 16;

/// Machine code of the CPL0 stubs. Each vector's stub pushes a zero error code if the CPU
/// did not, loads the vector into EAX and jumps to the common tail, which pops the error
/// code into RBX, loads the faulting RIP into RCX, writes AL to the fault port (one exit —
/// the host reads RAX/RBX/RCX and CR2) and halts forever. About ten instructions: cheap
/// even where CPL0 is emulated. No SSE anywhere.
fn fault_stubs() -> Vec<u8> {
    let mut code = vec![0xCCu8; (IDT_ENTRIES * 16) as usize]; // int3 padding
    for v in 0..IDT_ENTRIES {
        let start = (v * 16) as usize;
        let mut s = Vec::with_capacity(16);
        if !has_error_code(v) {
            s.extend_from_slice(&[0x6A, 0x00]); // push 0
        }
        s.push(0xB8); // mov eax, imm32
        s.extend_from_slice(&(v as u32).to_le_bytes());
        let next = stub_addr(v) + s.len() as u64 + 5;
        let rel = (COMMON_STUB as i64 - next as i64) as i32;
        s.push(0xE9); // jmp rel32
        s.extend_from_slice(&rel.to_le_bytes());
        code[start..start + s.len()].copy_from_slice(&s);
    }
    code.extend_from_slice(&[
        0x5B, // pop rbx                (error code)
        0x48, 0x8B, 0x0C, 0x24, // mov rcx, [rsp]   (faulting RIP)
        0x66, 0xBA, // mov dx, imm16
    ]);
    code.extend_from_slice(&ironclaw_abi::port::FAULT.to_le_bytes());
    code.extend_from_slice(&[
        0xEE, // out dx, al
        0xF4, // hlt
        0xEB, 0xFD, // jmp back to hlt
    ]);
    code
}

/// A 64-bit interrupt gate (DPL0, present) to `handler`.
fn idt_gate(handler: u64) -> [u8; 16] {
    let mut g = [0u8; 16];
    g[0..2].copy_from_slice(&(handler as u16).to_le_bytes());
    g[2..4].copy_from_slice(&KERNEL_CS.to_le_bytes());
    g[4] = 0; // IST
    g[5] = 0x8E; // present, DPL0, 64-bit interrupt gate
    g[6..8].copy_from_slice(&((handler >> 16) as u16).to_le_bytes());
    g[8..12].copy_from_slice(&((handler >> 32) as u32).to_le_bytes());
    g
}

/// Bytes of guest-physical `0..SYSTEM_AREA_END` for a guest of `memory_size` bytes
/// (a multiple of 2 MiB, at most 1 GiB; checked by the launch configuration).
pub fn system_area(memory_size: u64) -> Vec<u8> {
    let mut m = vec![0u8; SYSTEM_AREA_END as usize];
    // Paging: PML4[0] -> PDPT, PDPT[0] -> PD, PD[0] -> low PT (4 KiB pages), PD[1..] 2 MiB pages.
    let table = P | RW | US | A; // permissions are decided at the leaves
    put_u64(&mut m, l::PML4_ADDR, l::PDPT_ADDR | table);
    put_u64(&mut m, l::PDPT_ADDR, l::PD_ADDR | table);
    put_u64(&mut m, l::PD_ADDR, l::PT_LOW_ADDR | table);
    let big_pages = memory_size / (2 << 20);
    for i in 1..big_pages.min(512) {
        put_u64(
            &mut m,
            l::PD_ADDR + i * 8,
            (i << 21) | P | RW | US | A | D | PS,
        );
    }
    for i in 0..512u64 {
        let addr = i * l::PAGE_SIZE;
        if let Some(flags) = low_page_flags(addr) {
            put_u64(&mut m, l::PT_LOW_ADDR + i * 8, addr | flags);
        }
    }
    // GDT: null, kernel code, kernel data, user data, user code, TSS (16 bytes).
    let gdt: [u64; 5] = [
        0,
        0x00AF_9B00_0000_FFFF, // kernel code: L=1, DPL0, accessed
        0x00CF_9300_0000_FFFF, // kernel data: DPL0, accessed
        0x00CF_F300_0000_FFFF, // user data: DPL3, accessed
        0x00AF_FB00_0000_FFFF, // user code: L=1, DPL3, accessed
    ];
    for (i, d) in gdt.iter().enumerate() {
        put_u64(&mut m, l::GDT_ADDR + i as u64 * 8, *d);
    }
    let base = l::TSS_ADDR;
    let limit = u64::from(TSS_LIMIT);
    let tss_low = (limit & 0xFFFF)
        | ((base & 0xFF_FFFF) << 16)
        | (0x8B << 40) // present, DPL0, 64-bit TSS (busy, as KVM loads TR)
        | (((limit >> 16) & 0xF) << 48)
        | (((base >> 24) & 0xFF) << 56);
    put_u64(&mut m, l::GDT_ADDR + 5 * 8, tss_low);
    put_u64(&mut m, l::GDT_ADDR + 6 * 8, base >> 32);
    // TSS: RSP0 at offset 4; I/O permission bitmap right after the TSS that allows the
    // hypercall port and nothing else. On hardware RFLAGS.IOPL=3 already lets CPL3 use
    // `out`; PVM's instruction emulator consults the bitmap instead, so both paths agree.
    put_u64(&mut m, l::TSS_ADDR + 4, l::CPL0_STACK_TOP);
    let iomap = (l::TSS_ADDR + 102) as usize;
    m[iomap..iomap + 2].copy_from_slice(&104u16.to_le_bytes());
    let bitmap = (l::TSS_ADDR + 104) as usize;
    let bitmap_len = IOMAP_PORT_BYTE as usize + 2; // through the terminator byte
    m[bitmap..bitmap + bitmap_len].fill(0xFF);
    m[bitmap + IOMAP_PORT_BYTE as usize] &= !(1u8 << (ironclaw_abi::port::HYPERCALL % 8));
    // IDT and stubs.
    for v in 0..IDT_ENTRIES {
        let at = (l::IDT_ADDR + v * 16) as usize;
        m[at..at + 16].copy_from_slice(&idt_gate(stub_addr(v)));
    }
    let stubs = fault_stubs();
    let at = l::FAULT_STUBS_ADDR as usize;
    m[at..at + stubs.len()].copy_from_slice(&stubs);
    m
}

/// GDT limit for the GDTR (7 slots).
pub const GDT_LIMIT: u16 = 7 * 8 - 1;
/// IDT limit for the IDTR.
pub const IDT_LIMIT: u16 = (IDT_ENTRIES * 16 - 1) as u16;

/// Human name of an exception vector.
pub fn vector_name(vector: u64) -> &'static str {
    match vector {
        0 => "#DE divide error",
        1 => "#DB debug",
        2 => "NMI",
        3 => "#BP breakpoint",
        4 => "#OF overflow",
        5 => "#BR bound range",
        6 => "#UD invalid opcode",
        7 => "#NM device not available",
        8 => "#DF double fault",
        10 => "#TS invalid TSS",
        11 => "#NP segment not present",
        12 => "#SS stack fault",
        13 => "#GP general protection",
        14 => "#PF page fault",
        16 => "#MF x87 error",
        17 => "#AC alignment check",
        18 => "#MC machine check",
        19 => "#XM SIMD exception",
        20 => "#VE virtualization exception",
        21 => "#CP control protection",
        _ => "reserved vector",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(m: &[u8], at: u64) -> u64 {
        let at = at as usize;
        u64::from_le_bytes(m[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn null_page_and_stack_guard_are_not_mapped() {
        let m = system_area(64 << 20);
        assert_eq!(entry(&m, l::PT_LOW_ADDR) & P, 0);
        let guard = l::PT_LOW_ADDR + (l::STACK_GUARD_BOTTOM / l::PAGE_SIZE) * 8;
        assert_eq!(entry(&m, guard) & P, 0);
        let stack = l::PT_LOW_ADDR + (l::SHIM_STACK_BOTTOM / l::PAGE_SIZE) * 8;
        assert_eq!(entry(&m, stack) & (P | US | RW), P | US | RW);
    }

    #[test]
    fn system_pages_are_supervisor_only_and_boot_block_read_only() {
        let m = system_area(64 << 20);
        for addr in [
            l::PML4_ADDR,
            l::GDT_ADDR,
            l::IDT_ADDR,
            l::FAULT_STUBS_ADDR,
            l::CPL0_STACK_BOTTOM,
        ] {
            let e = entry(&m, l::PT_LOW_ADDR + addr / l::PAGE_SIZE * 8);
            assert_eq!(e & (P | US), P, "page {addr:#x}");
        }
        let boot = entry(&m, l::PT_LOW_ADDR + l::BOOT_INFO_ADDR / l::PAGE_SIZE * 8);
        assert_eq!(boot & (P | US | RW), P | US);
    }

    #[test]
    fn big_pages_stop_at_memory_end() {
        let m = system_area(8 << 20);
        assert_ne!(entry(&m, l::PD_ADDR + 3 * 8) & P, 0);
        assert_eq!(entry(&m, l::PD_ADDR + 4 * 8) & P, 0);
    }

    #[test]
    fn every_stub_jumps_to_the_common_tail() {
        let m = system_area(8 << 20);
        for v in 0..IDT_ENTRIES {
            let s = stub_addr(v) as usize;
            let off = if has_error_code(v) { 0 } else { 2 };
            assert_eq!(m[s + off], 0xB8);
            assert_eq!(m[s + off + 1] as u64, v);
            assert_eq!(m[s + off + 5], 0xE9);
            let rel = i32::from_le_bytes(m[s + off + 6..s + off + 10].try_into().unwrap());
            let next = s as i64 + off as i64 + 10;
            assert_eq!((next + rel as i64) as u64, COMMON_STUB);
        }
    }
}
