//! End-to-end tests of `wschat send` against real peers: the socket.io npm server (the original
//! app's events), a socket.io-client listener in the room, a `ws` echo server, and TLS servers with a
//! self-signed certificate made in the test.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const WSCHAT: &str = env!("CARGO_BIN_EXE_wschat");
/// Upper bound for any single wschat run in these tests.
const RUN_LIMIT: Duration = Duration::from_secs(30);

fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

/// Whether node and the npm peers are installed. Missing peers fail under CI and skip otherwise.
fn have_node() -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let modules = peers_dir().join("node_modules/socket.io-client").is_dir()
        && peers_dir().join("node_modules/ws").is_dir();
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

/// A child process killed when dropped, with its stdout lines on a channel.
struct Peer {
    child: Child,
    lines: mpsc::Receiver<String>,
    stdin: Option<ChildStdin>,
}

impl Peer {
    fn node(script: &str, args: &[&str]) -> Peer {
        let mut cmd = Command::new("node");
        cmd.arg(peers_dir().join(script))
            .args(args)
            .current_dir(peers_dir());
        Peer::spawn(cmd)
    }

    fn spawn(mut cmd: Command) -> Peer {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start peer");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Peer {
            child,
            lines: rx,
            stdin,
        }
    }

    /// A server peer: wait for `listening PORT`.
    fn server(script: &str, args: &[&str]) -> (Peer, u16) {
        let peer = Peer::node(script, args);
        let line = peer
            .next_line(Duration::from_secs(10))
            .expect("server did not start");
        let port = line
            .strip_prefix("listening ")
            .expect("listening line")
            .trim()
            .parse()
            .unwrap();
        (peer, port)
    }

    fn next_line(&self, within: Duration) -> Option<String> {
        self.lines.recv_timeout(within).ok()
    }

    /// The next JSON line, skipping nothing.
    fn next_json(&self, within: Duration) -> Value {
        let line = self
            .next_line(within)
            .expect("expected a line from the peer");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"))
    }

    /// Events until `n` of them arrived (or the time is up).
    fn events(&self, n: usize, within: Duration) -> Vec<Value> {
        let end = Instant::now() + within;
        let mut got = Vec::new();
        while got.len() < n {
            let left = end.saturating_duration_since(Instant::now());
            let Some(line) = self.next_line(left) else {
                break;
            };
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["type"] == "event" {
                got.push(v);
            }
        }
        got
    }

    fn write_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A socket.io-client listener in `room`, ready (room joined).
fn listener(url: &str, room: &str) -> Peer {
    let peer = Peer::node("send-listener.js", &["--url", url, "--room", room]);
    let ready = peer.next_json(Duration::from_secs(10));
    assert_eq!(ready["type"], "ready", "{ready}");
    peer
}

/// Run wschat to completion (bounded), stdin from `input` (empty = /dev/null).
fn wschat(args: &[&str], input: Option<&str>) -> Output {
    let mut cmd = Command::new(WSCHAT);
    cmd.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("NO_COLOR", "1");
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().expect("start wschat");
    if let Some(text) = input {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(text.as_bytes()).unwrap();
    }
    wait_bounded(child)
}

