//! The `wschat send` command: a scripted Socket.IO (or raw WebSocket) client for rooms.
//!
//! One place decides what to send (arguments, stdin, `--count`, `--data`), one paces it
//! (`--interval`, `--rate`), one loop moves it through the shared [`crate::client`] driver, and one
//! [`Output`] renders everything that happens (human lines, or JSON Lines with `--json`).

use std::collections::{BTreeMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cli::{Global, SendArgs, TransportChoice};
use crate::client::raw::{RawClient, RawMessage, RawOptions};
use crate::client::{
    Ack, Client, ClientError, ClientOptions, Emitter, Endpoint, EventMsg, Incoming, NetOptions,
    TransportMode, tls_connector,
};

/// How long a clean close may take (DISCONNECT, Engine.IO close, WebSocket close handshake).
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Connect (TCP + TLS + handshake) timeout when `--timeout` does not bound it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a join_room ack is waited for (only to report `joined`; sending does not wait).
const JOIN_ACK_WAIT: Duration = Duration::from_secs(5);
/// Reconnect backoff: first delay, cap.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// At most this many unsent messages are quoted in an error; the rest are counted.
const QUOTE_UNSENT: usize = 5;

/// Run the command.
pub fn run(args: &SendArgs, global: &Global) -> anyhow::Result<ExitCode> {
    let stdout_tty = std::io::stdout().is_terminal();
    let plan = Plan::from_args(args, std::io::stdin().is_terminal(), stdout_tty)?;
    let mut out = Output::new(args.json, global.use_color(stdout_tty), global.quiet);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("while starting the async runtime")?;
    let result = rt.block_on(async {
        if plan.raw {
            run_raw(&plan, &mut out).await
        } else {
            run_socketio(&plan, &mut out).await
        }
    });
    // The stdin reader is a plain thread blocked in read(2); do not wait for it.
    rt.shutdown_background();
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            out.error_json(&format!("{e:#}"));
            return Err(e);
        }
    };
    out.flush()?;
    match outcome {
        Outcome::Done => Ok(ExitCode::SUCCESS),
        Outcome::CheckFailed(why) => {
            out.error_json(&why);
            eprintln!("wschat: check failed: {why}");
            Ok(ExitCode::from(1))
        }
    }
}

/// How a run that did not hit a runtime error ended.
#[derive(Debug)]
enum Outcome {
    Done,
    /// The run finished but its expectation failed (exit 1).
    CheckFailed(String),
}

// ---------------------------------------------------------------------------------------------
// What to do: the validated command line.

/// Where the messages come from.
#[derive(Debug, Clone, PartialEq)]
enum Source {
    /// Nothing to send (listen only).
    Nothing,
    /// These texts, the whole list `repeat` times.
    List { texts: Vec<String>, repeat: u64 },
    /// `--count N` without texts: "message 1" .. "message N".
    Numbered(u64),
    /// `--data JSON` (`repeat` times).
    Data { args: Vec<Value>, repeat: u64 },
    /// Lines of stdin (`-`, or stdin is a pipe); `interactive` when stdin and stdout are terminals.
    Stdin { interactive: bool },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Pace {
    /// As fast as the connection takes them.
    Burst,
    /// A pause of this long between two messages.
    Interval(Duration),
    /// Message i goes at start + i/rate (no drift).
    Rate(f64),
}

#[derive(Debug, Clone)]
struct Plan {
    raw: bool,
    endpoint: Endpoint,
    url: String,
    eio_path: String,
    namespace: String,
    auth: Option<Value>,
    transport: TransportMode,
    room: Option<String>,
    name: String,
    /// The event to emit; `send_message` builds the chat object from each text.
    event: String,
    chat: bool,
    source: Source,
    pace: Pace,
    wait: Option<u64>,
    timeout: Option<Duration>,
    listen: bool,
    ack: bool,
    ack_timeout: Duration,
    insecure: bool,
    reconnect: bool,
    time_format: TimeFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimeFormat {
    /// Zero-padded `HH:MM` (default).
    Padded,
    /// The original app's `getHours() + ":" + getMinutes()`: `16:5` at 16:05.
    App,
}

impl Plan {
    /// Validate the command line; `stdin_tty` / `stdout_tty` say whether those are terminals.
    fn from_args(args: &SendArgs, stdin_tty: bool, stdout_tty: bool) -> anyhow::Result<Plan> {
        let mut messages = args.messages.clone();
        let mut url = args.url.clone();
        // `wschat send --raw ws://host/echo hi`: the first argument is the URL (like wscat).
        if args.raw && url == DEFAULT_URL && messages.first().is_some_and(|m| m.contains("://")) {
            url = messages.remove(0);
        }
        let endpoint = Endpoint::parse(&url)?;
        if let Some(d) = args.interval
            && d.is_zero()
        {
            bail!("--interval must be greater than zero");
        }
        if args.wait == Some(0) {
            bail!("--wait must be at least 1");
        }
        if args.count == Some(0) {
            bail!("--count must be at least 1");
        }
        if args.raw
            && (args.room.is_some()
                || args.event.is_some()
                || args.auth.is_some()
                || args.ack
                || args.namespace != "/"
                || args.transport != TransportChoice::Websocket)
        {
            bail!(
                "--raw speaks plain WebSocket: --room, --event, --auth, --ack, --namespace and --transport do not apply"
            );
        }
        let data_args = match &args.data {
            Some(text) => {
                let v: Value = serde_json::from_str(text).with_context(|| {
                    format!("--data is not valid JSON: `{}`", one_line(text, 60))
                })?;
                // An array is spread into several arguments; anything else is the one argument.
                Some(match v {
                    Value::Array(items) => items,
                    other => vec![other],
                })
            }
            None => None,
        };
        let dash = messages.iter().any(|m| m == "-");
        if dash && messages.len() > 1 {
            bail!("`-` (read stdin) cannot be mixed with message arguments");
        }
        let source = if let Some(items) = data_args {
            if !messages.is_empty() {
                bail!("give either --data or message arguments, not both");
            }
            if args.raw {
                bail!("--data does not apply to --raw; pass the text as an argument");
            }
            Source::Data {
                args: items,
                repeat: args.count.unwrap_or(1),
            }
        } else if dash {
            Source::Stdin { interactive: false }
        } else if !messages.is_empty() {
            Source::List {
                texts: messages,
                repeat: args.count.unwrap_or(1),
            }
        } else if let Some(n) = args.count {
            Source::Numbered(n)
        } else if !stdin_tty && (args.room.is_some() || args.event.is_some() || args.raw) {
            // A pipe: its lines are the messages (a script's `... | wschat send --room 1`).
            Source::Stdin { interactive: false }
        } else if stdin_tty && stdout_tty && !args.json {
            Source::Stdin { interactive: true }
        } else {
            Source::Nothing
        };
        if matches!(source, Source::Stdin { .. }) && args.count.is_some() {
            bail!("--count repeats message arguments; it does not apply to stdin");
        }
        let chat = args.event.is_none()
            || args.event.as_deref() == Some("send_message") && args.data.is_none();
        let event = args
            .event
            .clone()
            .unwrap_or_else(|| "send_message".to_string());
        let sends_text = !matches!(source, Source::Nothing | Source::Data { .. });
        if !args.raw && chat && sends_text && args.data.is_none() && args.room.is_none() {
            bail!(
                "--room is required to send chat messages (or use --event NAME to emit something else)"
            );
        }
        let namespace = if args.namespace != "/" {
            normalize_namespace(&args.namespace)?
        } else if endpoint.path != "/" && !args.raw {
            // As socket.io-client's io("http://host/admin"): the URL path names the namespace.
            normalize_namespace(&endpoint.path)?
        } else {
            "/".to_string()
        };
        let auth = match &args.auth {
            Some(text) => {
                let v: Value = serde_json::from_str(text).with_context(|| {
                    format!("--auth is not valid JSON: `{}`", one_line(text, 60))
                })?;
                if !v.is_object() {
                    bail!("--auth must be a JSON object, e.g. '{{\"token\":\"abc\"}}'");
                }
                Some(v)
            }
            None => None,
        };
        let pace = match (args.interval, args.rate) {
            (Some(d), _) => Pace::Interval(d),
            (None, Some(r)) => Pace::Rate(r),
            (None, None) => Pace::Burst,
        };
        let transport = match args.transport {
            TransportChoice::Websocket => TransportMode::Websocket,
            TransportChoice::Polling => TransportMode::Polling,
            TransportChoice::Upgrade => TransportMode::Upgrade,
        };
        // With nothing to send, --timeout alone means "listen this long".
        let listen = args.listen || (args.timeout.is_some() && matches!(source, Source::Nothing));
        Ok(Plan {
            raw: args.raw,
            endpoint,
            url,
            eio_path: args.path.clone(),
            namespace,
            auth,
            transport,
            room: args.room.clone(),
            name: args.name.clone(),
            event,
            chat: chat && args.data.is_none(),
            source,
            pace,
            wait: args.wait,
            timeout: args.timeout,
            listen,
            ack: args.ack,
            ack_timeout: args.ack_timeout,
            insecure: args.insecure,
            reconnect: args.reconnect,
            time_format: if args.app_time {
                TimeFormat::App
            } else {
                TimeFormat::Padded
            },
        })
    }

