//! The bounded outbound queue of one client: encoded frames wait here for the connection's writer.
//!
//! Producers (broadcasts from other connections, the session's own replies, heartbeats) push
//! pre-encoded frames (a broadcast is encoded once for all recipients). Each push appends the
//! frame's bytes to the outbox's one buffer, so what the writer takes is already the bytes of one
//! write: no per-frame handles, no second copy, one allocation per batch. The single consumer (the
//! WebSocket writer) takes everything queued at once and writes it in one go. The queue is bounded
//! in frames and in bytes: a client that falls behind is closed with
//! [`CloseReason::SlowConsumer`] instead of growing memory.

use std::fmt;
use std::sync::Mutex;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
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
    /// A message of a kind the endpoint does not take (binary at `/ws/ROOM`); the text says which.
    Unsupported(String),
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
            CloseReason::Unsupported(e) => write!(f, "unsupported data: {e}"),
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
            CloseReason::Unsupported(_) => 1003,
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
    /// The queued frames' bytes, back to back, oldest first. Unallocated while empty.
    buf: BytesMut,
    /// Frames in `buf`.
    frames: usize,
    closed: Option<CloseReason>,
}

/// First allocation of an empty outbox: room for a few chat frames, so a batch grows rarely.
const MIN_ALLOC: usize = 1024;

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
            if inner.frames > 0
                && (inner.frames + frames.len() > self.max_packets
                    || inner.buf.len() + add > self.max_bytes)
            {
                inner.closed = Some(CloseReason::SlowConsumer);
                drop(inner);
                self.waker.wake();
                return Err(PushError::Full);
            }
            // One reservation for the group (a no-op when there is room); a fresh buffer starts
            // at MIN_ALLOC so the batch rarely grows.
            let fresh = inner.buf.capacity() == 0;
            inner
                .buf
                .reserve(if fresh { add.max(MIN_ALLOC) } else { add });
            for f in frames {
                inner.buf.extend_from_slice(f);
            }
            inner.frames += frames.len();
        }
        self.waker.wake();
        Ok(())
    }

    /// Queue a frame in front of everything else (control replies that must not wait, e.g.
    /// `3probe`).
    pub fn push_front(&self, frame: Bytes) -> Result<(), PushError> {
        let mut inner = self.lock();
        if inner.closed.is_some() {
            return Err(PushError::Closed);
        }
        let mut buf = BytesMut::with_capacity(frame.len() + inner.buf.len());
        buf.extend_from_slice(&frame);
        buf.extend_from_slice(&inner.buf);
        inner.buf = buf;
        inner.frames += 1;
        drop(inner);
        self.waker.wake();
        Ok(())
    }

    /// Close the outbox (first reason wins) and wake the writer. Frames already queued stay
    /// readable by [`Outbox::poll_take`] so the writer can flush them before closing.
    pub fn close(&self, reason: CloseReason) {
        let mut inner = self.lock();
        if inner.closed.is_none() {
            inner.closed = Some(reason);
        }
        drop(inner);
        self.waker.wake();
    }

    /// The close reason once closed; until then `Pending`, and the writer is woken when it
    /// closes (for a writer that is not taking frames because its peer is not reading).
    pub fn poll_closed(&self, cx: &mut Context<'_>) -> Poll<CloseReason> {
        self.waker.register(cx.waker());
        match self.closed() {
            Some(reason) => Poll::Ready(reason),
            None => Poll::Pending,
        }
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
        self.lock().frames
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Register the writer's waker, and take everything queued when there is anything or the
    /// outbox is closed: the queued frames' bytes (empty when none; the outbox keeps no buffer
    /// after this), how many frames they are, and the close reason, if closed. `Pending` when
    /// there is nothing to do.
    pub fn poll_take(&self, cx: &mut Context<'_>) -> Poll<(Bytes, usize, Option<CloseReason>)> {
        self.waker.register(cx.waker());
        let mut inner = self.lock();
        if inner.frames == 0 && inner.closed.is_none() {
            return Poll::Pending;
        }
        let frames = std::mem::take(&mut inner.frames);
        let taken = std::mem::take(&mut inner.buf).freeze();
        Poll::Ready((taken, frames, inner.closed.clone()))
    }

    /// Wait until frames are waiting or the outbox is closed, then take them (see
    /// [`Outbox::poll_take`]).
    pub async fn take(&self) -> (Bytes, usize, Option<CloseReason>) {
        std::future::poll_fn(|cx| self.poll_take(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Take everything queued without waiting.
    fn take(ob: &Outbox) -> Option<(Bytes, Option<CloseReason>)> {
        let waker = futures_util::task::noop_waker();
        match ob.poll_take(&mut Context::from_waker(&waker)) {
            Poll::Ready((bytes, _, closed)) => Some((bytes, closed)),
            Poll::Pending => None,
        }
    }

    #[test]
    fn full_queue_closes_as_slow_consumer_and_refuses_more() {
        let ob = Outbox::new(2, 1 << 20);
        assert_eq!(ob.push(Bytes::from_static(b"a")), Ok(()));
        assert_eq!(ob.push(Bytes::from_static(b"b")), Ok(()));
        assert_eq!(ob.push(Bytes::from_static(b"c")), Err(PushError::Full));
        assert_eq!(ob.closed(), Some(CloseReason::SlowConsumer));
        assert_eq!(ob.push(Bytes::from_static(b"d")), Err(PushError::Closed));
        // What was queued before the overflow can still be flushed, then the close is reported.
        assert_eq!(
            take(&ob),
            Some((Bytes::from_static(b"ab"), Some(CloseReason::SlowConsumer)))
        );
        assert_eq!(
            take(&ob),
            Some((Bytes::new(), Some(CloseReason::SlowConsumer)))
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
        assert_eq!(ob.len(), 2);
        assert_eq!(take(&ob).unwrap().0, Bytes::from_static(b"12"));
        // A group that fits goes in whole, in order, after what was there.
        let ob = Outbox::new(3, 1 << 20);
        ob.push(Bytes::from_static(b"1")).unwrap();
        ob.push_all(&group).unwrap();
        assert_eq!(ob.len(), 3);
        assert_eq!(take(&ob).unwrap().0, Bytes::from_static(b"1hatt"));
    }

    #[test]
    fn take_empties_frees_and_resets_the_bounds() {
        let ob = Outbox::new(4, 4);
        ob.push(Bytes::from_static(b"abc")).unwrap();
        assert_eq!(take(&ob), Some((Bytes::from_static(b"abc"), None)));
        assert!(ob.is_empty());
        // Nothing is kept allocated after a take (an idle connection holds no buffer).
        assert_eq!(ob.lock().buf.capacity(), 0);
        // The byte budget is free again.
        ob.push(Bytes::from_static(b"abc")).unwrap();
        ob.push_front(Bytes::from_static(b"p")).unwrap();
        assert_eq!(ob.len(), 2);
        assert_eq!(take(&ob).unwrap().0, Bytes::from_static(b"pabc"));
        assert_eq!(take(&ob), None);
    }

    #[test]
    fn a_batch_of_small_frames_is_one_allocation() {
        let ob = Outbox::new(100, 1 << 20);
        ob.push(Bytes::from(vec![1u8; 100])).unwrap();
        let cap = ob.lock().buf.capacity();
        assert!(cap >= MIN_ALLOC, "{cap}");
        for _ in 0..8 {
            ob.push(Bytes::from(vec![2u8; 100])).unwrap();
        }
        assert_eq!(ob.lock().buf.capacity(), cap);
        let (bytes, _) = take(&ob).unwrap();
        assert_eq!(bytes.len(), 900);
        assert_eq!(&bytes[..100], &[1u8; 100][..]);
    }

    #[test]
    fn poll_take_wakes_on_push_and_on_close() {
        let ob = std::sync::Arc::new(Outbox::new(4, 64));
        assert_eq!(take(&ob), None);
        ob.push(Bytes::from_static(b"x")).unwrap();
        assert_eq!(take(&ob), Some((Bytes::from_static(b"x"), None)));
        assert_eq!(take(&ob), None);
        ob.close(CloseReason::ServerShutdown);
        assert_eq!(
            take(&ob).and_then(|t| t.1).map(|r| r.ws_close_code()),
            Some(1001)
        );
        assert_eq!(ob.closed().map(|r| r.ws_close_code()), Some(1001));
    }

    #[tokio::test]
    async fn take_waits_for_a_push() {
        let ob = std::sync::Arc::new(Outbox::new(4, 64));
        let o2 = ob.clone();
        let t = tokio::spawn(async move { o2.take().await });
        tokio::task::yield_now().await;
        ob.push(Bytes::from_static(b"hi")).unwrap();
        let taken = tokio::time::timeout(std::time::Duration::from_secs(5), t)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(taken, (Bytes::from_static(b"hi"), 1, None));
    }
}
