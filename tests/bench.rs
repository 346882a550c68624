//! End-to-end tests of `wschat bench`: bad input, the in-process relay, and the socket.io npm
//! reference server (tests/peers/chat-server.js) with exact delivery counts.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const WSCHAT: &str = env!("CARGO_BIN_EXE_wschat");
/// Upper bound for any single bench run in these tests.
const RUN_LIMIT: Duration = Duration::from_secs(60);

fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

/// Whether node and the socket.io server package are installed. Missing peers fail under CI and
/// skip otherwise.
fn have_node() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let modules = peers_dir().join("node_modules/socket.io").is_dir();
    if node && modules {
        return true;
    }
    let why = if node {
        "run `npm ci` in tests/peers"
    } else {
        "node is not installed"
    };
    if std::env::var_os("CI").is_some() {
        panic!("node peers are required under CI: {why}");
    }
    eprintln!("skipping: {why}");
    false
}

/// The socket.io npm chat server, killed when dropped.
struct NodeServer {
    child: Child,
    port: u16,
}

impl NodeServer {
    fn start() -> NodeServer {
        NodeServer::script("chat-server.js")
    }

    fn script(name: &str) -> NodeServer {
        let mut child = Command::new("node")
            .arg(peers_dir().join(name))
            .args(["--port", "0"])
            .current_dir(peers_dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read listening line");
        let port = line
            .trim()
            .strip_prefix("listening ")
            .expect("listening PORT")
            .parse()
            .unwrap();
        NodeServer { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `wschat bench ARGS`, killing it after RUN_LIMIT.
fn bench(args: &[&str]) -> Output {
    let mut cmd = Command::new(WSCHAT);
    cmd.arg("bench").args(args);
    run_limited(cmd, &format!("wschat bench {args:?}"))
}

/// Run `cmd` with its output captured, killing it after RUN_LIMIT.
fn run_limited(mut cmd: Command, what: &str) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let started = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} ran longer than {RUN_LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn json_report(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not a JSON report ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&o.stdout),
            stderr(o)
        )
    })
}

/// One line on stderr, `wschat: error: ...` (or clap's `error: ...`), exit 2.
fn assert_usage_error(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "exit code; stderr: {err}");
    let first = err.lines().next().unwrap_or_default();
    assert!(
        first.contains("error:") && first.contains(needle),
        "first line `{first}` should name `{needle}`"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(o.stdout.is_empty(), "no report on a usage error");
}

#[test]
fn bad_input_gets_one_line_and_exit_2() {
    assert_usage_error(&bench(&["--rate", "0/s"]), "must be greater than zero");
    assert_usage_error(
        &bench(&["--clients", "10", "--rooms", "50"]),
        "--rooms 50 is more than --clients 10",
    );
    assert_usage_error(&bench(&["--size", "8"]), "--size 8 is too small");
    assert_usage_error(
        &bench(&["--duration", "0s"]),
        "--duration must be greater than zero",
    );
    assert_usage_error(
        &bench(&["--idle", "--raw"]),
        "--idle cannot be combined with --raw",
    );
}

