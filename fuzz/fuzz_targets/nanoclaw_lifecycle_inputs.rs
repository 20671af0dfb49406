//! nanoclaw lifecycle inputs that come from the caller rather than config.json: an `exec
//! --process` file (then merged into a config process as `exec` does), `kill` signal names,
//! `--log-format` / `--format` values and the records nanoclaw keeps in its state dir. Any bytes
//! must give a value or an error naming the field, never a panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = nanoclaw::process::exec::parse_process_json(Path::new("process.json"), data) {
        let req = nanoclaw::process::exec::ExecRequest {
            args: vec!["sh".into()],
            env: p.env().clone().unwrap_or_default(),
            cwd: Some(p.cwd().clone()),
            ..Default::default()
        };
        let _ = nanoclaw::process::exec::build_process(&req, Some(&p));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = nanoclaw::process::signal::parse_signal(text);
        let _ = nanoclaw::process::exec::parse_user(text);
        let _ = nanoclaw::process::exec::parse_cap(text);
        let _ = nanoclaw::process::exec::SubCgroups::parse(&[text.to_string()]);
        let _ = nanoclaw::security::sched::parse_cpu_list("process.execCPUAffinity.initial", text);
        let _ = text.parse::<nanoclaw::logging::LogFormat>();
        let _ = text.parse::<nanoclaw::container::list::OutputFormat>();
        let _ = nanoclaw::container::list::filter_ps_table(text, &[1, 2, 3]);
    }
    let _ = serde_json::from_slice::<nanoclaw::container::state::State>(data);
    let _ = serde_json::from_slice::<oci_spec::runtime::Hooks>(data)
        .map(|h| nanoclaw::container::hooks::validate(&h));
});
