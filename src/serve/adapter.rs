//! Rooms and broadcast behind one trait ([`Adapter`]), with the in-process implementation.
//!
//! A broadcast is encoded once ([`Broadcast`]); its bytes are appended to each recipient's bounded
//! [`Outbox`](super::outbox::Outbox), whose buffer is what the recipient's writer writes (the only
//! copy per recipient, and it is the one the write needs anyway). The cluster adapter
//! ([`super::redis::RedisAdapter`]) implements the same trait on top of a [`LocalAdapter`] and also
//! forwards each `broadcast` to the other servers.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;

use super::metrics::Metrics;
use super::outbox::PushError;

/// Identifies one room member (a Socket.IO socket or a plain WebSocket client); unique per server.
pub type MemberId = u64;

/// Something that receives room broadcasts.
pub trait Member: Send + Sync {
    fn id(&self) -> MemberId;
    /// Queue `msg` for this member, in the form it speaks. Must not block.
    fn deliver(&self, msg: &Broadcast) -> Result<(), PushError>;
    /// The Socket.IO socket id, for members that are sockets (a cluster names senders and
    /// excluded sockets by it); `None` for plain WebSocket clients.
    fn sid(&self) -> Option<&Arc<str>> {
        None
    }
}

/// One message to many room members, encoded once.
#[derive(Debug)]
pub struct Broadcast {
    /// Socket.IO form: the packet's text frame, then one binary frame per attachment, each a complete
    /// server (unmasked) WebSocket frame.
    sio: Frames,
    /// Plain-WebSocket form (the event's data as a JSON text frame), built on first use.
    plain: Option<PlainForm>,
}

#[derive(Debug)]
enum Frames {
    One(Bytes),
    Many(Box<[Bytes]>),
}

#[derive(Debug)]
struct PlainForm {
    json: Bytes,
    frame: OnceLock<Bytes>,
}

impl Broadcast {
    /// A Socket.IO packet (already encoded as WebSocket frames: text header + attachments).
    pub fn new(frames: Vec<Bytes>) -> Self {
        let sio = if frames.len() == 1 {
            match frames.into_iter().next() {
                Some(f) => Frames::One(f),
                None => Frames::Many(Box::new([])),
            }
        } else {
            Frames::Many(frames.into_boxed_slice())
        };
        Broadcast { sio, plain: None }
    }

    /// A single-frame Socket.IO packet.
    pub fn single(frame: Bytes) -> Self {
        Broadcast {
            sio: Frames::One(frame),
            plain: None,
        }
    }

    /// Also deliver to plain WebSocket members, as a text frame carrying `json`.
    pub fn with_plain(mut self, json: Bytes) -> Self {
        self.plain = Some(PlainForm {
            json,
            frame: OnceLock::new(),
        });
        self
    }

    /// The frames for Socket.IO members.
    pub fn sio_frames(&self) -> &[Bytes] {
        match &self.sio {
            Frames::One(f) => std::slice::from_ref(f),
            Frames::Many(v) => v,
        }
    }

    /// The text frame for plain WebSocket members, if this broadcast has a plain form; `encode`
    /// builds the frame from the JSON text the first time (then it is shared by every plain member).
    pub fn plain_frame(&self, encode: impl FnOnce(&[u8]) -> Bytes) -> Option<Bytes> {
        let p = self.plain.as_ref()?;
        Some(p.frame.get_or_init(|| encode(&p.json)).clone())
    }
}

/// What a broadcast did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Recipients whose queue accepted the message.
    pub delivered: usize,
    /// Recipients whose queue was full or closed.
    pub dropped: usize,
}

/// Room membership and fan-out for one Socket.IO namespace.
pub trait Adapter: Send + Sync {
    /// Add `member` to `room`; false if it was already there.
    fn join(&self, room: &str, member: Arc<dyn Member>) -> bool;
    /// Remove a member from a room; false if it was not there. Empty rooms disappear.
    fn leave(&self, room: &str, id: MemberId) -> bool;
    /// Whether `id` is in `room`.
    fn is_member(&self, room: &str, id: MemberId) -> bool;
    /// Deliver to every member of `room` except `except` (the sender, as `socket.to(room).emit`).
    fn broadcast(&self, room: &str, except: Option<MemberId>, msg: &Broadcast) -> Delivery;
    /// Members of a room (0 when it does not exist).
    fn room_size(&self, room: &str) -> usize;
    /// Every room with its size.
    fn rooms(&self) -> Vec<(String, usize)>;
}

