//! The bounded outbound queue of one client: encoded frames wait here for the connection's writer.
//!
//! Producers (broadcasts from other connections, the session's own replies, heartbeats) push
//! pre-encoded `Bytes` (a broadcast is encoded once and the same `Bytes` is pushed to every
//! recipient). The single consumer (the WebSocket writer or a pending polling GET) takes everything
//! queued at once and writes it in one go. The queue is bounded in packets and in bytes: a client that
//! falls behind is closed with [`CloseReason::SlowConsumer`] instead of growing memory.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::task::AtomicWaker;

/// Why a connection (or Engine.IO session) ended; logged once per disconnect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The server is shutting down (WebSocket close 1001, pending polls answered).
    ServerShutdown,
    /// The outbound queue was full.
    SlowConsumer,
    /// No pong within pingTimeout.
    PingTimeout,
    /// No Socket.IO CONNECT within connectTimeout.
    ConnectTimeout,
    /// The client closed the session (Engine.IO `1`, WebSocket close frame).
    ClientClose,
    /// The client went away (EOF, reset, aborted polling request).
    TransportClose,
    /// An I/O error on the socket.
    TransportError(String),
    /// The client broke the protocol; the text says how.
    ProtocolError(String),
    /// A message larger than maxPayload.
    TooLarge,
    /// The session was replaced or closed by the server for another reason.
    Server(String),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::ServerShutdown => f.write_str("server shutting down"),
            CloseReason::SlowConsumer => f.write_str("slow consumer (outbound queue full)"),
            CloseReason::PingTimeout => f.write_str("ping timeout"),
            CloseReason::ConnectTimeout => {
                f.write_str("no Socket.IO CONNECT within connectTimeout")
            }
            CloseReason::ClientClose => f.write_str("client close"),
            CloseReason::TransportClose => f.write_str("transport close"),
            CloseReason::TransportError(e) => write!(f, "transport error: {e}"),
            CloseReason::ProtocolError(e) => write!(f, "protocol error: {e}"),
            CloseReason::TooLarge => f.write_str("message larger than maxPayload"),
            CloseReason::Server(e) => write!(f, "{e}"),
        }
    }
}

impl CloseReason {
    /// The RFC 6455 section 7.4.1 close code that tells a WebSocket peer about this reason.
    pub fn ws_close_code(&self) -> u16 {
        match self {
            CloseReason::ServerShutdown => 1001,
            CloseReason::TooLarge => 1009,
            CloseReason::ProtocolError(_) => 1002,
            CloseReason::SlowConsumer => 1008,
            CloseReason::TransportError(_) | CloseReason::Server(_) => 1011,
            _ => 1000,
        }
    }
}

/// Why a push was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The queue hit its bound; the outbox is now closed with [`CloseReason::SlowConsumer`].
    Full,
    /// The outbox was already closed.
    Closed,
}

#[derive(Debug, Default)]
struct Inner {
    queue: VecDeque<Bytes>,
    bytes: usize,
    closed: Option<CloseReason>,
}

/// A bounded multi-producer, single-consumer queue of encoded frames with a wake-up for its writer.
#[derive(Debug)]
pub struct Outbox {
    inner: Mutex<Inner>,
    waker: AtomicWaker,
    max_packets: usize,
    max_bytes: usize,
}

