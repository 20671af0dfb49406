//! tmpfs mounts as engines write them: the mount takes the image directory's mode, and
//! `tmpcopyup` (podman's `--read-only` and `--tmpfs`) copies the image directory's content
//! into the new tmpfs with owners and modes kept, never following the image's symlinks.

mod common;

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use claw_testsupport::bundle::Bundle;
use common::*;
use serde_json::{json, Value};

/// An image whose /run has content: a file owned 7:8 mode 0604, a setgid directory owned
/// 1:2 mode 02775 with a nested file, a symlink pointing out of the directory, and a fifo.
/// /run itself is mode 0750.
fn bundle_with_run_content() -> Bundle {
    let bundle = Bundle::busybox().unwrap();
    let run = bundle.rootfs().join("run");
    std::fs::create_dir_all(run.join("lock/sub")).unwrap();
    std::fs::write(run.join("app.conf"), "listen 1883\n").unwrap();
    std::fs::write(run.join("lock/sub/deep"), "deep file\n").unwrap();
    symlink("/etc/passwd", run.join("passwd-link")).unwrap();
    nix::unistd::mkfifo(
        &run.join("ctl.fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o620),
    )
    .unwrap();
    let set = |p: &Path, mode: u32, uid: u32, gid: u32| {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    set(&run.join("app.conf"), 0o604, 7, 8);
    set(&run.join("lock"), 0o2775, 1, 2);
    set(&run.join("ctl.fifo"), 0o620, 3, 4);
    set(&run, 0o750, 0, 0);
    std::os::unix::fs::lchown(run.join("passwd-link"), Some(5), Some(6)).unwrap();
    bundle
}

/// `mounts` with a tmpfs on /run carrying `options`, and a read-only root (as podman's
/// `--read-only`).
fn spec_with_run_tmpfs(script: &str, options: Value) -> Value {
    let mut spec = sh(script);
    spec["root"]["readonly"] = json!(true);
    spec["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs", "options": options}),
    );
    spec
}

const SHOW: &str = "grep ' /run ' /proc/mounts | cut -d' ' -f3; \
    stat -c '%n %a %u:%g %F' /run /run/app.conf /run/lock /run/lock/sub /run/lock/sub/deep /run/ctl.fifo; \
    stat -c '%n %u:%g %F' /run/passwd-link; readlink /run/passwd-link; \
    cat /run/app.conf /run/lock/sub/deep";

const EXPECT: &str = "tmpfs\n\
    /run 750 0:0 directory\n\
    /run/app.conf 604 7:8 regular file\n\
    /run/lock 2775 1:2 directory\n\
    /run/lock/sub 755 0:0 directory\n\
    /run/lock/sub/deep 644 0:0 regular file\n\
    /run/ctl.fifo 620 3:4 fifo\n\
    /run/passwd-link 5:6 symbolic link\n\
    /etc/passwd\n\
    listen 1883\n\
    deep file\n";

#[test]
fn tmpcopyup_copies_the_image_directory() {
    if !root("tmpcopyup_copies_the_image_directory") {
        return;
    }
    let bundle = bundle_with_run_content();
    let script = format!(
        "{SHOW}; echo new > /run/new && echo WROTE-RUN; touch /x 2>/dev/null || echo ROOT-RO"
    );
    let spec = spec_with_run_tmpfs(
        &script,
        json!(["rw", "rprivate", "nosuid", "nodev", "tmpcopyup"]),
    );
    let ran = run_in(bundle, &spec);
    assert_eq!(ran.ok(), format!("{EXPECT}WROTE-RUN\nROOT-RO\n"));
    // The copy went into the tmpfs: the image's directory is untouched.
    let run = ran.bundle.rootfs().join("run");
    assert!(!run.join("new").exists());
    assert_eq!(
        std::fs::read_to_string(run.join("app.conf")).unwrap(),
        "listen 1883\n"
    );
}

/// `ro` with `tmpcopyup`: the copy is made first, then the tmpfs becomes read-only.
#[test]
fn tmpcopyup_read_only_tmpfs() {
    if !root("tmpcopyup_read_only_tmpfs") {
        return;
    }
    let bundle = bundle_with_run_content();
    let script = format!(
        "{SHOW}; grep ' /run ' /proc/mounts | cut -d' ' -f4 | tr , '\\n' | grep -x ro; \
         touch /run/new 2>/dev/null || echo RUN-RO"
    );
    let spec = spec_with_run_tmpfs(&script, json!(["ro", "nosuid", "tmpcopyup", "size=1m"]));
    assert_eq!(run_in(bundle, &spec).ok(), format!("{EXPECT}ro\nRUN-RO\n"));
}

/// Without `tmpcopyup` the tmpfs is empty but keeps the directory's mode; a `mode=` in the
/// options wins over it; `notmpcopyup` after `tmpcopyup` cancels the copy.
#[test]
fn tmpfs_without_copy_keeps_the_directory_mode() {
    if !root("tmpfs_without_copy_keeps_the_directory_mode") {
        return;
    }
    let script = "stat -c '%a' /run; ls -A /run | wc -l";
    for (options, expect) in [
        (json!(["nosuid"]), "750\n0\n"),
        (json!(["nosuid", "mode=1777"]), "1777\n0\n"),
        (json!(["tmpcopyup", "notmpcopyup"]), "750\n0\n"),
    ] {
        let spec = spec_with_run_tmpfs(script, options.clone());
        assert_eq!(
            run_in(bundle_with_run_content(), &spec).ok(),
            expect,
            "{options}"
        );
    }
    // A directory the image lacks is created; the tmpfs keeps the kernel's default 1777.
    let mut spec = sh("stat -c '%a' /fresh");
    spec["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/fresh", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]}));
    assert_eq!(run_spec(&spec).ok(), "1777\n");
}