    /// Whether the run keeps receiving after the messages are sent.
    fn receives_after_sending(&self) -> bool {
        self.listen || self.wait.is_some()
    }
}

const DEFAULT_URL: &str = "http://127.0.0.1:3001";

fn normalize_namespace(ns: &str) -> anyhow::Result<String> {
    let ns = ns.trim();
    if ns.is_empty() || ns == "/" {
        return Ok("/".into());
    }
    if ns.contains([',', '?', '#']) || ns.chars().any(char::is_whitespace) {
        bail!("invalid namespace `{ns}`: it may not contain `,`, `?`, `#` or spaces");
    }
    let ns = ns.trim_end_matches('/');
    Ok(if ns.starts_with('/') {
        ns.to_string()
    } else {
        format!("/{ns}")
    })
}

// ---------------------------------------------------------------------------------------------
// The messages: one queue fed by the source, paced, each remembered until it is written.

/// One message to send.
#[derive(Debug, Clone)]
struct Outgoing {
    /// 1-based position in the run.
    seq: u64,
    /// The text typed or given (for chat), or the `--data` JSON text; quoted in "not sent" lists.
    text: String,
    /// The emit arguments when fixed in advance (`--data`, `--event` with a text).
    args: Option<Vec<Value>>,
}

/// Produces the messages of a run in order.
struct Feed {
    pending: VecDeque<Outgoing>,
    /// Remaining items of a List / Numbered / Data source, generated lazily (`--count` may be large).
    list: Option<ListGen>,
    stdin: Option<mpsc::Receiver<String>>,
    next_seq: u64,
}

struct ListGen {
    source: Source,
    /// Index of the next item over all repetitions.
    next: u64,
    total: u64,
}

impl ListGen {
    fn item(&self, i: u64) -> (String, Option<Vec<Value>>) {
        match &self.source {
            Source::List { texts, .. } => {
                let n = texts.len().max(1) as u64;
                let text = texts.get((i % n) as usize).cloned().unwrap_or_default();
                (text, None)
            }
            Source::Numbered(_) => (format!("message {}", i + 1), None),
            Source::Data { args, .. } => {
                let text = serde_json::to_string(args).unwrap_or_default();
                (text, Some(args.clone()))
            }
            _ => (String::new(), None),
        }
    }
}

impl Feed {
    fn new(source: &Source) -> Feed {
        let mut feed = Feed {
            pending: VecDeque::new(),
            list: None,
            stdin: None,
            next_seq: 1,
        };
        match source {
            Source::Nothing => {}
            Source::List { texts, repeat } => {
                let total = texts.len() as u64 * repeat;
                feed.list = Some(ListGen {
                    source: source.clone(),
                    next: 0,
                    total,
                });
            }
            Source::Numbered(n) => {
                feed.list = Some(ListGen {
                    source: source.clone(),
                    next: 0,
                    total: *n,
                })
            }
            Source::Data { repeat, .. } => {
                feed.list = Some(ListGen {
                    source: source.clone(),
                    next: 0,
                    total: *repeat,
                })
            }
            Source::Stdin { .. } => feed.stdin = Some(spawn_stdin_reader()),
        }
        feed
    }

