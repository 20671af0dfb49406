//! AMD certificates built into the verifier. The ARKs are the trust anchors; the
//! ASKs / ASVK are conveniences (they are verified against the ARK like any
//! supplied intermediate). Sources: AMD KDS cert_chain files as distributed in
//! virtee/sev and google/go-sev-guest (see shared fixtures' PROVENANCE.md).

use super::report::Product;
use crate::error::VerifyError;
use crate::x509::{parse_bundle, Cert};

/// (product, ARK PEM).
const ARKS: [(Product, &[u8]); 3] = [
    (Product::Milan, include_bytes!("roots/ark_milan.pem")),
    (Product::Genoa, include_bytes!("roots/ark_genoa.pem")),
    (Product::Turin, include_bytes!("roots/ark_turin.pem")),
];

/// ASKs (VCEK issuers) and ASVKs (VLEK issuers). The Genoa and Turin ASVKs are
/// AMD's KDS certificates as published in confidential-containers/trustee
/// (`deps/verifier/src/snp/{genoa,turin}_ask_ark_asvk.pem`); each verifies under
/// the pinned ARK of its product (test `builtin_intermediates_chain_to_their_ark`).
const INTERMEDIATES: [&[u8]; 6] = [
    include_bytes!("roots/ask_milan.pem"),
    include_bytes!("roots/ask_genoa.pem"),
    include_bytes!("roots/ask_turin.pem"),
    include_bytes!("roots/asvk_milan.pem"),
    include_bytes!("roots/asvk_genoa.pem"),
    include_bytes!("roots/asvk_turin.pem"),
];

/// The pinned ARKs.
pub(super) fn arks() -> Result<Vec<(Product, Cert)>, VerifyError> {
    let mut out = Vec::new();
    for (p, pem) in ARKS {
        for c in parse_bundle(pem, "built-in AMD ARK")? {
            out.push((p, c));
        }
    }
    Ok(out)
}

/// Built-in intermediates (still verified against an ARK before use).
pub(super) fn intermediates() -> Result<Vec<Cert>, VerifyError> {
    let mut out = Vec::new();
    for pem in INTERMEDIATES {
        out.extend(parse_bundle(pem, "built-in AMD ASK/ASVK")?);
    }
    Ok(out)
}
