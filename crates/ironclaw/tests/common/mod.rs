//! Helpers shared by the IronClaw integration tests.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::PathBuf;

use ironclaw::hypercall::RunIo;
use ironclaw::{GuestImage, LaunchConfig, LaunchError, LaunchInputs, RunReport};

/// Path of an example workload built by build.rs.
pub(crate) fn example(name: &str) -> PathBuf {
    PathBuf::from(ironclaw::shim::EXAMPLES_DIR).join(name)
}

/// Bytes of an example workload.
pub(crate) fn example_bytes(name: &str) -> Vec<u8> {
    std::fs::read(example(name)).unwrap_or_else(|e| panic!("example {name}: {e}"))
}

/// What a launch produced.
pub(crate) struct Ran {
    pub result: Result<RunReport, LaunchError>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Launches `module` with the embedded shim.
pub(crate) fn launch(module: &[u8], args: &[&str], stdin: &[u8], config: &LaunchConfig) -> Ran {
    launch_image(&GuestImage::shim(), module, args, stdin, config)
}

/// Launches with an explicit guest image.
pub(crate) fn launch_image(
    image: &GuestImage<'_>,
    module: &[u8],
    args: &[&str],
    stdin: &[u8],
    config: &LaunchConfig,
) -> Ran {
    let inputs = LaunchInputs {
        args: args.iter().map(|s| s.to_string()).collect(),
        env: vec![],
    };
    let (mut i, mut stdout, mut stderr) = (Cursor::new(stdin.to_vec()), Vec::new(), Vec::new());
    let io = RunIo {
        stdin: &mut i,
        stdout: &mut stdout,
        stderr: &mut stderr,
    };
    let result = ironclaw::run_image(image, module, &inputs, config, io, None);
    Ran {
        result,
        stdout,
        stderr,
    }
}

/// A guest image made of raw machine code placed at SHIM_BASE, entered at its first byte.
pub(crate) fn raw_image(code: &'static [u8]) -> GuestImage<'static> {
    GuestImage {
        bytes: code,
        entry: ironclaw_abi::layout::SHIM_BASE,
    }
}
