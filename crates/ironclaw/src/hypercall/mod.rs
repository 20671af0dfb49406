//! Host side of the hypercall interface: reads a request out of guest memory, validates it
//! ([`untrusted_guest_request`] — the security boundary), performs it, and writes the
//! response back. One [`Dispatcher`] per run; it also enforces the output and exit-count
//! limits.

pub mod untrusted_guest_request;

use std::io::{Read, Write};
use std::time::Instant;

use ironclaw_abi::{
    layout, output, status, ExitKind, ResponseHeader, DATA_CAPACITY, DATA_OFFSET, HEADER_SIZE,
    REQUEST_HEADER_OFFSET, RESPONSE_HEADER_OFFSET, RESPONSE_MAGIC, RESPONSE_VALUES,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

pub use untrusted_guest_request::{Call, GuestRequest, RequestError};

/// How a run ended from the guest's point of view (an EXIT hypercall).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestExit {
    pub kind: ExitKind,
    pub code: u32,
    /// The shim's message (lossily decoded UTF-8, at most `MAX_EXIT_MESSAGE` bytes).
    pub message: String,
    /// Guest-TSC ticks the shim reports for compiling and for running (untrusted, timings only).
    pub compile_ticks: u64,
    pub run_ticks: u64,
}

/// What the VMM does after a hypercall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Resume the vCPU.
    Continue,
    /// The guest asked to end the run.
    Exit(GuestExit),
}

/// Why the dispatcher ended the run.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("hypercall protocol violation: {0}")]
    Protocol(#[from] RequestError),
    #[error("guest memory access at {addr:#x} failed: {source}")]
    Memory {
        addr: u64,
        source: vm_memory::GuestMemoryError,
    },
    #[error("output limit: the module wrote more than {limit} bytes")]
    OutputLimit { limit: u64 },
    #[error("exit flood: the guest made more than {limit} hypercalls")]
    ExitFlood { limit: u64 },
    #[error("writing the module's {stream}: {source}")]
    Output {
        stream: &'static str,
        source: std::io::Error,
    },
    #[error("reading the module's stdin: {0}")]
    Input(std::io::Error),
    #[error("socket relay: {0}")]
    Net(NetCallError),
}

/// Why a NET exchange ended the run.
#[derive(Debug, thiserror::Error)]
pub enum NetCallError {
    /// The guest's operations broke the protocol (exit code 108).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The host's own socket machinery failed (exit code 125).
    #[error("host I/O: {0}")]
    Host(String),
}

/// The socket relay of a service (`crate::service`): performs one NET exchange.
pub trait NetCalls {
    /// Applies the guest's `ops`, waits at most `wait_ns` when there is nothing to report
    /// (acknowledgements count only with `wake_on_ack`),
    /// and writes event records (at most `DATA_CAPACITY` bytes) into `events`. Returns the
    /// response flags.
    fn exchange(
        &mut self,
        wait_ns: u64,
        wake_on_ack: bool,
        ops: &[u8],
        events: &mut Vec<u8>,
    ) -> Result<u64, NetCallError>;

    /// Looks for SIGTERM/SIGINT without waiting (after KVM_RUN was interrupted).
    fn check_signals(&mut self) {}

    /// When the grace period after a termination signal ends, once one arrived.
    fn grace_deadline(&self) -> Option<std::time::Instant> {
        None
    }

    /// True when the service is done: terminating and no connection left, or grace over.
    fn finished(&self) -> bool {
        false
    }
}

/// Answer of an extension call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtensionResponse {
    pub status: u32,
    pub values: [u64; RESPONSE_VALUES],
    /// At most `DATA_CAPACITY` bytes (longer answers are refused with `BAD_REQUEST`).
    pub payload: Vec<u8>,
}

/// Handler for IronClaw's own call range (`0x100..=0x1FF`: attest, seal, unseal,
/// get-secret). The arguments have passed the generic validation only: an implementation
/// validates its own payload as hostile input.
pub trait IronClawCalls {
    fn call(&mut self, number: u32, args: [u64; 4], payload: &[u8]) -> ExtensionResponse;
}

