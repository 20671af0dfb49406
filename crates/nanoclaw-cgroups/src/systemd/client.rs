//! The few calls of systemd's D-Bus API (org.freedesktop.systemd1.Manager) the driver makes.
//! Job-creating calls wait for the job's `JobRemoved` signal and fail unless its result is
//! `done`.

use std::time::{Duration, Instant};

use super::dbus::{socket_path, Connection, DbusError, Message, Value};
use super::props::Property;
use super::unit::Instance;

const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const PROPERTIES: &str = "org.freedesktop.DBus.Properties";

/// How long a call or a job may take (runc waits 30 s for a job too).
pub const TIMEOUT: Duration = Duration::from_secs(30);
/// Shortens [`TIMEOUT`] (milliseconds) for the tests that stop systemd: it can only make the
/// runtime give up earlier, which any caller can already do with a signal.
pub const TIMEOUT_ENV: &str = "NANOCLAW_TEST_SYSTEMD_TIMEOUT_MS";

fn timeout() -> Duration {
    std::env::var(TIMEOUT_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_millis)
        .filter(|t| *t < TIMEOUT)
        .unwrap_or(TIMEOUT)
}

/// A systemd call that failed: what was asked, and the D-Bus error or the job result.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Bus(#[from] DbusError),
    #[error("job {job} finished with result {result:?}")]
    Job { job: String, result: String },
}

impl CallError {
    /// True when systemd did not answer in time: the call may still take effect later.
    pub fn is_timeout(&self) -> bool {
        matches!(self, CallError::Bus(DbusError::Timeout { .. }))
    }

    pub fn remote_name(&self) -> Option<&str> {
        match self {
            CallError::Bus(e) => e.remote_name(),
            CallError::Job { .. } => None,
        }
    }
}

type Result<T, E = CallError> = std::result::Result<T, E>;

/// The bus socket of a systemd instance: the system bus for PID 1, the user's session bus for
/// `systemd --user` (as runc, podman and crun find them).
pub fn bus_socket(instance: Instance) -> std::result::Result<String, DbusError> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match instance {
        Instance::System => match env("DBUS_SYSTEM_BUS_ADDRESS") {
            Some(a) => socket_path(&a),
            None => Ok("/run/dbus/system_bus_socket".into()),
        },
        Instance::User => match env("DBUS_SESSION_BUS_ADDRESS") {
            Some(a) => socket_path(&a),
            None => match env("XDG_RUNTIME_DIR") {
                Some(d) => Ok(format!("{d}/bus")),
                None => Ok(format!(
                    "/run/user/{}/bus",
                    rustix::process::geteuid().as_raw()
                )),
            },
        },
    }
}

/// One connection to a systemd instance.
pub struct Systemd {
    conn: Connection,
    version: u32,
}