    /// The next message, waiting for stdin if that is the source; `None` when the source is done.
    async fn next(&mut self) -> Option<Outgoing> {
        if let Some(m) = self.pending.pop_front() {
            return Some(m);
        }
        if let Some(gen_) = &mut self.list {
            if gen_.next < gen_.total {
                let (text, args) = gen_.item(gen_.next);
                gen_.next += 1;
                return Some(self.make(text, args));
            }
            return None;
        }
        if let Some(rx) = &mut self.stdin {
            return match rx.recv().await {
                Some(line) => Some(self.make(line, None)),
                None => {
                    self.stdin = None;
                    None
                }
            };
        }
        None
    }

    fn make(&mut self, text: String, args: Option<Vec<Value>>) -> Outgoing {
        let seq = self.next_seq;
        self.next_seq += 1;
        Outgoing { seq, text, args }
    }

    /// Put a message back at the front (it was not written; it is sent again after a reconnect).
    fn push_front(&mut self, m: Outgoing) {
        self.pending.push_front(m);
    }

    /// Everything not yet sent: put-back messages, the rest of the list, lines already read from stdin.
    fn drain_unsent(&mut self) -> (Vec<String>, u64) {
        fn note(quoted: &mut Vec<String>, count: &mut u64, t: String) {
            *count += 1;
            if quoted.len() < QUOTE_UNSENT {
                quoted.push(t);
            }
        }
        let mut quoted: Vec<String> = Vec::new();
        let mut count = 0u64;
        for m in self.pending.drain(..) {
            note(&mut quoted, &mut count, m.text);
        }
        if let Some(rx) = &mut self.stdin {
            while let Ok(line) = rx.try_recv() {
                note(&mut quoted, &mut count, line);
            }
        }
        if let Some(gen_) = &mut self.list {
            // Quote the first few; count the rest without generating them.
            while gen_.next < gen_.total && quoted.len() < QUOTE_UNSENT {
                let (t, _) = gen_.item(gen_.next);
                gen_.next += 1;
                note(&mut quoted, &mut count, t);
            }
            count += gen_.total - gen_.next;
            gen_.next = gen_.total;
        }
        (quoted, count)
    }
}

/// Read stdin line by line on a plain thread (a blocked read must never hold up exit).
/// Empty lines are skipped, as the original app sends nothing for an empty input.
fn spawn_stdin_reader() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(1024);
    let spawned = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            let stdin = std::io::stdin();
            let mut lock = stdin.lock();
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match std::io::BufRead::read_until(&mut lock, b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                            buf.pop();
                        }
                        if buf.is_empty() {
                            continue;
                        }
                        let line = String::from_utf8_lossy(&buf).into_owned();
                        if tx.blocking_send(line).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    if spawned.is_err() {
        // Without a thread there is no stdin source; the receiver reports end of input at once.
        let (_tx, rx) = mpsc::channel(1);
        return rx;
    }
    rx
}

/// When the next message may go.
struct Pacer {
    pace: Pace,
    start: Option<Instant>,
    sent: u64,
    last: Option<Instant>,
}

impl Pacer {
    fn new(pace: Pace) -> Pacer {
        Pacer {
            pace,
            start: None,
            sent: 0,
            last: None,
        }
    }

    fn next_at(&self) -> Option<Instant> {
        match self.pace {
            Pace::Burst => None,
            Pace::Interval(d) => self.last.map(|l| l + d),
            Pace::Rate(r) => self
                .start
                .map(|s| s + Duration::from_secs_f64(self.sent as f64 / r)),
        }
    }

    fn mark_sent(&mut self, now: Instant) {
        if self.start.is_none() {
            self.start = Some(now);
        }
        self.sent += 1;
        self.last = Some(now);
    }
}

/// The local time as the chat shows it.
fn chat_time(format: TimeFormat) -> String {
    use chrono::Timelike;
    let now = chrono::Local::now();
    match format {
        TimeFormat::Padded => now.format("%H:%M").to_string(),
        TimeFormat::App => format!("{}:{}", now.hour(), now.minute()),
    }
}

// ---------------------------------------------------------------------------------------------
// The Socket.IO run.

async fn run_socketio(plan: &Plan, out: &mut Output) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let deadline = plan.timeout.map(|t| started + t);
    let tls = if plan.endpoint.tls {
        Some(tls_connector(plan.insecure)?)
    } else {
        None
    };
    let opts = ClientOptions {
        endpoint: plan.endpoint.clone(),
        path: plan.eio_path.clone(),
        namespace: plan.namespace.clone(),
        auth: plan.auth.clone(),
        transport: plan.transport,
        net: NetOptions {
            connect_timeout: CONNECT_TIMEOUT,
            local_addr: None,
            tls,
            rx_timestamps: false,
        },
        ..ClientOptions::default()
    };
    let mut feed = Feed::new(&plan.source);
    let mut pacer = Pacer::new(plan.pace);
    let mut state = RunState::default();
    let mut attempt = 0u32;
    // Whether a connection was ever made: failures before it are "connect", after it "reconnect".
    let mut ever_connected = false;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    loop {
        // Connect (again).
        let connect = Client::connect(opts.clone());
        let connected = tokio::select! {
            r = connect => r,
            _ = sleep_until_opt(deadline) => {
                return finish_on_timeout(plan, &mut feed, &state, out, "connecting");
            }
            _ = &mut ctrl_c => return finish_interrupted(plan, &mut feed, &state, out),
        };
        let mut client = match connected {
            Ok(c) => c,
            // As socket.io-client with reconnection on, the first connect is retried too (a
            // client started before its server waits for it).
            Err(e) if plan.reconnect && is_retryable(&e) => {
                attempt += 1;
                let delay = backoff(attempt);
                out.status(&format!(
                    "{} failed ({}); retrying in {}",
                    if ever_connected {
                        "reconnect"
                    } else {
                        "connect"
                    },
                    e.chain(),
                    humantime::format_duration(Duration::from_millis(delay.as_millis() as u64))
                ));
                tokio::select! {
                    _ = tokio::time::sleep(delay) => continue,
                    _ = sleep_until_opt(deadline) => return finish_on_timeout(plan, &mut feed, &state, out, "reconnecting"),
                    _ = &mut ctrl_c => return finish_interrupted(plan, &mut feed, &state, out),
                }
            }
            Err(e) => {
                let what = if !ever_connected {
                    "while connecting to"
                } else {
                    "while reconnecting to"
                };
                return Err(with_hint(e)).context(format!("{what} {}", plan.url));
            }
        };
        out.connected(
            &plan.url,
            client.info(),
            ever_connected,
            feed_was_interactive(plan),
            plan,
        );
        ever_connected = true;
        attempt = 1;
        let emitter = client.emitter();
        // Events on one socket are handled in order, so the join lands before the first message.
        // The ack is asked for but not waited on: servers that ack joins (the reference does) make
        // `joined` appear in --json output, the others simply do not.
        let join_ack = match &plan.room {
            Some(room) => match emitter
                .emit_with_ack(
                    "join_room",
                    vec![Value::String(room.clone())],
                    JOIN_ACK_WAIT,
                )
                .await
            {
                Ok(p) => Some(p),
                Err(e) => {
                    return Err(anyhow::Error::new(e))
                        .context(format!("while joining room {room}"));
                }
            },
            None => None,
        };

        match session(
            plan,
            out,
            &mut client,
            &emitter,
            join_ack,
            &mut feed,
            &mut pacer,
            &mut state,
            deadline,
            &mut ctrl_c,
        )
        .await?
        {
            SessionEnd::Finished(outcome) => {
                let _ = tokio::time::timeout(CLOSE_GRACE, client.close()).await;
                out.disconnected("client closed", false, &state);
                return Ok(outcome);
            }
            SessionEnd::Lost(err) => {
                out.disconnected(&err.chain(), true, &state);
                if plan.reconnect {
                    let delay = backoff(attempt);
                    out.status(&format!(
                        "connection lost ({}); reconnecting in {}",
                        err.chain(),
                        humantime::format_duration(Duration::from_millis(delay.as_millis() as u64))
                    ));
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => continue,
                        _ = sleep_until_opt(deadline) => return finish_on_timeout(plan, &mut feed, &state, out, "reconnecting"),
                        _ = &mut ctrl_c => return finish_interrupted(plan, &mut feed, &state, out),
                    }
                }
                let (quoted, count) = feed.drain_unsent();
                let mut msg = format!("connection lost: {}", err.chain());
                if count > 0 {
                    msg.push_str(&format!("; {}", not_sent_list(&quoted, count)));
                }
                bail!(msg);
            }
        }
    }
}

