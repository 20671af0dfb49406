//! Launch configuration: the VM size and every limit of one run. All of it is measured
//! (see [`crate::measurement`]) except the inputs (argv, environment, stdin).

use std::time::Duration;

use ironclaw_abi::layout;

/// Every limit and setting of one launch. Construct with [`LaunchConfig::default`] and
/// adjust; [`LaunchConfig::validate`] runs before anything is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchConfig {
    /// Guest memory in MiB (even, 8..=1024).
    pub memory_mib: u64,
    /// Wasm fuel budget (wasmi fuel units, about one per instruction); `None` = unlimited.
    pub fuel: Option<u64>,
    /// Wall-clock limit for the whole run.
    pub timeout: Duration,
    /// Maximum bytes the module may write to stdout + stderr together.
    pub max_output_bytes: u64,
    /// Cap on any one Wasm linear memory, bytes.
    pub max_wasm_memory_bytes: u64,
    /// Cap on any one Wasm table, elements.
    pub max_table_elements: u64,
    /// Maximum number of hypercalls (VM exits) one run may make: bounds an exit flood.
    pub max_hypercalls: u64,
    /// Debug launch (measured; attestation reports it).
    pub debug: bool,
}

impl Default for LaunchConfig {
    fn default() -> Self {
        Self {
            memory_mib: 64,
            fuel: None,
            timeout: Duration::from_secs(10),
            max_output_bytes: 16 << 20,
            max_wasm_memory_bytes: 16 << 20,
            max_table_elements: 100_000,
            max_hypercalls: 100_000,
            debug: false,
        }
    }
}

/// A configuration value outside what IronClaw supports.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("memory: {0} MiB is not an even number between {min} and {max}", min = layout::MIN_MEMORY_MIB, max = layout::MAX_MEMORY_MIB)]
    Memory(u64),
    #[error("max Wasm memory: {requested} bytes does not fit in a {memory_mib} MiB guest (at most {available} bytes after the shim, module and heap overhead)")]
    WasmMemory {
        requested: u64,
        memory_mib: u64,
        available: u64,
    },
    #[error("timeout: must be between 1 ms and 1 day, got {0:?}")]
    Timeout(Duration),
    #[error("max hypercalls: must be at least 1")]
    Hypercalls,
    #[error("max table elements: must be at most {max}, got {got}")]
    TableElements { got: u64, max: u64 },
}

/// Guest memory the shim, module copy and interpreter need besides the Wasm memory itself.
pub const GUEST_OVERHEAD_BYTES: u64 = 6 << 20;

impl LaunchConfig {
    /// Guest memory size in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_mib << 20
    }

    /// Checks every field. Growing a Wasm memory reallocates it, so the cap must fit twice.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.memory_mib < layout::MIN_MEMORY_MIB
            || self.memory_mib > layout::MAX_MEMORY_MIB
            || !self.memory_mib.is_multiple_of(2)
        {
            return Err(ConfigError::Memory(self.memory_mib));
        }
        let available = self.memory_bytes().saturating_sub(GUEST_OVERHEAD_BYTES) / 2;
        if self.max_wasm_memory_bytes > available {
            return Err(ConfigError::WasmMemory {
                requested: self.max_wasm_memory_bytes,
                memory_mib: self.memory_mib,
                available,
            });
        }
        if self.timeout < Duration::from_millis(1) || self.timeout > Duration::from_secs(86_400) {
            return Err(ConfigError::Timeout(self.timeout));
        }
        if self.max_hypercalls == 0 {
            return Err(ConfigError::Hypercalls);
        }
        let max_tables = 10_000_000;
        if self.max_table_elements > max_tables {
            return Err(ConfigError::TableElements {
                got: self.max_table_elements,
                max: max_tables,
            });
        }
        Ok(())
    }
}