/// The I/O a run is connected to.
pub struct RunIo<'a> {
    pub stdin: &'a mut dyn Read,
    pub stdout: &'a mut dyn Write,
    pub stderr: &'a mut dyn Write,
}

/// Per-run hypercall state.
pub struct Dispatcher<'a> {
    io: RunIo<'a>,
    extension: Option<&'a mut dyn IronClawCalls>,
    net: Option<&'a mut dyn NetCalls>,
    /// NET exchanges so far (not counted against `max_calls`: a service's exits are its
    /// work; the CPU guard is the per-turn fuel).
    net_calls: u64,
    events: Vec<u8>,
    max_output: u64,
    max_calls: u64,
    output_written: u64,
    calls: u64,
    data: Vec<u8>,
    first_output: Option<Instant>,
}

fn addr(offset: usize) -> GuestAddress {
    GuestAddress(layout::SHARED_BUF_ADDR + offset as u64)
}

impl<'a> Dispatcher<'a> {
    pub fn new(io: RunIo<'a>, max_output: u64, max_calls: u64) -> Self {
        Self {
            io,
            extension: None,
            net: None,
            net_calls: 0,
            events: Vec::new(),
            max_output,
            max_calls,
            output_written: 0,
            calls: 0,
            data: Vec::with_capacity(DATA_CAPACITY),
            first_output: None,
        }
    }

    /// Installs the handler for IronClaw's own calls.
    pub fn with_extension(mut self, ext: &'a mut dyn IronClawCalls) -> Self {
        self.extension = Some(ext);
        self
    }

    /// Installs the socket relay (service launches).
    pub fn with_net(mut self, net: &'a mut dyn NetCalls) -> Self {
        self.net = Some(net);
        self
    }

    /// The socket relay, if any.
    pub fn net_mut(&mut self) -> Option<&mut (dyn NetCalls + 'a)> {
        self.net.as_deref_mut()
    }

    /// NET exchanges handled so far.
    pub fn net_calls(&self) -> u64 {
        self.net_calls
    }

    /// When the module's first output byte reached the host.
    pub fn first_output(&self) -> Option<Instant> {
        self.first_output
    }

    /// Hypercalls handled so far.
    pub fn calls(&self) -> u64 {
        self.calls
    }

    /// Handles one `out` to the hypercall port.
    pub fn handle(&mut self, mem: &GuestMemoryMmap) -> Result<Step, DispatchError> {
        self.calls += 1;
        if self.calls.saturating_sub(self.net_calls) > self.max_calls {
            return Err(DispatchError::ExitFlood {
                limit: self.max_calls,
            });
        }
        let mut header = [0u8; HEADER_SIZE];
        read(mem, REQUEST_HEADER_OFFSET, &mut header)?;
        let (_, len) = untrusted_guest_request::data_len(&header)?;
        // Copy exactly the announced bytes out of guest memory (len <= DATA_CAPACITY).
        self.data.resize(len, 0);
        read(mem, DATA_OFFSET, &mut self.data)?;
        let data = std::mem::take(&mut self.data);
        let result = self.perform(mem, &header, &data);
        self.data = data;
        result
    }

