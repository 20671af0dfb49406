#!/usr/bin/env bash
# Verification latency of ironclaw-verifier per evidence kind (release build), on the
# real samples in ../shared/fixtures/attestation. Usage: bench/verifier-latency.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --release --quiet -p ironclaw-verifier --example verify_latency -- "${1:-200}"
