//! nanoclaw-cgroups: the untrusted inputs of the cgroup layer must never panic — linux.resources
//! (config.json / `update -r`) through both validation layers, linux.cgroupsPath, cpuset lists,
//! and the mountinfo / /proc/self/cgroup parsers fed with arbitrary text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nanoclaw_cgroups::{cpuset, layout::Layout, validate, CgroupPaths, CgroupsPath};

const HYBRID: &str = "\
32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw - cgroup cgroup rw,devices
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
";

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let layout = Layout::from_sources(
        HYBRID,
        "",
        "4:memory:/a\n1:cpu:/\n5:devices:/\n0::/\n",
        |_| Ok("hugetlb".into()),
    )
    .expect("fixed layout");
    if let Ok(r) = serde_json::from_slice::<oci_spec::runtime::LinuxResources>(data) {
        let _ = validate::validate_values(&r);
        let _ = validate::validate_with(&r, &layout, &["2MB".to_string()]);
        let _ = nanoclaw_cgroups::devices::normalize(r.devices().as_deref().unwrap_or(&[]));
    }
    if let Ok(p) = CgroupsPath::parse(Some(std::path::Path::new(text.as_ref())), "id") {
        if let Ok(paths) = CgroupPaths::resolve(&layout, &p) {
            for h in paths.dirs() {
                assert!(
                    h.dir.starts_with(&h.mountpoint),
                    "{:?} escaped its hierarchy",
                    h.dir
                );
            }
        }
    }
    let _ = cpuset::parse_list(&text);
    let _ = Layout::from_sources(&text, &text, &text, |_| Ok(text.to_string()));
});