/// Counters that survive reconnects (reported in the `disconnect` record).
#[derive(Debug, Default)]
struct RunState {
    sent: u64,
    received: u64,
    acked: u64,
}

enum SessionEnd {
    Finished(Outcome),
    Lost(ClientError),
}

#[allow(clippy::too_many_arguments)]
async fn session(
    plan: &Plan,
    out: &mut Output,
    client: &mut Client,
    emitter: &Emitter,
    join_ack: Option<crate::client::PendingAck>,
    feed: &mut Feed,
    pacer: &mut Pacer,
    state: &mut RunState,
    deadline: Option<Instant>,
    ctrl_c: &mut std::pin::Pin<&mut impl std::future::Future<Output = std::io::Result<()>>>,
) -> anyhow::Result<SessionEnd> {
    // Acks in flight: each resolves to (sequence number, result); the messages wait in `unacked`
    // so that a lost connection puts every one of them back, in order.
    let mut acks = FuturesUnordered::new();
    let mut unacked: BTreeMap<u64, Outgoing> = BTreeMap::new();
    let mut source_done = false;
    // The message taken from the feed and waiting for its pacing slot.
    let mut next: Option<Outgoing> = None;
    let mut join_ack = join_ack;
    loop {
        if out.stdout_closed() {
            // `| head -3`: nobody reads any more.
            requeue(feed, &mut next, &mut unacked);
            return finish_interrupted(plan, feed, state, out).map(SessionEnd::Finished);
        }
        let sending_done = source_done && next.is_none() && acks.is_empty();
        let wait_met = plan.wait.is_none_or(|n| state.received >= n);
        if sending_done
            && (!plan.receives_after_sending() || (plan.wait.is_some() && wait_met && !plan.listen))
        {
            return Ok(SessionEnd::Finished(Outcome::Done));
        }
        // With --ack, the next message waits for the previous ack when pacing by interval, so
        // the interval is between a confirmed message and the next one.
        let may_take = !source_done
            && next.is_none()
            && !(plan.ack && matches!(plan.pace, Pace::Interval(_)) && !acks.is_empty());
        let slot = pacer.next_at();
        tokio::select! {
            biased;
            _ = &mut *ctrl_c => {
                requeue(feed, &mut next, &mut unacked);
                return finish_interrupted(plan, feed, state, out).map(SessionEnd::Finished);
            }
            _ = sleep_until_opt(deadline) => {
                requeue(feed, &mut next, &mut unacked);
                return finish_on_timeout(plan, feed, state, out, "sending").map(SessionEnd::Finished);
            }
            incoming = client.next_event() => match incoming {
                Some(Incoming::Event(ev)) => {
                    state.received += 1;
                    out.received(&ev);
                }
                Some(Incoming::Closed(err)) => {
                    requeue(feed, &mut next, &mut unacked);
                    return Ok(SessionEnd::Lost(err));
                }
                None => {
                    requeue(feed, &mut next, &mut unacked);
                    return Ok(SessionEnd::Lost(ClientError::Closed { during: "connected" }));
                }
            },
            r = async { join_ack.as_mut().unwrap().await }, if join_ack.is_some() => {
                join_ack = None;
                if r.is_ok() {
                    out.joined(plan.room.as_deref().unwrap_or_default());
                }
            }
            Some((seq, res)) = acks.next(), if !acks.is_empty() => {
                let seq: u64 = seq;
                let Some(m) = unacked.remove(&seq) else { continue };
                match res {
                    Ok(ack) => {
                        state.acked += 1;
                        out.ack(&m, &ack);
                    }
                    Err(ClientError::AckTimeout { after, .. }) => {
                        bail!(
                            "no ack for message {} within {} (`{}`); is --ack supported by this server?",
                            m.seq,
                            humantime::format_duration(after),
                            one_line(&m.text, 40)
                        );
                    }
                    Err(e) => {
                        // The connection went away before the ack: the message counts as not sent.
                        unacked.insert(m.seq, m);
                        requeue(feed, &mut next, &mut unacked);
                        return Ok(SessionEnd::Lost(e));
                    }
                }
            }
            _ = wait_slot(slot), if next.is_some() => {
                let Some(m) = next.take() else { continue };
                let args = build_args(plan, &m);
                let now = Instant::now();
                if plan.ack {
                    let fut = emitter.emit_with_ack(&plan.event, args.clone(), plan.ack_timeout);
                    match fut.await {
                        Ok(pending) => {
                            pacer.mark_sent(now);
                            state.sent += 1;
                            out.sent(&plan.event, &args, &m, Some(pending.id()));
                            let seq = m.seq;
                            unacked.insert(seq, m);
                            acks.push(async move { (seq, pending.await) });
                        }
                        Err(e) => {
                            next = Some(m);
                            requeue(feed, &mut next, &mut unacked);
                            return Ok(SessionEnd::Lost(e));
                        }
                    }
                } else {
                    match emitter.emit(&plan.event, args.clone()).await {
                        Ok(()) => {
                            pacer.mark_sent(now);
                            state.sent += 1;
                            out.sent(&plan.event, &args, &m, None);
                        }
                        Err(e) => {
                            next = Some(m);
                            requeue(feed, &mut next, &mut unacked);
                            return Ok(SessionEnd::Lost(e));
                        }
                    }
                }
            }
            m = feed.next(), if may_take => match m {
                Some(m) => next = Some(m),
                None => source_done = true,
            },
        }
    }
}

