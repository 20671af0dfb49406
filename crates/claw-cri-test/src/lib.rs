//! Nothing here: the crate exists for `tests/cri.rs`, a Kubernetes CRI client (the CRI v1 API
//! of the `k8s-cri` crate over tonic) that drives a private containerd's CRI plugin with
//! nanoclaw (and runc, the anchor) as the runc binary of a runtime class.

#![forbid(unsafe_code)]
