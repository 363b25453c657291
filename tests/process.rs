//! The `shoal` binary as a user runs it: the demo, `validate`, SIGHUP reloads, SIGTERM drains,
//! and the epoll fallback when io_uring is refused by a seccomp filter.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, upstream};

const BIN: &str = env!("CARGO_BIN_EXE_shoal");

/// A free port (bound and released; the binary binds it right after).
fn free_addr() -> SocketAddr {
    support::closed_port()
}

pub struct Proc {
    child: Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Proc {
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("RUST_LOG", "info");
        let mut child = cmd.spawn().expect("spawn shoal");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        for out in [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
            child.stderr.take().map(|e| Box::new(e) as _),
        ]
        .into_iter()
        .flatten()
        {
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    log.lock().unwrap().push_str(&(line + "\n"));
                }
            });
        }
        Proc { child, log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn wait_log(&self, needle: &str) {
        let start = Instant::now();
        while !self.log().contains(needle) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "never logged {needle:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    pub fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                start.elapsed() < within,
                "shoal did not exit; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_file(
    dir: &Path,
    listen: SocketAddr,
    up: SocketAddr,
    extra_route: &str,
) -> std::path::PathBuf {
    let path = dir.join("shoal.yaml");
    let yaml = format!(
        r#"
workers: 1
drain_timeout: 10s
listeners:
  - {{ name: web, address: "{listen}", routes: web }}
routes:
  web:
    - domains: ["*"]
      routes:
{extra_route}
        - {{ match: {{ prefix: / }}, cluster: up }}
clusters:
  - {{ name: up, endpoints: ["{up}"] }}
"#
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

fn run_with(config: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(["run", "--no-pin", "--config"]).arg(config);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_good_file_and_keeps_the_config_on_a_broken_one() {
    let up = upstream::http_echo("a").await;
    let dir = tempfile::tempdir().unwrap();
    let listen = free_addr();
    let path = config_file(dir.path(), listen, up.addr, "");
    let p = Proc::spawn(run_with(&path));
    p.wait_log("config applied");
    assert_eq!(support::get(listen, "h", "/x").await.0, 200);

    // A broken file: the running config stays, the error is logged with the field path.
    std::fs::write(&path, "listeners:\n  - { name: web, adress: oops }\n").unwrap();
    p.signal("HUP");
    p.wait_log("reload failed");
    assert!(
        p.log().contains("adress"),
        "error should name the field:\n{}",
        p.log()
    );
    assert_eq!(support::get(listen, "h", "/x").await.0, 200);

    // A valid change is applied.
    config_file(
        dir.path(),
        listen,
        up.addr,
        r#"        - { match: { path: /x }, direct_response: { status: 204 } }"#,
    );
    p.signal("HUP");
    p.wait_log("config reloaded");
    assert_eq!(support::get(listen, "h", "/x").await.0, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_in_flight_request_then_exits_zero() {
    let up = upstream::http_echo("a").await;
    let dir = tempfile::tempdir().unwrap();
    let listen = free_addr();
    let path = config_file(dir.path(), listen, up.addr, "");
    let mut p = Proc::spawn(run_with(&path));
    p.wait_log("config applied");
    let slow = tokio::spawn(support::get(listen, "h", "/delay/1000"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.signal("TERM");
    p.wait_log("draining");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        tokio::net::TcpStream::connect(listen).await.is_err(),
        "still accepting while draining"
    );
    let (status, _) = slow.await.unwrap();
    assert_eq!(status, 200, "in-flight request must finish");
    let st = p.wait_exit(Duration::from_secs(10));
    assert!(st.success(), "exit status {st:?}");
}

#[test]
fn validate_names_every_bad_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        r#"
listeners:
  - { name: web, address: "not-an-address", routes: nope }
clusters:
  - { name: c, endpoints: ["127.0.0.1:0"] }
"#,
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("validate")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "listeners[0].address",
        "listeners[0].routes",
        "clusters[0].endpoints[0]",
    ] {
        assert!(err.contains(needle), "missing {needle} in:\n{err}");
    }
    let ok = dir.path().join("ok.yaml");
    std::fs::write(&ok, "listeners: []\n").unwrap();
    assert!(
        Command::new(BIN)
            .arg("validate")
            .arg(&ok)
            .status()
            .unwrap()
            .success()
    );
}

#[test]
fn demo_answers_curl() {
    let listen = free_addr();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "run",
        "--no-pin",
        "--workers",
        "1",
        "--demo-listen",
        &listen.to_string(),
    ]);
    let p = Proc::spawn(cmd);
    p.wait_log("try: curl");
    let out = Command::new("curl")
        .args(["-sS", "-i", &format!("http://{listen}/hello")])
        .output();
    let Ok(out) = out else {
        panic!("curl is needed for this test (the README's first command uses it)");
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("hello from the shoal demo upstream (path /hello)"),
        "{text}"
    );
    assert!(text.to_lowercase().contains("content-length: "), "{text}");
}

/// Runs the binary with io_uring_setup refused (ENOSYS) by a seccomp filter, as in a container
/// whose runtime blocks io_uring: Shoal must fall back to epoll and still proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_to_epoll_when_io_uring_is_blocked() {
    let up = upstream::http_echo("a").await;
    let dir = tempfile::tempdir().unwrap();
    let listen = free_addr();
    let path = config_file(dir.path(), listen, up.addr, "");
    let mut cmd = run_with(&path);
    seccomp::deny_io_uring(&mut cmd);
    let p = Proc::spawn(cmd);
    p.wait_log("config applied");
    assert!(p.log().contains("driver=\"epoll\""), "log:\n{}", p.log());
    assert!(
        !p.log().contains("driver=\"io_uring\""),
        "log:\n{}",
        p.log()
    );
    let payload = upstream::bytes(1 << 20, 9);
    let (status, _, body) =
        support::request(listen, http::Method::POST, "h", "/e", &[], payload.to_vec()).await;
    assert_eq!(status, 200);
    assert!(body == payload);
}

mod seccomp {
    //! A minimal seccomp-bpf filter: io_uring_setup(2) fails with ENOSYS, all else is allowed.
    #![allow(unsafe_code)]

    use std::os::unix::process::CommandExt;
    use std::process::Command;

    const SYS_IO_URING_SETUP: u32 = 425;

    pub fn deny_io_uring(cmd: &mut Command) {
        // SAFETY: runs in the child between fork and exec; it only calls prctl(2), which is
        // async-signal-safe, on a filter program that lives on this stack frame for the call.
        unsafe {
            cmd.pre_exec(|| {
                let filter = [
                    // A = seccomp_data.nr
                    libc::sock_filter {
                        code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16,
                        jt: 0,
                        jf: 0,
                        k: 0,
                    },
                    libc::sock_filter {
                        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                        jt: 0,
                        jf: 1,
                        k: SYS_IO_URING_SETUP,
                    },
                    libc::sock_filter {
                        code: (libc::BPF_RET | libc::BPF_K) as u16,
                        jt: 0,
                        jf: 0,
                        k: libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
                    },
                    libc::sock_filter {
                        code: (libc::BPF_RET | libc::BPF_K) as u16,
                        jt: 0,
                        jf: 0,
                        k: libc::SECCOMP_RET_ALLOW,
                    },
                ];
                let prog = libc::sock_fprog {
                    len: filter.len() as u16,
                    filter: filter.as_ptr() as *mut _,
                };
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
}
