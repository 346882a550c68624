//! The simple client API: a [`Conn`] driven by its own task, with emits, acks and received events
//! passed through bounded channels. What `wschat send` uses.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::ClientError;
use super::conn::{ClientOptions, Conn, ConnectInfo, Received};
use crate::proto::socketio::PacketType;

/// Commands queued by emitters before the task waits (bounded, so a fast producer waits).
const COMMAND_QUEUE: usize = 256;
/// Received events buffered for the application (bounded: a slow reader stops the socket reads).
const EVENT_QUEUE: usize = 1024;

/// An event the server sent on the connected namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct EventMsg {
    pub namespace: String,
    pub name: String,
    /// The arguments after the name; binary attachments appear as `{"_placeholder":true,"num":i}`.
    pub args: Vec<Value>,
    /// The binary attachments, in placeholder order (empty for a plain EVENT).
    pub attachments: Vec<Bytes>,
    /// Set when the server asked for an ack: answer with [`Emitter::ack`].
    pub ack_id: Option<u64>,
}

/// The server's answer to an emit with ack.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub id: u64,
    pub args: Vec<Value>,
    pub attachments: Vec<Bytes>,
}

/// What [`Client::next_event`] yields.
#[derive(Debug, Clone)]
pub enum Incoming {
    Event(EventMsg),
    /// The connection ended (the last item): why.
    Closed(ClientError),
}

enum Command {
    Emit {
        event: String,
        args: String,
        ack: Option<(oneshot::Sender<Result<Ack, ClientError>>, Duration)>,
        written: oneshot::Sender<Result<Option<u64>, ClientError>>,
    },
    Ack {
        id: u64,
        args: String,
    },
    Close {
        done: oneshot::Sender<()>,
    },
}

/// A connected Socket.IO client (one namespace).
#[derive(Debug)]
pub struct Client {
    emitter: Emitter,
    events: mpsc::Receiver<Incoming>,
    info: ConnectInfo,
    task: tokio::task::JoinHandle<()>,
}

/// A cloneable handle that emits on a [`Client`]'s connection.
#[derive(Debug, Clone)]
pub struct Emitter {
    tx: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Emit { event, .. } => write!(f, "Emit({event})"),
            Command::Ack { id, .. } => write!(f, "Ack({id})"),
            Command::Close { .. } => f.write_str("Close"),
        }
    }
}

/// An ack being waited for; resolves to the ack, or [`ClientError::AckTimeout`].
pub struct PendingAck {
    id: u64,
    rx: oneshot::Receiver<Result<Ack, ClientError>>,
}

