//! Output of `nanoclaw list` and `nanoclaw ps`, in runc's formats (engines and scripts parse them).

use std::collections::HashMap;
use std::collections::HashSet;
use std::path::PathBuf;

use serde::Serialize;

/// One row of `list`: runc's `containerState` JSON object.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ListEntry {
    pub oci_version: String,
    pub id: String,
    /// 0 once the container has stopped, as runc reports it.
    pub pid: i32,
    pub status: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339 UTC creation time.
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<HashMap<String, String>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("--format {0:?}: unknown format (expected \"table\" or \"json\")")]
    UnknownFormat(String),
    #[error("ps: the output of ps has no PID column in its header {0:?}")]
    NoPidColumn(String),
    #[error("ps: empty output from ps")]
    EmptyPsOutput,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Json,
}

impl std::str::FromStr for OutputFormat {
    type Err = ListError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "table" => Ok(OutputFormat::Table),
            "json" => Ok(OutputFormat::Json),
            other => Err(ListError::UnknownFormat(other.to_string())),
        }
    }
}

/// `list` output. `quiet` (-q) prints ids only. An empty JSON list is `null`, as runc prints it.
pub fn render_list(entries: &[ListEntry], format: OutputFormat, quiet: bool) -> String {
    if quiet {
        return entries.iter().map(|e| format!("{}\n", e.id)).collect();
    }
    match format {
        OutputFormat::Json => {
            if entries.is_empty() {
                "null\n".to_string()
            } else {
                // A Vec of plain structs of strings and integers always serializes.
                serde_json::to_string(entries)
                    .map_or_else(|e| format!("{{\"error\":\"{e}\"}}\n"), |s| s + "\n")
            }
        }
        OutputFormat::Table => {
            let mut rows =
                vec![["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from)];
            for e in entries {
                rows.push([
                    e.id.clone(),
                    e.pid.to_string(),
                    e.status.clone(),
                    e.bundle.display().to_string(),
                    e.created.clone(),
                    e.owner.clone(),
                ]);
            }
            tabulate(&rows)
        }
    }
}

/// Go's `tabwriter.NewWriter(w, 12, 1, 3, ' ', 0)` as runc uses it: every column but the last
/// is padded to max(widest cell + 3, 12).
fn tabulate<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count().saturating_add(3)).max(12);
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths.iter()).enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}"));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `ps --format json`: the container's pids as a JSON array.
pub fn render_ps_json(pids: &[i32]) -> String {
    serde_json::to_string(pids).map_or_else(|_| "[]\n".to_string(), |s| s + "\n")
}

/// `ps` table: runs of the host's `ps` output (header kept) filtered to the lines whose PID
/// column is one of `pids` (the container's cgroup members), as runc does.
pub fn filter_ps_table(ps_output: &str, pids: &[i32]) -> Result<String, ListError> {
    let mut lines = ps_output.lines();
    let header = lines.next().ok_or(ListError::EmptyPsOutput)?;
    let pid_col = header
        .split_whitespace()
        .position(|c| c == "PID")
        .ok_or_else(|| ListError::NoPidColumn(header.to_string()))?;
    let wanted: HashSet<i32> = pids.iter().copied().collect();
    let mut out = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| wanted.contains(&p)) {
            out.push_str(line);
            out.push('\n');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, pid: i32, status: &str) -> ListEntry {
        ListEntry {
            oci_version: "1.0.2".into(),
            id: id.into(),
            pid,
            status: status.into(),
            bundle: "/work/scratch/lc/b1".into(),
            rootfs: "/work/scratch/lc/b1/rootfs".into(),
            created: "2026-11-25T10:31:33.19397039Z".into(),
            owner: "root".into(),
            annotations: None,
        }
    }

    #[test]
    fn table_matches_runc_layout() {
        // Captured from `runc list` with one created container.
        let want = "ID          PID         STATUS      BUNDLE                CREATED                         OWNER\n\
                    c1          9600        created     /work/scratch/lc/b1   2026-11-25T10:31:33.19397039Z   root\n";
        assert_eq!(
            render_list(&[entry("c1", 9600, "created")], OutputFormat::Table, false),
            want
        );
        assert_eq!(
            render_list(&[], OutputFormat::Table, false),
            "ID          PID         STATUS      BUNDLE      CREATED     OWNER\n"
        );
    }

    #[test]
    fn json_and_quiet() {
        assert_eq!(render_list(&[], OutputFormat::Json, false), "null\n");
        let j = render_list(&[entry("a", 0, "stopped")], OutputFormat::Json, false);
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v[0]["ociVersion"], "1.0.2");
        assert_eq!(v[0]["pid"], 0);
        assert!(v[0].get("annotations").is_none());
        let q = render_list(
            &[entry("a", 1, "running"), entry("b", 2, "paused")],
            OutputFormat::Table,
            true,
        );
        assert_eq!(q, "a\nb\n");
        assert!("xml"
            .parse::<OutputFormat>()
            .unwrap_err()
            .to_string()
            .contains("xml"));
    }

    #[test]
    fn ps_keeps_header_and_container_pids_only() {
        let ps = "UID        PID  PPID  C STIME TTY          TIME CMD\n\
                  root         1     0  0 10:00 ?        00:00:00 init\n\
                  root      9600     1  0 10:31 ?        00:00:00 sleep 100\n\
                  root     19600     1  0 10:31 ?        00:00:00 other\n";
        let out = filter_ps_table(ps, &[9600]).unwrap();
        assert_eq!(
            out,
            "UID        PID  PPID  C STIME TTY          TIME CMD\nroot      9600     1  0 10:31 ?        00:00:00 sleep 100\n"
        );
        assert!(matches!(
            filter_ps_table("USER CMD\n", &[1]),
            Err(ListError::NoPidColumn(_))
        ));
        assert_eq!(render_ps_json(&[3, 4]), "[3,4]\n");
    }
}