/// Put the message waiting for its slot and every unacknowledged one back at the front of the
/// feed, in order, to be reported as not sent or sent again after a reconnect.
fn requeue(feed: &mut Feed, next: &mut Option<Outgoing>, unacked: &mut BTreeMap<u64, Outgoing>) {
    if let Some(m) = next.take() {
        feed.push_front(m);
    }
    while let Some((_, m)) = unacked.pop_last() {
        feed.push_front(m);
    }
}

/// The emit arguments of one message: the chat object, the `--data` arguments, or the text.
fn build_args(plan: &Plan, m: &Outgoing) -> Vec<Value> {
    if let Some(args) = &m.args {
        return args.clone();
    }
    if plan.chat {
        // The original app's message object, keys in its order (JSON.stringify keeps them).
        let mut obj = serde_json::Map::new();
        obj.insert(
            "room".into(),
            Value::String(plan.room.clone().unwrap_or_default()),
        );
        obj.insert("author".into(), Value::String(plan.name.clone()));
        obj.insert("message".into(), Value::String(m.text.clone()));
        obj.insert("time".into(), Value::String(chat_time(plan.time_format)));
        return vec![Value::Object(obj)];
    }
    vec![Value::String(m.text.clone())]
}

fn finish_on_timeout(
    plan: &Plan,
    feed: &mut Feed,
    state: &RunState,
    out: &mut Output,
    phase: &str,
) -> anyhow::Result<Outcome> {
    let after = plan
        .timeout
        .map(humantime::format_duration)
        .map(|d| d.to_string())
        .unwrap_or_default();
    let (quoted, count) = feed.drain_unsent();
    if count > 0 {
        bail!(
            "timeout after {after} while {phase}; {}",
            not_sent_list(&quoted, count)
        );
    }
    if let Some(n) = plan.wait
        && state.received < n
    {
        return Ok(Outcome::CheckFailed(format!(
            "received {} of {n} messages before the {after} timeout",
            state.received
        )));
    }
    out.status(&format!("timeout after {after}: done"));
    Ok(Outcome::Done)
}

fn finish_interrupted(
    plan: &Plan,
    feed: &mut Feed,
    state: &RunState,
    out: &mut Output,
) -> anyhow::Result<Outcome> {
    let (quoted, count) = feed.drain_unsent();
    if count > 0 {
        return Ok(Outcome::CheckFailed(format!(
            "interrupted; {}",
            not_sent_list(&quoted, count)
        )));
    }
    if let Some(n) = plan.wait
        && state.received < n
    {
        return Ok(Outcome::CheckFailed(format!(
            "interrupted after receiving {} of {n} messages",
            state.received
        )));
    }
    out.status("interrupted");
    Ok(Outcome::Done)
}

fn feed_was_interactive(plan: &Plan) -> bool {
    matches!(plan.source, Source::Stdin { interactive: true })
}

fn not_sent_list(quoted: &[String], count: u64) -> String {
    let list: Vec<String> = quoted
        .iter()
        .map(|t| format!("{:?}", one_line(t, 60)))
        .collect();
    let more = count.saturating_sub(quoted.len() as u64);
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    let noun = if count == 1 { "message" } else { "messages" };
    format!("{count} {noun} not sent: {}{tail}", list.join(", "))
}

/// The error, with what to do about it where that is not obvious.
fn with_hint(e: ClientError) -> anyhow::Error {
    match &e {
        ClientError::Tls { source, .. } if source.to_string().contains("certificate") => {
            anyhow::anyhow!(
                "{} (a self-signed test server? --insecure accepts any certificate)",
                e.chain()
            )
        }
        ClientError::Tls { source, .. } if source.to_string().contains("InvalidContentType") => {
            anyhow::anyhow!(
                "{} (the server does not speak TLS there: use http:// or ws://)",
                e.chain()
            )
        }
        _ => anyhow::Error::new(e),
    }
}

fn is_retryable(e: &ClientError) -> bool {
    !matches!(
        e,
        ClientError::Url { .. }
            | ClientError::TlsConfig(_)
            | ClientError::Tls { .. }
            | ClientError::ConnectRefused { .. }
    )
}

/// Exponential backoff with ±20 % jitter: 0.5 s, 1 s, 2 s, ... capped at 10 s.
fn backoff(attempt: u32) -> Duration {
    let base = BACKOFF_FIRST
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(8))
        .min(BACKOFF_MAX);
    let jitter = 0.8 + rand::random::<f64>() * 0.4;
    base.mul_f64(jitter)
}

