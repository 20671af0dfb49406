//! DCAP collateral the operator configured on the broker side.
//!
//! trustee's TDX and SGX evidence carries only the quote: trustee's verifier
//! fetches the collateral (TCB info, QE identity, CRLs) from a PCCS. This broker
//! reaches no network, so the operator drops collateral files into
//! `<state>/dcap-collateral/` (any name ending in `.json`, the `QuoteCollateralV3`
//! layout a PCCS / dcap-qvl produce). They are read at every DCAP attestation, so a
//! refreshed file is used without a restart. For a quote, the file whose TCB info
//! names the quote's TEE (`"id": "TDX"` / `"SGX"`, absent = SGX) and FMSPC is used;
//! among several, one valid at the verification instant, else the newest (whose
//! expiry the verifier then reports). Collateral is signed by Intel and verified
//! by `ironclaw-verifier`: a file here adds no trust, it only allows the TCB
//! evaluation. Without a matching file the TCB status is `NotEvaluated`.

use std::path::{Path, PathBuf};

use ironclaw_verifier::{TeeKind, VerifyTime};

/// The directory name under the broker's state directory.
pub const DIR_NAME: &str = "dcap-collateral";

/// Largest collateral file read (a real one is ~20 KiB).
pub const MAX_FILE_LEN: u64 = 4 * 1024 * 1024;

/// How a [`Lookup::Missing`] reason starts.
pub const MISSING_PREFIX: &str = "no DCAP collateral for";

/// Most files considered.
pub const MAX_FILES: usize = 1024;

/// Collateral files under a directory.
#[derive(Debug, Clone)]
pub struct CollateralStore {
    dir: PathBuf,
}

/// One usable file.
#[derive(Debug, Clone)]
pub struct Collateral {
    /// File name, for messages.
    pub name: String,
    /// The JSON bytes, as handed to the verifier.
    pub bytes: Vec<u8>,
    issue: i64,
    next_update: i64,
}

/// What a lookup found.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// A file for this TEE kind and FMSPC.
    Found(Collateral),
    /// None: why, for the TCB note.
    Missing(String),
}

