//! IronClaw verifier: turns attestation evidence (kvm, SEV-SNP, TDX, SGX, Nitro) into one normalized result.