/// The members of one room.
type Members = Vec<Arc<dyn Member>>;

/// The in-process adapter: a map of rooms to member lists (rooms are small and broadcast is the hot
/// path, so members live in a `Vec` that is walked without hashing).
pub struct LocalAdapter {
    rooms: RwLock<HashMap<Box<str>, Members>>,
    metrics: Arc<Metrics>,
}

impl LocalAdapter {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        LocalAdapter {
            rooms: RwLock::new(HashMap::new()),
            metrics,
        }
    }

    /// Deliver to `room` except `except`; with `SID`, also return the excluded member's socket id
    /// (found on the same walk, for a cluster adapter that names the sender to its peers).
    #[inline]
    fn fan_out<const SID: bool>(
        &self,
        room: &str,
        except: Option<MemberId>,
        msg: &Broadcast,
    ) -> (Delivery, Option<Arc<str>>) {
        let rooms = self.rooms.read().unwrap_or_else(|p| p.into_inner());
        let mut d = Delivery::default();
        let mut sid = None;
        if let Some(list) = rooms.get(room) {
            for m in list {
                if Some(m.id()) == except {
                    if SID {
                        sid = m.sid().cloned();
                    }
                    continue;
                }
                match m.deliver(msg) {
                    Ok(()) => d.delivered += 1,
                    Err(_) => d.dropped += 1,
                }
            }
        }
        drop(rooms);
        self.count(d);
        (d, sid)
    }

    fn count(&self, d: Delivery) {
        Metrics::add(&self.metrics.messages_out, d.delivered as u64);
        Metrics::add(&self.metrics.dropped, d.dropped as u64);
    }

    /// [`Adapter::broadcast`], also returning the socket id of the excluded member (when it is a
    /// Socket.IO socket in the room).
    pub fn broadcast_naming_sender(
        &self,
        room: &str,
        except: Option<MemberId>,
        msg: &Broadcast,
    ) -> (Delivery, Option<Arc<str>>) {
        self.fan_out::<true>(room, except, msg)
    }

    /// A broadcast from another server (socket.io-adapter `apply` semantics): every member of any
    /// room in `rooms` (every member of every room when `rooms` is empty) once, except members of
    /// a room in `except` and sockets whose id is in `except`.
    pub fn broadcast_to_rooms(
        &self,
        rooms: &[String],
        except: &[String],
        msg: &Broadcast,
    ) -> Delivery {
        let map = self.rooms.read().unwrap_or_else(|p| p.into_inner());
        let excluded = excluded_members(&map, except);
        let mut d = Delivery::default();
        let mut seen: HashSet<MemberId> = HashSet::new();
        let single = rooms.len() == 1;
        let mut visit = |list: &Members| {
            for m in list {
                let id = m.id();
                if excluded.contains(&id) || (!single && !seen.insert(id)) {
                    continue;
                }
                match m.deliver(msg) {
                    Ok(()) => d.delivered += 1,
                    Err(_) => d.dropped += 1,
                }
            }
        };
        if rooms.is_empty() {
            map.values().for_each(&mut visit);
        } else {
            for r in rooms {
                if let Some(list) = map.get(r.as_str()) {
                    visit(list);
                }
            }
        }
        drop(map);
        self.count(d);
        d
    }

    /// The Socket.IO sockets a remote `fetchSockets` / `allSockets` selects (same selection as
    /// [`LocalAdapter::broadcast_to_rooms`]), each with the rooms it is in, sorted by id.
    pub fn sockets(&self, rooms: &[String], except: &[String]) -> Vec<(Arc<str>, Vec<String>)> {
        let map = self.rooms.read().unwrap_or_else(|p| p.into_inner());
        let excluded = excluded_members(&map, except);
        let wanted = |room: &str| rooms.is_empty() || rooms.iter().any(|r| r == room);
        let mut found: HashMap<Arc<str>, (bool, Vec<String>)> = HashMap::new();
        for (room, list) in map.iter() {
            for m in list {
                let Some(sid) = m.sid() else { continue };
                if excluded.contains(&m.id()) {
                    continue;
                }
                let e = found.entry(sid.clone()).or_default();
                e.0 |= wanted(room);
                e.1.push(room.to_string());
            }
        }
        drop(map);
        let mut out: Vec<_> = found
            .into_iter()
            .filter(|(_, (selected, _))| *selected)
            .map(|(sid, (_, mut rooms))| {
                rooms.sort();
                (sid, rooms)
            })
            .collect();
        out.sort();
        out
    }
}