impl CollateralStore {
    /// The store of a state directory root.
    pub fn new(dir: &Path) -> Self {
        CollateralStore {
            dir: dir.to_path_buf(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The collateral for a `kind` (Tdx or Sgx) quote of platform `fmspc` at `at`.
    pub fn lookup(&self, kind: TeeKind, fmspc: &[u8; 6], at: VerifyTime) -> Lookup {
        let want_id = match kind {
            TeeKind::Tdx => "TDX",
            _ => "SGX",
        };
        let fmspc_hex = hex::encode_upper(fmspc);
        let missing = |detail: String| {
            Lookup::Missing(format!(
                "{MISSING_PREFIX} {want_id} FMSPC {fmspc_hex} in the broker's {DIR_NAME}/{detail}"
            ))
        };
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return missing(" (the directory does not exist)".into())
            }
            Err(e) => return missing(format!(" (cannot read the directory: {e})")),
        };
        let mut matches: Vec<Collateral> = Vec::new();
        let mut unusable: Vec<String> = Vec::new();
        for entry in entries.flatten().take(MAX_FILES) {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            match read_one(&path, &name) {
                Ok((id, f, c)) => {
                    if id == want_id && f.eq_ignore_ascii_case(&fmspc_hex) {
                        matches.push(c);
                    }
                }
                Err(reason) => unusable.push(format!("{name}: {reason}")),
            }
        }
        let t = at.unix();
        let best = matches
            .iter()
            .filter(|c| c.issue <= t && t <= c.next_update)
            .max_by_key(|c| c.next_update)
            .or_else(|| matches.iter().max_by_key(|c| c.next_update))
            .cloned();
        match best {
            Some(c) => Lookup::Found(c),
            None if unusable.is_empty() => missing(String::new()),
            None => missing(format!(" (unusable files: {})", unusable.join("; "))),
        }
    }
}

/// Reads a file and the TCB info's `id`, `fmspc`, `issueDate`, `nextUpdate`.
fn read_one(path: &Path, name: &str) -> Result<(String, String, Collateral), String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if meta.len() > MAX_FILE_LEN {
        return Err(format!(
            "{} bytes is larger than {MAX_FILE_LEN}",
            meta.len()
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let (id, fmspc, issue, next_update) = tcb_info_identity(&bytes)?;
    Ok((
        id,
        fmspc,
        Collateral {
            name: name.to_string(),
            bytes,
            issue,
            next_update,
        },
    ))
}

/// `(id, fmspc, issueDate, nextUpdate)` of the collateral's TCB info.
pub fn tcb_info_identity(collateral: &[u8]) -> Result<(String, String, i64, i64), String> {
    let v: serde_json::Value =
        serde_json::from_slice(collateral).map_err(|e| format!("not JSON: {e}"))?;
    let text = v
        .get("tcb_info")
        .and_then(|t| t.as_str())
        .ok_or("no tcb_info string")?;
    let info: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("tcb_info is not JSON: {e}"))?;
    // Intel's signed form is {"tcbInfo": {...}, "signature": ...}; QuoteCollateralV3
    // keeps the inner object's text. Accept both.
    let info = info.get("tcbInfo").unwrap_or(&info);
    let id = info
        .get("id")
        .and_then(|i| i.as_str())
        .unwrap_or("SGX")
        .to_string();
    let fmspc = info
        .get("fmspc")
        .and_then(|f| f.as_str())
        .ok_or("tcb_info has no fmspc")?
        .to_string();
    let date = |field: &str| -> Result<i64, String> {
        let s = info
            .get(field)
            .and_then(|d| d.as_str())
            .ok_or_else(|| format!("tcb_info has no {field}"))?;
        ironclaw_verifier::VerifyTime::parse_rfc3339(s)
            .map(|t| t.unix())
            .map_err(|e| format!("tcb_info.{field}: {e}"))
    };
    Ok((id, fmspc, date("issueDate")?, date("nextUpdate")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collateral(id: Option<&str>, fmspc: &str, issue: &str, next: &str) -> String {
        let mut info = serde_json::json!({"fmspc": fmspc, "issueDate": issue, "nextUpdate": next});
        if let Some(id) = id {
            info["id"] = id.into();
        }
        serde_json::json!({"tcb_info": info.to_string()}).to_string()
    }

    #[test]
    fn selects_by_kind_fmspc_and_instant() {
        let dir = tempfile::tempdir().unwrap();
        let w = |n: &str, s: String| std::fs::write(dir.path().join(n), s).unwrap();
        w(
            "a.json",
            collateral(
                Some("TDX"),
                "B0C06F000000",
                "2025-06-01T00:00:00Z",
                "2025-07-01T00:00:00Z",
            ),
        );
        w(
            "b.json",
            collateral(
                Some("TDX"),
                "B0C06F000000",
                "2025-07-01T00:00:00Z",
                "2025-08-01T00:00:00Z",
            ),
        );
        w(
            "c.json",
            collateral(
                None,
                "B0C06F000000",
                "2025-06-01T00:00:00Z",
                "2025-09-01T00:00:00Z",
            ),
        );
        w("junk.json", "{".into());
        w("ignored.txt", "not collateral".into());
        let store = CollateralStore::new(dir.path());
        let fmspc = [0xB0, 0xC0, 0x6F, 0, 0, 0];
        let at = |s: &str| VerifyTime::parse_rfc3339(s).unwrap();
        let name = |l: Lookup| match l {
            Lookup::Found(c) => c.name,
            Lookup::Missing(m) => panic!("missing: {m}"),
        };
        assert_eq!(
            name(store.lookup(TeeKind::Tdx, &fmspc, at("2025-06-15T00:00:00Z"))),
            "a.json"
        );
        assert_eq!(
            name(store.lookup(TeeKind::Tdx, &fmspc, at("2025-07-15T00:00:00Z"))),
            "b.json"
        );
        // Outside every window: the newest, so the verifier names its expiry.
        assert_eq!(
            name(store.lookup(TeeKind::Tdx, &fmspc, at("2026-01-01T00:00:00Z"))),
            "b.json"
        );
        // No id = SGX (TCB info v2).
        assert_eq!(
            name(store.lookup(TeeKind::Sgx, &fmspc, at("2025-06-15T00:00:00Z"))),
            "c.json"
        );
        match store.lookup(
            TeeKind::Tdx,
            &[1, 2, 3, 4, 5, 6],
            at("2025-06-15T00:00:00Z"),
        ) {
            Lookup::Missing(m) => {
                assert!(m.contains("TDX FMSPC 010203040506"), "{m}");
                assert!(m.contains("junk.json: not JSON"), "{m}");
            }
            Lookup::Found(c) => panic!("found {}", c.name),
        }
    }

    #[test]
    fn absent_directory_is_reported() {
        let store = CollateralStore::new(Path::new("/nonexistent/ironclaw/dcap-collateral"));
        match store.lookup(TeeKind::Sgx, &[0; 6], VerifyTime::from_unix(0)) {
            Lookup::Missing(m) => assert!(m.contains("does not exist"), "{m}"),
            Lookup::Found(_) => panic!("found"),
        }
    }
}
