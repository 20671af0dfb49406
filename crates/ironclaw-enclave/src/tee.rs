//! The `tee` field of a KBS `Request`, extended compatibly.
//!
//! `kbs_types::Tee` names the TEE kinds trustee knows; it has no name for
//! IronClaw's own `kvm` evidence nor for AWS Nitro. [`TeeKind`] wraps it: every
//! name `kbs_types::Tee` knows (de)serializes exactly as it does, and two more
//! names, `"kvm"` and `"nitro"`, are added. [`AuthRequest`] is `kbs_types::Request`
//! with that one field widened; its JSON shape is unchanged.

use alloc::string::String;
use core::fmt;

use kbs_types::Tee;
use serde::{Deserialize, Serialize};

/// TEE kinds beyond `kbs_types::Tee`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExtraTee {
    /// IronClaw KVM enclave, evidence signed by a host platform key.
    #[serde(rename = "kvm")]
    Kvm,
    /// AWS Nitro Enclaves attestation document.
    #[serde(rename = "nitro")]
    Nitro,
}

/// A TEE kind as named in a KBS `Request`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TeeKind {
    /// A kind `kbs_types` knows, serialized by `kbs_types`.
    Kbs(Tee),
    /// A kind IronClaw adds.
    Extra(ExtraTee),
}

impl TeeKind {
    /// IronClaw's KVM evidence.
    pub const KVM: TeeKind = TeeKind::Extra(ExtraTee::Kvm);
    /// AWS Nitro.
    pub const NITRO: TeeKind = TeeKind::Extra(ExtraTee::Nitro);
    /// trustee's test-only `sample` kind.
    pub const SAMPLE: TeeKind = TeeKind::Kbs(Tee::Sample);

    /// The wire name (`"kvm"`, `"snp"`, `"sample"`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            TeeKind::Extra(ExtraTee::Kvm) => "kvm",
            TeeKind::Extra(ExtraTee::Nitro) => "nitro",
            TeeKind::Kbs(t) => kbs_name(*t),
        }
    }
}

fn kbs_name(t: Tee) -> &'static str {
    match t {
        Tee::AzSnpVtpm => "az-snp-vtpm",
        Tee::AzTdxVtpm => "az-tdx-vtpm",
        Tee::Nvidia => "nvidia",
        Tee::Sgx => "sgx",
        Tee::Snp => "snp",
        Tee::Tdx => "tdx",
        Tee::Cca => "cca",
        Tee::Csv => "csv",
        Tee::Se => "se",
        Tee::HygonDcu => "hygondcu",
        Tee::NvidiaDpu => "nvidia-dpu",
        Tee::Tpm => "tpm",
        Tee::Sample => "sample",
        Tee::SampleDevice => "sampledevice",
    }
}

impl fmt::Display for TeeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `kbs_types::Request` with the `tee` field widened to [`TeeKind`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuthRequest {
    /// KBS protocol version the client speaks.
    pub version: String,
    /// The TEE the client runs in.
    pub tee: TeeKind,
    /// Reserved for TEE-specific parameters.
    #[serde(rename = "extra-params")]
    pub extra_params: serde_json::Value,
}

impl AuthRequest {
    /// The `kbs_types::Request` this is, when its TEE is one `kbs_types` knows.
    pub fn to_kbs(&self) -> Option<kbs_types::Request> {
        match self.tee {
            TeeKind::Kbs(tee) => Some(kbs_types::Request {
                version: self.version.clone(),
                tee,
                extra_params: self.extra_params.clone(),
            }),
            TeeKind::Extra(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_names_serialize_like_kbs_types() {
        for t in [
            Tee::Snp,
            Tee::Tdx,
            Tee::Sgx,
            Tee::Sample,
            Tee::AzSnpVtpm,
            Tee::NvidiaDpu,
        ] {
            let ours = serde_json::to_string(&TeeKind::Kbs(t)).unwrap();
            let theirs = serde_json::to_string(&t).unwrap();
            assert_eq!(ours, theirs);
            assert_eq!(ours, alloc::format!("\"{}\"", TeeKind::Kbs(t).name()));
            let back: TeeKind = serde_json::from_str(&theirs).unwrap();
            assert_eq!(back, TeeKind::Kbs(t));
        }
    }

    #[test]
    fn extra_names_round_trip_and_unknown_is_refused() {
        assert_eq!(serde_json::to_string(&TeeKind::KVM).unwrap(), "\"kvm\"");
        assert_eq!(
            serde_json::from_str::<TeeKind>("\"nitro\"").unwrap(),
            TeeKind::NITRO
        );
        assert!(serde_json::from_str::<TeeKind>("\"vmware\"").is_err());
    }

    #[test]
    fn request_shape_is_kbs_types_shape() {
        let body = r#"{"version":"0.4.0","tee":"snp","extra-params":""}"#;
        let ours: AuthRequest = serde_json::from_str(body).unwrap();
        let kbs = ours.to_kbs().unwrap();
        assert_eq!(
            serde_json::to_string(&kbs).unwrap(),
            serde_json::to_string(&ours).unwrap()
        );
        let kvm: AuthRequest =
            serde_json::from_str(r#"{"version":"0.4.0","tee":"kvm","extra-params":{}}"#).unwrap();
        assert_eq!(kvm.tee, TeeKind::KVM);
        assert!(kvm.to_kbs().is_none());
    }
}
