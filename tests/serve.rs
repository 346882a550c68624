//! End-to-end tests of `wschat serve`: the binary against unmodified socket.io-client v4 peers
//! (node, tests/peers/serve-client.js), plain WebSocket clients, raw HTTP, headless Chromium, and
//! signals, and clusters of relays (and node socket.io servers) sharing rooms over a redis-server
//! started per test. Tests that need node, chromium or redis-server skip with a notice when they
//! are missing, and fail instead when `CI` is set.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, Message, protocol::frame::coding::CloseCode};

const STEP: Duration = Duration::from_secs(10);

fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

/// Whether an external peer is usable; without it the test skips (or fails under CI).
fn peer_available(what: &str, ok: bool) -> bool {
    if ok {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{what} is required under CI but missing");
    }
    eprintln!("skipping: {what} is not available (run `npm ci` in tests/peers)");
    false
}

fn node_ok() -> bool {
    let has_node = Command::new("node")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    peer_available(
        "node with tests/peers/node_modules",
        has_node && peers_dir().join("node_modules/socket.io-client").is_dir(),
    )
}

/// A running `wschat serve` on an ephemeral loopback port; killed on drop.
struct Relay {
    child: Child,
    port: u16,
}

impl Relay {
    fn start(extra: &[&str]) -> Relay {
        Relay::start_on("127.0.0.1:0", extra)
    }

    fn start_on(listen: &str, extra: &[&str]) -> Relay {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wschat"))
            .args(["serve", "--listen", listen, "--json"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env("RUST_LOG", "wschat=info")
            .spawn()
            .expect("start wschat serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("bad listening line {line:?}: {e}"));
        assert_eq!(v["event"], "listening");
        let port = v["port"].as_u64().expect("port") as u16;
        Relay { child, port }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One socket.io-client peer driven over stdin/stdout JSON lines.
struct Peer {
    name: &'static str,
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<Value>,
    backlog: Vec<Value>,
}

impl Peer {
    fn start(name: &'static str, relay: &Relay, transport: &str, extra: &[&str]) -> Peer {
        Peer::start_at(name, &relay.url(), transport, extra)
    }

    /// A peer of the server at `url` (a wschat relay or a node server).
    fn start_at(name: &'static str, url: &str, transport: &str, extra: &[&str]) -> Peer {
        let mut child = Command::new("node")
            .arg(peers_dir().join("serve-client.js"))
            .args(["--url", url, "--transport", transport])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node serve-client.js");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            break;
                        }
                    }
                    Err(_) => eprintln!("peer: {line}"),
                }
            }
        });
        let mut p = Peer {
            name,
            child,
            stdin,
            rx,
            backlog: Vec::new(),
        };
        p.expect("ready", |v| v["ev"] == "ready");
        p
    }

    fn cmd(&mut self, v: Value) {
        writeln!(self.stdin, "{v}").expect("write to peer");
        self.stdin.flush().expect("flush");
    }

    fn emit(&mut self, event: &str, args: Value, ack: Option<&str>) {
        let mut c = json!({"op": "emit", "event": event, "args": args});
        if let Some(tag) = ack {
            c["ack"] = json!(true);
            c["tag"] = json!(tag);
        }
        self.cmd(c);
    }

    /// The next event matching `pred` (others stay in the backlog), or a panic after STEP.
    fn expect(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self.backlog.iter().position(&pred) {
            return self.backlog.remove(i);
        }
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(v) if pred(&v) => return v,
                Ok(v) => self.backlog.push(v),
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "{}: timed out waiting for {what}; got {:?}",
                        self.name, self.backlog
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "{}: exited while waiting for {what}; got {:?}",
                        self.name, self.backlog
                    )
                }
            }
        }
    }

    fn ack(&mut self, tag: &str) -> Value {
        let v = self.expect(&format!("ack {tag}"), |v| {
            v["ev"] == "ack" && v["tag"] == tag
        });
        v["args"][0].clone()
    }

    fn event(&mut self, name: &str) -> Value {
        let v = self.expect(&format!("event {name}"), |v| {
            v["ev"] == "event" && v["name"] == name
        });
        v["args"].clone()
    }

    /// Assert that nothing matching `pred` arrives within `wait`.
    fn expect_none(&mut self, what: &str, wait: Duration, pred: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + wait;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.rx.recv_timeout(left) {
                Ok(v) => {
                    assert!(!pred(&v), "{}: unexpected {what}: {v}", self.name);
                    self.backlog.push(v);
                }
                Err(_) => break,
            }
        }
        assert!(
            !self.backlog.iter().any(&pred),
            "{}: unexpected {what}",
            self.name
        );
    }

    fn connected(&mut self) -> Value {
        self.expect("connect", |v| v["ev"] == "connect")
    }

    fn join(&mut self, room: Value) {
        let tag = format!("join-{room}");
        self.emit("join_room", json!([room.clone()]), Some(&tag));
        assert_eq!(self.ack(&tag), json!({"ok": true, "room": room}));
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn msg(room: &str, author: &str, text: &str) -> Value {
    json!({"room": room, "author": author, "message": text, "time": "10:42"})
}

#[test]
fn chat_reaches_the_other_members_of_the_room_over_websocket_and_polling_upgrade() {
    if !node_ok() {
        return;
    }
    let relay = Relay::start(&[]);
    // The original React app forced WebSocket; socket.io-client's default polls then upgrades.
    let mut ana = Peer::start("ana", &relay, "default", &[]);
    let mut bia = Peer::start("bia", &relay, "websocket", &[]);
    let mut outsider = Peer::start("outsider", &relay, "websocket", &[]);
    let open = ana.expect("open", |v| v["ev"] == "open");
    assert_eq!(open["transport"], "polling");
    ana.connected();
    assert_eq!(bia.connected()["transport"], "websocket");
    outsider.connected();
    ana.expect("upgrade", |v| {
        v["ev"] == "upgrade" && v["transport"] == "websocket"
    });
    ana.join(json!("1"));
    bia.join(json!("1"));
    outsider.join(json!("2"));

    let hello = msg("1", "Ana", "Olá mundo!");
    ana.emit("send_message", json!([hello.clone()]), Some("s1"));
    assert_eq!(ana.ack("s1"), json!({"ok": true}));
    assert_eq!(bia.event("receive_message"), json!([hello]));

    // Without an ack, the other way round.
    let reply = msg("1", "Bia", "Oi, tudo bem?");
    bia.emit("send_message", json!([reply.clone()]), None);
    assert_eq!(ana.event("receive_message"), json!([reply]));

    // Never back to the sender, never to another room.
    let none = Duration::from_millis(300);
    ana.expect_none("own message", none, |v| {
        v["ev"] == "event" && v["args"][0]["author"] == "Ana"
    });
    bia.expect_none("own message", none, |v| {
        v["ev"] == "event" && v["args"][0]["author"] == "Bia"
    });
    outsider.expect_none("message of room 1", none, |v| v["ev"] == "event");
}

#[test]
fn sending_to_a_room_not_joined_is_refused_with_an_ack_or_an_error_event() {
    if !node_ok() {
        return;
    }
    let relay = Relay::start(&[]);
    let mut a = Peer::start("a", &relay, "websocket", &[]);
    let mut b = Peer::start("b", &relay, "websocket", &[]);
    a.connected();
    b.connected();
    b.join(json!(7));
    a.emit("send_message", json!([msg("7", "A", "sneaky")]), Some("s"));
    assert_eq!(
        a.ack("s"),
        json!({"ok": false, "error": "not a member of room 7"})
    );
    a.emit("send_message", json!([msg("7", "A", "sneaky again")]), None);
    assert_eq!(
        a.event("error"),
        json!([{"event": "send_message", "error": "not a member of room 7"}])
    );
    a.emit("send_message", json!(["not an object"]), Some("bad"));
    assert_eq!(a.ack("bad")["ok"], false);
    a.emit("leave_room", json!(["7"]), Some("l"));
    assert_eq!(
        a.ack("l"),
        json!({"ok": false, "error": "not a member of room 7"})
    );
    b.expect_none("refused message", Duration::from_millis(300), |v| {
        v["ev"] == "event"
    });
}

#[test]
fn a_client_in_several_rooms_gets_each_rooms_messages_until_it_leaves() {
    if !node_ok() {
        return;
    }
    let relay = Relay::start(&[]);
    let mut multi = Peer::start("multi", &relay, "websocket", &[]);
    let mut r1 = Peer::start("r1", &relay, "websocket", &[]);
    let mut r2 = Peer::start("r2", &relay, "default", &[]);
    for p in [&mut multi, &mut r1, &mut r2] {
        p.connected();
    }
    multi.join(json!("1"));
    multi.join(json!("2"));
    r1.join(json!("1"));
    r2.join(json!("2"));
    r1.emit("send_message", json!([msg("1", "R1", "to one")]), Some("a"));
    r1.ack("a");
    r2.emit("send_message", json!([msg("2", "R2", "to two")]), Some("b"));
    r2.ack("b");
    let got = [
        multi.event("receive_message"),
        multi.event("receive_message"),
    ];
    let mut texts: Vec<_> = got
        .iter()
        .map(|a| a[0]["message"].as_str().unwrap().to_string())
        .collect();
    texts.sort();
    assert_eq!(texts, ["to one", "to two"]);
    // The multi-room client speaks to one room only.
    multi.emit(
        "send_message",
        json!([msg("2", "M", "only two")]),
        Some("c"),
    );
    multi.ack("c");
    assert_eq!(r2.event("receive_message")[0]["message"], "only two");
    r1.expect_none("room 2 message", Duration::from_millis(300), |v| {
        v["ev"] == "event"
    });
    // After leave_room, room 1 is silent for it.
    multi.emit("leave_room", json!(["1"]), Some("l"));
    assert_eq!(multi.ack("l"), json!({"ok": true, "room": "1"}));
    r1.emit("send_message", json!([msg("1", "R1", "gone?")]), Some("d"));
    r1.ack("d");
    multi.expect_none("room 1 after leaving", Duration::from_millis(300), |v| {
        v["ev"] == "event"
    });
}

#[test]
fn binary_attachments_are_relayed_with_the_message() {
    if !node_ok() {
        return;
    }
    let relay = Relay::start(&[]);
    let mut a = Peer::start("a", &relay, "default", &[]);
    let mut b = Peer::start("b", &relay, "websocket", &[]);
    a.connected();
    b.connected();
    a.join(json!("bin"));
    b.join(json!("bin"));
    let data = json!({"room": "bin", "author": "A", "message": "a file", "time": "10:00",
                      "file": {"$bin": "AAEC/wBA"}, "thumb": {"$bin": "3q2+7w=="}});
    a.emit("send_message", json!([data.clone()]), Some("f"));
    assert_eq!(a.ack("f"), json!({"ok": true}));
    assert_eq!(b.event("receive_message"), json!([data]));
}

#[test]
fn a_client_reconnects_after_losing_its_transport_and_rejoins() {
    if !node_ok() {
        return;
    }
    let relay = Relay::start(&[]);
    let mut a = Peer::start("a", &relay, "websocket", &[]);
    let mut b = Peer::start("b", &relay, "websocket", &[]);
    let first = a.connected();
    b.connected();
    b.join(json!("r"));
    a.join(json!("r"));
    a.cmd(json!({"op": "close-engine"}));
    a.expect("disconnect", |v| v["ev"] == "disconnect");
    let second = a.connected();
    assert_ne!(first["id"], second["id"], "a new socket after reconnecting");
    // The server forgot its rooms with the old socket: the app rejoins, as the original did.
    a.join(json!("r"));
    a.emit(
        "send_message",
        json!([msg("r", "A", "back again")]),
        Some("m"),
    );
    a.ack("m");
    assert_eq!(b.event("receive_message")[0]["message"], "back again");
}

// ---------------------------------------------------------------------------------------------
// Plain HTTP and WebSocket clients (no node needed).

/// One HTTP/1.1 request on a fresh connection: (status, headers, body).
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(STEP)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, head, body)
}

