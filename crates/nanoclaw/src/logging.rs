//! runc-compatible logging: the global `--log FILE`, `--log-format text|json` and `--debug` flags.
//!
//! Engines read this file: containerd's runc shim passes `--log <bundle>/log.json --log-format
//! json` and, when a command fails, shows the user the `msg` of the last `"level":"error"` line.
//! So the line formats are runc's (logrus) exactly:
//!
//! ```text
//! text: time="2026-11-25T10:31:28Z" level=error msg="container \"x\" does not exist"
//! json: {"level":"error","msg":"container \"x\" does not exist","time":"2026-11-25T10:31:28Z"}
//! ```
//!
//! Library code logs through the `log` facade (`log::warn!` for a failed poststop hook, for
//! example); [`init`] installs the sink once per process.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use log::{Level, LevelFilter, Log, Metadata, Record};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = LoggingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(LoggingError::UnknownFormat(other.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("--log-format {0:?}: unknown format (expected \"text\" or \"json\")")]
    UnknownFormat(String),
    #[error("--log {path:?}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("a logger is already installed in this process")]
    AlreadyInstalled,
}

enum Sink {
    Stderr,
    File(Mutex<File>),
}

struct Logger {
    sink: Sink,
    format: LogFormat,
    level: LevelFilter,
}

/// Formats one line (without the newline) the way runc's logrus does.
pub fn format_line(format: LogFormat, level: Level, msg: &str, time: SystemTime) -> String {
    let level = logrus_level(level);
    let time = humantime::format_rfc3339_seconds(time).to_string();
    match format {
        LogFormat::Json => {
            serde_json::json!({ "level": level, "msg": msg, "time": time }).to_string()
        }
        LogFormat::Text => {
            // logrus quotes msg with Go's %q: a JSON string literal is the same for the text
            // engines parse (quotes, backslashes, control characters escaped).
            let quoted = serde_json::Value::String(msg.to_string()).to_string();
            format!("time=\"{time}\" level={level} msg={quoted}")
        }
    }
}

fn logrus_level(level: Level) -> &'static str {
    match level {
        Level::Error => "error",
        Level::Warn => "warning",
        Level::Info => "info",
        Level::Debug => "debug",
        Level::Trace => "trace",
    }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut line = format_line(
            self.format,
            record.level(),
            &record.args().to_string(),
            SystemTime::now(),
        );
        line.push('\n');
        // Logging must never fail the operation: a full disk loses the line, not the container.
        match &self.sink {
            Sink::Stderr => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
            Sink::File(f) => {
                if let Ok(mut f) = f.lock() {
                    let _ = f.write_all(line.as_bytes());
                }
            }
        }
    }

    fn flush(&self) {}
}

/// Where logs go, from the global flags.
#[derive(Clone, Debug, Default)]
pub struct LogConfig {
    pub path: Option<PathBuf>,
    pub format: LogFormat,
    pub debug: bool,
}

/// True when `init` sent logs to a file; the CLI then also prints fatal errors on stderr, as runc
/// does, so a person at a terminal sees them.
pub fn logs_to_file(cfg: &LogConfig) -> bool {
    cfg.path.is_some()
}

/// Installs the process-wide logger. The log file is opened for appending (created 0644), as
/// engines reuse one file for every command on a container.
pub fn init(cfg: &LogConfig) -> Result<(), LoggingError> {
    let sink = match &cfg.path {
        None => Sink::Stderr,
        Some(p) => Sink::File(Mutex::new(open_log(p)?)),
    };
    let level = if cfg.debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    let logger = Logger {
        sink,
        format: cfg.format,
        level,
    };
    log::set_boxed_logger(Box::new(logger)).map_err(|_| LoggingError::AlreadyInstalled)?;
    log::set_max_level(level);
    Ok(())
}

fn open_log(path: &Path) -> Result<File, LoggingError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o644)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| LoggingError::Open {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn t() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_795_602_688)
    }

    #[test]
    fn json_line_is_what_containerd_parses() {
        let line = format_line(
            LogFormat::Json,
            Level::Error,
            "container \"x\" does not exist",
            t(),
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "container \"x\" does not exist");
        assert_eq!(v["time"], "2026-11-25T10:31:28Z");
    }

    #[test]
    fn text_line_is_logrus_text() {
        let line = format_line(LogFormat::Text, Level::Warn, "a \"quoted\"\nline", t());
        assert_eq!(
            line,
            r#"time="2026-11-25T10:31:28Z" level=warning msg="a \"quoted\"\nline""#
        );
    }

    #[test]
    fn unknown_format_is_named() {
        let e = "yaml".parse::<LogFormat>().unwrap_err().to_string();
        assert!(e.contains("\"yaml\""), "{e}");
    }

    #[test]
    fn unopenable_log_path_is_named() {
        let e = open_log(Path::new("/nonexistent/dir/log.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/nonexistent/dir/log.json"), "{e}");
    }
}
