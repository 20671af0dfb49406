//! IronClaw host: KVM micro-VM that runs a measured WebAssembly module (VMM, hypercall dispatcher, CLI).