/// HEAD of `path`: 200, the GET's length in Content-Length, and no body.
fn assert_head(port: u16, path: &str, len: usize) {
    let (status, head, body) = http(port, "HEAD", path, &[], b"");
    assert_eq!((status, body.len()), (200, 0), "HEAD {path}");
    assert!(
        head.to_ascii_lowercase()
            .contains(&format!("content-length: {len}")),
        "HEAD {path}: {head}"
    );
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&b[..eol]).unwrap().trim();
        let n = usize::from_str_radix(size, 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
    out
}

fn ws_connect(port: u16, path: &str) -> tungstenite::WebSocket<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(STEP)).unwrap();
    let (ws, _) = tungstenite::client(format!("ws://127.0.0.1:{port}{path}"), stream)
        .expect("websocket handshake");
    ws
}

fn next_text(ws: &mut tungstenite::WebSocket<TcpStream>) -> String {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// The close code the server ends with (reading past data frames).
fn close_code(ws: &mut tungstenite::WebSocket<TcpStream>) -> Option<CloseCode> {
    loop {
        match ws.read() {
            Ok(Message::Close(c)) => return c.map(|c| c.code),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
}

/// A raw Socket.IO client over WebSocket: handshake, then CONNECT to `/`.
fn sio_connect(port: u16) -> tungstenite::WebSocket<TcpStream> {
    let mut ws = ws_connect(port, "/socket.io/?EIO=4&transport=websocket");
    assert!(next_text(&mut ws).starts_with("0{\"sid\":"));
    ws.send(Message::text("40")).unwrap();
    assert!(next_text(&mut ws).starts_with("40{\"sid\":"));
    ws
}

/// An event the chat does not know, asked with an ack, is answered with an error, whether its
/// name is a string or a number (socket.io-parser allows both) and whether it came as a text or a
/// binary packet; without an ack it is ignored and the connection goes on.
#[test]
fn unknown_events_with_an_ack_are_answered_whatever_their_name_or_packet() {
    let relay = Relay::start(&[]);
    let mut ws = sio_connect(relay.port);
    let answer = |ws: &mut tungstenite::WebSocket<TcpStream>, id: &str| -> Value {
        let t = next_text(ws);
        let head = format!("43{id}");
        assert!(t.starts_with(&head), "{t}");
        serde_json::from_str(&t[head.len()..]).unwrap()
    };
    let refused = |name: &str| json!([{"ok": false, "error": format!("unknown event {name:?}")}]);
    ws.send(Message::text(r#"42["typing",true]"#)).unwrap();
    ws.send(Message::text(r#"421["typing",true]"#)).unwrap();
    assert_eq!(answer(&mut ws, "1"), refused("typing"));
    ws.send(Message::text(r#"422[7,"x"]"#)).unwrap();
    assert_eq!(answer(&mut ws, "2"), refused("7"));
    ws.send(Message::text(
        r#"451-3["file",{"_placeholder":true,"num":0}]"#,
    ))
    .unwrap();
    ws.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    assert_eq!(answer(&mut ws, "3"), refused("file"));
    ws.send(Message::text(r#"451-4[7,{"_placeholder":true,"num":0}]"#))
        .unwrap();
    ws.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    assert_eq!(answer(&mut ws, "4"), refused("7"));
    ws.send(Message::text(r#"425["join_room","r"]"#)).unwrap();
    assert_eq!(answer(&mut ws, "5"), json!([{"ok": true, "room": "r"}]));
}

/// One sender's burst, over WebSocket (30,000 messages written at once) and in one polling POST
/// (9,000 messages), all into one thread of the relay: a member who keeps reading gets every
/// message and is not dropped as a slow consumer (its queue holds 4,096).
#[test]
fn a_burst_from_one_sender_does_not_cut_off_members_who_keep_reading() {
    const WS_BURST: usize = 30_000;
    const POST_BURST: usize = 9_000;
    let relay = Relay::start(&["--threads", "1"]);
    let join = |ws: &mut tungstenite::WebSocket<TcpStream>| {
        ws.send(Message::text(r#"421["join_room","b"]"#)).unwrap();
        assert_eq!(next_text(ws), r#"431[{"ok":true,"room":"b"}]"#);
    };
    let mut reader = sio_connect(relay.port);
    join(&mut reader);
    let (halfway, ws_burst_in) = channel();
    let counter = std::thread::spawn(move || {
        let mut got = 0;
        while got < WS_BURST + POST_BURST {
            match reader.read() {
                Ok(Message::Text(t)) if t.starts_with(r#"42["receive_message""#) => {
                    got += 1;
                    if got == WS_BURST {
                        let _ = halfway.send(());
                    }
                }
                Ok(Message::Text(t)) if t.as_str() == "2" => {
                    reader.send(Message::text("3")).unwrap();
                }
                Ok(Message::Close(c)) => return Err(format!("closed ({c:?}) after {got}")),
                Ok(_) => {}
                Err(e) => return Err(format!("{e} after {got}")),
            }
        }
        Ok(got)
    });
    let line = |i: usize| {
        format!(r#"42["send_message",{{"room":"b","author":"s","message":"m{i}","time":"10:00"}}]"#)
    };
    let mut sender = sio_connect(relay.port);
    join(&mut sender);
    // Encoded beforehand and written at once, so that the relay always has more to read.
    let mut burst = Vec::new();
    for i in 0..WS_BURST {
        wschat::wire::ws::encode_frame(
            &mut burst,
            true,
            wschat::wire::ws::Opcode::Text,
            Some([7, 7, 7, 7]),
            line(i).as_bytes(),
        );
    }
    sender.get_mut().write_all(&burst).unwrap();
    if ws_burst_in.recv_timeout(STEP * 3).is_err() {
        panic!("the WebSocket burst did not arrive: {:?}", counter.join());
    }
    // The first sender leaves, so that it does not receive (and not read) the second burst.
    sender
        .send(Message::text(r#"422["leave_room","b"]"#))
        .unwrap();
    assert_eq!(next_text(&mut sender), r#"432[{"ok":true,"room":"b"}]"#);
    // A long-polling sender: handshake, CONNECT, join, then one body of many messages.
    let sid = polling_sid(relay.port, "/socket.io/");
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(http(relay.port, "POST", &path, &[], b"40").0, 200);
    assert_eq!(http(relay.port, "GET", &path, &[], b"").0, 200);
    assert_eq!(
        http(relay.port, "POST", &path, &[], br#"421["join_room","b"]"#).0,
        200
    );
    let body: Vec<String> = (0..POST_BURST).map(line).collect();
    let (status, _, _) = http(relay.port, "POST", &path, &[], body.join("\x1e").as_bytes());
    assert_eq!(status, 200);
    assert_eq!(counter.join().unwrap(), Ok(WS_BURST + POST_BURST));
    assert_eq!(metric(relay.port, "wschat_slow_consumers_total"), 0.0);
}

#[test]
fn plain_websocket_clients_share_rooms_with_socketio_clients() {
    let relay = Relay::start(&[]);
    let mut sio = sio_connect(relay.port);
    sio.send(Message::text(r#"421["join_room","7"]"#)).unwrap();
    assert_eq!(next_text(&mut sio), r#"431[{"ok":true,"room":"7"}]"#);
    let mut plain = ws_connect(relay.port, "/ws/7?name=Celular");
    let mut other_room = ws_connect(relay.port, "/ws/8?name=Outro");
    // Plain text in, receive_message {room, author, message, time} out to Socket.IO members.
    std::thread::sleep(Duration::from_millis(100));
    plain.send(Message::text("Olá mundo!")).unwrap();
    let got = next_text(&mut sio);
    let v: Value = serde_json::from_str(got.strip_prefix("42").expect("an event")).unwrap();
    assert_eq!(v[0], "receive_message");
    assert_eq!(v[1]["room"], "7");
    assert_eq!(v[1]["author"], "Celular");
    assert_eq!(v[1]["message"], "Olá mundo!");
    let time = v[1]["time"].as_str().unwrap();
    assert!(
        time.len() == 5 && time.as_bytes()[2] == b':',
        "HH:MM, got {time}"
    );
    // Socket.IO messages reach the plain client as the JSON object.
    let data = msg("7", "Ana", "oi celular");
    sio.send(Message::text(format!(r#"42["send_message",{data}]"#)))
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&next_text(&mut plain)).unwrap(),
        data
    );
    other_room
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(other_room.read().is_err(), "room 8 heard room 7");
    // A binary frame is not a chat message: closed with 1003 (unsupported data) and counted.
    let errors = metric(relay.port, "wschat_protocol_errors_total");
    other_room.get_mut().set_read_timeout(Some(STEP)).unwrap();
    other_room.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    assert_eq!(close_code(&mut other_room), Some(CloseCode::Unsupported));
    assert_eq!(
        metric(relay.port, "wschat_protocol_errors_total"),
        errors + 1.0
    );
    // The name goes out with every message: more than 256 bytes is refused at the handshake.
    assert!(ws_refused(
        relay.port,
        &format!("/ws/7?name={}", "n".repeat(257))
    ));
    let mut long = ws_connect(relay.port, &format!("/ws/7?name={}", "n".repeat(256)));
    long.send(Message::text("oi")).unwrap();
    let got = next_text(&mut sio);
    assert!(got.contains(&"n".repeat(256)), "{got}");
}

#[test]
fn echo_endpoint_returns_text_and_binary_messages() {
    let relay = Relay::start(&[]);
    let mut ws = ws_connect(relay.port, "/echo");
    ws.send(Message::text("hello")).unwrap();
    assert_eq!(next_text(&mut ws), "hello");
    ws.send(Message::binary(vec![1u8, 2, 3, 0xff])).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(vec![1u8, 2, 3, 0xff]));
    ws.close(None).unwrap();
    assert_eq!(close_code(&mut ws), Some(CloseCode::Normal));
}

#[test]
fn health_metrics_cors_and_the_built_in_page() {
    let relay = Relay::start(&[]);
    let (status, head, body) = http(relay.port, "GET", "/healthz", &[], b"");
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["status"], "ok");
    assert!(
        head.to_ascii_lowercase()
            .contains("access-control-allow-origin: *")
    );

    let _sio = sio_connect(relay.port);
    let (status, head, body) = http(relay.port, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; version=0.0.4"));
    let text = String::from_utf8(body).unwrap();
    assert!(
        text.contains("wschat_connections{transport=\"websocket\"} 1"),
        "{text}"
    );
    assert!(text.contains("wschat_sockets 1"), "{text}");
    for family in [
        "wschat_messages_in_total",
        "wschat_bytes_out_total",
        "wschat_dropped_messages_total",
        "wschat_protocol_errors_total",
        "wschat_rooms",
        "wschat_slow_consumers_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} ")),
            "{family} missing"
        );
    }

    // One chat message relayed: one message in, one delivery out, and at least its bytes.
    let mut a = sio_connect(relay.port);
    let mut b = sio_connect(relay.port);
    for (ws, id) in [(&mut a, 1), (&mut b, 2)] {
        ws.send(Message::text(format!(r#"42{id}["join_room","m"]"#)))
            .unwrap();
        next_text(ws);
    }
    let before = |name: &str| metric(relay.port, name);
    let (m_in, m_out) = (
        before("wschat_messages_in_total"),
        before("wschat_messages_out_total"),
    );
    let (b_in, b_out) = (
        before("wschat_bytes_in_total"),
        before("wschat_bytes_out_total"),
    );
    let sent = format!(r#"42["send_message",{}]"#, msg("m", "Ana", "metrics"));
    a.send(Message::text(sent.clone())).unwrap();
    let got = next_text(&mut b);
    assert!(got.contains("metrics"), "{got}");
    assert_eq!(metric(relay.port, "wschat_messages_in_total"), m_in + 1.0);
    assert_eq!(metric(relay.port, "wschat_messages_out_total"), m_out + 1.0);
    assert!(metric(relay.port, "wschat_bytes_in_total") >= b_in + sent.len() as f64);
    assert!(metric(relay.port, "wschat_bytes_out_total") >= b_out + got.len() as f64);

    // A React dev server on another port polls with a preflight.
    let (status, head, _) = http(
        relay.port,
        "OPTIONS",
        "/socket.io/?EIO=4&transport=polling",
        &[
            ("Origin", "http://localhost:3000"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "content-type"),
        ],
        b"",
    );
    assert_eq!(status, 204);
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("access-control-allow-origin: *"));
    assert!(lower.contains("access-control-allow-headers: content-type"));
    let (status, head, body) = http(
        relay.port,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        &[("Origin", "http://localhost:3000")],
        b"",
    );
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("access-control-allow-origin: *")
    );
    assert!(body.starts_with(b"0{\"sid\":"));

    let (status, head, body) = http(relay.port, "GET", "/", &[], b"");
    assert_eq!(status, 200);
    assert!(head.contains("text/html"));
    let page = String::from_utf8(body).unwrap();
    assert!(page.contains("Entrar na sala"));
    // HEAD: the same head with the page's length, and no body.
    assert_head(relay.port, "/", page.len());
    for asset in ["/assets/app.js", "/assets/socketio.js", "/assets/style.css"] {
        assert_eq!(http(relay.port, "GET", asset, &[], b"").0, 200, "{asset}");
    }
    assert_eq!(http(relay.port, "GET", "/nope", &[], b"").0, 404);
}

/// The timing flags of the binary reach the Engine.IO handshake and the session's timers; without
/// them, the npm server's defaults.
#[test]
fn serve_timing_flags_reach_the_handshake_and_the_timers() {
    let open = |relay: &Relay| {
        let mut ws = ws_connect(relay.port, "/socket.io/?EIO=4&transport=websocket");
        let text = next_text(&mut ws);
        let v: Value = serde_json::from_str(text.strip_prefix('0').expect("open")).unwrap();
        (ws, v)
    };
    let defaults = Relay::start(&[]);
    let (_ws, v) = open(&defaults);
    assert_eq!(
        (&v["pingInterval"], &v["pingTimeout"], &v["maxPayload"]),
        (&json!(25000), &json!(20000), &json!(1000000))
    );
    let relay = Relay::start(&[
        "--ping-interval",
        "200ms",
        "--ping-timeout",
        "300ms",
        "--max-payload",
        "5000",
        "--connect-timeout",
        "700ms",
    ]);
    // Timed from before the handshake, so that the lower bound holds however late this runs.
    let t = Instant::now();
    let (mut ws, v) = open(&relay);
    assert_eq!(
        (&v["pingInterval"], &v["pingTimeout"], &v["maxPayload"]),
        (&json!(200), &json!(300), &json!(5000))
    );
    // Pings every 200 ms, answered; no CONNECT, so the session ends at connectTimeout.
    let mut pings = 0;
    let closed_after = loop {
        match ws.read() {
            Ok(Message::Text(t)) if t.as_str() == "2" => {
                pings += 1;
                ws.send(Message::text("3")).unwrap();
            }
            Ok(Message::Close(_)) | Err(_) => break t.elapsed(),
            Ok(_) => {}
        }
    };
    assert!(pings >= 2, "{pings} pings before the close");
    assert!(
        closed_after >= Duration::from_millis(650) && closed_after < Duration::from_secs(5),
        "closed after {closed_after:?}, connectTimeout is 700 ms"
    );
}

/// Point 6: one log line per connect, join, leave and disconnect (with its reason); with
/// `serve --json` each is a JSON object on stderr.
#[test]
fn serve_json_logs_connect_join_leave_and_disconnect_as_json_lines() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wschat"))
        .args(["serve", "--listen", "127.0.0.1:0", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_LOG", "wschat=info")
        .spawn()
        .expect("start wschat serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = serde_json::from_str::<Value>(&line).unwrap()["port"]
        .as_u64()
        .unwrap() as u16;
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut ws = sio_connect(port);
    ws.send(Message::text(r#"421["join_room","5"]"#)).unwrap();
    assert_eq!(next_text(&mut ws), r#"431[{"ok":true,"room":"5"}]"#);
    ws.send(Message::text(r#"422["leave_room","5"]"#)).unwrap();
    assert_eq!(next_text(&mut ws), r#"432[{"ok":true,"room":"5"}]"#);
    ws.close(None).unwrap();
    // A session whose socket leaves its namespace, then closes: a `disconnect` line, and not the
    // line of a session that never connected.
    let mut left = sio_connect(port);
    left.send(Message::text("41")).unwrap();
    left.close(None).unwrap();
    // A session that never connects: its malformed first packet closes it, and that is logged.
    let mut bad = ws_connect(port, "/socket.io/?EIO=4&transport=websocket");
    next_text(&mut bad);
    bad.send(Message::text("4not-a-packet")).unwrap();
    let mut seen: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let logged = |seen: &[Value], m: &str| seen.iter().any(|v| v["fields"]["message"] == m);
    let count =
        |seen: &[Value], m: &str| seen.iter().filter(|v| v["fields"]["message"] == m).count();
    while Instant::now() < deadline
        && !(count(&seen, "disconnect") == 2 && logged(&seen, "session closed before CONNECT"))
    {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            assert!(
                v["timestamp"].is_string() && v["level"].is_string(),
                "{line}"
            );
            seen.push(v);
        }
    }
    // Lines that should not come get a moment to come.
    while let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
        seen.push(serde_json::from_str(&line).unwrap());
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        count(&seen, "session closed before CONNECT"),
        1,
        "only the session that never connected: {seen:#?}"
    );
    let find = |m: &str| {
        seen.iter()
            .find(|v| v["fields"]["message"] == m)
            .unwrap_or_else(|| panic!("no {m:?} log line in {seen:#?}"))
            .clone()
    };
    let connect = find("connect");
    assert_eq!(connect["fields"]["transport"], "websocket");
    let sid = connect["fields"]["socket"].clone();
    assert!(sid.is_string());
    assert_eq!(find("join")["fields"]["room"], "5");
    assert_eq!(find("leave")["fields"]["room"], "5");
    let disconnect = seen
        .iter()
        .find(|v| v["fields"]["message"] == "disconnect" && v["fields"]["socket"] == sid)
        .unwrap_or_else(|| panic!("no disconnect line for {sid} in {seen:#?}"));
    assert_eq!(disconnect["fields"]["reason"], "transport close");
    assert!(
        seen.iter().any(|v| v["fields"]["message"] == "disconnect"
            && v["fields"]["reason"] == "client namespace disconnect"),
        "{seen:#?}"
    );
    let early = find("session closed before CONNECT");
    assert!(
        early["fields"]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("protocol error")),
        "{early}"
    );
}

#[test]
fn static_dir_serves_files_with_spa_fallback_and_no_traversal() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("index.html"),
        "<div id=root>react build</div>",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("static")).unwrap();
    std::fs::write(dir.path().join("static/main.js"), "console.log(1)").unwrap();
    let outside = dir
        .path()
        .parent()
        .unwrap()
        .join("wschat-serve-test-secret.txt");
    std::fs::write(&outside, "secret").unwrap();
    let relay = Relay::start(&["--static", dir.path().to_str().unwrap()]);
    let (status, head, body) = http(relay.port, "GET", "/static/main.js", &[], b"");
    assert_eq!((status, body.as_slice()), (200, &b"console.log(1)"[..]));
    assert!(head.contains("text/javascript"));
    assert_head(relay.port, "/static/main.js", 14);
    let (status, _, body) = http(relay.port, "GET", "/chat/room/7", &[], b"");
    assert_eq!(
        (status, body.as_slice()),
        (200, &b"<div id=root>react build</div>"[..])
    );
    assert_eq!(
        http(relay.port, "GET", "/static/missing.js", &[], b"").0,
        404
    );
    for path in [
        "/../wschat-serve-test-secret.txt",
        "/%2e%2e/wschat-serve-test-secret.txt",
        "/static/%2E%2E/%2E%2E/wschat-serve-test-secret.txt",
    ] {
        let (_, _, body) = http(relay.port, "GET", path, &[], b"");
        assert!(
            !String::from_utf8_lossy(&body).contains("secret"),
            "{path} escaped the folder"
        );
    }
    // The relay still runs on the same port.
    let _sio = sio_connect(relay.port);
    let _ = std::fs::remove_file(outside);
}

#[test]
fn engine_io_errors_are_the_reference_answers() {
    let relay = Relay::start(&["--max-payload", "100"]);
    let (status, _, body) = http(
        relay.port,
        "GET",
        "/socket.io/?EIO=4&transport=polling&sid=nope",
        &[],
        b"",
    );
    assert_eq!(
        (status, body.as_slice()),
        (400, &br#"{"code":1,"message":"Session ID unknown"}"#[..])
    );
    let (status, _, body) = http(
        relay.port,
        "GET",
        "/socket.io/?EIO=4&transport=carrier-pigeon",
        &[],
        b"",
    );
    assert_eq!(
        (status, body.as_slice()),
        (400, &br#"{"code":0,"message":"Transport unknown"}"#[..])
    );
    let (status, _, body) = http(
        relay.port,
        "GET",
        "/socket.io/?EIO=3&transport=polling",
        &[],
        b"",
    );
    assert_eq!(
        (status, body.as_slice()),
        (
            400,
            &br#"{"code":5,"message":"Unsupported protocol version"}"#[..]
        )
    );
    let (_, _, body) = http(
        relay.port,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        &[],
        b"",
    );
    let open: Value = serde_json::from_slice(&body[1..]).unwrap();
    assert_eq!(open["maxPayload"], 100);
    let sid = open["sid"].as_str().unwrap();
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let (status, _, _) = http(relay.port, "POST", &path, &[], &[b'4'; 500]);
    assert_eq!(status, 413);
    // The session survives an oversized POST.
    let (status, _, body) = http(relay.port, "POST", &path, &[], b"40");
    assert_eq!((status, body.as_slice()), (200, &b"ok"[..]));
    let (status, _, body) = http(relay.port, "GET", &path, &[], b"");
    assert_eq!(status, 200);
    assert!(
        body.starts_with(b"40{\"sid\":"),
        "{}",
        String::from_utf8_lossy(&body)
    );
    // A request naming a session with the wrong transport or method: an unknown sid is answered
    // as such first (code 1), a known one is a bad request (code 3), as the reference's verify.
    let unknown = br#"{"code":1,"message":"Session ID unknown"}"#;
    let bad = br#"{"code":3,"message":"Bad request"}"#;
    for (method, query, want) in [
        (
            "GET",
            "transport=websocket&sid=nope".to_string(),
            &unknown[..],
        ),
        (
            "PUT",
            "transport=polling&sid=nope".to_string(),
            &unknown[..],
        ),
        ("GET", format!("transport=websocket&sid={sid}"), &bad[..]),
        ("PUT", format!("transport=polling&sid={sid}"), &bad[..]),
        // Without a sid, the handshake's method is checked before its transport.
        (
            "POST",
            "transport=websocket".to_string(),
            &br#"{"code":2,"message":"Bad handshake method"}"#[..],
        ),
    ] {
        let (status, _, body) = http(
            relay.port,
            method,
            &format!("/socket.io/?EIO=4&{query}"),
            &[],
            b"",
        );
        assert_eq!((status, body.as_slice()), (400, want), "{method} {query}");
    }
}

#[test]
fn an_oversized_websocket_message_closes_with_1009() {
    let relay = Relay::start(&["--max-payload", "1000"]);
    let mut ws = sio_connect(relay.port);
    let big = format!(r#"42["send_message","{}"]"#, "x".repeat(5000));
    ws.send(Message::text(big)).unwrap();
    assert_eq!(close_code(&mut ws), Some(CloseCode::Size));
    let (_, _, body) = http(relay.port, "GET", "/metrics", &[], b"");
    assert!(
        String::from_utf8(body)
            .unwrap()
            .contains("wschat_protocol_errors_total 1")
    );
}

#[test]
fn a_malformed_packet_closes_only_that_session() {
    let relay = Relay::start(&[]);
    let mut good = sio_connect(relay.port);
    good.send(Message::text(r#"421["join_room","r"]"#)).unwrap();
    next_text(&mut good);
    let mut bad = sio_connect(relay.port);
    bad.send(Message::text(r#"42abc["oops"]"#)).unwrap();
    assert!(close_code(&mut bad).is_some(), "the bad session is closed");
    let mut junk = ws_connect(relay.port, "/socket.io/?EIO=4&transport=websocket");
    next_text(&mut junk);
    junk.send(Message::binary(vec![0xffu8; 64])).unwrap();
    junk.send(Message::text("9not-a-packet")).unwrap();
    assert!(close_code(&mut junk).is_some());
    // The good one still works.
    good.send(Message::text(r#"422["join_room","s"]"#)).unwrap();
    assert_eq!(next_text(&mut good), r#"432[{"ok":true,"room":"s"}]"#);
}

#[test]
fn a_consumer_that_stops_reading_is_disconnected_and_counted() {
    let relay = Relay::start(&[
        "--queue",
        "16",
        "--queue-bytes",
        "1",
        "--max-payload",
        "65536",
    ]);
    // A plain client that never reads what the room sends.
    let mut stalled = TcpStream::connect(("127.0.0.1", relay.port)).unwrap();
    stalled
        .write_all(
            b"GET /ws/flood?name=slow HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    let mut sender = sio_connect(relay.port);
    sender
        .send(Message::text(r#"421["join_room","flood"]"#))
        .unwrap();
    next_text(&mut sender);
    let blob = "y".repeat(60_000);
    let data = format!(r#"{{"room":"flood","author":"s","message":"{blob}","time":"10:00"}}"#);
    let frame = format!(r#"42["send_message",{data}]"#);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for _ in 0..20 {
            sender.send(Message::text(frame.clone())).unwrap();
        }
        let (_, _, body) = http(relay.port, "GET", "/metrics", &[], b"");
        let text = String::from_utf8(body).unwrap();
        if text.contains("wschat_slow_consumers_total 1") {
            assert!(
                text.contains("wschat_connections{transport=\"plain_ws\"} 0"),
                "{text}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the stalled client was never dropped:\n{text}"
        );
    }
    drop(stalled);
    // The sender is unaffected.
    sender
        .send(Message::text(r#"429["join_room","other"]"#))
        .unwrap();
    loop {
        if next_text(&mut sender) == r#"439[{"ok":true,"room":"other"}]"# {
            break;
        }
    }
}

/// A WebSocket opened on a keep-alive connection after a plain request (hyper's upgrade path).
fn ws_after_a_plain_request(port: u16, path: &str) -> tungstenite::WebSocket<TcpStream> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(STEP)).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // The whole answer (its head says how long the body is), and nothing more.
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        stream.read_exact(&mut byte).unwrap();
        got.push(byte[0]);
        if got.ends_with(b"\r\n\r\n") {
            break;
        }
    }
    let head = String::from_utf8_lossy(&got).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("a content-length");
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).unwrap();
    let (ws, _) = tungstenite::client(format!("ws://127.0.0.1:{port}{path}"), stream)
        .expect("the upgrade on the same connection");
    ws
}

#[test]
fn a_websocket_upgraded_after_a_plain_request_counts_as_a_connection() {
    let relay = Relay::start(&["--max-connections", "2"]);
    let mut upgraded = ws_after_a_plain_request(relay.port, "/ws/1?name=a");
    let mut plain = ws_connect(relay.port, "/ws/1?name=b");
    // Each joins its room once its handshake is answered: say it until the other one hears.
    plain
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let heard = (0..100).any(|_| {
        upgraded.send(Message::text("oi")).unwrap();
        matches!(plain.read(), Ok(Message::Text(t)) if t.contains("oi"))
    });
    assert!(heard, "the upgraded connection does not reach the room");
    // Two connections are open, the upgraded one included: a third is refused.
    assert!(ws_refused(relay.port, "/ws/1?name=c"));
    drop(upgraded);
    let port = relay.port;
    wait_until("the upgraded connection's slot is free", || {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(STEP)).unwrap();
        tungstenite::client(format!("ws://127.0.0.1:{port}/ws/1?name=d"), stream).is_ok()
    });
}

#[cfg(unix)]
#[test]
fn sigterm_closes_websockets_with_1001_answers_pending_polls_and_exits() {
    let mut relay = Relay::start(&[]);
    let mut ws = sio_connect(relay.port);
    let mut upgraded = ws_after_a_plain_request(relay.port, "/ws/1?name=a");
    let (_, _, body) = http(
        relay.port,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        &[],
        b"",
    );
    let sid = serde_json::from_slice::<Value>(&body[1..]).unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_string();
    let port = relay.port;
    let poll = std::thread::spawn(move || {
        http(
            port,
            "GET",
            &format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
            &[],
            b"",
        )
    });
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &relay.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(close_code(&mut ws), Some(CloseCode::Away));
    assert_eq!(close_code(&mut upgraded), Some(CloseCode::Away));
    let (status, _, body) = poll.join().unwrap();
    assert_eq!(
        (status, body.as_slice()),
        (200, &b"1"[..]),
        "the held GET gets a close packet"
    );
    let exit = loop {
        if let Some(s) = relay.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still running 5 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
}

/// The browser scenario's JSON lines.
struct Browser {
    child: Child,
    stdin: ChildStdin,
    rx: Receiver<Value>,
}

impl Browser {
    /// serve-browser.js with these arguments; its JSON lines come through `next`.
    fn start(args: &[&OsStr]) -> Browser {
        let mut child = Command::new("node")
            .arg(peers_dir().join("serve-browser.js"))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start serve-browser.js");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        Browser { child, stdin, rx }
    }

    fn next(&mut self, ev: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(v) if v["ev"] == ev => return v,
                Ok(v) if v["ev"] == "fail" => panic!("browser scenario failed: {}", v["error"]),
                Ok(_) => continue,
                Err(e) => panic!("browser: no {ev} ({e:?})"),
            }
        }
    }
}

impl Drop for Browser {
    /// Lets the driver end Chromium's whole process group itself (it does so on exit, and on
    /// SIGTERM), then makes sure: a SIGKILL straight away left the browser's processes running.
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// node and Debian's chromium, for the browser tests (a failure under CI when missing).
fn chromium_ok() -> bool {
    node_ok()
        && peer_available(
            "chromium (/usr/bin/chromium)",
            Path::new("/usr/bin/chromium").exists(),
        )
}

#[test]
fn the_web_page_chats_with_a_socketio_peer_in_headless_chromium() {
    if !chromium_ok() {
        return;
    }
    let relay = Relay::start(&[]);
    let mut bia = Peer::start("bia", &relay, "websocket", &[]);
    bia.connected();
    bia.join(json!("7"));
    let shots = tempfile::tempdir().unwrap();
    let png = shots.path().join("chat.png");
    let url = format!("{}/", relay.url());
    let mut browser = Browser::start(&[
        "--url".as_ref(),
        url.as_ref(),
        "--name".as_ref(),
        "Ana".as_ref(),
        "--room".as_ref(),
        "7".as_ref(),
        "--send".as_ref(),
        "Olá mundo!".as_ref(),
        "--expect".as_ref(),
        "Oi Ana, tudo bem?".as_ref(),
        "--early".as_ref(),
        "Cheguei!".as_ref(),
        "--screenshot".as_ref(),
        png.as_os_str(),
        "--leave".as_ref(),
    ]);
    let joined = browser.next("joined");
    assert_eq!(joined["subtitle"], "Entrar na sala");
    // Typed while the page was still connecting: sent after the page's join, so accepted.
    assert_eq!(
        joined["early"],
        json!({"acked": true, "error": null}),
        "a message typed before the page connected"
    );
    assert_eq!(bia.event("receive_message")[0]["message"], "Cheguei!");
    writeln!(browser.stdin, "go").unwrap();
    browser.stdin.flush().unwrap();
    let sent = browser.next("sent");
    assert_eq!(sent["bubble"]["text"], "Olá mundo!");
    // The page's message reaches the socket.io-client peer in the original app's shape.
    let got = bia.event("receive_message");
    assert_eq!(got[0]["room"], "7");
    assert_eq!(got[0]["author"], "Ana");
    assert_eq!(got[0]["message"], "Olá mundo!");
    assert!(got[0]["time"].as_str().is_some_and(|t| t.len() == 5));
    bia.emit(
        "send_message",
        json!([msg("7", "Bia", "Oi Ana, tudo bem?")]),
        Some("r"),
    );
    bia.ack("r");
    let received = browser.next("received");
    assert_eq!(received["bubble"]["author"], "Bia");
    assert_eq!(received["bubble"]["time"], "10:42");
    assert_eq!(
        received["bubble"]["mineRightOfTheirs"], true,
        "own bubbles on the right"
    );
    browser.next("screenshot");
    let bytes = std::fs::read(&png).expect("screenshot written");
    assert!(bytes.starts_with(b"\x89PNG"), "a PNG screenshot");
    // Leaving closes the page's socket: only Bia's is left, and no message of room 7 reaches
    // the page any more (a socket kept open would rejoin room 7 on its next reconnection).
    browser.next("left");
    let deadline = Instant::now() + STEP;
    loop {
        let (_, _, body) = http(relay.port, "GET", "/healthz", &[], b"");
        let health: Value = serde_json::from_slice(&body).unwrap();
        if health["sockets"] == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the page's socket is still open after leaving: {health}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    writeln!(browser.stdin, "done").unwrap();
    browser.stdin.flush().unwrap();
}

/// A page written for socket.io-client's bundle loads `/socket.io/socket.io.js` from the relay
/// (served with `--static`, as an express + socket.io app would be) and chats through `io()` with
/// a socket.io-client peer: acks, timeouts, binary, namespaces, once/off/onAny, reconnection
/// after the relay closed its session, disconnect.
#[test]
fn a_page_using_io_from_socket_io_js_chats_in_headless_chromium() {
    if !chromium_ok() {
        return;
    }
    let page_dir = peers_dir().join("io-page");
    let relay = Relay::start(&["--static", page_dir.to_str().unwrap()]);
    let mut bia = Peer::start("bia", &relay, "websocket", &[]);
    bia.connected();
    bia.join(json!("io-7"));
    let url = format!("{}/", relay.url());
    let mut browser = Browser::start(&["--result".as_ref(), "--url".as_ref(), url.as_ref()]);
    // The page's two messages, one of them binary, reach the node peer.
    let first = bia.event("receive_message");
    let hello = json!({"room": "io-7", "author": "Ana", "message": "Olá mundo!", "time": "16:10"});
    assert_eq!(first[0], hello);
    let second = bia.event("receive_message");
    assert_eq!(second[0]["message"], "bytes");
    bia.emit(
        "send_message",
        json!([msg("io-7", "Bia", "Oi Ana, tudo bem?")]),
        Some("r"),
    );
    assert_eq!(bia.ack("r")["ok"], true);
    let r = browser.next("result")["value"].clone();
    assert_eq!(r["ids"], true, "{r}");
    assert_eq!(r["esm"], true, "the ES module's io()");
    assert_eq!(r["joinA"], json!({"ok": true, "room": "io-7"}));
    assert_eq!(
        r["joinB"],
        json!({"err": null, "reply": {"ok": true, "room": "io-7"}})
    );
    assert_eq!(r["sendAck"]["ok"], true);
    assert_eq!(r["bGot"], hello);
    assert_eq!(r["binary"], json!([1, 2, 250]));
    assert_eq!(r["timedOut"], "operation has timed out");
    assert_eq!(r["idleActive"], false);
    assert_eq!(r["otherNsp"], "/elsewhere");
    assert_eq!(
        r["early"],
        json!({"join": {"ok": true, "room": "io-8"}, "send": {"ok": true}})
    );
    assert_eq!(r["fromBia"], msg("io-7", "Bia", "Oi Ana, tudo bem?"));
    assert_eq!(r["ownEcho"], 0, "the relay sent a its own messages");
    assert_eq!((&r["onceCount"], &r["offCount"]), (&json!(1), &json!(0)));
    assert_eq!(r["anyB"], json!(vec!["receive_message"; 3]));
    assert_eq!(
        r["late"],
        json!({"join": "operation has timed out",
               "send": {"ok": false, "error": "not a member of room io-9"}})
    );
    assert_eq!(r["cleared"], "socket has been disconnected");
    assert_eq!(
        r["reconnect"],
        json!({"reasons": ["transport close"], "reconnects": [1], "connectsA": 2, "active": true})
    );
    assert_eq!(
        r["bAfter"],
        json!({"connected": false, "disconnected": true, "active": false,
               "reasons": ["io client disconnect"]})
    );
}

/// The client script's transports in Chromium, next to a socket.io-client peer on WebSocket:
/// long-polling alone (binary as base64 both ways, a backlog larger than `--max-payload` split
/// over several POSTs), polling then the upgrade with what was sent before, during the probe and
/// during the upgrade kept in order, a WebSocket blocked by a proxy (the socket stays on polling),
/// `tryAllTransports`, a relay-closed polling session, and `disconnect()` over polling.
#[test]
fn the_client_script_polls_upgrades_and_falls_back_when_websocket_is_blocked() {
    if !chromium_ok() {
        return;
    }
    let page_dir = peers_dir().join("io-page");
    let relay = Relay::start(&[
        "--static",
        page_dir.to_str().unwrap(),
        "--max-payload",
        "20000",
    ]);
    let mut bia = Peer::start("bia", &relay, "websocket", &[]);
    bia.connected();
    bia.join(json!("io-p"));
    let url = format!("{}/polling.html", relay.url());
    let mut browser = Browser::start(&["--result".as_ref(), "--url".as_ref(), url.as_ref()]);
    let chat =
        |text: &str| json!({"room": "io-p", "author": "Ana", "message": text, "time": "16:10"});
    // From the polling socket: text, then [1, 2, 250] ("AQL6").
    assert_eq!(bia.event("receive_message")[0], chat("Olá mundo!"));
    let bytes = bia.event("receive_message");
    assert_eq!(bytes[0]["data"], json!({"$bin": "AQL6"}));
    bia.emit(
        "send_message",
        json!([msg("io-p", "Bia", "Oi Ana")]),
        Some("t"),
    );
    assert_eq!(bia.ack("t")["ok"], true);
    let mut binary = msg("io-p", "Bia", "bytes");
    binary["data"] = json!({"$bin": "AP8="});
    bia.emit("send_message", json!([binary]), Some("b"));
    assert_eq!(bia.ack("b")["ok"], true);
    // Across the upgrade, every message once and in order; then the one through the "proxy".
    for i in 0..27 {
        assert_eq!(
            bia.event("receive_message")[0],
            chat(&format!("u{i}")),
            "message {i} of the upgrading socket"
        );
    }
    assert_eq!(bia.event("receive_message")[0], chat("through the proxy"));
    let r = browser.next("result")["value"].clone();
    assert_eq!(r["pollingGauge"], 1, "{r}");
    assert_eq!(r["joinP"], json!({"ok": true, "room": "io-p"}));
    assert_eq!(
        (&r["sendP"]["ok"], &r["binP"]["ok"]),
        (&json!(true), &json!(true))
    );
    assert_eq!(r["fromBia"], msg("io-p", "Bia", "Oi Ana"));
    assert_eq!(r["binFromBia"], json!([0, 255]));
    assert_eq!(r["pTransport"], "polling");
    assert_eq!(r["bigAcks"], json!(vec![true; 9]), "split POSTs");
    assert_eq!(r["firstTransport"], "polling");
    assert_eq!(r["upgrading"], true, "the hook ran during the upgrade");
    assert_eq!(r["upgradeAcks"], json!(vec![true; 28]));
    assert_eq!(r["upgrades"], json!(["websocket"]));
    assert_eq!(r["uTransport"], "websocket");
    assert_eq!(r["blockedJoin"], json!({"ok": true, "room": "io-p"}));
    assert_eq!(r["blockedSend"]["ok"], true);
    assert_eq!(
        r["blocked"],
        json!({"transport": "polling", "upgradeErrors": ["probe error"], "probed": 1})
    );
    assert_eq!(r["wsOnly"], "websocket error");
    assert_eq!(r["tryAllJoin"], json!({"ok": true, "room": "io-p"}));
    assert_eq!(
        r["tryAll"],
        json!({"transport": "polling", "blocked": 3}),
        "one probe (b), one failed first transport (w), one for t"
    );
    assert_eq!(
        r["reconnect"],
        json!({"reasons": ["transport close"], "reconnected": 1, "transport": "polling"})
    );
    assert_eq!(r["pollingGaugeAfter"], 0, "a polling socket left open: {r}");
}

#[test]
fn the_client_script_is_served_where_the_npm_server_serves_its_bundle() {
    let relay = Relay::start(&[]);
    let (status, head, body) = http(relay.port, "GET", "/socket.io/socket.io.js", &[], b"");
    assert_eq!(status, 200);
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("content-type: application/javascript"),
        "{head}"
    );
    assert!(lower.contains("cache-control: public, max-age=0"), "{head}");
    let body = String::from_utf8(body).unwrap();
    assert!(body.contains("window.io = io"), "the script defines io()");
    let etag = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("etag:")
                .then(|| l[5..].trim().to_string())
        })
        .expect("an ETag");
    // The minified name is the same script; a matching If-None-Match gets 304; HEAD gets the
    // length only.
    let (status, _, min) = http(relay.port, "GET", "/socket.io/socket.io.min.js", &[], b"");
    assert_eq!((status, min), (200, body.clone().into_bytes()));
    let (status, _, empty) = http(
        relay.port,
        "GET",
        "/socket.io/socket.io.js",
        &[("If-None-Match", &etag)],
        b"",
    );
    assert_eq!((status, empty.len()), (304, 0));
    assert_head(relay.port, "/socket.io/socket.io.js", body.len());
    // The ES module is the same script, exporting io.
    let (status, head, esm) = http(
        relay.port,
        "GET",
        "/socket.io/socket.io.esm.min.js",
        &[],
        b"",
    );
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("application/javascript"));
    let esm = String::from_utf8(esm).unwrap();
    assert!(
        esm.starts_with(&body) && esm.contains("export { io,"),
        "{}",
        &esm[body.len()..]
    );
    // Other names under /socket.io/ are still Engine.IO's (400 without EIO), and a POST to the
    // script's path is too.
    assert_eq!(
        http(relay.port, "GET", "/socket.io/other.js", &[], b"").0,
        400
    );
    assert_eq!(
        http(relay.port, "POST", "/socket.io/socket.io.js", &[], b"").0,
        400
    );
    // With --static too, as the npm server serves it next to an express app's files.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<p>app</p>").unwrap();
    let relay = Relay::start(&["--static", dir.path().to_str().unwrap()]);
    let (status, _, again) = http(relay.port, "GET", "/socket.io/socket.io.js", &[], b"");
    assert_eq!((status, again), (200, body.into_bytes()));
}

// ---------------------------------------------------------------------------------------------
// The behaviours the official Engine.IO v4 / Socket.IO v5 suites check, pinned against the
// library's fixture server (`wschat::serve::fixture`, the same one examples/conformance.rs runs),
// in process, with the suites' timings (pingInterval 300 ms, pingTimeout 200 ms).

struct InProcess {
    port: u16,
    handle: wschat::serve::server::ShutdownHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    fn suite() -> InProcess {
        InProcess::with(wschat::serve::fixture::suite_config())
    }

    /// The fixture with other settings.
    fn with(config: wschat::serve::server::ServerConfig) -> InProcess {
        use wschat::serve::fixture::suite_server;
        use wschat::serve::server::ServerBuilder;
        let (tx, rx) = channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let server = suite_server(ServerBuilder::new(config))
                    .bind("127.0.0.1:0".parse().unwrap())
                    .expect("bind");
                tx.send((server.local_addr().unwrap().port(), server.handle()))
                    .unwrap();
                server.run(std::future::pending()).await;
            });
        });
        let (port, handle) = rx.recv_timeout(STEP).expect("fixture started");
        InProcess {
            port,
            handle,
            thread: Some(thread),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        self.handle.shutdown();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether the server closes this WebSocket (a close frame or EOF) within STEP.
fn server_closes(ws: &mut tungstenite::WebSocket<TcpStream>) -> bool {
    loop {
        match ws.read() {
            Ok(Message::Close(_)) => return true,
            Ok(_) => continue,
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// Whether the handshake is refused or the socket closed right away.
fn ws_refused(port: u16, path: &str) -> bool {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(STEP)).unwrap();
    match tungstenite::client(format!("ws://127.0.0.1:{port}{path}"), stream) {
        Err(_) => true,
        Ok((mut ws, _)) => server_closes(&mut ws),
    }
}

/// The next message that is not a ping (`2`), as the Socket.IO suite's `waitForPackets`.
fn next_packet(ws: &mut tungstenite::WebSocket<TcpStream>) -> Message {
    loop {
        match ws.read().expect("read") {
            Message::Text(t) if t.as_str() == "2" => continue,
            Message::Ping(_) | Message::Pong(_) => continue,
            m => return m,
        }
    }
}

fn polling_sid(port: u16, base: &str) -> String {
    let (status, _, body) = http(
        port,
        "GET",
        &format!("{base}?EIO=4&transport=polling"),
        &[],
        b"",
    );
    assert_eq!(status, 200);
    serde_json::from_slice::<Value>(&body[1..]).unwrap()["sid"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn conformance_engine_io_handshake_messages_and_errors() {
    let s = InProcess::suite();
    let p = s.port;
    // Handshake over polling: exactly the five keys.
    let (status, head, body) = http(p, "GET", "/engine.io/?EIO=4&transport=polling", &[], b"");
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; charset=UTF-8"), "{head}");
    assert_eq!(body[0], b'0');
    let open: Value = serde_json::from_slice(&body[1..]).unwrap();
    let mut keys: Vec<_> = open.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "maxPayload",
            "pingInterval",
            "pingTimeout",
            "sid",
            "upgrades"
        ]
    );
    assert_eq!(open["upgrades"], json!(["websocket"]));
    assert_eq!(
        (open["pingInterval"].clone(), open["pingTimeout"].clone()),
        (json!(300), json!(200))
    );
    assert_eq!(open["maxPayload"], 1_000_000);
    // ... and over WebSocket: no upgrades.
    let mut ws = ws_connect(p, "/engine.io/?EIO=4&transport=websocket");
    let open: Value = serde_json::from_str(&next_text(&mut ws)[1..]).unwrap();
    assert_eq!(open["upgrades"], json!([]));
    // Bad query or method: 400 over polling, refused over WebSocket.
    for q in [
        "transport=polling",
        "EIO=abc&transport=polling",
        "EIO=4",
        "EIO=4&transport=abc",
    ] {
        assert_eq!(
            http(p, "GET", &format!("/engine.io/?{q}"), &[], b"").0,
            400,
            "{q}"
        );
    }
    for m in ["POST", "PUT"] {
        assert_eq!(
            http(p, m, "/engine.io/?EIO=4&transport=polling", &[], b"").0,
            400,
            "{m}"
        );
    }
    for q in [
        "transport=websocket",
        "EIO=abc&transport=websocket",
        "EIO=4",
        "EIO=4&transport=abc",
    ] {
        assert!(ws_refused(p, &format!("/engine.io/?{q}")), "{q}");
    }
    // Messages over polling: one, several (batched), text + binary.
    for body in [
        "4hello",
        "4test1\x1e4test2\x1e4test3",
        "4hello\x1ebAQIDBA==",
    ] {
        let sid = polling_sid(p, "/engine.io/");
        let path = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
        let (status, _, ok) = http(p, "POST", &path, &[], body.as_bytes());
        assert_eq!((status, ok.as_slice()), (200, &b"ok"[..]));
        let (status, _, got) = http(p, "GET", &path, &[], b"");
        assert_eq!(
            (status, String::from_utf8(got).unwrap().as_str()),
            (200, body)
        );
    }
    // An invalid packet closes the session.
    let sid = polling_sid(p, "/engine.io/");
    let path = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(http(p, "POST", &path, &[], b"abc").0, 400);
    assert_eq!(http(p, "GET", &path, &[], b"").0, 400);
    // Duplicate GETs: the first gets `1`, the second 400, the session is gone.
    let sid = polling_sid(p, "/engine.io/");
    let path = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    let first = {
        let path = path.clone();
        std::thread::spawn(move || http(p, "GET", &path, &[], b""))
    };
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(http(p, "GET", &format!("{path}&t=burst"), &[], b"").0, 400);
    let (status, _, body) = first.join().unwrap();
    assert_eq!((status, body.as_slice()), (200, &b"1"[..]));
    assert_eq!(http(p, "GET", &path, &[], b"").0, 400);
    // WebSocket: text and binary echo, invalid packet closes.
    ws.send(Message::text("4hello")).unwrap();
    assert_eq!(next_text(&mut ws), "4hello");
    ws.send(Message::binary(vec![1u8, 2, 3, 4])).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(vec![1u8, 2, 3, 4]));
    ws.send(Message::text("abc")).unwrap();
    assert!(server_closes(&mut ws));
}

#[test]
fn conformance_engine_io_heartbeat_close_and_upgrade() {
    let s = InProcess::suite();
    let p = s.port;
    // Polling heartbeat: a ping every pingInterval, answered by a pong.
    let sid = polling_sid(p, "/engine.io/");
    let path = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    for _ in 0..3 {
        let t = Instant::now();
        let (status, _, body) = http(p, "GET", &path, &[], b"");
        assert_eq!((status, body.as_slice()), (200, &b"2"[..]));
        assert!(t.elapsed() < Duration::from_millis(1000));
        assert_eq!(http(p, "POST", &path, &[], b"3").0, 200);
    }
    // No pong: gone after pingInterval + pingTimeout.
    let sid = polling_sid(p, "/engine.io/");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        http(
            p,
            "GET",
            &format!("/engine.io/?EIO=4&transport=polling&sid={sid}"),
            &[],
            b""
        )
        .0,
        400
    );
    // WebSocket heartbeat, and the close on timeout.
    let mut ws = ws_connect(p, "/engine.io/?EIO=4&transport=websocket");
    next_text(&mut ws);
    for _ in 0..3 {
        assert_eq!(next_text(&mut ws), "2");
        ws.send(Message::text("3")).unwrap();
    }
    // Timed from before the connect: the session cannot start earlier, so the lower bound holds
    // even when this thread is descheduled between the handshake and the next line (CI under load).
    let t = Instant::now();
    let mut silent = ws_connect(p, "/engine.io/?EIO=4&transport=websocket");
    assert!(server_closes(&mut silent));
    assert!(
        t.elapsed() >= Duration::from_millis(450),
        "closed too early: {:?}",
        t.elapsed()
    );
    // Close over polling: the held GET gets a noop, later GETs 400.
    let sid = polling_sid(p, "/engine.io/");
    let path = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    let held = {
        let path = path.clone();
        std::thread::spawn(move || http(p, "GET", &path, &[], b""))
    };
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(http(p, "POST", &path, &[], b"1").0, 200);
    let (status, _, body) = held.join().unwrap();
    assert_eq!((status, body.as_slice()), (200, &b"6"[..]));
    assert_eq!(http(p, "GET", &path, &[], b"").0, 400);
    // Close over WebSocket.
    ws.send(Message::text("1")).unwrap();
    assert!(server_closes(&mut ws));
    // Upgrade: probe, noop for the pending poll, `5`, then the WebSocket carries the session.
    let sid = polling_sid(p, "/engine.io/");
    let path = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    let mut up = ws_connect(
        p,
        &format!("/engine.io/?EIO=4&transport=websocket&sid={sid}"),
    );
    up.send(Message::text("2probe")).unwrap();
    assert_eq!(next_text(&mut up), "3probe");
    let (status, _, body) = http(p, "GET", &path, &[], b"");
    assert_eq!((status, body.as_slice()), (200, &b"6"[..]));
    up.send(Message::text("5")).unwrap();
    up.send(Message::text("4hello")).unwrap();
    assert_eq!(next_text(&mut up), "4hello");
    // After the upgrade: polling and a second WebSocket with the same sid are refused.
    assert_eq!(http(p, "GET", &path, &[], b"").0, 400);
    assert!(ws_refused(
        p,
        &format!("/engine.io/?EIO=4&transport=websocket&sid={sid}")
    ));
    // A message sent right behind a refused handshake (same write) does not reach the session.
    let mut raw = TcpStream::connect(("127.0.0.1", p)).unwrap();
    raw.set_read_timeout(Some(STEP)).unwrap();
    let mut req = format!(
        "GET /engine.io/?EIO=4&transport=websocket&sid={sid} HTTP/1.1\r\nHost: x\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes();
    wschat::wire::ws::encode_frame(
        &mut req,
        true,
        wschat::wire::ws::Opcode::Text,
        Some([1, 2, 3, 4]),
        b"4injected",
    );
    raw.write_all(&req).unwrap();
    let mut sink = Vec::new();
    let _ = raw.read_to_end(&mut sink);
    up.send(Message::text("4still here")).unwrap();
    assert_eq!(next_text(&mut up), "4still here");
}

#[test]
fn conformance_socket_io_namespaces_auth_events_acks_and_binary() {
    let s = InProcess::suite();
    let p = s.port;
    let connect = |packet: &str| {
        let mut ws = ws_connect(p, "/socket.io/?EIO=4&transport=websocket");
        next_text(&mut ws);
        ws.send(Message::text(packet.to_string())).unwrap();
        ws
    };
    let sid_of = |text: &str, prefix: &str| -> Value {
        let v: Value = serde_json::from_str(text.strip_prefix(prefix).expect(prefix)).unwrap();
        assert_eq!(v.as_object().unwrap().keys().collect::<Vec<_>>(), ["sid"]);
        v
    };
    for (packet, reply, auth) in [
        ("40", "40", r#"42["auth",{}]"#),
        (
            r#"40{"token":"123"}"#,
            "40",
            r#"42["auth",{"token":"123"}]"#,
        ),
        ("40/custom,", "40/custom,", r#"42/custom,["auth",{}]"#),
        (
            r#"40/custom,{"token":"abc"}"#,
            "40/custom,",
            r#"42/custom,["auth",{"token":"abc"}]"#,
        ),
    ] {
        let mut ws = connect(packet);
        sid_of(&next_text(&mut ws), reply);
        assert_eq!(next_text(&mut ws), auth, "{packet}");
    }
    let mut ws = connect("40/random");
    assert_eq!(
        next_text(&mut ws),
        r#"44/random,{"message":"Invalid namespace"}"#
    );

    let mut ws = connect("40");
    next_text(&mut ws);
    next_text(&mut ws);
    // Plain event, ack, binary event, binary ack.
    ws.send(Message::text(r#"42["message",1,"2",{"3":[true]}]"#))
        .unwrap();
    assert_eq!(
        next_packet(&mut ws),
        Message::text(r#"42["message-back",1,"2",{"3":[true]}]"#)
    );
    ws.send(Message::text(
        r#"42456["message-with-ack",1,"2",{"3":[false]}]"#,
    ))
    .unwrap();
    assert_eq!(
        next_packet(&mut ws),
        Message::text(r#"43456[1,"2",{"3":[false]}]"#)
    );
    let header = r#"["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#;
    ws.send(Message::text(format!("452-{header}"))).unwrap();
    ws.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    ws.send(Message::binary(vec![4u8, 5, 6])).unwrap();
    assert_eq!(
        next_packet(&mut ws),
        Message::text(
            r#"452-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
        )
    );
    assert_eq!(next_packet(&mut ws), Message::binary(vec![1u8, 2, 3]));
    assert_eq!(next_packet(&mut ws), Message::binary(vec![4u8, 5, 6]));
    ws.send(Message::text(
        r#"452-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
    ))
    .unwrap();
    ws.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    ws.send(Message::binary(vec![4u8, 5, 6])).unwrap();
    assert_eq!(
        next_packet(&mut ws),
        Message::text(r#"462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#)
    );
    assert_eq!(next_packet(&mut ws), Message::binary(vec![1u8, 2, 3]));
    assert_eq!(next_packet(&mut ws), Message::binary(vec![4u8, 5, 6]));
    // Connect then leave a custom namespace; the main one still answers.
    ws.send(Message::text("40/custom")).unwrap();
    assert!(
        next_packet(&mut ws)
            .to_text()
            .unwrap()
            .starts_with("40/custom,{\"sid\":")
    );
    assert_eq!(
        next_packet(&mut ws),
        Message::text(r#"42/custom,["auth",{}]"#)
    );
    ws.send(Message::text("41/custom")).unwrap();
    ws.send(Message::text(
        r#"42["message","message to main namespace"]"#,
    ))
    .unwrap();
    assert_eq!(
        next_packet(&mut ws),
        Message::text(r#"42["message-back","message to main namespace"]"#)
    );
    // Leaving the main namespace keeps the Engine.IO connection: the next thing is a ping.
    ws.send(Message::text("41")).unwrap();
    assert_eq!(next_text(&mut ws), "2");
}

#[test]
fn conformance_socket_io_closes_on_invalid_packets_and_a_missing_handshake() {
    let s = InProcess::suite();
    let p = s.port;
    let mut ws = ws_connect(p, "/socket.io/?EIO=4&transport=websocket");
    next_text(&mut ws);
    ws.send(Message::text("4abc")).unwrap();
    assert!(server_closes(&mut ws), "invalid handshake");
    // A client that answers pings but never sends CONNECT is closed after connectTimeout.
    // Timed from before the connect, so the lower bound holds however late this thread runs.
    let t = Instant::now();
    let mut idle = ws_connect(p, "/socket.io/?EIO=4&transport=websocket");
    next_text(&mut idle);
    let closed_after = loop {
        match idle.read() {
            Ok(Message::Text(t)) if t.as_str() == "2" => idle.send(Message::text("3")).unwrap(),
            Ok(Message::Close(_)) | Err(_) => break t.elapsed(),
            Ok(_) => {}
        }
    };
    assert!(
        closed_after >= Duration::from_millis(950) && closed_after < Duration::from_secs(3),
        "closed after {closed_after:?}, connectTimeout is 1000 ms"
    );
    for bad in [
        "4abc",
        "42{}",
        r#"42abc["message-with-ack",1,"2",{"3":[false]}]"#,
        // Invalid states, as the reference's `Client.ondecoded`: a second CONNECT to a namespace
        // joined, any other packet for one not joined, a CONNECT_ERROR from a client.
        "40",
        r#"42/custom,["hello"]"#,
        "43/custom,1[]",
        "41/custom,",
        r#"44{"message":"no"}"#,
        r#"451-/custom,["file",{"_placeholder":true,"num":0}]"#,
    ] {
        let mut ws = ws_connect(p, "/socket.io/?EIO=4&transport=websocket");
        next_text(&mut ws);
        ws.send(Message::text("40")).unwrap();
        next_text(&mut ws);
        next_text(&mut ws);
        ws.send(Message::text(bad)).unwrap();
        assert!(server_closes(&mut ws), "{bad}");
    }
}

#[test]
fn a_polling_post_whose_body_does_not_come_gets_408_and_the_session_goes_on() {
    // The default heartbeat (25 s): no ping falls due while the POST waits.
    let s = InProcess::with(wschat::serve::server::ServerConfig {
        body_timeout: Duration::from_millis(300),
        web_page: false,
        ..Default::default()
    });
    let sid = polling_sid(s.port, "/engine.io/");
    let path = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    // Ten bytes of the hundred announced, then nothing.
    let mut slow = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    slow.set_read_timeout(Some(STEP)).unwrap();
    let started = Instant::now();
    slow.write_all(
        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n4hello\x1e4")
            .as_bytes(),
    )
    .unwrap();
    let mut answer = [0u8; 12];
    slow.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 408");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The session itself is still there.
    assert_eq!(http(s.port, "POST", &path, &[], b"4again").0, 200);
    let (status, _, body) = http(s.port, "GET", &path, &[], b"");
    assert_eq!((status, body.as_slice()), (200, &b"4again"[..]));
}

#[test]
fn a_second_polling_post_while_one_is_in_progress_gets_400_and_closes_the_session() {
    let s = InProcess::with(wschat::serve::server::ServerConfig {
        web_page: false,
        ..Default::default()
    });
    let sid = polling_sid(s.port, "/engine.io/");
    let path = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    // The first POST's body is still coming.
    let mut first = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    first
        .write_all(
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n4a").as_bytes(),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(http(s.port, "POST", &path, &[], b"4b").0, 400);
    // As for a duplicate GET, the session is over.
    assert_eq!(http(s.port, "GET", &path, &[], b"").0, 400);
    // A POST after the first one ended is no overlap.
    let sid = polling_sid(s.port, "/engine.io/");
    let path = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(http(s.port, "POST", &path, &[], b"4c").0, 200);
    assert_eq!(http(s.port, "POST", &path, &[], b"4d").0, 200);
    let (status, _, body) = http(s.port, "GET", &path, &[], b"");
    assert_eq!((status, body.as_slice()), (200, &b"4c\x1e4d"[..]));
}

#[test]
fn garbage_on_every_endpoint_never_takes_the_relay_down() {
    let relay = Relay::start(&["--max-payload", "4096"]);
    let p = relay.port;
    // A deterministic xorshift stream of junk.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut junk = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    let raw = |bytes: &[u8]| {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", p)) {
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let _ = s.write_all(bytes);
            let mut sink = [0u8; 4096];
            let _ = s.read(&mut sink);
        }
    };
    for n in [1usize, 17, 300, 5000, 40_000] {
        raw(&junk(n));
    }
    raw(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nUpgrade: websocket\r\n\r\n");
    raw(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n");
    raw(format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(70_000)).as_bytes());
    raw(b"POST /socket.io/?EIO=4&transport=polling&sid=x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    // Junk frames after valid handshakes on each WebSocket endpoint.
    for path in [
        "/socket.io/?EIO=4&transport=websocket",
        "/ws/junk?name=j",
        "/echo",
        "/engine.io/?EIO=4&transport=websocket",
    ] {
        for n in [2usize, 14, 200, 9000] {
            let stream = TcpStream::connect(("127.0.0.1", p)).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            if let Ok((mut ws, _)) =
                tungstenite::client(format!("ws://127.0.0.1:{p}{path}"), stream)
            {
                let s = ws.get_mut();
                let _ = s.write_all(&junk(n));
                let mut sink = [0u8; 4096];
                let _ = s.read(&mut sink);
            }
        }
    }
    // Socket.IO packets of every shape, valid framing, invalid content.
    for text in [
        "4",
        "45-[]",
        "451-[\"x\"]",
        "42[]",
        "42[1]",
        "40/,",
        "41/x",
        "43[]",
        "4\u{0}",
        "44{}",
        "4ffff",
    ] {
        let mut ws = sio_connect(p);
        let _ = ws.send(Message::text(text));
        let _ = ws.send(Message::binary(junk(33)));
        ws.get_mut()
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let _ = ws.read();
    }
    let (status, _, body) = http(p, "GET", "/healthz", &[], b"");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let mut ws = sio_connect(p);
    ws.send(Message::text(r#"421["join_room","ok"]"#)).unwrap();
    assert_eq!(next_text(&mut ws), r#"431[{"ok":true,"room":"ok"}]"#);
}

#[test]
fn each_namespace_is_a_chat_of_its_own() {
    if !node_ok() {
        return;
    }
    let relay = Relay::start(&[]);
    let mut a = Peer::start("team-a", &relay, "websocket", &["--namespace", "/team"]);
    let mut b = Peer::start("team-b", &relay, "default", &["--namespace", "/team"]);
    let mut main = Peer::start("main", &relay, "websocket", &[]);
    for p in [&mut a, &mut b, &mut main] {
        p.connected();
    }
    a.join(json!("1"));
    b.join(json!("1"));
    main.join(json!("1"));
    let m = msg("1", "A", "only the team");
    a.emit("send_message", json!([m.clone()]), Some("t"));
    assert_eq!(a.ack("t"), json!({"ok": true}));
    assert_eq!(b.event("receive_message"), json!([m]));
    main.expect_none(
        "another namespace's message",
        Duration::from_millis(300),
        |v| v["ev"] == "event",
    );
}

#[test]
fn a_long_polling_only_client_sends_and_receives_text_and_binary() {
    if !node_ok() {
        return;
    }
    let relay = Relay::start(&[]);
    let mut poller = Peer::start("poller", &relay, "polling", &[]);
    let mut ws = Peer::start("ws", &relay, "websocket", &[]);
    assert_eq!(poller.connected()["transport"], "polling");
    ws.connected();
    poller.join(json!("p"));
    ws.join(json!("p"));
    let to_poller = msg("p", "WS", "over a held GET");
    ws.emit("send_message", json!([to_poller.clone()]), None);
    assert_eq!(poller.event("receive_message"), json!([to_poller]));
    let from_poller = json!({"room": "p", "author": "P", "message": "via POST", "time": "10:00",
                             "blob": {"$bin": "AQIDBA=="}});
    poller.emit("send_message", json!([from_poller.clone()]), Some("pp"));
    assert_eq!(poller.ack("pp"), json!({"ok": true}));
    assert_eq!(ws.event("receive_message"), json!([from_poller]));
    // Binary towards the polling client travels as `b<base64>`.
    let bin = json!({"room": "p", "author": "WS", "message": "file", "time": "10:01", "blob": {"$bin": "/wABAg=="}});
    ws.emit("send_message", json!([bin.clone()]), Some("wb"));
    ws.ack("wb");
    assert_eq!(poller.event("receive_message"), json!([bin]));
    let (_, _, body) = http(relay.port, "GET", "/metrics", &[], b"");
    assert!(
        String::from_utf8(body)
            .unwrap()
            .contains("wschat_connections{transport=\"polling\"} 1")
    );
}

/// "Never a lost message": in a polling POST, the messages before a malformed packet are handled
/// (relayed), then the session closes with 400, as the reference server does.
#[test]
fn messages_before_a_malformed_packet_in_a_post_are_still_relayed() {
    let relay = Relay::start(&[]);
    let mut member = sio_connect(relay.port);
    member
        .send(Message::text(r#"421["join_room","9"]"#))
        .unwrap();
    assert_eq!(next_text(&mut member), r#"431[{"ok":true,"room":"9"}]"#);
    let sid = polling_sid(relay.port, "/socket.io/");
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let post = |body: &str| http(relay.port, "POST", &path, &[], body.as_bytes());
    assert_eq!(post("40").0, 200);
    let (_, _, body) = http(relay.port, "GET", &path, &[], b"");
    assert!(body.starts_with(b"40{\"sid\":"), "{body:?}");
    assert_eq!(post("42[\"join_room\",\"9\"]").0, 200);
    let data = msg("9", "Poller", "Olá mundo!");
    let (status, _, _) = post(&format!("42[\"send_message\",{data}]\u{1e}Z"));
    assert_eq!(status, 400, "the malformed packet is refused");
    let got = next_text(&mut member);
    let v: Value = serde_json::from_str(got.strip_prefix("42").expect("an event")).unwrap();
    assert_eq!(v, json!(["receive_message", data]));
    // The session is gone.
    let (status, _, _) = http(relay.port, "GET", &path, &[], b"");
    assert_eq!(status, 400);
}

// ---------------------------------------------------------------------------------------------
// Clusters over Redis (`--redis`): a redis-server per test, several relays, node servers on
// @socket.io/redis-adapter.

fn redis_ok() -> bool {
    let ok = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    peer_available("redis-server", ok)
}

/// A loopback port nothing listens on right now (bind to port 0, read it, close).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().unwrap().port()
}

/// A throwaway redis-server on a free loopback port (no persistence); killed on drop.
struct RedisServer {
    child: Option<Child>,
    port: u16,
}

impl RedisServer {
    fn start() -> RedisServer {
        let mut r = RedisServer {
            child: None,
            port: free_port(),
        };
        r.restart();
        r
    }

    /// Start (again) on the same port and wait until it answers PING.
    fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + STEP;
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                let mut buf = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut buf).is_ok()
                    && &buf == b"+PONG\r\n"
                {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// tests/peers/serve-redis-node.js: the original app's server on @socket.io/redis-adapter.
struct NodeServer {
    child: Child,
    port: u16,
}

impl NodeServer {
    fn start(redis: &RedisServer) -> NodeServer {
        let mut child = Command::new("node")
            .arg(peers_dir().join("serve-redis-node.js"))
            .args(["--redis", &redis.url()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node serve-redis-node.js");
        let (tx, rx) = channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(STEP)
            .expect("the node server's listening line");
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("bad listening line {line:?}"));
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

/// A `/metrics` sample (0 when absent).
fn metric(port: u16, name: &str) -> f64 {
    let (_, _, body) = http(port, "GET", "/metrics", &[], b"");
    String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + STEP;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn plain_json(ws: &mut tungstenite::WebSocket<TcpStream>) -> Value {
    serde_json::from_str(&next_text(ws)).expect("a JSON object")
}

fn is_event(v: &Value) -> bool {
    v["ev"] == "event"
}

#[test]
fn relays_sharing_redis_deliver_room_messages_across_servers_exactly_once() {
    if !node_ok() || !redis_ok() {
        return;
    }
    let redis = RedisServer::start();
    let a = Relay::start(&["--redis", &redis.url()]);
    let b = Relay::start(&["--redis", &redis.url()]);
    let mut ana = Peer::start("ana", &a, "websocket", &[]);
    let mut outsider = Peer::start("outsider", &a, "websocket", &[]);
    let mut bia = Peer::start("bia", &b, "websocket", &[]);
    // socket.io-client's default: polling, then the upgrade.
    let mut caio = Peer::start("caio", &b, "default", &[]);
    for p in [&mut ana, &mut outsider, &mut bia, &mut caio] {
        p.connected();
    }
    ana.join(json!("7"));
    bia.join(json!("7"));
    caio.join(json!("7"));
    outsider.join(json!("8"));
    let mut phone = ws_connect(b.port, "/ws/7?name=Celular");
    std::thread::sleep(Duration::from_millis(100));

    // Server A -> the room's members on server B (Socket.IO and plain WebSocket).
    let hello = msg("7", "Ana", "Olá mundo!");
    ana.emit("send_message", json!([hello.clone()]), Some("s1"));
    assert_eq!(ana.ack("s1"), json!({"ok": true}));
    assert_eq!(bia.event("receive_message"), json!([hello]));
    assert_eq!(caio.event("receive_message"), json!([hello]));
    assert_eq!(plain_json(&mut phone), hello);

    // Server B -> A, and to B's own members once (local delivery, not again from Redis).
    let reply = msg("7", "Bia", "Oi, tudo bem?");
    bia.emit("send_message", json!([reply.clone()]), None);
    assert_eq!(ana.event("receive_message"), json!([reply]));
    assert_eq!(caio.event("receive_message"), json!([reply]));
    assert_eq!(plain_json(&mut phone), reply);

    // A plain WebSocket member on B reaches Socket.IO members on A and B.
    phone.send(Message::text("do celular")).unwrap();
    for p in [&mut ana, &mut bia, &mut caio] {
        let got = p.event("receive_message");
        assert_eq!(got[0]["author"], "Celular");
        assert_eq!(got[0]["message"], "do celular");
        assert_eq!(got[0]["room"], "7");
    }

    // Exactly once each, never back to the sender, never to another room.
    let none = Duration::from_millis(400);
    ana.expect_none("a second copy or its own message", none, is_event);
    bia.expect_none("a second copy or its own message", none, is_event);
    caio.expect_none("a second copy", none, is_event);
    outsider.expect_none("a message of room 7", none, is_event);
    phone
        .get_mut()
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(
        phone.read().is_err(),
        "the phone got its own or a second message"
    );

    // The link in /metrics and /healthz.
    assert_eq!(metric(a.port, "wschat_redis_connected"), 1.0);
    assert_eq!(metric(a.port, "wschat_redis_published_total"), 1.0);
    assert_eq!(metric(a.port, "wschat_redis_received_total"), 2.0);
    assert_eq!(metric(b.port, "wschat_redis_published_total"), 2.0);
    assert_eq!(metric(b.port, "wschat_redis_dropped_total"), 0.0);
    let (status, _, body) = http(a.port, "GET", "/healthz", &[], b"");
    assert_eq!(status, 200);
    let health: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(health["redis"], "connected");
}

#[test]
fn a_relay_and_a_node_server_on_the_socketio_redis_adapter_share_rooms() {
    if !node_ok() || !redis_ok() {
        return;
    }
    let redis = RedisServer::start();
    let relay = Relay::start(&["--redis", &redis.url()]);
    let node = NodeServer::start(&redis);
    let mut ana = Peer::start("ana", &relay, "websocket", &[]);
    let mut bia = Peer::start_at("bia", &node.url(), "websocket", &[]);
    let mut caio = Peer::start_at("caio", &node.url(), "default", &[]);
    let ana_id = ana.connected()["id"].clone();
    bia.connected();
    caio.connected();
    ana.join(json!("7"));
    bia.join(json!("7"));
    // socket.io keys rooms by value: 7 is not "7" there, but it is in wschat.
    caio.join(json!(7));
    let mut phone = ws_connect(relay.port, "/ws/7?name=Celular");
    std::thread::sleep(Duration::from_millis(100));

    // wschat -> node: both forms of room 7.
    let hello = msg("7", "Ana", "Olá mundo!");
    ana.emit("send_message", json!([hello.clone()]), Some("s1"));
    assert_eq!(ana.ack("s1"), json!({"ok": true}));
    assert_eq!(bia.event("receive_message"), json!([hello]));
    assert_eq!(caio.event("receive_message"), json!([hello]));
    assert_eq!(plain_json(&mut phone), hello);

    // node -> wschat (Socket.IO and plain members).
    let reply = msg("7", "Bia", "Oi do node!");
    bia.emit("send_message", json!([reply.clone()]), Some("s2"));
    assert_eq!(bia.ack("s2"), json!({"ok": true}));
    assert_eq!(ana.event("receive_message"), json!([reply]));
    assert_eq!(plain_json(&mut phone), reply);
    // caio (room 7 as a number) is in another socket.io room than bia's "7" on node.

    // Binary attachments cross both ways.
    let file = json!({"$bin": "AQID"});
    let with_file =
        json!({"room": "7", "author": "Ana", "message": "foto", "time": "10:42", "file": file});
    ana.emit("send_message", json!([with_file.clone()]), None);
    assert_eq!(bia.event("receive_message"), json!([with_file]));
    assert_eq!(caio.event("receive_message"), json!([with_file]));
    let back = json!({"room": "7", "author": "Bia", "message": "foto", "time": "10:43", "file": {"$bin": "BAUG"}, "n": 1.5});
    bia.emit("send_message", json!([back.clone()]), None);
    assert_eq!(ana.event("receive_message"), json!([back]));

    // A plain WebSocket member of the relay reaches its neighbour and the node members.
    phone.send(Message::text("do celular")).unwrap();
    for p in [&mut ana, &mut bia, &mut caio] {
        let got = p.event("receive_message");
        assert_eq!(got[0]["author"], "Celular");
        assert_eq!(got[0]["message"], "do celular");
    }

    let none = Duration::from_millis(400);
    for p in [&mut ana, &mut bia, &mut caio] {
        p.expect_none("a second copy or an own message", none, is_event);
    }

    // The node server's view of the cluster (requests the relay answers over Redis).
    ana.join(json!("solo"));
    bia.emit("cluster_rooms", json!([]), Some("rooms"));
    let rooms = bia.ack("rooms");
    assert!(
        rooms.as_array().unwrap().contains(&json!("solo")),
        "{rooms}"
    );
    bia.emit("cluster_sockets", json!(["solo"]), Some("fetch"));
    let mut ana_rooms = vec![ana_id.as_str().unwrap(), "7", "solo"];
    ana_rooms.sort();
    assert_eq!(
        bia.ack("fetch"),
        json!([{"id": ana_id, "rooms": ana_rooms}])
    );
}

#[test]
fn losing_redis_keeps_rooms_working_locally_and_the_relay_reconnects() {
    if !node_ok() || !redis_ok() {
        return;
    }
    let mut redis = RedisServer::start();
    // This relay's log is read (one line when the link goes, one when it is back).
    let mut child = Command::new(env!("CARGO_BIN_EXE_wschat"))
        .args(["serve", "--listen", "127.0.0.1:0", "--json"])
        .env("WSCHAT_REDIS", redis.url())
        .env("RUST_LOG", "wschat::serve::redis=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wschat serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = serde_json::from_str::<Value>(&line).unwrap()["port"]
        .as_u64()
        .unwrap() as u16;
    let stderr = child.stderr.take().expect("stderr");
    let a = Relay { child, port };
    let (log_tx, log) = channel::<String>();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = log_tx.send(l);
        }
    });
    let wait_log = |what: &str| {
        let deadline = Instant::now() + STEP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let l = log
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no log line with {what:?}"));
            if l.contains(what) {
                return l;
            }
        }
    };
    wait_log("connected to Redis");

    let mut ana = Peer::start("ana", &a, "websocket", &[]);
    let mut bia = Peer::start("bia", &a, "websocket", &[]);
    ana.connected();
    bia.connected();
    ana.join(json!("7"));
    bia.join(json!("7"));

    redis.stop();
    let lost = wait_log("lost the connection to Redis");
    assert!(
        lost.contains(&format!("127.0.0.1:{}", redis.port)),
        "{lost}"
    );
    wait_until("redis_connected is 0", || {
        metric(a.port, "wschat_redis_connected") == 0.0
    });
    // Local delivery goes on; the broadcast that could not be published is counted.
    for i in 0..3 {
        let m = msg("7", "Ana", &format!("sem redis {i}"));
        ana.emit("send_message", json!([m.clone()]), Some("s"));
        assert_eq!(ana.ack("s"), json!({"ok": true}));
        assert_eq!(bia.event("receive_message"), json!([m]));
    }
    wait_until("3 dropped publishes are counted", || {
        metric(a.port, "wschat_redis_dropped_total") == 3.0
    });
    let (status, _, body) = http(a.port, "GET", "/healthz", &[], b"");
    assert_eq!(
        status, 200,
        "a relay without Redis still serves its clients"
    );
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["redis"],
        "disconnected"
    );

    redis.restart();
    wait_log("reconnected to Redis");
    assert_eq!(metric(a.port, "wschat_redis_connected"), 1.0);
    // Back in the cluster: a relay started now shares room 7.
    let b = Relay::start(&["--redis", &redis.url()]);
    let mut caio = Peer::start("caio", &b, "websocket", &[]);
    caio.connected();
    caio.join(json!("7"));
    let m = msg("7", "Ana", "voltou");
    ana.emit("send_message", json!([m.clone()]), None);
    assert_eq!(caio.event("receive_message"), json!([m]));
    assert_eq!(bia.event("receive_message"), json!([m]));
    // One line when the link went, one when it came back: no repeats while it was down.
    std::thread::sleep(Duration::from_millis(300));
    while let Ok(l) = log.try_recv() {
        assert!(!l.contains("lost the connection"), "logged twice: {l}");
    }
}

#[test]
fn reuse_port_lets_a_second_relay_share_the_address_and_take_over() {
    let first = Relay::start(&["--reuse-port"]);
    let listen = format!("127.0.0.1:{}", first.port);
    // Without the flag the address is taken: one line naming it, exit 2.
    let out = Command::new(env!("CARGO_BIN_EXE_wschat"))
        .args(["serve", "--listen", &listen])
        .env("RUST_LOG", "error")
        .output()
        .expect("run wschat");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("while listening on {listen}")),
        "{stderr}"
    );
    // With it, a second relay listens on the same address, and serves once the first is gone.
    let second = Relay::start_on(&listen, &["--reuse-port"]);
    assert_eq!(second.port, first.port);
    // A relay listening without the flag cannot share: the error says so.
    let plain = Relay::start(&[]);
    let out = Command::new(env!("CARGO_BIN_EXE_wschat"))
        .args(["serve", "--reuse-port", "--listen"])
        .arg(format!("127.0.0.1:{}", plain.port))
        .env("RUST_LOG", "error")
        .output()
        .expect("run wschat");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("only with processes that also use it"),
        "{stderr}"
    );
    let mut held: Vec<_> = (0..8).map(|_| sio_connect(first.port)).collect();
    drop(first);
    held.clear();
    for _ in 0..8 {
        let mut ws = sio_connect(second.port);
        ws.send(Message::text(r#"42["join_room","1"]"#)).unwrap();
    }
}

#[test]
fn an_unreachable_redis_at_start_is_one_error_line_and_exit_2() {
    let port = free_port();
    for via_env in [false, true] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wschat"));
        cmd.args(["serve", "--listen", "127.0.0.1:0"]);
        let url = format!("redis://127.0.0.1:{port}");
        if via_env {
            cmd.env("WSCHAT_REDIS", &url);
        } else {
            cmd.args(["--redis", &url]);
        }
        let out = cmd.env("RUST_LOG", "error").output().expect("run wschat");
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].starts_with(&format!(
                "wschat: error: cannot connect to Redis at 127.0.0.1:{port}: "
            )),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "nothing listened");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_wschat"))
        .args(["serve", "--listen", "127.0.0.1:0", "--redis", "http://x"])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "wschat: error: --redis http://x: not a Redis URL (expected redis://HOST[:PORT][/DB])"
    );
}

#[test]
fn a_write_window_longer_than_100ms_is_one_error_line_and_exit_2() {
    for (arg, shown) in [("6", "6s"), ("250ms", "250ms")] {
        let out = Command::new(env!("CARGO_BIN_EXE_wschat"))
            .args(["serve", "--listen", "127.0.0.1:0", "--write-window", arg])
            .env("RUST_LOG", "error")
            .output()
            .expect("run wschat");
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim(),
            format!(
                "wschat: error: --write-window {shown}: at most 100ms (while the server is \
                 saturated, every message may wait that long)"
            )
        );
        assert!(out.stdout.is_empty(), "nothing listened");
    }
}