    fn perform(
        &mut self,
        mem: &GuestMemoryMmap,
        header: &[u8; HEADER_SIZE],
        data: &[u8],
    ) -> Result<Step, DispatchError> {
        let request = untrusted_guest_request::parse_request(header, data)?;
        self.write_output(&request)?;
        match request.call {
            Call::Exit {
                kind,
                code,
                message,
                compile_ticks,
                run_ticks,
            } => Ok(Step::Exit(GuestExit {
                kind,
                code,
                message: String::from_utf8_lossy(message).into_owned(),
                compile_ticks,
                run_ticks,
            })),
            Call::Flush => {
                respond(mem, status::OK, [0; RESPONSE_VALUES], &[])?;
                Ok(Step::Continue)
            }
            Call::ReadStdin { max } => {
                let mut buf = vec![0u8; max];
                let n = loop {
                    match self.io.stdin.read(&mut buf) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(DispatchError::Input(e)),
                    }
                };
                let slice = buf.get(..n).unwrap_or(&[]);
                respond(mem, status::OK, [u64::from(n == 0), 0], slice)?;
                Ok(Step::Continue)
            }
            Call::IronClaw {
                number,
                args,
                payload,
            } => {
                let answer = match self.extension.as_mut() {
                    Some(ext) => ext.call(number, args, payload),
                    None => ExtensionResponse {
                        status: status::UNKNOWN_CALL,
                        ..Default::default()
                    },
                };
                if answer.payload.len() > DATA_CAPACITY {
                    respond(mem, status::BAD_REQUEST, [0; RESPONSE_VALUES], &[])?;
                } else {
                    respond(mem, answer.status, answer.values, &answer.payload)?;
                }
                Ok(Step::Continue)
            }
            Call::Net {
                wait_ns,
                wake_on_ack,
                ops,
            } => {
                let Some(net) = self.net.as_mut() else {
                    respond(mem, status::UNAVAILABLE, [0; RESPONSE_VALUES], &[])?;
                    return Ok(Step::Continue);
                };
                self.net_calls += 1;
                self.events.clear();
                let flags = net
                    .exchange(wait_ns, wake_on_ack, ops, &mut self.events)
                    .map_err(DispatchError::Net)?;
                if self.events.len() > DATA_CAPACITY {
                    return Err(DispatchError::Net(NetCallError::Host(format!(
                        "{} bytes of events exceed the data area",
                        self.events.len()
                    ))));
                }
                respond(mem, status::OK, [flags, 0], &self.events)?;
                Ok(Step::Continue)
            }
            Call::Unknown { .. } => {
                respond(mem, status::UNKNOWN_CALL, [0; RESPONSE_VALUES], &[])?;
                Ok(Step::Continue)
            }
        }
    }

    fn write_output(&mut self, request: &GuestRequest<'_>) -> Result<(), DispatchError> {
        let total = request.output_bytes();
        if total == 0 {
            return Ok(());
        }
        if self.first_output.is_none() {
            self.first_output = Some(Instant::now());
        }
        let mut allowed = self.max_output.saturating_sub(self.output_written);
        for record in request.output() {
            let take = record
                .bytes
                .len()
                .min(usize::try_from(allowed).unwrap_or(usize::MAX));
            let bytes = record.bytes.get(..take).unwrap_or(&[]);
            let (sink, stream): (&mut dyn Write, _) = if record.stream == output::STDOUT {
                (&mut *self.io.stdout, "stdout")
            } else {
                (&mut *self.io.stderr, "stderr")
            };
            sink.write_all(bytes)
                .map_err(|source| DispatchError::Output { stream, source })?;
            allowed -= take as u64;
        }
        self.io
            .stdout
            .flush()
            .map_err(|source| DispatchError::Output {
                stream: "stdout",
                source,
            })?;
        self.io
            .stderr
            .flush()
            .map_err(|source| DispatchError::Output {
                stream: "stderr",
                source,
            })?;
        self.output_written = self.output_written.saturating_add(total);
        if self.output_written > self.max_output {
            return Err(DispatchError::OutputLimit {
                limit: self.max_output,
            });
        }
        Ok(())
    }
}

fn read(mem: &GuestMemoryMmap, offset: usize, buf: &mut [u8]) -> Result<(), DispatchError> {
    mem.read_slice(buf, addr(offset))
        .map_err(|source| DispatchError::Memory {
            addr: addr(offset).0,
            source,
        })
}

fn respond(
    mem: &GuestMemoryMmap,
    status: u32,
    values: [u64; RESPONSE_VALUES],
    payload: &[u8],
) -> Result<(), DispatchError> {
    let header = ResponseHeader {
        magic: RESPONSE_MAGIC,
        status,
        payload_len: payload.len() as u32, // <= DATA_CAPACITY, checked by the callers
        reserved: 0,
        values,
    };
    mem.write_slice(payload, addr(DATA_OFFSET))
        .map_err(|source| DispatchError::Memory {
            addr: addr(DATA_OFFSET).0,
            source,
        })?;
    mem.write_slice(&header.encode(), addr(RESPONSE_HEADER_OFFSET))
        .map_err(|source| DispatchError::Memory {
            addr: addr(RESPONSE_HEADER_OFFSET).0,
            source,
        })
}