/// Members excluded by an `except` list: the members of those rooms and the sockets with those ids.
fn excluded_members(map: &HashMap<Box<str>, Members>, except: &[String]) -> HashSet<MemberId> {
    let mut out = HashSet::new();
    if except.is_empty() {
        return out;
    }
    for e in except {
        if let Some(list) = map.get(e.as_str()) {
            out.extend(list.iter().map(|m| m.id()));
        }
    }
    for list in map.values() {
        for m in list {
            if m.sid().is_some_and(|s| except.iter().any(|e| **e == **s)) {
                out.insert(m.id());
            }
        }
    }
    out
}

impl Adapter for LocalAdapter {
    fn join(&self, room: &str, member: Arc<dyn Member>) -> bool {
        let mut rooms = self.rooms.write().unwrap_or_else(|p| p.into_inner());
        match rooms.get_mut(room) {
            Some(list) => {
                let id = member.id();
                if list.iter().any(|m| m.id() == id) {
                    return false;
                }
                list.push(member);
            }
            None => {
                rooms.insert(room.into(), vec![member]);
                self.metrics.rooms.fetch_add(1, Ordering::Relaxed);
            }
        }
        true
    }

    fn leave(&self, room: &str, id: MemberId) -> bool {
        let mut rooms = self.rooms.write().unwrap_or_else(|p| p.into_inner());
        let Some(list) = rooms.get_mut(room) else {
            return false;
        };
        let Some(pos) = list.iter().position(|m| m.id() == id) else {
            return false;
        };
        list.swap_remove(pos);
        if list.is_empty() {
            rooms.remove(room);
            self.metrics.rooms.fetch_sub(1, Ordering::Relaxed);
        } else if list.capacity() > 4 * list.len() + 8 {
            list.shrink_to_fit();
        }
        true
    }

    fn is_member(&self, room: &str, id: MemberId) -> bool {
        let rooms = self.rooms.read().unwrap_or_else(|p| p.into_inner());
        rooms
            .get(room)
            .is_some_and(|l| l.iter().any(|m| m.id() == id))
    }

    fn broadcast(&self, room: &str, except: Option<MemberId>, msg: &Broadcast) -> Delivery {
        self.fan_out::<false>(room, except, msg).0
    }

    fn room_size(&self, room: &str) -> usize {
        let rooms = self.rooms.read().unwrap_or_else(|p| p.into_inner());
        rooms.get(room).map_or(0, Vec::len)
    }