#[test]
fn unreachable_url_is_a_usage_error() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let o = bench(&[
        "--url",
        &url,
        "--clients",
        "2",
        "--duration",
        "1s",
        "--connect-timeout",
        "2s",
    ]);
    assert_usage_error(&o, &format!("cannot bench {url}"));
    assert!(
        stderr(&o).to_lowercase().contains("refused"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
}

#[test]
fn a_refused_namespace_is_a_usage_error() {
    if !have_node() {
        return;
    }
    let server = NodeServer::start();
    let o = bench(&[
        "--url",
        &server.url(),
        "--namespace",
        "/nope",
        "--clients",
        "2",
        "--duration",
        "1s",
    ]);
    assert_usage_error(&o, "cannot bench");
    assert!(stderr(&o).contains("Invalid namespace"), "{}", stderr(&o));
}

/// 20 clients in 5 rooms of 4, 20 msgs/s each for 2 s measured: every message reaches the 3
/// others, so 20 x 40 x 3 = 2,400 deliveries, counted exactly.
#[test]
fn socketio_npm_server_delivers_every_message_exactly_once() {
    if !have_node() {
        return;
    }
    let server = NodeServer::start();
    let o = bench(&[
        "--url",
        &server.url(),
        "--clients",
        "20",
        "--rooms",
        "5",
        "--rate",
        "20/s",
        "--warmup",
        "500ms",
        "--duration",
        "2s",
        "--ramp",
        "200ms",
        "--grace",
        "2s",
        "--threads",
        "2",
        "--json",
        "--max-loss",
        "0",
    ]);
    let r = json_report(&o);
    assert_eq!(o.status.code(), Some(0), "stderr: {}\n{r:#}", stderr(&o));
    assert_eq!(r["target"]["server"], "external server");
    assert_eq!(r["connections"]["connected"], 20);
    let m = &r["messages"];
    assert_eq!(m["sent"], 20 * 40, "{m:#}");
    assert_eq!(m["expected"], 20 * 40 * 3, "{m:#}");
    assert_eq!(m["delivered"], 20 * 40 * 3, "{m:#}");
    assert_eq!(m["lost"], 0);
    assert_eq!(m["duplicated"], 0);
    assert_eq!(m["misrouted"], 0);
    assert_eq!(m["self_echo"], 0);
    let lat = &r["latency_ms"];
    assert_eq!(lat["count"], 20 * 40 * 3);
    assert!(
        lat["p50"].as_f64().unwrap() > 0.0
            && lat["p99"].as_f64().unwrap() >= lat["p50"].as_f64().unwrap()
    );
    // The node server was found through its listening socket, so its CPU is known.
    assert!(r["target"]["pid"].as_u64().is_some(), "{:#}", r["target"]);
    assert!(r["cpu"]["server_s"].as_f64().is_some());
}

/// A relay that drops everything from client 0 and relays client 1's messages twice: 20 clients in
/// 5 rooms of 4, 40 measured messages each, so 40 x 3 are lost and 40 x 3 duplicated, exactly.
#[test]
fn losses_and_duplicates_are_counted_exactly() {
    if !have_node() {
        return;
    }
    let server = NodeServer::script("bench-faulty-server.js");
    let o = bench(&[
        "--url",
        &server.url(),
        "--clients",
        "20",
        "--rooms",
        "5",
        "--rate",
        "20/s",
        "--warmup",
        "500ms",
        "--duration",
        "2s",
        "--ramp",
        "200ms",
        "--grace",
        "2s",
        "--json",
        "--max-loss",
        "0",
    ]);
    let r = json_report(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "--max-loss 0 is violated; stderr: {}",
        stderr(&o)
    );
    let m = &r["messages"];
    assert_eq!(m["expected"], 20 * 40 * 3, "{m:#}");
    assert_eq!(m["lost"], 40 * 3, "{m:#}");
    assert_eq!(m["delivered"], 20 * 40 * 3 - 40 * 3, "{m:#}");
    assert_eq!(m["duplicated"], 40 * 3, "{m:#}");
    assert_eq!(r["checks"][0]["name"], "lost messages");
    assert_eq!(r["checks"][0]["ok"], false);
}

#[test]
fn acks_are_timed_against_the_npm_server() {
    if !have_node() {
        return;
    }
    let server = NodeServer::start();
    let o = bench(&[
        "--url",
        &server.url(),
        "--clients",
        "6",
        "--rooms",
        "2",
        "--rate",
        "10/s",
        "--warmup",
        "0s",
        "--duration",
        "1s",
        "--ramp",
        "0s",
        "--grace",
        "2s",
        "--ack",
        "--json",
    ]);
    let r = json_report(&o);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert_eq!(r["acks"]["expected"], 60);
    assert_eq!(r["acks"]["received"], 60);
    assert!(r["acks"]["ack_ms"]["p99"].as_f64().unwrap() > 0.0);
    assert_eq!(r["messages"]["lost"], 0);
}

/// Clients leave and come back while messaging; messages due while a receiver was away are not
/// expected there, every other one is, and none may be lost.
#[test]
fn churn_reconnects_and_keeps_delivery_exact() {
    if !have_node() {
        return;
    }
    let server = NodeServer::start();
    let o = bench(&[
        "--url",
        &server.url(),
        "--clients",
        "12",
        "--rooms",
        "3",
        "--rate",
        "20/s",
        "--warmup",
        "200ms",
        "--duration",
        "3s",
        "--ramp",
        "0s",
        "--grace",
        "500ms",
        "--churn",
        "6/s",
        "--json",
        "--max-loss",
        "0",
    ]);
    let r = json_report(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "stderr: {}\n{:#}",
        stderr(&o),
        r["messages"]
    );
    assert!(
        r["connections"]["reconnects"].as_u64().unwrap() >= 10,
        "{:#}",
        r["connections"]
    );
    assert!(r["disconnects"]["churn (by the bench)"].as_u64().unwrap() >= 10);
    let m = &r["messages"];
    let expected = m["expected"].as_u64().unwrap();
    // Without churn it would be 12 x 60 x 3 = 2,160; away periods remove some.
    assert!(expected > 1000 && expected < 2160, "{m:#}");
    assert_eq!(m["delivered"], m["expected"]);
}

/// One worker with sends due closer together than the pacer's gap (15,000 a second: one every
/// 67 µs), so its timer runs periodic: every scheduled message still goes out and arrives once.
#[test]
fn a_worker_sending_faster_than_its_timer_gap_sends_every_message() {
    let o = bench(&[
        "--clients",
        "100",
        "--rate",
        "150/s",
        "--threads",
        "1",
        "--warmup",
        "300ms",
        "--duration",
        "1s",
        "--ramp",
        "100ms",
        "--grace",
        "2s",
        "--json",
        "--max-loss",
        "0",
    ]);
    let r = json_report(&o);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    // 100 clients in 50 rooms of 2: every message reaches exactly one other client.
    let m = &r["messages"];
    assert_eq!(m["sent"], 100 * 150, "{m:#}");
    assert_eq!(m["expected"], 100 * 150, "{m:#}");
    assert_eq!(m["delivered"], 100 * 150, "{m:#}");
    assert_eq!(m["duplicated"], 0, "{m:#}");
}

#[test]
fn in_process_relay_is_benched_without_a_url() {
    let html = tempfile::NamedTempFile::new().unwrap();
    let html_path = html.path().to_str().unwrap().to_string();
    let o = bench(&[
        "--clients",
        "20",
        "--rate",
        "20/s",
        "--warmup",
        "300ms",
        "--duration",
        "2s",
        "--ramp",
        "100ms",
        "--grace",
        "2s",
        "--json",
        "--html",
        &html_path,
        "--max-loss",
        "0",
    ]);
    let r = json_report(&o);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert_eq!(r["target"]["server"], "in-process wschat relay");
    assert!(
        r["target"]["url"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:")
    );
    // 20 clients, default rooms = 10 rooms of 2: every message reaches exactly one other client.
    assert_eq!(r["settings"]["rooms"], 10);
    assert_eq!(r["messages"]["expected"], 20 * 40);
    assert_eq!(r["messages"]["delivered"], 20 * 40);
    assert!(
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true),
        "{:#}",
        r["checks"]
    );
    let page = std::fs::read_to_string(&html_path).unwrap();
    assert!(page.contains("<svg") && page.contains("Latency over time"));
    // Latency ends at the kernel's receive stamp; the generator's own read delay is apart, and
    // latency to the read is the two together, so it is never the smaller one.
    assert_eq!(r["latency_clock"], "kernel receive timestamp");
    let (lat, at_read, wait) = (&r["latency_ms"], &r["latency_at_read_ms"], &r["rx_wait_ms"]);
    assert_eq!(lat["count"], 20 * 20 * 2);
    assert_eq!(at_read["count"], lat["count"]);
    assert_eq!(wait["count"], lat["count"]);
    let f = |v: &Value| v.as_f64().unwrap();
    assert!(f(&at_read["max"]) >= f(&lat["max"]), "{lat} {at_read}");
    assert!(f(&at_read["mean"]) >= f(&lat["mean"]), "{lat} {at_read}");
    assert!(f(&wait["max"]) <= f(&at_read["max"]), "{wait} {at_read}");
    // The generator's own lateness on every measured send, which latency includes.
    assert_eq!(r["send_lag_ms"]["count"], r["messages"]["sent"]);
    assert!(
        f(&r["send_lag_ms"]["p50"]) <= f(&lat["p50"]),
        "{}",
        r["send_lag_ms"]
    );
}

/// The shared loop (the default) against a task per connection: the same schedule gives the
/// same accounting, to the message and to the ack, and both are exact.
#[test]
fn the_shared_loop_counts_exactly_what_a_task_per_connection_counts() {
    let run = |extra: &[&str]| {
        let mut args = vec![
            "--clients",
            "24",
            "--rooms",
            "6",
            "--rate",
            "25/s",
            "--warmup",
            "200ms",
            "--duration",
            "2s",
            "--ramp",
            "100ms",
            "--grace",
            "2s",
            "--threads",
            "2",
            "--ack",
            "--json",
            "--max-loss",
            "0",
        ];
        args.extend_from_slice(extra);
        let o = bench(&args);
        let r = json_report(&o);
        assert_eq!(o.status.code(), Some(0), "{extra:?}: {}", stderr(&o));
        r
    };
    let shared = run(&[]);
    let tasks = run(&["--task-per-connection"]);
    // 24 clients x 50 measured messages, each to the 3 others of its room of 4.
    for (name, r) in [("shared loop", &shared), ("tasks", &tasks)] {
        let m = &r["messages"];
        assert_eq!(m["sent"], 24 * 50, "{name}: {m:#}");
        assert_eq!(m["expected"], 24 * 50 * 3, "{name}: {m:#}");
        assert_eq!(m["delivered"], 24 * 50 * 3, "{name}: {m:#}");
        for k in [
            "lost",
            "duplicated",
            "misrouted",
            "self_echo",
            "unexpected",
            "foreign",
        ] {
            assert_eq!(m[k], 0, "{name}: {k}: {m:#}");
        }
        assert_eq!(r["acks"]["expected"], 24 * 50, "{name}: {:#}", r["acks"]);
        assert_eq!(r["acks"]["received"], 24 * 50, "{name}: {:#}", r["acks"]);
        assert_eq!(r["latency_ms"]["count"], 24 * 50 * 3, "{name}");
        assert_eq!(r["send_lag_ms"]["count"], 24 * 50, "{name}");
        assert_eq!(r["connections"]["connected"], 24, "{name}");
        assert!(
            r["disconnects"].as_object().is_none_or(|d| d.is_empty()),
            "{name}: {:#}",
            r["disconnects"]
        );
    }
    for k in ["sent", "expected", "delivered", "warmup_sent"] {
        assert_eq!(shared["messages"][k], tasks["messages"][k], "{k}");
    }
}

#[test]
fn rx_clock_read_ends_latency_at_the_read() {
    let o = bench(&[
        "--clients",
        "10",
        "--rate",
        "20/s",
        "--warmup",
        "300ms",
        "--duration",
        "1s",
        "--ramp",
        "100ms",
        "--rx-clock",
        "read",
        "--json",
    ]);
    let r = json_report(&o);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert_eq!(r["latency_clock"], "read");
    assert!(r["rx_wait_ms"].is_null(), "{}", r["rx_wait_ms"]);
    assert_eq!(r["latency_ms"]["count"], 10 * 20);
    assert_eq!(r["latency_ms"], r["latency_at_read_ms"]);
    // The human report shows the generator's own send lag and read wait (when stamped).
    let o = bench(&[
        "--clients",
        "4",
        "--rate",
        "20/s",
        "--warmup",
        "200ms",
        "--duration",
        "1s",
        "--ramp",
        "100ms",
    ]);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("read wait"), "{text}");
    assert!(text.contains("send lag"), "{text}");
}