fn wait_bounded(mut child: Child) -> Output {
    let end = Instant::now() + RUN_LIMIT;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > end {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "wschat did not finish within {RUN_LIMIT:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A wschat run in the background whose stdout lines can be awaited.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = Command::new(WSCHAT)
            .args(args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wschat");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running { child, lines: rx }
    }

    /// Wait for a JSON line of this `type`, returning it.
    fn wait_for(&self, kind: &str) -> Value {
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let line = self
                .lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no `{kind}` line from wschat"));
            let v: Value =
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// Wait for exit; returns (status, remaining stdout lines, stderr).
    fn finish(mut self) -> (std::process::ExitStatus, Vec<String>, String) {
        let stderr = self.child.stderr.take();
        let end = Instant::now() + RUN_LIMIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("wschat did not finish");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        if let Some(mut e) = stderr {
            use std::io::Read;
            let _ = e.read_to_string(&mut err);
        }
        let rest: Vec<String> = self.lines.try_iter().collect();
        (status, rest, err)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn json_lines(out: &Output) -> Vec<Value> {
    text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

/// Assert a chat message object as the original app sends it.
fn assert_chat(v: &Value, room: &str, author: &str, message: &str) {
    let obj = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"));
    let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    assert_eq!(keys, ["room", "author", "message", "time"], "{v}");
    assert_eq!(v["room"], room);
    assert_eq!(v["author"], author);
    assert_eq!(v["message"], message, "byte-exact message");
    let time = v["time"].as_str().unwrap();
    let (h, m) = time.split_once(':').unwrap();
    assert!(
        h.len() == 2
            && m.len() == 2
            && h.parse::<u8>().unwrap() < 24
            && m.parse::<u8>().unwrap() < 60,
        "{time}"
    );
}

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

fn chat_server() -> (Peer, u16) {
    Peer::server("chat-server.js", &["--port", "0"])
}

fn fixture_server(extra: &[&str]) -> (Peer, u16) {
    let mut args = vec!["--port", "0"];
    args.extend_from_slice(extra);
    Peer::server("send-fixture-server.js", &args)
}

// ---------------------------------------------------------------------------------------------

fn messages_arrive_byte_exact(transport: &str) {
    if !have_node() {
        return;
    }
    let (_server, port) = chat_server();
    let u = url(port);
    let l = listener(&u, "1");
    let out = wschat(
        &[
            "send",
            "--url",
            &u,
            "--room",
            "1",
            "--name",
            "Celular",
            "--transport",
            transport,
            "Olá mundo!",
            "second 🚀",
        ],
        None,
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let got = l.events(2, Duration::from_secs(10));
    assert_eq!(got.len(), 2, "{got:?}");
    for (ev, want) in got.iter().zip(["Olá mundo!", "second 🚀"]) {
        assert_eq!(ev["event"], "receive_message");
        assert_chat(&ev["args"][0], "1", "Celular", want);
    }
}

#[test]
fn messages_arrive_byte_exact_at_a_socketio_client_over_websocket() {
    messages_arrive_byte_exact("websocket");
}

#[test]
fn messages_arrive_byte_exact_at_a_socketio_client_over_polling() {
    messages_arrive_byte_exact("polling");
}

#[test]
fn messages_arrive_byte_exact_at_a_socketio_client_after_upgrade() {
    messages_arrive_byte_exact("upgrade");
}

#[test]
fn stdin_lines_are_sent_in_order_and_only_to_the_room() {
    if !have_node() {
        return;
    }
    let (_server, port) = chat_server();
    let u = url(port);
    let in_room = listener(&u, "7");
    let other_room = listener(&u, "8");
    let out = wschat(
        &["send", "--url", &u, "--room", "7", "--name", "ana", "-"],
        Some("one\n\ntwo\r\nthree\n"),
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let got = in_room.events(3, Duration::from_secs(10));
    let texts: Vec<&str> = got
        .iter()
        .map(|e| e["args"][0]["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["one", "two", "three"],
        "empty lines are skipped, CRLF trimmed"
    );
    assert!(
        other_room.events(1, Duration::from_millis(300)).is_empty(),
        "room 8 got a room-7 message"
    );
}

#[test]
fn count_and_rate_pace_the_messages() {
    if !have_node() {
        return;
    }
    let (_server, port) = chat_server();
    let u = url(port);
    let l = listener(&u, "1");
    let started = Instant::now();
    let out = wschat(
        &[
            "send", "--url", &u, "--room", "1", "--count", "5", "--rate", "20/s", "tick",
        ],
        None,
    );
    let took = started.elapsed();
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(l.events(5, Duration::from_secs(10)).len(), 5);
    // 5 messages at 20/s: the last one leaves 200 ms after the first.
    assert!(took >= Duration::from_millis(200), "took {took:?}");
}

#[test]
fn wait_prints_what_the_room_says_and_exits_at_n() {
    if !have_node() {
        return;
    }
    let (_server, port) = chat_server();
    let u = url(port);
    let run = Running::start(&[
        "send",
        "--url",
        &u,
        "--room",
        "5",
        "--wait",
        "2",
        "--timeout",
        "20s",
        "--json",
    ]);
    run.wait_for("joined");
    let mut l = listener(&u, "5");
    for m in ["first", "Olá mundo!"] {
        let data = json!({"room": "5", "author": "node", "message": m, "time": "9:05"});
        l.write_line(&json!({"event": "send_message", "args": [data]}).to_string());
    }
    let (status, lines, stderr) = run.finish();
    assert!(status.success(), "stderr: {stderr}");
    let received: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "received")
        .collect();
    assert_eq!(received.len(), 2, "{lines:?}");
    assert_eq!(received[1]["event"], "receive_message");
    assert_eq!(received[1]["args"][0]["message"], "Olá mundo!");
    let ts = received[0]["ts"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(ts).is_ok() && ts.ends_with('Z') && ts.len() == 24,
        "{ts}"
    );
}

#[test]
fn wait_renders_chat_lines_for_people() {
    if !have_node() {
        return;
    }
    let (_server, port) = chat_server();
    let u = url(port);
    // Human output, so the join cannot be awaited from stdout: the listener sends until wschat exits.
    let run = Running::start(&[
        "send",
        "--url",
        &u,
        "--room",
        "5",
        "--wait",
        "1",
        "--timeout",
        "20s",
    ]);
    let mut l = listener(&u, "5");
    let data = json!({"room": "5", "author": "Celular", "message": "Olá mundo!", "time": "16:5"});
    let mut status = None;
    for _ in 0..100 {
        l.write_line(&json!({"event": "send_message", "args": [data]}).to_string());
        std::thread::sleep(Duration::from_millis(100));
        if let Ok(line) = run.lines.try_recv() {
            assert_eq!(line, "Celular | 16:5: Olá mundo!");
            status = Some(line);
            break;
        }
    }
    assert!(status.is_some(), "wschat printed nothing");
    let (st, _, stderr) = run.finish();
    assert!(st.success(), "{stderr}");
}

#[test]
fn wait_timeout_without_enough_messages_exits_1() {
    if !have_node() {
        return;
    }
    let (_server, port) = chat_server();
    let out = wschat(
        &[
            "send",
            "--url",
            &url(port),
            "--room",
            "1",
            "--wait",
            "3",
            "--timeout",
            "500ms",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "stderr: {}", text(&out.stderr));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("received 0 of 3 messages before the 500ms timeout"),
        "{err}"
    );
}

#[test]
fn ack_is_awaited_and_printed() {
    if !have_node() {
        return;
    }
    let (_server, port) = chat_server();
    let out = wschat(
        &[
            "send",
            "--url",
            &url(port),
            "--room",
            "1",
            "--ack",
            "hi",
            "there",
        ],
        None,
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "ack 1: {\"ok\":true}\nack 2: {\"ok\":true}\n"
    );
}

#[test]
fn any_event_with_data_and_ack() {
    if !have_node() {
        return;
    }
    let (_server, port) = fixture_server(&[]);
    let out = wschat(
        &[
            "send",
            "--url",
            &url(port),
            "--event",
            "echo",
            "--data",
            r#"[1,"two",{"three":[true,null]}]"#,
            "--ack",
            "--json",
        ],
        None,
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let lines = json_lines(&out);
    let ack = lines.iter().find(|v| v["type"] == "ack").expect("ack line");
    assert_eq!(ack["args"], json!([1, "two", {"three": [true, null]}]));
    let sent = lines.iter().find(|v| v["type"] == "sent").unwrap();
    assert_eq!(sent["event"], "echo");
    assert_eq!(sent["ack_id"], ack["id"]);
}

#[test]
fn ack_timeout_when_the_server_does_not_ack_is_an_error() {
    if !have_node() {
        return;
    }
    let (_server, port) = fixture_server(&[]);
    let out = wschat(
        &[
            "send",
            "--url",
            &url(port),
            "--event",
            "nobody_listens",
            "--ack",
            "--ack-timeout",
            "300ms",
            "x",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.starts_with("wschat: error: no ack for message 1 within 300ms"),
        "{err}"
    );
}

#[test]
fn binary_attachments_are_reassembled() {
    if !have_node() {
        return;
    }
    let (_server, port) = fixture_server(&[]);
    let out = wschat(
        &[
            "send",
            "--url",
            &url(port),
            "--event",
            "binary_please",
            "--data",
            "[]",
            "--wait",
            "1",
            "--timeout",
            "10s",
            "--json",
        ],
        None,
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let lines = json_lines(&out);
    let ev = lines
        .iter()
        .find(|v| v["type"] == "received")
        .expect("received");
    assert_eq!(ev["event"], "binary");
    assert_eq!(
        ev["args"],
        json!([{"label": "three", "data": {"$binary": "AQID"}}, {"$binary": "/w=="}])
    );
}

#[test]
fn refused_namespace_prints_the_servers_message() {
    if !have_node() {
        return;
    }
    let (_server, port) = fixture_server(&[]);
    let out = wschat(
        &[
            "send",
            "--url",
            &url(port),
            "--namespace",
            "/private",
            "--listen",
            "--timeout",
            "5s",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("namespace /private refused the connection: Not authorized"),
        "{err}"
    );

    let out = wschat(
        &[
            "send",
            "--url",
            &url(port),
            "--namespace",
            "/private",
            "--auth",
            r#"{"token":"s3cret"}"#,
            "--wait",
            "1",
            "--timeout",
            "5s",
            "--json",
        ],
        None,
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let lines = json_lines(&out);
    let ev = lines.iter().find(|v| v["type"] == "received").unwrap();
    assert_eq!(ev["event"], "welcome");
    assert_eq!(ev["namespace"], "/private");
    assert_eq!(ev["args"], json!([{"token": "s3cret"}]));
}

#[test]
fn raw_websocket_against_an_echo_server() {
    if !have_node() {
        return;
    }
    let (_server, port) = Peer::server("send-echo.js", &["--port", "0"]);
    let u = format!("ws://127.0.0.1:{port}/ws/1?name=x");
    let out = wschat(
        &[
            "send",
            "--raw",
            &u,
            "Olá",
            "two",
            "--wait",
            "3",
            "--timeout",
            "10s",
        ],
        None,
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello /ws/1?name=x\nOlá\ntwo\n");
}

#[test]
fn raw_server_close_is_reported_with_unsent_messages() {
    if !have_node() {
        return;
    }
    let (_server, port) = Peer::server("send-echo.js", &["--port", "0"]);
    let u = format!("ws://127.0.0.1:{port}/");
    let out = wschat(
        &[
            "send",
            "--raw",
            &u,
            "--interval",
            "200ms",
            "close-me",
            "after",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "stdout: {}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(
        err.contains("closed the WebSocket (code 4000)")
            && err.contains("1 message not sent: \"after\""),
        "{err}"
    );
}

#[test]
fn unreachable_server_is_one_line_and_exit_2() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = wschat(&["send", "--url", &url(port), "--room", "1", "hi"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "wschat: error: while connecting to {}: cannot connect to 127.0.0.1:{port}",
            url(port)
        )),
        "{err}"
    );
}

#[test]
fn wrong_url_is_one_line_and_exit_2() {
    let out = wschat(&["send", "--url", "gopher://x", "--room", "1", "hi"], None);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "wschat: error: invalid URL `gopher://x`: unsupported scheme `gopher` (use http, https, ws or wss)\n"
    );
    if !have_node() {
        return;
    }
    // A server that is there, but not Socket.IO at this path.
    let (_server, port) = chat_server();
    let out = wschat(
        &[
            "send",
            "--url",
            &url(port),
            "--path",
            "/nope/",
            "--transport",
            "polling",
            "--room",
            "1",
            "hi",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("the server answered HTTP 404 Not Found: no such page")
            || err.contains("HTTP 404"),
        "{err}"
    );
    // Over WebSocket the reference server just drops an upgrade to an unknown path.
    let out = wschat(
        &[
            "send",
            "--url",
            &url(port),
            "--path",
            "/nope/",
            "--room",
            "1",
            "hi",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("closed the connection while waiting for the WebSocket handshake answer"),
        "{err}"
    );
}

#[test]
fn server_closing_the_connection_names_the_unsent_messages() {
    if !have_node() {
        return;
    }
    let (_server, port) = fixture_server(&[]);
    let out = wschat(
        &[
            "send",
            "--url",
            &url(port),
            "--room",
            "1",
            "--interval",
            "300ms",
            "kick",
            "lost 1",
            "lost 2",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "stdout: {}", text(&out.stdout));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("2 messages not sent: \"lost 1\", \"lost 2\""),
        "{err}"
    );
}

#[test]
fn reconnect_rejoins_and_sends_what_was_not_sent_after_the_server_drops_the_connection() {
    if !have_node() {
        return;
    }
    let (_server, port) = fixture_server(&[]);
    let u = url(port);
    let l = listener(&u, "1");
    // The server drops the connection on "kick"; "after" was not sent yet: it goes after the
    // reconnect, to the room joined again.
    let out = wschat(
        &[
            "send",
            "--url",
            &u,
            "--room",
            "1",
            "--reconnect",
            "--interval",
            "300ms",
            "kick",
            "after",
        ],
        None,
    );
    assert!(out.status.success(), "stderr: {}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("reconnecting in") && err.contains("reconnected to"),
        "{err}"
    );
    let got = l.events(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1);
    assert_chat(&got[0]["args"][0], "1", "wschat", "after");
}

#[test]
fn reconnect_also_waits_for_a_server_that_is_not_up_yet() {
    // As socket.io-client with reconnection on: the first connect is retried with backoff.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let u = url(port);
    let early = Running::start(&[
        "send",
        "--url",
        &u,
        "--room",
        "1",
        "--reconnect",
        "--json",
        "--timeout",
        "20s",
        "early bird",
    ]);
    std::thread::sleep(Duration::from_millis(700));
    let mut server = Command::new(WSCHAT)
        .args(["serve", "-q", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .spawn()
        .expect("start wschat serve");
    // Without the retry the run would have ended with exit 2 before the server was up.
    let connect = early.wait_for("connect");
    assert_eq!(
        connect["url"],
        u.as_str(),
        "a first connect, not a reconnect: {connect}"
    );
    let sent = early.wait_for("sent");
    assert_eq!(sent["args"][0]["message"], "early bird");
    let (status, _, err) = early.finish();
    let _ = server.kill();
    let _ = server.wait();
    assert!(status.success(), "{err}");
}

// --- TLS ---------------------------------------------------------------------------------------

struct Cert {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
}

fn self_signed() -> Cert {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    Cert {
        _dir: dir,
        cert,
        key,
    }
}

#[test]
fn tls_with_a_self_signed_certificate_fails_clearly_and_works_with_insecure() {
    if !have_node() {
        return;
    }
    let c = self_signed();
    let (_server, port) = fixture_server(&[
        "--tls-cert",
        c.cert.to_str().unwrap(),
        "--tls-key",
        c.key.to_str().unwrap(),
    ]);
    let u = format!("https://127.0.0.1:{port}");
    let out = wschat(
        &[
            "send", "--url", &u, "--event", "echo", "--data", "\"x\"", "--ack",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("TLS handshake with `127.0.0.1` failed: invalid peer certificate")
            && err.contains("--insecure accepts any certificate"),
        "{err}"
    );

    for transport in ["websocket", "polling"] {
        let out = wschat(
            &[
                "send",
                "--url",
                &u,
                "--insecure",
                "--transport",
                transport,
                "--event",
                "echo",
                "--data",
                "\"x\"",
                "--ack",
            ],
            None,
        );
        assert!(out.status.success(), "{transport}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "ack 1: \"x\"\n");
    }

    let (_echo, port) = Peer::server(
        "send-echo.js",
        &[
            "--port",
            "0",
            "--tls-cert",
            c.cert.to_str().unwrap(),
            "--tls-key",
            c.key.to_str().unwrap(),
        ],
    );
    let out = wschat(
        &[
            "send",
            "--raw",
            &format!("wss://127.0.0.1:{port}/echo"),
            "--insecure",
            "sealed",
            "--wait",
            "2",
            "--timeout",
            "10s",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello /echo\nsealed\n");
}

// --- heartbeat, Ctrl-C, interactive -------------------------------------------------------------

#[test]
fn heartbeat_keeps_a_listening_client_connected_over_websocket_and_polling() {
    if !have_node() {
        return;
    }
    // The server pings every 100 ms and drops a client that does not answer within 100 ms.
    let (_server, port) = Peer::server(
        "chat-server.js",
        &[
            "--port",
            "0",
            "--ping-interval",
            "100",
            "--ping-timeout",
            "100",
        ],
    );
    for transport in ["websocket", "polling"] {
        let out = wschat(
            &[
                "send",
                "--url",
                &url(port),
                "--transport",
                transport,
                "--listen",
                "--timeout",
                "1s",
                "--json",
            ],
            None,
        );
        assert!(out.status.success(), "{transport}: {}", text(&out.stderr));
        let lines = json_lines(&out);
        let disconnect = lines
            .iter()
            .find(|v| v["type"] == "disconnect")
            .expect("a disconnect record");
        assert_eq!(disconnect["by_server"], false, "{transport}: {disconnect}");
        assert_eq!(lines[0]["type"], "connect");
        assert_eq!(lines[0]["transport"], transport);
    }
}

#[test]
fn ctrl_c_while_listening_leaves_cleanly_with_exit_0() {
    if !have_node() {
        return;
    }
    let (_server, port) = chat_server();
    let run = Running::start(&[
        "send",
        "--url",
        &url(port),
        "--room",
        "1",
        "--listen",
        "--json",
    ]);
    run.wait_for("joined");
    let st = Command::new("kill")
        .args(["-INT", &run.child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let (status, lines, stderr) = run.finish();
    assert!(status.success(), "{stderr}");
    assert!(
        lines.iter().any(|l| l.contains(r#""type":"disconnect""#)),
        "{lines:?}"
    );
}

#[test]
fn interactive_terminal_sends_typed_lines_and_shows_the_room() {
    if !have_node() {
        return;
    }
    // util-linux `script` runs wschat on a pseudo-terminal (stdin and stdout are a tty).
    if !common::have_script() {
        return;
    }
    let (_server, port) = chat_server();
    let u = url(port);
    let mut l = listener(&u, "1");
    let cmd = format!("{WSCHAT} send --url {u} --room 1 --name tty");
    let mut child = Command::new("script")
        .args(["-qfec", &cmd, "/dev/null"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line.trim_end_matches('\r').to_string()).is_err() {
                break;
            }
        }
    });
    let wait_line = |want: &str| {
        let end = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while Instant::now() < end {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                if line.contains(want) {
                    return;
                }
                seen.push(line);
            }
        }
        panic!("no `{want}` on the terminal; saw {seen:?}");
    };
    wait_line("type a message and press Enter");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all("Olá from the terminal\n".as_bytes())
        .unwrap();
    stdin.flush().unwrap();
    let got = l.events(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "the typed line did not arrive");
    assert_chat(&got[0]["args"][0], "1", "tty", "Olá from the terminal");
    let data = json!({"room": "1", "author": "node", "message": "hi tty", "time": "9:05"});
    l.write_line(&json!({"event": "send_message", "args": [data]}).to_string());
    wait_line("node | 9:05: hi tty");
    // Ctrl-D on an empty line: end of input, the session ends.
    stdin.write_all(b"\x04").unwrap();
    stdin.flush().unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("interactive wschat did not end at Ctrl-D");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success());
}

// --- against `wschat serve` -----------------------------------------------------------------------

/// `wschat serve` on an ephemeral loopback port.
fn wschat_serve() -> (Peer, u16) {
    let mut cmd = Command::new(WSCHAT);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--json",
        "--ping-interval",
        "300ms",
        "--ping-timeout",
        "300ms",
    ]);
    cmd.env("RUST_LOG", "error");
    let peer = Peer::spawn(cmd);
    let line = peer
        .next_line(Duration::from_secs(10))
        .expect("wschat serve did not start");
    let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON: {line}: {e}"));
    assert_eq!(v["event"], "listening", "{v}");
    let port = v["port"].as_u64().unwrap() as u16;
    (peer, port)
}

#[test]
fn serve_relays_messages_byte_exact_to_a_socketio_client_over_each_transport() {
    if !have_node() {
        return;
    }
    let (_serve, port) = wschat_serve();
    let u = url(port);
    let l = listener(&u, "1");
    for transport in ["websocket", "polling", "upgrade"] {
        let msg = format!("Olá mundo! via {transport}");
        let out = wschat(
            &[
                "send",
                "--url",
                &u,
                "--room",
                "1",
                "--name",
                "Celular",
                "--transport",
                transport,
                "--ack",
                &msg,
            ],
            None,
        );
        assert!(out.status.success(), "{transport}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout), "ack 1: {\"ok\":true}\n", "{transport}");
        let got = l.events(1, Duration::from_secs(10));
        assert_eq!(got.len(), 1, "{transport}");
        assert_eq!(got[0]["event"], "receive_message");
        assert_chat(&got[0]["args"][0], "1", "Celular", &msg);
    }
}

#[test]
fn serve_relays_between_two_wschat_clients_and_plain_websocket_rooms() {
    // No node needed: wschat listens, wschat sends, through wschat serve.
    let (_serve, port) = wschat_serve();
    let u = url(port);
    let run = Running::start(&[
        "send",
        "--url",
        &u,
        "--room",
        "9",
        "--wait",
        "2",
        "--timeout",
        "20s",
        "--json",
    ]);
    run.wait_for("joined");
    let out = wschat(
        &[
            "send",
            "--url",
            &u,
            "--room",
            "9",
            "--name",
            "ana",
            "Olá mundo!",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A plain WebSocket client in the same room (`/ws/ROOM?name=NAME`) reaches it too.
    let ws = format!("ws://127.0.0.1:{port}/ws/9?name=raw");
    let out = wschat(&["send", "--raw", &ws, "from a plain socket"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (status, lines, stderr) = run.finish();
    assert!(status.success(), "{stderr}");
    let got: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "received")
        .collect();
    assert_eq!(got.len(), 2, "{lines:?}");
    assert_chat(&got[0]["args"][0], "9", "ana", "Olá mundo!");
    assert_eq!(got[1]["args"][0]["author"], "raw");
    assert_eq!(got[1]["args"][0]["message"], "from a plain socket");
}

#[test]
fn raw_against_the_relays_echo_endpoint() {
    let (_serve, port) = wschat_serve();
    let out = wschat(
        &[
            "send",
            "--raw",
            &format!("ws://127.0.0.1:{port}/echo"),
            "Olá",
            "second",
            "--wait",
            "2",
            "--timeout",
            "10s",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Olá\nsecond\n");
}

// --- rendered output ----------------------------------------------------------------------------

/// Mask what changes from run to run: timestamps, socket ids, ports, local times.
fn snapshot(name: &str, text: &str) {
    insta::with_settings!({
        snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"),
        prepend_module_to_snapshot => false,
        filters => vec![
            (r#""ts":"[^"]+""#, r#""ts":"[TS]""#),
            (r#""sid":"[^"]+""#, r#""sid":"[SID]""#),
            (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
            (r#""time":"\d\d:\d\d""#, r#""time":"[HH:MM]""#),
        ],
    }, {
        insta::assert_snapshot!(name, text);
    });
}

#[test]
fn json_lines_of_a_chat_session_with_acks() {
    if !have_node() {
        return;
    }
    let (_server, port) = chat_server();
    let out = wschat(
        &[
            "send",
            "--url",
            &url(port),
            "--room",
            "1",
            "--name",
            "Celular",
            "--ack",
            "--json",
            "Olá mundo!",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // `joined` and the message's ack race (both are acks of the server); order them for the snapshot.
    let mut lines: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    let joined = lines
        .iter()
        .position(|l| l.contains(r#""type":"joined""#))
        .expect("joined");
    let j = lines.remove(joined);
    lines.insert(1, j);
    snapshot("send_json_chat_with_acks", &(lines.join("\n") + "\n"));
}

#[test]
fn json_lines_of_a_raw_session() {
    // The relay's /echo (no greeting, so the order of the lines is fixed).
    let (_serve, port) = wschat_serve();
    let u = format!("ws://127.0.0.1:{port}/echo");
    let out = wschat(
        &[
            "send",
            "--raw",
            &u,
            "--json",
            "--wait",
            "1",
            "--timeout",
            "10s",
            "Olá",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    snapshot("send_json_raw_echo", &text(&out.stdout));
}
