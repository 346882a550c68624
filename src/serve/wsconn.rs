//! The WebSocket connection driver: one task per connection reads frames with the shared strict
//! reader (`wire::ws::Reader`), hands complete messages to a [`WsHandler`], and writes everything
//! queued in the connection's [`Outbox`] in one write per wake-up (batching). Control frames (pong,
//! close) are answered here. No per-connection buffers are kept while idle: the read buffer is
//! grown on demand and released once drained, the write buffer is released after large bursts.

use std::collections::VecDeque;
use std::io;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use hyper_util::rt::TokioIo;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::metrics::Metrics;
use super::outbox::{CloseReason, Outbox};
use crate::wire::ws::{self, Message, Opcode, Reader, Role};

/// The byte stream a WebSocket runs on: a raw TCP stream (handshake read by us) or one upgraded by
/// hyper (handshake on a keep-alive HTTP connection).
pub enum WsIo {
    /// A raw TCP stream and the bytes that followed the request head.
    Tcp(TcpStream, BytesMut),
    Upgraded(TokioIo<hyper::upgrade::Upgraded>),
}

impl AsyncRead for WsIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WsIo::Tcp(s, _) => Pin::new(s).poll_read(cx, buf),
            WsIo::Upgraded(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for WsIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            WsIo::Tcp(s, _) => Pin::new(s).poll_write(cx, buf),
            WsIo::Upgraded(s) => Pin::new(s).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WsIo::Tcp(s, _) => Pin::new(s).poll_flush(cx),
            WsIo::Upgraded(s) => Pin::new(s).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            WsIo::Tcp(s, _) => Pin::new(s).poll_shutdown(cx),
            WsIo::Upgraded(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// What a WebSocket endpoint does with the messages of one connection.
pub trait WsHandler {
    /// A complete Text or Binary message. `Err` closes the connection with that reason.
    fn on_message(&mut self, msg: Message) -> Result<(), CloseReason>;
    /// When [`WsHandler::on_deadline`] should next run (heartbeat, timeouts); `None` = never.
    fn next_deadline(&self) -> Option<Instant> {
        None
    }
    /// The deadline passed. `Err` closes the connection with that reason.
    fn on_deadline(&mut self, _now: Instant) -> Result<(), CloseReason> {
        Ok(())
    }
}

/// The handler of a connection that was refused and is being closed: what it sent is dropped.
pub struct Refused;

impl WsHandler for Refused {
    fn on_message(&mut self, _msg: Message) -> Result<(), CloseReason> {
        Ok(())
    }
}

/// Encode one unmasked server frame into shareable bytes (one allocation, exact size).
pub fn server_frame(opcode: Opcode, payload: &[u8]) -> Bytes {
    let mut out =
        Vec::with_capacity(ws::header_len_for(payload.len() as u64, false) + payload.len());
    ws::encode_frame(&mut out, true, opcode, None, payload);
    Bytes::from(out)
}

/// A server text frame.
pub fn text_frame(payload: &[u8]) -> Bytes {
    server_frame(Opcode::Text, payload)
}

/// A server binary frame.
pub fn binary_frame(payload: &[u8]) -> Bytes {
    server_frame(Opcode::Binary, payload)
}

/// The payload of a complete server frame built by this module (`None` if it is not one).
pub fn frame_payload(frame: &Bytes) -> Option<(Opcode, Bytes)> {
    match ws::Frame::parse(frame) {
        Ok(Some((f, len))) if len == frame.len() && !f.header.is_masked() => {
            let start = f.header.header_len;
            Some((f.header.opcode, frame.slice(start..)))
        }
        _ => None,
    }
}

enum Event {
    Read,
    Eof,
    Io(io::Error),
    Deadline,
    Closed(CloseReason),
}

/// Largest read per wake-up (on the stack, copied into the lazily grown read buffer).
const READ_CHUNK: usize = 16 * 1024;

/// Messages a connection hands on before it yields to the other tasks of its thread. A sender
/// whose socket always has more to read would otherwise go on for the runtime's whole budget
/// (128 reads, some 20,000 chat messages) while the recipients' writers wait, and the queues
/// of members who keep up would overflow behind it.
pub const TURN: usize = 256;

thread_local! {
    /// One drained read buffer per thread, reused by whichever connection reads next: reads are
    /// handled one at a time on a thread, so one spare serves all its connections.
    static SPARE_READ: std::cell::Cell<BytesMut> = std::cell::Cell::new(BytesMut::new());
}

/// Largest read buffer kept as the spare.
const SPARE_MAX: usize = 64 * 1024;

fn take_spare() -> BytesMut {
    SPARE_READ.with(|s| s.take())
}

fn put_spare(mut buf: BytesMut) {
    if buf.capacity() > SPARE_MAX {
        return;
    }
    buf.clear();
    SPARE_READ.with(|s| {
        let old = s.take();
        // Keep the larger of the two.
        s.set(if old.capacity() >= buf.capacity() {
            old
        } else {
            buf
        });
    });
}

/// Drives one WebSocket connection until it closes; returns why it closed. The outbox is closed on
/// return (so producers stop queueing).
pub async fn drive<H: WsHandler>(
    mut io: WsIo,
    handler: &mut H,
    outbox: &Arc<Outbox>,
    max_message: usize,
    metrics: &Metrics,
) -> CloseReason {
    let mut reader = Reader::new(Role::Server, max_message);
    let mut rbuf = match &mut io {
        WsIo::Tcp(_, leftover) if !leftover.is_empty() => std::mem::take(leftover),
        _ => BytesMut::new(),
    };
    let mut wbuf = BytesMut::new();
    let mut wcur = Bytes::new();
    let mut local: VecDeque<Bytes> = VecDeque::new();
    let far = || Instant::now() + Duration::from_secs(86_400);
    let tk = tokio::time::Instant::from_std;
    let sleep = tokio::time::sleep_until(tk(handler.next_deadline().unwrap_or_else(far)));
    tokio::pin!(sleep);
    let mut pending_read = !rbuf.is_empty();
    // The last deadline handled: a handler that reports it (or an earlier one) again is not
    // woken for it twice, which would spin on a timer that is always ready.
    let mut handled: Option<Instant> = None;
    // Messages handed on since this task last yielded.
    let mut turn = 0usize;
    // While the thread is saturated, writes to this connection are at least a window apart
    // (`super::load`): the time of the last write, and the timer that ends the current window.
    let mut last_write: Option<Instant> = None;
    let mut window_timer: Option<Pin<Box<tokio::time::Sleep>>> = None;

    let reason = 'conn: loop {
        if pending_read {
            pending_read = false;
            // Decode every complete message in the buffer.
            loop {
                match reader.decode(&mut rbuf) {
                    Ok(Some(Message::Text(t))) => {
                        turn += 1;
                        if let Err(r) = handler.on_message(Message::Text(t)) {
                            outbox.close(r);
                            break;
                        }
                    }
                    Ok(Some(Message::Binary(b))) => {
                        turn += 1;
                        if let Err(r) = handler.on_message(Message::Binary(b)) {
                            outbox.close(r);
                            break;
                        }
                    }
                    Ok(Some(Message::Ping(p))) => {
                        // Only pongs wait here. RFC 6455 section 5.5.3 lets an endpoint answer
                        // only the latest of several pings not yet answered, which bounds this
                        // queue at one pong while the peer does not read.
                        local.clear();
                        local.push_back(server_frame(Opcode::Pong, &p));
                    }
                    Ok(Some(Message::Pong(_))) => {}
                    Ok(Some(Message::Close(c))) => {
                        // RFC 6455 section 5.5.1: answer with a Close echoing the status code.
                        let code = c.as_ref().map(|(code, _)| *code);
                        Box::pin(flush_and_close(
                            &mut io,
                            &mut wcur,
                            &[],
                            &mut local,
                            code,
                            "",
                        ))
                        .await;
                        break 'conn CloseReason::ClientClose;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        metrics
                            .protocol_errors
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let reason = if e.close_code() == 1009 {
                            CloseReason::TooLarge
                        } else {
                            CloseReason::ProtocolError(e.to_string())
                        };
                        // Nothing more is read: fail the connection (RFC 6455 section 7.1.7).
                        Box::pin(flush_and_close(
                            &mut io,
                            &mut wcur,
                            &[],
                            &mut local,
                            Some(e.close_code()),
                            &e.to_string(),
                        ))
                        .await;
                        outbox.close(reason.clone());
                        break 'conn reason;
                    }
                }
            }
            if rbuf.is_empty() && rbuf.capacity() > 0 {
                // Drained: the buffer goes back to the thread's spare (an idle connection keeps
                // none), so the next connection to read reuses it instead of allocating.
                put_spare(std::mem::take(&mut rbuf));
            }
            if turn >= TURN {
                turn = 0;
                tokio::task::yield_now().await;
            }
        }
        if let Some(d) = handler
            .next_deadline()
            .filter(|d| handled.is_none_or(|h| *d > h))
            .map(tk)
            && d != sleep.deadline()
        {
            sleep.as_mut().reset(d);
        }

        let ev = std::future::poll_fn(|cx| {
            // 1. Writes first: finish the current buffer, then take the next batch.
            loop {
                if !wcur.is_empty() {
                    match Pin::new(&mut io).poll_write(cx, &wcur) {
                        Poll::Ready(Ok(0)) => {
                            return Poll::Ready(Event::Io(io::ErrorKind::WriteZero.into()));
                        }
                        Poll::Ready(Ok(n)) => {
                            wcur.advance(n);
                            if wcur.is_empty() {
                                // Let go of the written buffer (it may be shared or large).
                                wcur = Bytes::new();
                            }
                            metrics
                                .bytes_out
                                .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
                            continue;
                        }
                        Poll::Ready(Err(e)) => return Poll::Ready(Event::Io(e)),
                        Poll::Pending => {
                            // The peer is not taking what is written. A close (a slow consumer
                            // whose outbox overflowed, a ping timeout, shutdown) must not wait
                            // for it: `flush_and_close` gives the rest one bounded try.
                            if let Poll::Ready(reason) = outbox.poll_closed(cx) {
                                return Poll::Ready(Event::Closed(reason));
                            }
                            break;
                        }
                    }
                }
                // Saturated: wait for the end of this connection's window, so that what is
                // queued meanwhile goes out in the same write. The outbox is not polled while
                // waiting, so pushes do not wake the task again; the timer does. With a window
                // configured, one clock read serves the check and the write's time.
                let now = super::load::enabled().then(Instant::now);
                if local.is_empty()
                    && let (Some(last), Some(now)) = (last_write, now)
                    && let Some(w) = super::load::write_window(now)
                    && now < last + w
                {
                    let due = tk(last + w);
                    let t =
                        window_timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                    if t.deadline() != due {
                        t.as_mut().reset(due);
                    }
                    if t.as_mut().poll(cx).is_pending() {
                        break;
                    }
                }
                // The buffer is written; the next one is the control frames and the outbox's
                // bytes (already one buffer: written as they are when there is no control frame).
                let (taken, frames, closed) = match outbox.poll_take(cx) {
                    Poll::Ready(t) => t,
                    Poll::Pending => (Bytes::new(), 0, None),
                };
                if local.is_empty() && taken.is_empty() {
                    // Idle: keep no buffers (an idle connection costs only its state).
                    if wbuf.capacity() > 0 {
                        wbuf = BytesMut::new();
                    }
                    if let Some(reason) = closed {
                        return Poll::Ready(Event::Closed(reason));
                    }
                    // The window's timer is not kept while idle.
                    window_timer = None;
                    break;
                }
                last_write = now;
                if now.is_some() {
                    super::load::wrote(frames + local.len());
                }
                if local.is_empty() {
                    wcur = taken;
                } else {
                    // Control frames (pongs) go first; they are rare, so copying is fine.
                    let total: usize = local.iter().map(Bytes::len).sum::<usize>() + taken.len();
                    wbuf.reserve(total);
                    for f in local.drain(..) {
                        wbuf.extend_from_slice(&f);
                    }
                    wbuf.extend_from_slice(&taken);
                    wcur = wbuf.split().freeze();
                }
                if let Some(reason) = closed {
                    // Flush what was queued before the close, then report it.
                    outbox.close(reason);
                }
            }
            // 2. Reads. The chunk is left uninitialised: zeroing 16 KiB on every wake-up (most
            // of them only write) cost more instructions than the rest of a delivery.
            let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut rb = ReadBuf::uninit(&mut chunk);
            match Pin::new(&mut io).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let got = rb.filled();
                    if got.is_empty() {
                        return Poll::Ready(Event::Eof);
                    }
                    metrics
                        .bytes_in
                        .fetch_add(got.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    if rbuf.capacity() == 0 {
                        rbuf = take_spare();
                    }
                    rbuf.extend_from_slice(got);
                    return Poll::Ready(Event::Read);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Event::Io(e)),
                Poll::Pending => {}
            }
            // 3. Timers.
            if sleep.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Event::Deadline);
            }
            Poll::Pending
        })
        .await;

        match ev {
            Event::Read => pending_read = true,
            Event::Eof => break CloseReason::TransportClose,
            Event::Io(e) => break CloseReason::TransportError(e.to_string()),
            Event::Deadline => {
                // The instant the deadline was due, not when this task got to run.
                let due = sleep.deadline().into_std();
                if let Err(r) = handler.on_deadline(due) {
                    outbox.close(r);
                }
                handled = Some(due);
                if handler.next_deadline().is_none_or(|d| d <= due) {
                    sleep.as_mut().reset(tk(far()));
                }
            }
            Event::Closed(reason) => {
                // Closed while the peer was not taking writes: what was queued before the close
                // still goes, in the final write (bounded in time). A slow consumer's queue is
                // what it could not take: dropped.
                let rest = match reason {
                    CloseReason::SlowConsumer => Bytes::new(),
                    _ => match outbox.poll_take(&mut Context::from_waker(std::task::Waker::noop()))
                    {
                        Poll::Ready((rest, _, _)) => rest,
                        Poll::Pending => Bytes::new(),
                    },
                };
                let code = reason.ws_close_code();
                let text = reason.to_string();
                Box::pin(flush_and_close(
                    &mut io,
                    &mut wcur,
                    &rest,
                    &mut local,
                    Some(code),
                    &text,
                ))
                .await;
                break reason;
            }
        }
    };
    outbox.close(reason.clone());
    reason
}