#[test]
fn a_violated_threshold_exits_1_and_still_reports() {
    let o = bench(&[
        "--clients",
        "4",
        "--rate",
        "10/s",
        "--warmup",
        "0s",
        "--duration",
        "1s",
        "--ramp",
        "0s",
        "--grace",
        "300ms",
        "--max-p99",
        "1us",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(1),
        "stdout: {out}\nstderr: {}",
        stderr(&o)
    );
    assert!(out.contains("FAIL p99 latency"), "{out}");
    assert!(out.contains("latency distribution"), "{out}");
}

#[test]
fn idle_mode_reports_connects_and_memory() {
    let o = bench(&[
        "--idle",
        "--clients",
        "200",
        "--duration",
        "1s",
        "--ramp",
        "200ms",
        "--json",
    ]);
    let r = json_report(&o);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert_eq!(r["settings"]["mode"], "idle");
    assert_eq!(r["connections"]["connected"], 200);
    assert_eq!(r["connections"]["connect_ms"]["count"], 200);
    assert!(r["memory"]["rss_after_bytes"].as_u64().unwrap() > 0);
    assert!(r["messages"].is_null());
}

/// Two relays sharing one port (`serve --reuse-port`): the report finds both listening processes,
/// and the server memory is their sum.
#[test]
fn relays_sharing_a_port_are_all_measured() {
    let a = Relay::start_on("127.0.0.1:0", &["--reuse-port"]);
    let b = Relay::start_on(&format!("127.0.0.1:{}", a.port), &["--reuse-port"]);
    let url = format!("http://127.0.0.1:{}", a.port);
    let o = bench(&[
        "--url",
        &url,
        "--idle",
        "--clients",
        "40",
        "--duration",
        "1s",
        "--ramp",
        "100ms",
        "--json",
    ]);
    let r = json_report(&o);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert_eq!(r["connections"]["connected"], 40);
    let mut want = vec![a.child.id(), b.child.id()];
    want.sort_unstable();
    let pids: Vec<u32> = r["target"]["pids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(pids, want, "{:#}", r["target"]);
    let source = r["memory"]["source"].as_str().unwrap();
    assert!(source.contains("summed"), "{source}");
    let one = |pid: u32| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap();
        kb * 1024
    };
    // Both processes' memory is counted: more than either one alone holds now.
    let total = r["memory"]["rss_after_bytes"].as_u64().unwrap();
    assert!(total > one(want[0]).max(one(want[1])), "{total}");
}

#[test]
fn raw_mode_times_echo_round_trips() {
    let o = bench(&[
        "--raw",
        "--clients",
        "5",
        "--rate",
        "20/s",
        "--warmup",
        "0s",
        "--duration",
        "1s",
        "--ramp",
        "0s",
        "--grace",
        "1s",
        "--json",
    ]);
    let r = json_report(&o);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert!(r["target"]["url"].as_str().unwrap().ends_with("/echo"));
    assert_eq!(r["messages"]["expected"], 5 * 20);
    assert_eq!(r["messages"]["delivered"], 5 * 20);
}

#[test]
fn ctrl_c_still_prints_the_report() {
    let mut child = Command::new(WSCHAT)
        .args([
            "bench",
            "--clients",
            "4",
            "--rate",
            "10/s",
            "--warmup",
            "0s",
            "--duration",
            "30s",
            "--ramp",
            "0s",
        ])
        .args(["--grace", "200ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    // SAFETY: sending SIGINT to our own child.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("bench did not stop after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
    assert!(out.contains("interrupted (Ctrl-C)"), "{out}");
    assert!(out.contains("messages") && out.contains("latency"), "{out}");
}

/// `wschat serve --threads 1` on an ephemeral loopback port, killed when dropped.
struct Relay {
    child: Child,
    port: u16,
}

impl Relay {
    fn start() -> Relay {
        Relay::start_on("127.0.0.1:0", &[])
    }

    fn start_on(listen: &str, extra: &[&str]) -> Relay {
        let mut child = Command::new(WSCHAT)
            .args(["serve", "--listen", listen, "--threads", "1", "--json"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start wschat serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the listening line");
        let v: Value = serde_json::from_str(&line).expect("a JSON listening line");
        let port = v["port"].as_u64().expect("port") as u16;
        Relay { child, port }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run the lean node generator (tests/peers/bench-node-gen.js, the yardstick of
/// scripts/bench-generators.sh), killing it after RUN_LIMIT.
fn node_gen(args: &[&str]) -> Output {
    let mut cmd = Command::new("node");
    cmd.arg(peers_dir().join("bench-node-gen.js"))
        .args(args)
        .current_dir(peers_dir());
    run_limited(cmd, &format!("bench-node-gen.js {args:?}"))
}

/// 6 clients in 2 rooms of 3, 20 msgs/s each for 1 s measured: the node generator sends exactly
/// 6 x 20 messages, each reaching the 2 others, and counts all 240 deliveries from the relay,
/// with both of its receive paths (id scan and JSON.parse).
#[test]
fn node_generator_counts_every_delivery_from_the_relay() {
    if !have_node() {
        return;
    }
    let relay = Relay::start();
    let url = format!("http://127.0.0.1:{}", relay.port);
    for parse in ["scan", "json"] {
        let o = node_gen(&[
            "--url",
            &url,
            "--clients",
            "6",
            "--rooms",
            "2",
            "--rate",
            "20",
            "--warmup",
            "500ms",
            "--duration",
            "1s",
            "--ramp",
            "0s",
            "--grace",
            "500ms",
            "--parse",
            parse,
        ]);
        assert_eq!(o.status.code(), Some(0), "stderr: {}", stderr(&o));
        let r: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
            panic!(
                "not one JSON report ({e}): {}",
                String::from_utf8_lossy(&o.stdout)
            )
        });
        assert_eq!(r["settings"]["parse"], parse);
        assert_eq!(r["connections"]["connected"], 6, "{r:#}");
        assert_eq!(r["connections"]["joined"], 6, "{r:#}");
        let m = &r["messages"];
        assert_eq!(m["sent"], 6 * 20, "{m:#}");
        assert_eq!(m["expected"], 6 * 20 * 2, "{m:#}");
        assert_eq!(m["received"], 6 * 20 * 2, "{m:#}");
        assert_eq!(m["missing"], 0, "{m:#}");
        for k in ["foreign", "misrouted", "self_echo", "other_events"] {
            assert_eq!(m[k], 0, "{k}: {m:#}");
        }
        // The warmup's messages are received and counted apart.
        assert!(m["received_warmup"].as_u64().unwrap() > 0, "{m:#}");
        assert_eq!(r["latency_ms"]["count"], 6 * 20 * 2);
        let p99 = r["latency_ms"]["p99"].as_f64().unwrap();
        assert!(p99 > 0.0 && p99 < 1000.0, "{p99}");
        let cpu = &r["cpu"];
        assert_eq!(
            cpu["received_total"].as_u64().unwrap(),
            m["received"].as_u64().unwrap() + m["received_warmup"].as_u64().unwrap()
        );
        assert!(cpu["generator_s"].as_f64().unwrap() > 0.0, "{cpu:#}");
        assert!(cpu["received_per_cpu_s"].as_f64().unwrap() > 0.0, "{cpu:#}");
    }
    // Bad flags: one line, exit 2.
    let o = node_gen(&["--url", &url, "--rate", "0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with("bench-node-gen: error: --rate"),
        "{}",
        stderr(&o)
    );
}
