//! Same source → same shim bytes → same measurement: rebuilds the shim from a copy of its
//! sources in another directory (another checkout path, a fresh target directory) with the
//! exact steps build.rs uses, and compares with the embedded image.

#[path = "../build/guest_build.rs"]
#[allow(dead_code)]
mod guest_build;

use std::path::Path;

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name == "target" {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if src.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

#[test]
fn a_second_build_from_another_directory_gives_the_same_shim_bytes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .parent()
        .unwrap();
    let tmp = tempfile::Builder::new()
        .prefix("ironclaw-repro-")
        .tempdir()
        .unwrap();
    for krate in ["crates/ironclaw-shim", "crates/ironclaw-abi"] {
        copy_tree(&root.join(krate), &tmp.path().join(krate));
    }
    let manifest = tmp.path().join("crates/ironclaw-shim/Cargo.toml");
    let target = guest_build::nested_build(
        tmp.path(),
        &manifest,
        guest_build::SHIM_TARGET,
        &tmp.path().join("target"),
        guest_build::SHIM_FLAGS,
    )
    .expect("second shim build");
    let (image, entry) = guest_build::flatten_shim(
        &target
            .join(guest_build::SHIM_TARGET)
            .join("release/ironclaw-shim"),
    )
    .unwrap();
    assert_eq!(entry, ironclaw::shim::SHIM_ENTRY);
    assert_eq!(image.len(), ironclaw::shim::SHIM_IMAGE.len());
    assert!(
        image == ironclaw::shim::SHIM_IMAGE,
        "shim bytes differ between two builds of the same source"
    );
    assert_eq!(
        ironclaw::measurement::image_digest(&image),
        ironclaw::measurement::image_digest(ironclaw::shim::SHIM_IMAGE)
    );
}