impl Outbox {
    /// A queue holding at most `max_packets` frames and `max_bytes` bytes (both at least 1).
    pub fn new(max_packets: usize, max_bytes: usize) -> Self {
        Outbox {
            inner: Mutex::new(Inner::default()),
            waker: AtomicWaker::new(),
            max_packets: max_packets.max(1),
            max_bytes: max_bytes.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the queue inconsistent (push/pop only).
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queue one frame. On `Full` the outbox closes itself as a slow consumer and wakes the writer.
    pub fn push(&self, frame: Bytes) -> Result<(), PushError> {
        self.push_all(std::slice::from_ref(&frame))
    }

    /// Queue several frames that must stay together (a packet and its binary attachments): all or
    /// none of them are queued.
    pub fn push_all(&self, frames: &[Bytes]) -> Result<(), PushError> {
        let add: usize = frames.iter().map(Bytes::len).sum();
        {
            let mut inner = self.lock();
            if inner.closed.is_some() {
                return Err(PushError::Closed);
            }
            // An empty queue always accepts (a single message up to maxPayload must get through).
            if !inner.queue.is_empty()
                && (inner.queue.len() + frames.len() > self.max_packets
                    || inner.bytes + add > self.max_bytes)
            {
                inner.closed = Some(CloseReason::SlowConsumer);
                drop(inner);
                self.waker.wake();
                return Err(PushError::Full);
            }
            inner.queue.extend(frames.iter().cloned());
            inner.bytes += add;
        }
        self.waker.wake();
        Ok(())
    }

    /// Queue frames in front of everything else (control replies that must not wait, e.g. `3probe`).
    pub fn push_front(&self, frame: Bytes) -> Result<(), PushError> {
        let mut inner = self.lock();
        if inner.closed.is_some() {
            return Err(PushError::Closed);
        }
        inner.bytes += frame.len();
        inner.queue.push_front(frame);
        drop(inner);
        self.waker.wake();
        Ok(())
    }

    /// Close the outbox (first reason wins) and wake the writer. Frames already queued stay
    /// readable by [`Outbox::take`] so the writer can flush them before closing.
    pub fn close(&self, reason: CloseReason) {
        let mut inner = self.lock();
        if inner.closed.is_none() {
            inner.closed = Some(reason);
        }
        drop(inner);
        self.waker.wake();
    }

    /// The close reason, once closed.
    pub fn closed(&self) -> Option<CloseReason> {
        self.lock().closed.clone()
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Frames waiting.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Move everything queued into `out` (swapping buffers: no copy, no allocation when `out` is an
    /// empty deque with capacity). Returns the close reason if the outbox is closed.
    pub fn take(&self, out: &mut VecDeque<Bytes>) -> Option<CloseReason> {
        let mut inner = self.lock();
        if out.is_empty() {
            std::mem::swap(&mut inner.queue, out);
        } else {
            out.extend(inner.queue.drain(..));
        }
        inner.bytes = 0;
        // Give memory back after a burst: an idle client keeps no large buffer.
        if inner.queue.capacity() > 64 {
            inner.queue = VecDeque::new();
        }
        inner.closed.clone()
    }

    /// Release the queue's buffer if nothing is queued (called by an idle writer, so an idle
    /// connection keeps no allocation here; a busy one reuses its buffer).
    pub fn shrink_if_empty(&self) {
        let mut inner = self.lock();
        if inner.queue.is_empty() && inner.queue.capacity() > 0 {
            inner.queue = VecDeque::new();
        }
    }

    /// Register the writer's waker; `Ready` when frames are waiting or the outbox is closed.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.waker.register(cx.waker());
        let inner = self.lock();
        if !inner.queue.is_empty() || inner.closed.is_some() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// Wait until frames are waiting or the outbox is closed.
    pub async fn ready(&self) {
        std::future::poll_fn(|cx| self.poll_ready(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_closes_as_slow_consumer_and_refuses_more() {
        let ob = Outbox::new(2, 1 << 20);
        assert_eq!(ob.push(Bytes::from_static(b"a")), Ok(()));
        assert_eq!(ob.push(Bytes::from_static(b"b")), Ok(()));
        assert_eq!(ob.push(Bytes::from_static(b"c")), Err(PushError::Full));
        assert_eq!(ob.closed(), Some(CloseReason::SlowConsumer));
        assert_eq!(ob.push(Bytes::from_static(b"d")), Err(PushError::Closed));
        // What was queued before the overflow can still be flushed.
        let mut out = VecDeque::new();
        assert_eq!(ob.take(&mut out), Some(CloseReason::SlowConsumer));
        assert_eq!(
            out,
            vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]
        );
    }

    #[test]
    fn byte_bound_counts_payload_and_a_lone_large_frame_still_fits() {
        let ob = Outbox::new(100, 10);
        assert_eq!(
            ob.push(Bytes::from(vec![0u8; 50])),
            Ok(()),
            "empty queue accepts one big frame"
        );
        assert_eq!(ob.push(Bytes::from_static(b"x")), Err(PushError::Full));
    }

    #[test]
    fn push_all_is_all_or_nothing() {
        let ob = Outbox::new(3, 1 << 20);
        ob.push(Bytes::from_static(b"1")).unwrap();
        ob.push(Bytes::from_static(b"2")).unwrap();
        let group = [Bytes::from_static(b"h"), Bytes::from_static(b"att")];
        assert_eq!(ob.push_all(&group), Err(PushError::Full));
        let mut out = VecDeque::new();
        ob.take(&mut out);
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn take_empties_and_resets_the_byte_count() {
        let ob = Outbox::new(4, 4);
        ob.push(Bytes::from_static(b"abc")).unwrap();
        let mut out = VecDeque::new();
        assert_eq!(ob.take(&mut out), None);
        assert_eq!(out.len(), 1);
        assert!(ob.is_empty());
        // The byte budget is free again.
        ob.push(Bytes::from_static(b"abc")).unwrap();
        ob.push_front(Bytes::from_static(b"p")).unwrap();
        out.clear();
        ob.take(&mut out);
        assert_eq!(out.front().map(|b| &b[..]), Some(&b"p"[..]));
    }

    #[test]
    fn poll_ready_wakes_on_push_and_on_close() {
        let ob = std::sync::Arc::new(Outbox::new(4, 64));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(ob.poll_ready(&mut cx).is_pending());
        ob.push(Bytes::from_static(b"x")).unwrap();
        assert!(ob.poll_ready(&mut cx).is_ready());
        let mut out = VecDeque::new();
        ob.take(&mut out);
        assert!(ob.poll_ready(&mut cx).is_pending());
        ob.close(CloseReason::ServerShutdown);
        assert!(ob.poll_ready(&mut cx).is_ready());
        assert_eq!(ob.closed().map(|r| r.ws_close_code()), Some(1001));
    }
}
