//! Acceptance: Kubernetes' Container Runtime Interface driving the runtime. A private
//! containerd with its CRI plugin gets a runtime class `claw` whose runc binary
//! (`BinaryName`) is the runtime under test; this test is the kubelet: RunPodSandbox →
//! CreateContainer → StartContainer → the container exits on its own → ContainerStatus says
//! EXITED with its exit code → StopPodSandbox → RemovePodSandbox, and nothing is left (no
//! state in the runtime's root, no cgroup, no process, no mount).
//!
//! The pod uses the host network (no CNI plugin on this machine) and a pause image built
//! locally from busybox (no registry). `restrict_oom_score_adj`: this machine gives no
//! CAP_SYS_RESOURCE, so the sandbox's -998 would be refused (for runc as for nanoclaw).
//! Every scenario runs against runc too.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use claw_testsupport::engines::{cgroup_dirs_named, run_ok, unique_name, Containerd};
use claw_testsupport::{require_root, require_tool, which};
use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatusRequest,
    CreateContainerRequest, ImageSpec, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest,
    RunPodSandboxRequest, StartContainerRequest, StopPodSandboxRequest, VersionRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};

const PAUSE: &str = "claw.test/pause:latest";
const BUSYBOX: &str = "claw.test/busybox:latest";
const HANDLER: &str = "claw";

fn ready(test: &str) -> bool {
    require_root(test)
        && require_tool(test, "containerd")
        && require_tool(test, "ctr")
        && require_tool(test, "umoci")
}

/// containerd with the CRI plugin: overlayfs, a random streaming port (tests run in
/// parallel), the runtime class `claw` → `runtime`.
fn start_containerd(runtime: &Path) -> Containerd {
    let rt = runtime.display().to_string();
    Containerd::start_cri(|dir| {
        format!(
            "  sandbox_image = \"{PAUSE}\"\n  \
             restrict_oom_score_adj = true\n  \
             stream_server_address = \"127.0.0.1\"\n  \
             stream_server_port = \"0\"\n  \
             [plugins.\"io.containerd.grpc.v1.cri\".cni]\n    \
             bin_dir = \"{d}/cni/bin\"\n    conf_dir = \"{d}/cni/conf\"\n  \
             [plugins.\"io.containerd.grpc.v1.cri\".containerd]\n    \
             snapshotter = \"overlayfs\"\n    \
             default_runtime_name = \"{HANDLER}\"\n    \
             [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.{HANDLER}]\n      \
             runtime_type = \"io.containerd.runc.v2\"\n      \
             [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.{HANDLER}.options]\n        \
             BinaryName = \"{rt}\"\n",
            d = dir.display()
        )
    })
    .expect("containerd with the CRI plugin starts")
}

async fn connect(socket: PathBuf) -> RuntimeServiceClient<Channel> {
    let channel = Endpoint::try_from("http://[::]:50051")
        .expect("static URI")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let socket = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(
                    tokio::net::UnixStream::connect(socket).await?,
                ))
            }
        }))
        .await
        .expect("connect to containerd's socket");
    RuntimeServiceClient::new(channel)
}