impl Systemd {
    /// Connects, and in the same round trip as the Hello subscribes to `JobRemoved` (the bus
    /// routes a broadcast only to a matching rule; systemd sends it to the client that queued
    /// the job without a `Subscribe`, as crun relies on) and reads the version.
    pub fn connect(instance: Instance) -> Result<Self> {
        let path = bus_socket(instance)?;
        let deadline = Instant::now() + timeout();
        let mut conn = Connection::open(&path, deadline)?;
        let rule = format!(
            "type='signal',sender='{DEST}',path='{PATH}',interface='{MANAGER}',member='JobRemoved'"
        );
        let add_match = conn.send(Message::call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "AddMatch",
            vec![Value::Str(rule)],
        ))?;
        let get_version = conn.send(Message::call(
            DEST,
            PATH,
            PROPERTIES,
            "Get",
            vec![Value::Str(MANAGER.into()), Value::Str("Version".into())],
        ))?;
        conn.wait_reply(add_match, "AddMatch", deadline)?;
        let reply = conn.wait_reply(get_version, "Get Version", deadline)?;
        // systemd's unique name, as the bus stamped it on the reply: JobRemoved is taken from
        // that sender only.
        let systemd = reply
            .sender
            .clone()
            .ok_or_else(|| DbusError::Protocol("the reply from systemd names no sender".into()))?;
        conn.accept_signals_from(&systemd);
        let version = reply
            .body
            .first()
            .and_then(Value::as_str)
            .map_or(0, super::props::parse_version);
        Ok(Systemd { conn, version })
    }

    fn call(&mut self, path: &str, iface: &str, member: &str, body: Vec<Value>) -> Result<Message> {
        let deadline = Instant::now() + timeout();
        Ok(self
            .conn
            .call(Message::call(DEST, path, iface, member, body), deadline)?)
    }

    /// Waits until `job` is removed and checks its result.
    fn wait_job(&mut self, job: &str) -> Result<()> {
        let deadline = Instant::now() + timeout();
        let what = format!("waiting for job {job}");
        loop {
            // From systemd (the connection takes broadcasts from its unique name only).
            let sig = self.conn.next_signal(deadline, &what)?;
            if sig.member.as_deref() != Some("JobRemoved")
                || sig.path.as_deref() != Some(PATH)
                || sig.interface.as_deref() != Some(MANAGER)
            {
                continue;
            }
            // JobRemoved(u id, o job, s unit, s result)
            if sig.body.get(1).and_then(Value::as_str) != Some(job) {
                continue;
            }
            let result = sig
                .body
                .get(3)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if result == "done" {
                return Ok(());
            }
            return Err(CallError::Job {
                job: job.to_string(),
                result,
            });
        }
    }

    fn job_path(reply: &Message) -> Result<String> {
        reply
            .body
            .first()
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| DbusError::Protocol("job reply without an object path".into()).into())
    }

    /// StartTransientUnit(name, "fail", properties, []) and wait for the job.
    pub fn start_transient_unit(&mut self, unit: &str, props: &[Property]) -> Result<()> {
        let props = Value::Array(
            "(sv)".into(),
            props
                .iter()
                .map(|(k, v)| {
                    Value::Struct(vec![
                        Value::Str(k.clone()),
                        Value::Variant(Box::new(v.clone())),
                    ])
                })
                .collect(),
        );
        let reply = self.call(
            PATH,
            MANAGER,
            "StartTransientUnit",
            vec![
                Value::Str(unit.into()),
                Value::Str("fail".into()),
                props,
                Value::Array("(sa(sv))".into(), vec![]),
            ],
        )?;
        let job = Self::job_path(&reply)?;
        self.wait_job(&job)
    }

    /// StopUnit(name, "replace") and wait for the job. A unit that does not exist is fine.
    pub fn stop_unit(&mut self, unit: &str) -> Result<()> {
        let reply = match self.call(
            PATH,
            MANAGER,
            "StopUnit",
            vec![Value::Str(unit.into()), Value::Str("replace".into())],
        ) {
            Err(e) if e.remote_name() == Some("org.freedesktop.systemd1.NoSuchUnit") => {
                return Ok(())
            }
            other => other?,
        };
        let job = Self::job_path(&reply)?;
        self.wait_job(&job)
    }

    /// ResetFailedUnit(name): lets systemd forget a failed unit. Not waited for (nothing
    /// depends on its answer, and a unit that does not exist is fine); a call sent after it on
    /// this connection is handled after it.
    pub fn reset_failed_unit(&mut self, unit: &str) -> Result<()> {
        self.conn.send_no_reply(Message::call(
            DEST,
            PATH,
            MANAGER,
            "ResetFailedUnit",
            vec![Value::Str(unit.into())],
        ))?;
        Ok(())
    }

    /// SetUnitProperties(name, runtime=true, properties) (`update`).
    pub fn set_unit_properties(&mut self, unit: &str, props: &[Property]) -> Result<()> {
        if props.is_empty() {
            return Ok(());
        }
        let props = Value::Array(
            "(sv)".into(),
            props
                .iter()
                .map(|(k, v)| {
                    Value::Struct(vec![
                        Value::Str(k.clone()),
                        Value::Variant(Box::new(v.clone())),
                    ])
                })
                .collect(),
        );
        self.call(
            PATH,
            MANAGER,
            "SetUnitProperties",
            vec![Value::Str(unit.into()), Value::Bool(true), props],
        )?;
        Ok(())
    }

    fn get_property(&mut self, path: &str, iface: &str, name: &str) -> Result<Value> {
        let reply = self.call(
            path,
            PROPERTIES,
            "Get",
            vec![Value::Str(iface.into()), Value::Str(name.into())],
        )?;
        reply
            .body
            .into_iter()
            .next()
            .ok_or_else(|| DbusError::Protocol(format!("no value for property {name}")).into())
    }

    /// The systemd version number (0 when unparsable), read at connect.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The manager's own cgroup ("/" for PID 1 on the host, `/user.slice/user-1000.slice/
    /// user@1000.service` for a user instance).
    pub fn manager_cgroup(&mut self) -> Result<String> {
        let v = self.get_property(PATH, MANAGER, "ControlGroup")?;
        Ok(v.as_str().unwrap_or("").to_string())
    }

    /// The cgroup systemd gave `unit`.
    pub fn unit_cgroup(&mut self, unit: &str) -> Result<String> {
        let reply = self.call(PATH, MANAGER, "GetUnit", vec![Value::Str(unit.into())])?;
        let obj = Self::job_path(&reply)?;
        let iface = if unit.ends_with(".slice") {
            "org.freedesktop.systemd1.Slice"
        } else {
            "org.freedesktop.systemd1.Scope"
        };
        let v = self.get_property(&obj, iface, "ControlGroup")?;
        Ok(v.as_str().unwrap_or("").to_string())
    }
}