impl PendingAck {
    /// The ack id on the wire.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Future for PendingAck {
    type Output = Result<Ack, ClientError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match Pin::new(&mut self.rx).poll(cx) {
            Poll::Ready(Ok(r)) => Poll::Ready(r),
            Poll::Ready(Err(_)) => Poll::Ready(Err(ClientError::ClientClosed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Client {
    /// Connect (see [`Conn::connect`]) and start the connection's task.
    pub async fn connect(opts: ClientOptions) -> Result<Client, ClientError> {
        let (conn, info) = Conn::connect(&opts).await?;
        let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
        let (etx, erx) = mpsc::channel(EVENT_QUEUE);
        let task = tokio::spawn(run(conn, rx, etx));
        Ok(Client {
            emitter: Emitter { tx },
            events: erx,
            info,
            task,
        })
    }

    /// What the handshake established.
    pub fn info(&self) -> &ConnectInfo {
        &self.info
    }

    /// A handle for emitting from elsewhere.
    pub fn emitter(&self) -> Emitter {
        self.emitter.clone()
    }

    /// Emit `event` with `args`; resolves once written (see [`Emitter::emit`]).
    pub async fn emit(&self, event: &str, args: Vec<Value>) -> Result<(), ClientError> {
        self.emitter.emit(event, args).await
    }

    /// Emit and wait for the ack (at most `timeout`).
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<Ack, ClientError> {
        self.emitter
            .emit_with_ack(event, args, timeout)
            .await?
            .await
    }

    /// The next event; after [`Incoming::Closed`] (the last item), `None`.
    pub async fn next_event(&mut self) -> Option<Incoming> {
        self.events.recv().await
    }

    /// Leave cleanly: everything emitted before is written, then DISCONNECT and close.
    pub async fn close(self) -> Result<(), ClientError> {
        let (done, wait) = oneshot::channel();
        if self.emitter.tx.send(Command::Close { done }).await.is_ok() {
            let _ = wait.await;
        }
        let _ = self.task.await;
        Ok(())
    }
}

impl Emitter {
    /// Emit `event` with `args`. Resolves once the packet is written: flushed to the WebSocket,
    /// or carried by a polling POST the server answered. An error means it was not.
    pub async fn emit(&self, event: &str, args: Vec<Value>) -> Result<(), ClientError> {
        let (written, wait) = oneshot::channel();
        let cmd = Command::Emit {
            event: event.to_string(),
            args: args_json(&args),
            ack: None,
            written,
        };
        self.tx
            .send(cmd)
            .await
            .map_err(|_| ClientError::ClientClosed)?;
        wait.await
            .unwrap_or(Err(ClientError::ClientClosed))
            .map(|_| ())
    }

    /// Emit asking for an ack. Resolves once written, to a [`PendingAck`] that resolves to the
    /// ack or to [`ClientError::AckTimeout`] after `timeout`.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<PendingAck, ClientError> {
        let (written, wait) = oneshot::channel();
        let (ack_tx, ack_rx) = oneshot::channel();
        let cmd = Command::Emit {
            event: event.to_string(),
            args: args_json(&args),
            ack: Some((ack_tx, timeout)),
            written,
        };
        self.tx
            .send(cmd)
            .await
            .map_err(|_| ClientError::ClientClosed)?;
        let id = wait.await.unwrap_or(Err(ClientError::ClientClosed))?;
        Ok(PendingAck {
            id: id.unwrap_or_default(),
            rx: ack_rx,
        })
    }

    /// Answer a server event that asked for an ack.
    pub async fn ack(&self, id: u64, args: Vec<Value>) -> Result<(), ClientError> {
        self.tx
            .send(Command::Ack {
                id,
                args: args_json(&args),
            })
            .await
            .map_err(|_| ClientError::ClientClosed)
    }
}

/// Arguments as raw JSON, comma-separated without brackets (what the encoder splices in).
fn args_json(args: &[Value]) -> String {
    let mut s = String::new();
    for (i, a) in args.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&a.to_string());
    }
    s
}

fn parse_args(raw: &str) -> Vec<Value> {
    if raw.is_empty() {
        return Vec::new();
    }
    // The core validated this JSON already; wrap it back into its array.
    serde_json::from_str::<Vec<Value>>(&format!("[{raw}]")).unwrap_or_default()
}

struct PendingAckEntry {
    tx: oneshot::Sender<Result<Ack, ClientError>>,
    deadline: Instant,
    timeout: Duration,
}

/// An emit waiting to be written: its sequence number, who to tell, and its ack id.
type Unwritten = (
    u64,
    oneshot::Sender<Result<Option<u64>, ClientError>>,
    Option<u64>,
);

/// The connection's task.
async fn run(mut conn: Conn, mut cmds: mpsc::Receiver<Command>, events: mpsc::Sender<Incoming>) {
    let mut acks: HashMap<u64, PendingAckEntry> = HashMap::new();
    // Emits waiting to be written: (sequence, notify, ack id).
    let mut unwritten: VecDeque<Unwritten> = VecDeque::new();
    let mut inbox: Vec<Incoming> = Vec::new();
    let nsp = conn.namespace().to_string();
    let timer = tokio::time::sleep(Duration::from_secs(3600));
    tokio::pin!(timer);
    let end: ClientError = loop {
        // Hand over what arrived; waiting here is the backpressure on the socket.
        for ev in inbox.drain(..) {
            let _ = events.send(ev).await;
        }
        let now = Instant::now();
        let session_deadline = conn.poll_timeout().map(Instant::from_std);
        let ack_deadline = acks.values().map(|a| a.deadline).min();
        let deadline = match (session_deadline, ack_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        timer
            .as_mut()
            .reset(deadline.unwrap_or(now + Duration::from_secs(3600)));
        let mut closing: Option<oneshot::Sender<()>> = None;
        let result: Result<(), ClientError> = tokio::select! {
            cmd = cmds.recv() => {
                let Some(first) = cmd else {
                    // Every handle is gone: leave.
                    let _ = conn.close().await;
                    break ClientError::ClientClosed;
                };
                let mut batch = vec![first];
                while batch.len() < COMMAND_QUEUE {
                    match cmds.try_recv() {
                        Ok(c) => batch.push(c),
                        Err(_) => break,
                    }
                }
                let mut r = Ok(());
                for c in batch {
                    match c {
                        Command::Emit { event, args, ack, written } => {
                            let queued = match &ack {
                                Some(_) => conn.emit_with_ack(&event, &args).map(Some),
                                None => conn.emit(&event, &args).map(|()| None),
                            };
                            match queued {
                                Ok(id) => {
                                    if let (Some(id), Some((tx, timeout))) = (id, ack) {
                                        acks.insert(id, PendingAckEntry { tx, deadline: Instant::now() + timeout, timeout });
                                    }
                                    unwritten.push_back((conn.queued(), written, id));
                                }
                                Err(e) => {
                                    let _ = written.send(Err(e.clone()));
                                    r = Err(e);
                                }
                            }
                        }
                        Command::Ack { id, args } => {
                            if let Err(e) = conn.ack(id, &args) {
                                r = Err(e);
                            }
                        }
                        Command::Close { done } => closing = Some(done),
                    }
                }
                match r {
                    Ok(()) => conn.flush().await,
                    Err(e) => Err(e),
                }
            }
            r = async { conn.recv(&mut |rx: Received<'_>| on_received(rx, &nsp, &mut acks, &mut inbox)).await } => r,
            _ = &mut timer => {
                let now = Instant::now();
                let expired: Vec<u64> = acks.iter().filter(|(_, a)| a.deadline <= now).map(|(id, _)| *id).collect();
                for id in expired {
                    if let Some(a) = acks.remove(&id) {
                        let _ = a.tx.send(Err(ClientError::AckTimeout { id, after: a.timeout }));
                    }
                }
                conn.handle_timeout(now.into_std())
            }
        };
        // Tell the emitters whose packets are now written.
        let written = conn.written();
        while unwritten.front().is_some_and(|(seq, _, _)| *seq <= written) {
            if let Some((_, tx, id)) = unwritten.pop_front() {
                let _ = tx.send(Ok(id));
            }
        }
        if let Some(done) = closing {
            let r = conn.close().await;
            for (_, tx, _) in unwritten.drain(..) {
                let _ = tx.send(Err(ClientError::ClientClosed));
            }
            let _ = done.send(());
            break r.err().unwrap_or(ClientError::ClientClosed);
        }
        if let Err(e) = result {
            break e;
        }
    };
    for ev in inbox.drain(..) {
        let _ = events.send(ev).await;
    }
    for (_, tx, _) in unwritten.drain(..) {
        let _ = tx.send(Err(end.clone()));
    }
    for (_, a) in acks.drain() {
        let _ = a.tx.send(Err(end.clone()));
    }
    let _ = events.send(Incoming::Closed(end)).await;
}

fn on_received(
    rx: Received<'_>,
    nsp: &str,
    acks: &mut HashMap<u64, PendingAckEntry>,
    inbox: &mut Vec<Incoming>,
) {
    match rx {
        Received::Event { name, args, ack_id } => inbox.push(Incoming::Event(EventMsg {
            namespace: nsp.to_string(),
            name: name.to_string(),
            args: parse_args(args),
            attachments: Vec::new(),
            ack_id,
        })),
        Received::Ack { id, args } => {
            if let Some(a) = acks.remove(&id) {
                let _ = a.tx.send(Ok(Ack {
                    id,
                    args: parse_args(args),
                    attachments: Vec::new(),
                }));
            }
        }
        Received::Binary(p) => match p.packet_type {
            PacketType::BinaryEvent | PacketType::Event => inbox.push(Incoming::Event(EventMsg {
                namespace: nsp.to_string(),
                name: p.event_name().unwrap_or_default().to_string(),
                args: p.args().to_vec(),
                attachments: p.attachments.clone(),
                ack_id: p.id,
            })),
            _ => {
                if let Some(id) = p.id
                    && let Some(a) = acks.remove(&id)
                {
                    let _ = a.tx.send(Ok(Ack {
                        id,
                        args: p.args().to_vec(),
                        attachments: p.attachments.clone(),
                    }));
                }
            }
        },
    }
}
