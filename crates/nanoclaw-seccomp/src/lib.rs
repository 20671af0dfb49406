//! NanoClaw seccomp: compiles OCI linux.seccomp into a BPF filter and installs it.