fn pod_config(name: &str, logs: &Path, cgroup_parent: &str) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.to_string(),
            uid: format!("{name}-uid"),
            namespace: "default".to_string(),
            attempt: 0,
        }),
        log_directory: logs.display().to_string(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: cgroup_parent.to_string(),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(NamespaceOption {
                    network: NamespaceMode::Node as i32,
                    pid: NamespaceMode::Container as i32,
                    ipc: NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn pod_lifecycle(runtime: &Path) {
    if !ready("CRI pod lifecycle") {
        return;
    }
    // Dropped after containerd (which removes any task left by a failure first).
    let cgroup_parent = format!("/{}", unique_name("claw-cri"));
    let _parent_guard = CgroupParent(cgroup_parent.trim_start_matches('/').to_string());
    let ctd = start_containerd(runtime);
    ctd.import_busybox_with(
        PAUSE,
        &[
            "--config.entrypoint",
            "/bin/sleep",
            "--config.cmd",
            "2147483647",
        ],
    )
    .unwrap();
    ctd.import_busybox(BUSYBOX).unwrap();
    let logs = tempfile::Builder::new()
        .prefix("claw-cri-logs-")
        .tempdir()
        .unwrap();
    let pod_name = unique_name("pod");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (pod_id, ctr_id) = rt.block_on(async {
        let mut cri = connect(ctd.socket()).await;
        let v = cri
            .version(VersionRequest::default())
            .await
            .expect("CRI Version")
            .into_inner();
        assert_eq!(v.runtime_api_version, "v1");

        let config = pod_config(&pod_name, logs.path(), &cgroup_parent);
        let pod_id = cri
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: HANDLER.to_string(),
            })
            .await
            .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"))
            .into_inner()
            .pod_sandbox_id;
        let ctr_id = cri
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod_id.clone(),
                config: Some(ContainerConfig {
                    metadata: Some(ContainerMetadata {
                        name: "worker".to_string(),
                        attempt: 0,
                    }),
                    image: Some(ImageSpec {
                        image: BUSYBOX.to_string(),
                        ..Default::default()
                    }),
                    command: vec!["sh".into(), "-c".into(), "echo from-the-pod; exit 7".into()],
                    log_path: "worker.log".to_string(),
                    ..Default::default()
                }),
                sandbox_config: Some(config.clone()),
            })
            .await
            .unwrap_or_else(|e| panic!("CreateContainer: {e}"))
            .into_inner()
            .container_id;
        cri.start_container(StartContainerRequest {
            container_id: ctr_id.clone(),
        })
        .await
        .unwrap_or_else(|e| panic!("StartContainer: {e}"));

        // The kubelet polls ContainerStatus: the exit must be reported, with its code.
        let end = Instant::now() + Duration::from_secs(30);
        let status = loop {
            let s = cri
                .container_status(ContainerStatusRequest {
                    container_id: ctr_id.clone(),
                    verbose: false,
                })
                .await
                .unwrap_or_else(|e| panic!("ContainerStatus: {e}"))
                .into_inner()
                .status
                .expect("a status");
            if s.state == ContainerState::ContainerExited as i32 || Instant::now() > end {
                break s;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(
            status.state,
            ContainerState::ContainerExited as i32,
            "never reported exited: {status:?}"
        );
        assert_eq!(status.exit_code, 7, "{status:?}");

        // Stopping the pod must not hang (the kill of the exited container is "already
        // finished" for the shim) and removing it must leave nothing.
        tokio::time::timeout(
            Duration::from_secs(60),
            cri.stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: pod_id.clone(),
            }),
        )
        .await
        .expect("StopPodSandbox did not hang")
        .unwrap_or_else(|e| panic!("StopPodSandbox: {e}"));
        tokio::time::timeout(
            Duration::from_secs(60),
            cri.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: pod_id.clone(),
            }),
        )
        .await
        .expect("RemovePodSandbox did not hang")
        .unwrap_or_else(|e| panic!("RemovePodSandbox: {e}"));
        (pod_id, ctr_id)
    });

    // The container's output went to the pod's log (CRI log format: time stream tag line).
    let log = std::fs::read_to_string(logs.path().join("worker.log")).unwrap_or_default();
    assert!(log.contains(" stdout F from-the-pod"), "{log}");

    // Nothing left: no state in the runtime's root, no cgroup, no process of the pod.
    let root = ctd.runtime_root();
    for id in [&pod_id, &ctr_id] {
        assert!(!root.join(id).exists(), "{} left", root.join(id).display());
        let cgroups = cgroup_dirs_named(id);
        assert!(cgroups.is_empty(), "cgroups left for {id}: {cgroups:?}");
    }
    let listed = run_ok(
        Command::new(runtime)
            .arg("--root")
            .arg(&root)
            .args(["list", "--quiet"]),
    );
    for id in [&pod_id, &ctr_id] {
        assert!(!listed.lines().any(|l| l == id), "{id} still listed");
    }
    // The pod's cgroup parent is the kubelet's to remove: it must be empty now.
    for dir in cgroup_dirs_named(cgroup_parent.trim_start_matches('/')) {
        std::fs::remove_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
}

/// Removes the pod's cgroup parent in every hierarchy (deepest first, empty directories
/// only) when the test ends, passed or failed.
struct CgroupParent(String);

impl Drop for CgroupParent {
    fn drop(&mut self) {
        let mut dirs = Vec::new();
        for top in cgroup_dirs_named(&self.0) {
            let mut stack = vec![top];
            while let Some(d) = stack.pop() {
                if let Ok(rd) = std::fs::read_dir(&d) {
                    stack.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
                }
                dirs.push(d);
            }
        }
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for d in dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

fn runc() -> PathBuf {
    which("runc")
        .or_else(|| Some(PathBuf::from("/usr/sbin/runc")).filter(|p| p.is_file()))
        .expect("runc is installed by scripts/install-deps")
}

/// nanoclaw as built for this workspace's tests (the nanoclaw crate's binary).
fn nanoclaw() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let bin = target.join(profile).join("nanoclaw");
    assert!(
        bin.is_file(),
        "{} missing: build it first (cargo build -p nanoclaw)",
        bin.display()
    );
    bin
}

mod runc {
    #[test]
    fn cri_pod_lifecycle() {
        super::pod_lifecycle(&super::runc());
    }
}

mod nanoclaw {
    #[test]
    fn cri_pod_lifecycle() {
        super::pod_lifecycle(&super::nanoclaw());
    }
}
