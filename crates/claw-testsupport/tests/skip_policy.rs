//! The skip policy every `require_*` helper applies: a panic under CI, a recorded skip
//! elsewhere. Each test builds its policy explicitly (`SkipPolicy::from_values` or a variant)
//! instead of changing the process environment, which parallel tests share.

use std::ffi::OsStr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use claw_testsupport::{find_attestation_fixtures, is_ci, SkipPolicy};

fn ci(v: &str) -> bool {
    is_ci(Some(OsStr::new(v)))
}

/// The panic message of `f`, or `None` when it returned.
fn panic_message(f: impl FnOnce()) -> Option<String> {
    let payload = catch_unwind(AssertUnwindSafe(f)).err()?;
    Some(
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default(),
    )
}

#[test]
fn ci_is_set_unless_unset_empty_false_or_zero() {
    assert!(!is_ci(None));
    for off in ["", "0", "false", "FALSE", "False", " false "] {
        assert!(!ci(off), "CI={off:?} must not count as CI");
    }
    for on in ["true", "1", "yes", "TRUE", "github"] {
        assert!(ci(on), "CI={on:?} must count as CI");
    }
}

#[test]
fn policy_from_values() {
    let log = Some(OsStr::new("/tmp/skips"));
    assert_eq!(
        SkipPolicy::from_values(Some(OsStr::new("true")), log),
        SkipPolicy::Fail
    );
    assert_eq!(
        SkipPolicy::from_values(None, log),
        SkipPolicy::Record {
            log: Some("/tmp/skips".into())
        }
    );
    assert_eq!(
        SkipPolicy::from_values(Some(OsStr::new("false")), Some(OsStr::new(""))),
        SkipPolicy::Record { log: None }
    );
}

#[test]
fn under_ci_a_missing_requirement_fails_naming_it() {
    let msg = panic_message(|| SkipPolicy::Fail.skip("needs_root_test", "needs root"))
        .expect("the Fail policy must panic");
    assert!(msg.contains("needs_root_test"), "{msg}");
    assert!(msg.contains("needs root"), "{msg}");

    let msg = panic_message(|| {
        SkipPolicy::Fail.require("kvm_test", false, "needs a usable /dev/kvm");
    })
    .expect("require of something missing must panic under CI");
    assert!(msg.contains("needs a usable /dev/kvm"), "{msg}");

    // What is there passes through without a panic.
    assert_eq!(
        panic_message(|| assert!(SkipPolicy::Fail.require("t", true, "unused"))),
        None
    );
}

#[test]
fn outside_ci_each_skip_is_one_line_in_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("skipped");
    let policy = SkipPolicy::Record {
        log: Some(log.clone()),
    };
    assert!(!policy.require("first", false, "needs root"));
    policy.skip("second", "needs `ctr`\non PATH");
    assert!(policy.require("present", true, "unused"));

    let text = std::fs::read_to_string(&log).expect("the log was written");
    let lines: Vec<&str> = text.lines().collect();
    // The name is the test binary and the thread libtest runs this test on.
    let me = "skip_policy::outside_ci_each_skip_is_one_line_in_the_log";
    assert_eq!(
        lines,
        [
            format!("{me}: needs root"),
            format!("{me}: needs `ctr` on PATH")
        ],
        "{text:?}"
    );
}

#[test]
fn outside_ci_without_a_log_the_test_just_returns() {
    let policy = SkipPolicy::Record { log: None };
    assert_eq!(
        panic_message(|| assert!(!policy.require("t", false, "needs root"))),
        None
    );
}

#[test]
fn a_skip_that_cannot_be_logged_fails_instead_of_hiding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("no-such-dir/skipped");
    let policy = SkipPolicy::Record {
        log: Some(log.clone()),
    };
    let msg = panic_message(|| policy.skip("t", "needs root")).expect("must panic");
    assert!(msg.contains(&log.display().to_string()), "{msg}");
}

#[test]
fn attestation_fixtures_are_found_beside_the_repo_or_an_ancestor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("wt/issue/repo");
    std::fs::create_dir_all(&repo).expect("repo dir");
    assert_eq!(find_attestation_fixtures(&repo), None);

    // A directory without index.json is not the fixtures.
    let fixtures = dir.path().join("shared/fixtures/attestation");
    std::fs::create_dir_all(&fixtures).expect("fixtures dir");
    assert_eq!(find_attestation_fixtures(&repo), None);

    std::fs::write(fixtures.join("index.json"), "{}").expect("index");
    let found = find_attestation_fixtures(&repo).expect("found from a nested worktree");
    assert_eq!(
        found.canonicalize().expect("canonical"),
        fixtures.canonicalize().expect("canonical")
    );
    assert_eq!(find_attestation_fixtures(Path::new("/nonexistent/x")), None);
}