    fn rooms(&self) -> Vec<(String, usize)> {
        let rooms = self.rooms.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = rooms
            .iter()
            .map(|(k, l)| (k.to_string(), l.len()))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Probe {
        id: MemberId,
        got: Mutex<Vec<Bytes>>,
        full: bool,
    }
    impl Member for Probe {
        fn id(&self) -> MemberId {
            self.id
        }
        fn deliver(&self, msg: &Broadcast) -> Result<(), PushError> {
            if self.full {
                return Err(PushError::Full);
            }
            self.got
                .lock()
                .unwrap()
                .extend(msg.sio_frames().iter().cloned());
            Ok(())
        }
    }
    fn probe(id: MemberId, full: bool) -> Arc<Probe> {
        Arc::new(Probe {
            id,
            got: Mutex::new(vec![]),
            full,
        })
    }

    #[test]
    fn broadcast_reaches_other_members_only_and_shares_one_encoding() {
        let metrics = Arc::new(Metrics::new());
        let a = LocalAdapter::new(metrics.clone());
        let (p1, p2, p3, outsider) = (
            probe(1, false),
            probe(2, false),
            probe(3, false),
            probe(4, false),
        );
        for p in [&p1, &p2, &p3] {
            assert!(a.join("7", p.clone()));
        }
        assert!(!a.join("7", p2.clone()), "joining twice is a no-op");
        a.join("8", outsider.clone());
        let frame = Bytes::from_static(b"\x81\x0542[\"x\"]");
        let d = a.broadcast("7", Some(1), &Broadcast::single(frame.clone()));
        assert_eq!(
            d,
            Delivery {
                delivered: 2,
                dropped: 0
            }
        );
        assert!(p1.got.lock().unwrap().is_empty(), "sender excluded");
        let got = p2.got.lock().unwrap()[0].clone();
        assert_eq!(got.as_ptr(), frame.as_ptr(), "same buffer, not a copy");
        assert!(outsider.got.lock().unwrap().is_empty());
        assert_eq!(metrics.messages_out.load(Ordering::Relaxed), 2);
        assert_eq!(metrics.rooms.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn leaving_the_last_member_removes_the_room_and_full_queues_count_as_dropped() {
        let metrics = Arc::new(Metrics::new());
        let a = LocalAdapter::new(metrics.clone());
        a.join("r", probe(1, false));
        a.join("r", probe(2, true));
        let d = a.broadcast("r", None, &Broadcast::single(Bytes::from_static(b"x")));
        assert_eq!(
            d,
            Delivery {
                delivered: 1,
                dropped: 1
            }
        );
        assert_eq!(metrics.dropped.load(Ordering::Relaxed), 1);
        assert!(a.is_member("r", 2));
        assert!(a.leave("r", 2));
        assert!(!a.leave("r", 2));
        assert!(a.leave("r", 1));
        assert_eq!(a.room_size("r"), 0);
        assert!(a.rooms().is_empty());
        assert_eq!(metrics.rooms.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn plain_form_is_encoded_once() {
        let b = Broadcast::single(Bytes::from_static(b"f")).with_plain(Bytes::from_static(b"{}"));
        let mut calls = 0;
        let f1 = b.plain_frame(|j| {
            calls += 1;
            Bytes::copy_from_slice(j)
        });
        let f2 = b.plain_frame(|_| unreachable!("encoded twice"));
        assert_eq!(calls, 1);
        assert_eq!(f1, f2);
        assert!(
            Broadcast::single(Bytes::new())
                .plain_frame(|_| Bytes::new())
                .is_none()
        );
    }

    struct Sock {
        probe: Arc<Probe>,
        sid: Arc<str>,
    }
    impl Member for Sock {
        fn id(&self) -> MemberId {
            self.probe.id
        }
        fn deliver(&self, msg: &Broadcast) -> Result<(), PushError> {
            self.probe.deliver(msg)
        }
        fn sid(&self) -> Option<&Arc<str>> {
            Some(&self.sid)
        }
    }

    #[test]
    fn remote_broadcasts_reach_each_selected_member_once_minus_the_excluded() {
        let metrics = Arc::new(Metrics::new());
        let a = LocalAdapter::new(metrics.clone());
        let (p1, p2, p3, p4) = (
            probe(1, false),
            probe(2, false),
            probe(3, false),
            probe(4, false),
        );
        let s2 = Arc::new(Sock {
            probe: p2.clone(),
            sid: "sid-two".into(),
        });
        a.join("7", p1.clone());
        a.join("8", p1.clone());
        a.join("7", s2.clone());
        a.join("8", p3.clone());
        a.join("9", p4.clone());
        let msg = Broadcast::single(Bytes::from_static(b"m"));
        let rooms = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // Two rooms: a member of both gets it once.
        let d = a.broadcast_to_rooms(&rooms(&["7", "8"]), &[], &msg);
        assert_eq!(d.delivered, 3);
        assert_eq!(p1.got.lock().unwrap().len(), 1);
        // Excluded by socket id and by room.
        let d = a.broadcast_to_rooms(&rooms(&["7"]), &rooms(&["sid-two"]), &msg);
        assert_eq!(d.delivered, 1);
        assert_eq!(p2.got.lock().unwrap().len(), 1);
        let d = a.broadcast_to_rooms(&rooms(&["7", "8"]), &rooms(&["8"]), &msg);
        assert_eq!(d.delivered, 1, "only sid-two: 1 and 3 are in room 8");
        // No rooms: everyone, once.
        let d = a.broadcast_to_rooms(&[], &[], &msg);
        assert_eq!(d.delivered, 4);
        assert_eq!(p4.got.lock().unwrap().len(), 1);
        assert!(a.broadcast_to_rooms(&rooms(&["nope"]), &[], &msg).delivered == 0);
        // The sender's socket id comes back from a local broadcast that excluded it.
        let (d, sid) = a.broadcast_naming_sender("7", Some(2), &msg);
        assert_eq!((d.delivered, sid.as_deref()), (1, Some("sid-two")));
        let (_, sid) = a.broadcast_naming_sender("7", Some(1), &msg);
        assert_eq!(sid, None, "a plain WebSocket member has no socket id");
        // Sockets (members with a socket id) with their rooms.
        a.join("9", s2.clone());
        assert_eq!(
            a.sockets(&rooms(&["9"]), &[]),
            vec![(Arc::from("sid-two"), rooms(&["7", "9"]))]
        );
        assert!(a.sockets(&[], &rooms(&["7"])).is_empty());
    }
}