/// Wait for a pacing slot; no slot means now.
async fn wait_slot(t: Option<Instant>) {
    if let Some(t) = t {
        tokio::time::sleep_until(t).await;
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

// ---------------------------------------------------------------------------------------------
// The raw WebSocket run (`--raw`, like wscat).

async fn run_raw(plan: &Plan, out: &mut Output) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let deadline = plan.timeout.map(|t| started + t);
    let tls = if plan.endpoint.tls {
        Some(tls_connector(plan.insecure)?)
    } else {
        None
    };
    let opts = RawOptions {
        endpoint: plan.endpoint.clone(),
        net: NetOptions {
            connect_timeout: CONNECT_TIMEOUT,
            local_addr: None,
            tls,
            rx_timestamps: false,
        },
        ..RawOptions::default()
    };
    let mut feed = Feed::new(&plan.source);
    let mut pacer = Pacer::new(plan.pace);
    let mut state = RunState::default();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);

    let mut ws = tokio::select! {
        r = RawClient::connect(opts) => r.map_err(with_hint).with_context(|| format!("while connecting to {}", plan.url))?,
        _ = sleep_until_opt(deadline) => return finish_on_timeout(plan, &mut feed, &state, out, "connecting"),
        _ = &mut ctrl_c => return finish_interrupted(plan, &mut feed, &state, out),
    };
    out.raw_connected(&plan.url, feed_was_interactive(plan));
    let mut source_done = false;
    let mut next: Option<Outgoing> = None;
    loop {
        if out.stdout_closed() {
            if let Some(m) = next.take() {
                feed.push_front(m);
            }
            let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(1000, "")).await;
            return finish_interrupted(plan, &mut feed, &state, out);
        }
        let sending_done = source_done && next.is_none();
        let wait_met = plan.wait.is_none_or(|n| state.received >= n);
        if sending_done
            && (!plan.receives_after_sending() || (plan.wait.is_some() && wait_met && !plan.listen))
        {
            let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(1000, "")).await;
            out.disconnected("client closed", false, &state);
            return Ok(Outcome::Done);
        }
        let slot = pacer.next_at();
        tokio::select! {
            biased;
            _ = &mut ctrl_c => {
                if let Some(m) = next.take() { feed.push_front(m); }
                let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(1000, "")).await;
                return finish_interrupted(plan, &mut feed, &state, out);
            }
            _ = sleep_until_opt(deadline) => {
                if let Some(m) = next.take() { feed.push_front(m); }
                let _ = tokio::time::timeout(CLOSE_GRACE, ws.close(1000, "")).await;
                return finish_on_timeout(plan, &mut feed, &state, out, "sending");
            }
            msg = ws.next_message() => match msg {
                Ok(Some(RawMessage::Close { code, reason })) => {
                    if let Some(m) = next.take() { feed.push_front(m); }
                    out.raw_closed(code, &reason);
                    let (quoted, count) = feed.drain_unsent();
                    if count > 0 {
                        bail!("the server closed the WebSocket (code {}); {}", code.map_or("none".into(), |c| c.to_string()), not_sent_list(&quoted, count));
                    }
                    let wait_met = plan.wait.is_none_or(|n| state.received >= n);
                    if !wait_met {
                        bail!("the server closed the WebSocket (code {}) after {} of {} messages", code.map_or("none".into(), |c| c.to_string()), state.received, plan.wait.unwrap_or(0));
                    }
                    return Ok(Outcome::Done);
                }
                Ok(Some(m)) => {
                    state.received += 1;
                    out.raw_received(&m);
                }
                Ok(None) => {
                    if let Some(m) = next.take() { feed.push_front(m); }
                    let (quoted, count) = feed.drain_unsent();
                    let mut msg = "the server closed the connection without a WebSocket close".to_string();
                    if count > 0 { msg.push_str(&format!("; {}", not_sent_list(&quoted, count))); }
                    bail!(msg);
                }
                Err(e) => {
                    if let Some(m) = next.take() { feed.push_front(m); }
                    let (quoted, count) = feed.drain_unsent();
                    let mut msg = format!("connection lost: {}", e.chain());
                    if count > 0 { msg.push_str(&format!("; {}", not_sent_list(&quoted, count))); }
                    bail!(msg);
                }
            },
            _ = wait_slot(slot), if next.is_some() => {
                let Some(m) = next.take() else { continue };
                let now = Instant::now();
                if let Err(e) = ws.send_text(&m.text).await {
                    feed.push_front(m);
                    let (quoted, count) = feed.drain_unsent();
                    bail!("connection lost: {}; {}", e.chain(), not_sent_list(&quoted, count));
                }
                pacer.mark_sent(now);
                state.sent += 1;
                out.raw_sent(&m.text);
            }
            m = feed.next(), if !source_done && next.is_none() => match m {
                Some(m) => next = Some(m),
                None => source_done = true,
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Output: the one place that renders what happens.

struct Output {
    json: bool,
    color: bool,
    quiet: bool,
    stdout: std::io::BufWriter<std::io::Stdout>,
    /// stdout was closed by its reader (`| head`).
    closed: bool,
}

impl Output {
    fn new(json: bool, color: bool, quiet: bool) -> Output {
        Output {
            json,
            color,
            quiet,
            stdout: std::io::BufWriter::new(std::io::stdout()),
            closed: false,
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stdout.flush()
    }

    fn line(&mut self, text: &str) {
        if self.closed {
            return;
        }
        let mut r = writeln!(self.stdout, "{text}");
        // Every line is flushed: a reader (a person, a test, `jq`) sees each event as it happens.
        if r.is_ok() {
            r = self.stdout.flush();
        }
        // A closed stdout (`| head`) is not an error: the run ends quietly.
        if let Err(e) = r
            && e.kind() == std::io::ErrorKind::BrokenPipe
        {
            self.closed = true;
        }
    }

    fn stdout_closed(&self) -> bool {
        self.closed
    }

    fn record(&mut self, kind: &str, fields: Value) {
        let mut obj = serde_json::Map::new();
        obj.insert("ts".into(), Value::String(timestamp()));
        obj.insert("type".into(), Value::String(kind.into()));
        if let Value::Object(f) = fields {
            obj.extend(f);
        }
        let text = Value::Object(obj).to_string();
        self.line(&text);
    }

    /// A status line for people (stderr); nothing in JSON mode or with --quiet.
    fn status(&mut self, text: &str) {
        if !self.json && !self.quiet {
            eprintln!("wschat: {text}");
        }
    }

    fn error_json(&mut self, text: &str) {
        if self.json {
            self.record("error", json!({ "message": text }));
            let _ = self.stdout.flush();
        }
    }

    fn connected(
        &mut self,
        url: &str,
        info: &crate::client::ConnectInfo,
        again: bool,
        interactive: bool,
        plan: &Plan,
    ) {
        if self.json {
            self.record(
                if again { "reconnect" } else { "connect" },
                json!({
                    "url": url,
                    "namespace": info.namespace,
                    "sid": info.sid,
                    "transport": info.transport,
                    "room": plan.room,
                }),
            );
        } else if again {
            self.status(&format!("reconnected to {url}"));
        } else if interactive {
            let room = plan
                .room
                .as_deref()
                .map(|r| format!(", room {r}"))
                .unwrap_or_default();
            self.status(&format!(
                "connected to {url}{room} as {}; type a message and press Enter, Ctrl-D to quit",
                plan.name
            ));
        }
    }

    fn joined(&mut self, room: &str) {
        if self.json {
            self.record("joined", json!({ "room": room }));
        }
    }

    fn disconnected(&mut self, reason: &str, lost: bool, state: &RunState) {
        if self.json {
            self.record(
                "disconnect",
                json!({
                    "reason": reason,
                    "by_server": lost,
                    "sent": state.sent,
                    "received": state.received,
                    "acked": state.acked,
                }),
            );
        }
    }

    fn sent(&mut self, event: &str, args: &[Value], m: &Outgoing, ack_id: Option<u64>) {
        if self.json {
            let mut f = json!({ "seq": m.seq, "event": event, "args": args });
            if let (Some(id), Value::Object(o)) = (ack_id, &mut f) {
                o.insert("ack_id".into(), json!(id));
            }
            self.record("sent", f);
        }
    }

    fn ack(&mut self, m: &Outgoing, ack: &Ack) {
        let args = render_args(&ack.args, &ack.attachments);
        if self.json {
            self.record("ack", json!({ "seq": m.seq, "id": ack.id, "args": args }));
        } else {
            let shown = match args.as_slice() {
                [one] => one.to_string(),
                _ => Value::Array(args.clone()).to_string(),
            };
            self.line(&format!("ack {}: {shown}", m.seq));
        }
    }

    fn received(&mut self, ev: &EventMsg) {
        let args = render_args(&ev.args, &ev.attachments);
        if self.json {
            let mut f = json!({ "event": ev.name, "args": args });
            if let Value::Object(o) = &mut f {
                if ev.namespace != "/" {
                    o.insert("namespace".into(), json!(ev.namespace));
                }
                if let Some(id) = ev.ack_id {
                    o.insert("ack_id".into(), json!(id));
                }
            }
            self.record("received", f);
            return;
        }
        if let Some(line) = chat_line(&ev.name, &args, self.color) {
            self.line(&line);
            return;
        }
        let shown = match args.as_slice() {
            [] => String::new(),
            [one] => format!(" {one}"),
            many => format!(" {}", Value::Array(many.to_vec())),
        };
        let name = if self.color {
            format!("\x1b[1m{}\x1b[0m", ev.name)
        } else {
            ev.name.clone()
        };
        self.line(&format!("{name}{shown}"));
    }

    fn raw_connected(&mut self, url: &str, interactive: bool) {
        if self.json {
            self.record("connect", json!({ "url": url, "transport": "raw" }));
        } else if interactive {
            self.status(&format!(
                "connected to {url}; type a message and press Enter, Ctrl-D to quit"
            ));
        }
    }

    fn raw_sent(&mut self, text: &str) {
        if self.json {
            self.record("sent", json!({ "text": text }));
        }
    }

    fn raw_received(&mut self, m: &RawMessage) {
        match m {
            RawMessage::Text(t) => {
                if self.json {
                    self.record("received", json!({ "text": t }));
                } else {
                    self.line(t);
                }
            }
            RawMessage::Binary(b) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(b);
                if self.json {
                    self.record("received", json!({ "binary": b64, "len": b.len() }));
                } else {
                    self.line(&format!("<binary {} bytes: {b64}>", b.len()));
                }
            }
            RawMessage::Close { .. } => {}
        }
    }

    fn raw_closed(&mut self, code: Option<u16>, reason: &str) {
        if self.json {
            self.record(
                "disconnect",
                json!({ "code": code, "reason": reason, "by_server": true }),
            );
        }
    }
}

/// `author | time: message` for a chat message object; None when the event is not one.
fn chat_line(event: &str, args: &[Value], color: bool) -> Option<String> {
    if event != "receive_message" && event != "send_message" {
        return None;
    }
    let obj = args.first()?.as_object()?;
    let author = obj.get("author")?.as_str()?;
    let message = obj.get("message")?.as_str()?;
    let time = obj.get("time").and_then(Value::as_str).unwrap_or("");
    Some(if color {
        format!("\x1b[1;36m{author}\x1b[0m | \x1b[2m{time}\x1b[0m: {message}")
    } else {
        format!("{author} | {time}: {message}")
    })
}

/// Replace Socket.IO binary placeholders by `{"$binary": base64}` for display.
fn render_args(args: &[Value], attachments: &[bytes::Bytes]) -> Vec<Value> {
    if attachments.is_empty() {
        return args.to_vec();
    }
    fn walk(v: &Value, atts: &[bytes::Bytes]) -> Value {
        match v {
            Value::Object(o) if o.get("_placeholder") == Some(&Value::Bool(true)) => {
                match o
                    .get("num")
                    .and_then(Value::as_u64)
                    .and_then(|n| atts.get(n as usize))
                {
                    Some(b) => {
                        json!({ "$binary": base64::engine::general_purpose::STANDARD.encode(b) })
                    }
                    None => v.clone(),
                }
            }
            Value::Object(o) => {
                Value::Object(o.iter().map(|(k, v)| (k.clone(), walk(v, atts))).collect())
            }
            Value::Array(a) => Value::Array(a.iter().map(|v| walk(v, atts)).collect()),
            other => other.clone(),
        }
    }
    args.iter().map(|a| walk(a, attachments)).collect()
}

/// RFC 3339 with milliseconds, UTC.
fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// At most `max` characters of `s` on one line.
fn one_line(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let cut: String = flat.chars().take(max).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn plan(argv: &[&str]) -> anyhow::Result<Plan> {
        let mut full = vec!["wschat", "send"];
        full.extend_from_slice(argv);
        let cli =
            crate::cli::Cli::try_parse_from(full).map_err(|e| anyhow::anyhow!(e.to_string()))?;
        match cli.command {
            crate::cli::Command::Send(a) => Plan::from_args(&a, false, false),
            _ => unreachable!(),
        }
    }

    #[test]
    fn messages_from_arguments_repeat_with_count() {
        let p = plan(&["--room", "1", "--count", "2", "a", "b"]).unwrap();
        assert_eq!(
            p.source,
            Source::List {
                texts: vec!["a".into(), "b".into()],
                repeat: 2
            }
        );
        let mut feed = Feed::new(&p.source);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let texts: Vec<String> = rt.block_on(async {
            let mut v = Vec::new();
            while let Some(m) = feed.next().await {
                v.push(format!("{}:{}", m.seq, m.text));
            }
            v
        });
        assert_eq!(texts, ["1:a", "2:b", "3:a", "4:b"]);
    }

    #[test]
    fn count_without_text_numbers_the_messages_and_unsent_are_counted() {
        let p = plan(&["--room", "1", "--count", "1000"]).unwrap();
        let mut feed = Feed::new(&p.source);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let first = rt.block_on(feed.next()).unwrap();
        assert_eq!(first.text, "message 1");
        feed.push_front(first);
        let (quoted, count) = feed.drain_unsent();
        assert_eq!(count, 1000);
        assert_eq!(quoted.len(), QUOTE_UNSENT);
        assert_eq!(
            not_sent_list(&quoted, count),
            "1000 messages not sent: \"message 1\", \"message 2\", \"message 3\", \"message 4\", \"message 5\" and 995 more"
        );
    }

    #[test]
    fn chat_messages_need_a_room_but_events_and_listening_do_not() {
        let err = plan(&["hello"]).unwrap_err().to_string();
        assert!(err.contains("--room is required"), "{err}");
        plan(&["--event", "ping", "hello"]).unwrap();
        plan(&["--listen"]).unwrap();
        plan(&["--event", "x", "--data", "[1,{\"a\":2}]"]).unwrap();
    }

    #[test]
    fn data_array_is_spread_and_scalars_are_one_argument() {
        let p = plan(&["--event", "x", "--data", "[1,{\"a\":2}]"]).unwrap();
        assert_eq!(
            p.source,
            Source::Data {
                args: vec![json!(1), json!({"a": 2})],
                repeat: 1
            }
        );
        assert!(!p.chat);
        let p = plan(&["--event", "x", "--data", "\"hi\""]).unwrap();
        assert_eq!(
            p.source,
            Source::Data {
                args: vec![json!("hi")],
                repeat: 1
            }
        );
        let err = plan(&["--event", "x", "--data", "{nope"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--data is not valid JSON"), "{err}");
    }

    #[test]
    fn usage_errors_name_the_flag() {
        for (argv, want) in [
            (
                vec!["--room", "1", "--auth", "[1]"],
                "--auth must be a JSON object",
            ),
            (
                vec!["--room", "1", "--wait", "0"],
                "--wait must be at least 1",
            ),
            (
                vec!["--room", "1", "--interval", "0s", "x"],
                "--interval must be greater than zero",
            ),
            (
                vec!["--raw", "--room", "1", "ws://h/echo"],
                "--raw speaks plain WebSocket",
            ),
            (vec!["--room", "1", "-", "x"], "cannot be mixed"),
            (
                vec!["--room", "1", "--url", "ftp://x", "hi"],
                "unsupported scheme",
            ),
            (vec!["--namespace", "/a,b", "--listen"], "invalid namespace"),
        ] {
            let err = format!("{:#}", plan(&argv).unwrap_err());
            assert!(err.contains(want), "{argv:?}: {err}");
        }
    }

    #[test]
    fn namespace_from_flag_or_url_path() {
        assert_eq!(
            plan(&["--listen", "--namespace", "admin/"])
                .unwrap()
                .namespace,
            "/admin"
        );
        assert_eq!(
            plan(&["--listen", "--url", "http://h:1/chat"])
                .unwrap()
                .namespace,
            "/chat"
        );
        assert_eq!(plan(&["--listen"]).unwrap().namespace, "/");
    }

    #[test]
    fn raw_takes_the_url_from_the_first_argument() {
        let p = plan(&["--raw", "ws://127.0.0.1:9/echo", "hi"]).unwrap();
        assert_eq!(p.endpoint.target(), "/echo");
        assert_eq!(
            p.source,
            Source::List {
                texts: vec!["hi".into()],
                repeat: 1
            }
        );
    }

    #[test]
    fn chat_object_keeps_the_apps_key_order() {
        let p = plan(&["--room", "7", "--name", "Celular", "Olá mundo!"]).unwrap();
        let m = Outgoing {
            seq: 1,
            text: "Olá mundo!".into(),
            args: None,
        };
        let args = build_args(&p, &m);
        let text = serde_json::to_string(&args).unwrap();
        assert!(
            text.starts_with(r#"[{"room":"7","author":"Celular","message":"Olá mundo!","time":""#),
            "{text}"
        );
        let time = args[0]["time"].as_str().unwrap();
        assert_eq!(time.len(), 5, "{time}");
        assert_eq!(&time[2..3], ":");
    }

    #[test]
    fn pacing_by_rate_does_not_drift_and_interval_counts_from_the_last_send() {
        let t0 = Instant::now();
        let mut p = Pacer::new(Pace::Rate(4.0));
        assert_eq!(p.next_at(), None);
        p.mark_sent(t0);
        p.mark_sent(t0 + Duration::from_millis(400)); // late
        assert_eq!(p.next_at(), Some(t0 + Duration::from_millis(500)));
        let mut p = Pacer::new(Pace::Interval(Duration::from_millis(100)));
        p.mark_sent(t0);
        assert_eq!(p.next_at(), Some(t0 + Duration::from_millis(100)));
    }

    #[test]
    fn chat_line_and_binary_rendering() {
        let args = vec![json!({"room":"1","author":"Ana","message":"Olá","time":"9:05"})];
        assert_eq!(
            chat_line("receive_message", &args, false).unwrap(),
            "Ana | 9:05: Olá"
        );
        assert_eq!(chat_line("other", &args, false), None);
        let att = vec![bytes::Bytes::from_static(&[1, 2, 3])];
        let r = render_args(&[json!({"f": {"_placeholder": true, "num": 0}})], &att);
        assert_eq!(r, vec![json!({"f": {"$binary": "AQID"}})]);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert!(backoff(1) <= Duration::from_millis(600));
        assert!(backoff(3) >= Duration::from_millis(1600));
        assert!(backoff(30) <= Duration::from_secs(12));
    }
}