/// Write what is pending (the rest of the current write, then `queued`, then the control
/// frames), a Close frame, and shut the write side down (bounded in time: a peer that does not
/// read cannot hold the task).
async fn flush_and_close(
    io: &mut WsIo,
    wcur: &mut Bytes,
    queued: &[u8],
    local: &mut VecDeque<Bytes>,
    code: Option<u16>,
    reason: &str,
) {
    let mut out = Vec::with_capacity(wcur.len() + queued.len() + 64);
    out.extend_from_slice(wcur);
    out.extend_from_slice(queued);
    for f in local.drain(..) {
        out.extend_from_slice(&f);
    }
    *wcur = Bytes::new();
    // Codes 1005/1006/1015 must never be sent (RFC 6455 section 7.4.1).
    let code = code.filter(|c| ws::is_valid_close_code(*c)).or(Some(1000));
    ws::encode_close(&mut out, None, code, reason);
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        io.write_all(&out).await?;
        io.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    /// Read until `want` bytes have come; returns when the last of them arrived.
    async fn read_exact_at(client: &mut TcpStream, want: usize) -> (Vec<u8>, Instant) {
        let mut got = vec![0u8; want];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got))
            .await
            .expect("the frames did not arrive")
            .unwrap();
        (got, Instant::now())
    }

    /// On a fresh thread whose gauge `setup` prepares (each test thread has its own): push `a`,
    /// wait for it, then push `b` and `c` at once. The time from `a`'s arrival to the arrival of
    /// both others, the bytes received, and the bytes of all three in order.
    fn three_frames(setup: fn()) -> (Duration, Vec<u8>, Vec<u8>) {
        on_local(move || {
            setup();
            async {
                let (mut client, outbox, _) = driven(Refused, Outbox::new(64, 1 << 20)).await;
                let (a, b, c) = (text_frame(b"a"), text_frame(b"bb"), text_frame(b"ccc"));
                outbox.push(a.clone()).unwrap();
                let (first, t_a) = read_exact_at(&mut client, a.len()).await;
                outbox.push(b.clone()).unwrap();
                outbox.push(c.clone()).unwrap();
                let (rest, t_bc) = read_exact_at(&mut client, b.len() + c.len()).await;
                let want = [&a[..], &b[..], &c[..]].concat();
                (t_bc - t_a, [first, rest].concat(), want)
            }
        })
    }

    #[test]
    fn a_saturated_thread_writes_each_connection_once_per_window_and_loses_nothing() {
        let (gap, got, want) =
            three_frames(|| super::super::load::saturate_this_thread(Duration::from_millis(150)));
        assert_eq!(got, want);
        // The second write waited for the end of the window that the first one opened.
        assert!(gap >= Duration::from_millis(100), "written after {gap:?}");
    }

    #[test]
    fn below_saturation_every_push_is_written_at_once() {
        let (gap, got, want) =
            three_frames(|| super::super::load::configure_this_thread(Duration::from_secs(3)));
        assert_eq!(got, want);
        // Nowhere near the window: not held back.
        assert!(gap < Duration::from_secs(2), "written after {gap:?}");
    }

    /// On a fresh thread (each has its own load gauge), run what `f` makes on a current-thread
    /// runtime with a `LocalSet`, as the relay's threads are.
    fn on_local<T: Send + 'static, F: std::future::Future<Output = T>>(
        f: impl FnOnce() -> F + Send + 'static,
    ) -> T {
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            tokio::task::LocalSet::new().block_on(&rt, f())
        })
        .join()
        .unwrap()
    }

    /// A connected pair, with `drive` serving the server's end with `handler` and `outbox`: the
    /// client's end, the outbox, and `drive`'s result to come.
    async fn driven<H: WsHandler + 'static>(
        mut handler: H,
        outbox: Outbox,
    ) -> (
        TcpStream,
        Arc<Outbox>,
        tokio::task::JoinHandle<(CloseReason, H)>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let outbox = Arc::new(outbox);
        let ob = outbox.clone();
        let done = tokio::task::spawn_local(async move {
            let metrics = Metrics::new();
            let reason = drive(
                WsIo::Tcp(server, BytesMut::new()),
                &mut handler,
                &ob,
                1 << 20,
                &metrics,
            )
            .await;
            (reason, handler)
        });
        (client, outbox, done)
    }

    #[test]
    fn a_peer_that_stops_reading_is_closed_once_its_outbox_overflows() {
        on_local(|| async {
            // The client never reads: the kernel's buffers fill, the writer cannot finish its
            // write, and the outbox (1 MiB) overflows behind it.
            let (_client, outbox, done) = driven(Refused, Outbox::new(1 << 20, 1 << 20)).await;
            let frame = binary_frame(&vec![7u8; 256 * 1024]);
            let start = Instant::now();
            while outbox.push(frame.clone()).is_ok() {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "the outbox never filled"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            // The close does not wait for the peer to read: one bounded try at the rest.
            let (reason, _) = tokio::time::timeout(Duration::from_secs(5), done)
                .await
                .expect("the connection was kept after its outbox overflowed")
                .unwrap();
            assert_eq!(reason, CloseReason::SlowConsumer);
        });
    }

    #[test]
    fn pings_not_yet_answered_get_one_pong_for_the_latest() {
        on_local(|| async {
            let (mut client, _outbox, _done) = driven(Refused, Outbox::new(1 << 20, 1 << 20)).await;
            let ping = |text: &str| {
                let mut out = Vec::new();
                ws::encode_frame(
                    &mut out,
                    true,
                    Opcode::Ping,
                    Some([1, 2, 3, 4]),
                    text.as_bytes(),
                );
                out
            };
            // A hundred pings in one write are read and decoded together, before any answer.
            let burst: Vec<u8> = (0..100).flat_map(|i| ping(&format!("p{i}"))).collect();
            client.write_all(&burst).await.unwrap();
            let pong = |text: &str| server_frame(Opcode::Pong, text.as_bytes()).to_vec();
            let want = pong("p99");
            let (got, _) = read_exact_at(&mut client, want.len()).await;
            assert_eq!(got, want, "the first answer is the pong of the latest ping");
            // Nothing else was queued for the burst: the next answer is the next ping's.
            client.write_all(&ping("end")).await.unwrap();
            let want = pong("end");
            let (got, _) = read_exact_at(&mut client, want.len()).await;
            assert_eq!(got, want);
        });
    }

    /// A handler whose deadline stays where it was after it ran.
    struct StuckDeadline {
        at: Instant,
        runs: u32,
    }
    impl WsHandler for StuckDeadline {
        fn on_message(&mut self, _msg: Message) -> Result<(), CloseReason> {
            Ok(())
        }
        fn next_deadline(&self) -> Option<Instant> {
            Some(self.at)
        }
        fn on_deadline(&mut self, _now: Instant) -> Result<(), CloseReason> {
            self.runs += 1;
            Ok(())
        }
    }

    #[test]
    fn a_deadline_that_does_not_move_runs_once() {
        on_local(|| async {
            let handler = StuckDeadline {
                at: Instant::now(),
                runs: 0,
            };
            let (client, _outbox, done) = driven(handler, Outbox::new(1 << 20, 1 << 20)).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            drop(client);
            let (reason, handler) = tokio::time::timeout(Duration::from_secs(5), done)
                .await
                .expect("drive did not end")
                .unwrap();
            assert_eq!(reason, CloseReason::TransportClose);
            assert_eq!(handler.runs, 1, "the same deadline ran again and again");
        });
    }
}