/// More content than the tmpfs holds: the copy fails with the mount and path named, and
/// nothing is left behind.
#[test]
fn tmpcopyup_that_does_not_fit_is_refused_cleanly() {
    if !root("tmpcopyup_that_does_not_fit_is_refused_cleanly") {
        return;
    }
    let bundle = bundle_with_run_content();
    std::fs::write(bundle.rootfs().join("run/big"), vec![7u8; 256 * 1024]).unwrap();
    let spec = spec_with_run_tmpfs("echo SHOULD-NOT-RUN", json!(["tmpcopyup", "size=64k"]));
    bundle.write_config(&spec).unwrap();
    let n = spec["mounts"].as_array().unwrap().len() - 1;
    refused_in(
        "tmpcopyup_that_does_not_fit_is_refused_cleanly",
        &bundle,
        &format!("mounts[{n}]: tmpcopyup: /run/big"),
    );
}

/// Options that only an engine or mount(8) understands never reach mount(2): each is
/// refused before anything is created, with the option's field named.
#[test]
fn runtime_only_options_are_refused() {
    if !root("runtime_only_options_are_refused") {
        return;
    }
    for (options, idx, expect) in [
        (
            json!(["nosuid", "rro"]),
            1,
            "rro: recursive mount attributes are not supported",
        ),
        (
            json!(["x-systemd.automount"]),
            0,
            "x-systemd.automount: a userspace (x-*) option",
        ),
        (
            json!(["size=1m", "nofail"]),
            1,
            "nofail: a mount(8)/fstab option",
        ),
        (
            json!(["U"]),
            0,
            "U: an engine (podman/docker) volume option",
        ),
        (
            json!(["idmap=uids=0-1000-10"]),
            0,
            "idmap=uids=0-1000-10: id-mapped mounts are not supported",
        ),
    ] {
        let spec = spec_with_run_tmpfs("echo SHOULD-NOT-RUN", options.clone());
        let n = spec["mounts"].as_array().unwrap().len() - 1;
        let bundle = Bundle::busybox().unwrap();
        bundle.write_config(&spec).unwrap();
        refused_in(
            "runtime_only_options_are_refused",
            &bundle,
            &format!("`mounts[{n}].options[{idx}]`: {expect}"),
        );
    }
    // tmpcopyup on anything but a tmpfs.
    let mut spec = sh("echo SHOULD-NOT-RUN");
    spec["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/mnt", "type": "bind", "source": "/tmp", "options": ["rbind", "tmpcopyup"]}),
    );
    let n = spec["mounts"].as_array().unwrap().len() - 1;
    let bundle = Bundle::busybox().unwrap();
    bundle.write_config(&spec).unwrap();
    refused_in(
        "runtime_only_options_are_refused",
        &bundle,
        &format!("`mounts[{n}].options[1]`: tmpcopyup applies to tmpfs mounts only"),
    );
}

/// A hostile image cannot make the copy recurse without bound: past 128 levels the container
/// is refused with the mount named, nothing left behind.
#[test]
fn tmpcopyup_depth_is_bounded() {
    if !root("tmpcopyup_depth_is_bounded") {
        return;
    }
    let bundle = Bundle::busybox().unwrap();
    let mut deep = bundle.rootfs().join("run");
    for _ in 0..130 {
        deep.push("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    let spec = spec_with_run_tmpfs("echo SHOULD-NOT-RUN", json!(["tmpcopyup"]));
    bundle.write_config(&spec).unwrap();
    let n = spec["mounts"].as_array().unwrap().len() - 1;
    refused_in(
        "tmpcopyup_depth_is_bounded",
        &bundle,
        &format!(
            "mounts[{n}]: tmpcopyup: /run{}: more than 128 directory levels",
            "/d".repeat(128)
        ),
    );
}

/// An option no layer knows reaches neither the init nor mount(2): the filesystem's own
/// parser (a filesystem context, nothing mounted) refuses it at create, named by its index,
/// with the kernel's reason; nothing is left behind.
#[test]
fn unknown_filesystem_option_is_refused_by_name() {
    if !root("unknown_filesystem_option_is_refused_by_name") {
        return;
    }
    let spec = spec_with_run_tmpfs(
        "echo SHOULD-NOT-RUN",
        json!(["nosuid", "size=1m", "sizee=2m"]),
    );
    let n = spec["mounts"].as_array().unwrap().len() - 1;
    let bundle = Bundle::busybox().unwrap();
    bundle.write_config(&spec).unwrap();
    refused_in(
        "unknown_filesystem_option_is_refused_by_name",
        &bundle,
        &format!("`mounts[{n}].options[2]`: sizee=2m: the tmpfs filesystem refuses it: tmpfs: Unknown parameter 'sizee'"),
    );
}
