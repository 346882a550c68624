//! IPv4 and IPv6 fragment reassembly, as Wireshark does by default: the fragments of a datagram
//! are collected (in any order) and, once complete, the datagram is handed on as one packet with
//! the number and time of the fragment that completed it.
//!
//! Memory is bounded: a datagram is at most 64 KiB, at most [`MAX_PENDING`] datagrams are
//! collected at once (the oldest is dropped beyond), and one that has not completed after
//! [`TIMEOUT_NS`] of capture time is dropped (Linux's `ipfrag_time` is 30 s).

use std::collections::HashMap;
use std::net::IpAddr;

use etherparse::defrag::IpDefragBuf;
use etherparse::{IpFragOffset, IpNumber, Ipv4Header, Ipv6ExtensionSlice, Ipv6Header, LaxIpSlice};

/// Datagrams collected at once, at most.
pub const MAX_PENDING: usize = 4096;
/// Capture time after which an incomplete datagram is dropped.
pub const TIMEOUT_NS: i128 = 30_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
    protocol: u8,
}

struct Pending {
    buf: IpDefragBuf,
    /// Capture time of the datagram's first fragment.
    first_ns: i128,
    fragments: u32,
}

/// What a fragment did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Held until the rest arrives.
    Held,
    /// It completed a datagram of `fragments` fragments: `packet` is the whole IP packet (a
    /// header without fragmentation, then the reassembled payload).
    Complete { packet: Vec<u8>, fragments: u32 },
    /// It cannot be used (overlapping with a different end, misaligned, too large...).
    Bad(String),
}

/// The reassembly state of one run.
#[derive(Default)]
pub struct Defragmenter {
    pending: HashMap<Key, Pending>,
    /// Datagrams dropped incomplete (timed out or evicted).
    pub dropped: u64,
}

impl Defragmenter {
    /// Feeds the IP packet `ip` (starting at its IP header), a fragment, captured at `now_ns`.
    pub fn fragment(&mut self, ip: &[u8], now_ns: i128) -> Outcome {
        let Ok((slice, _)) = LaxIpSlice::from_slice(ip) else {
            return Outcome::Bad("IP header unreadable".into());
        };
        let payload = slice.payload();
        if payload.incomplete {
            return Outcome::Bad("fragment cut short by the snap length".into());
        }
        let Some((key, offset, more)) = fields(&slice) else {
            return Outcome::Bad("IPv6 fragment header missing".into());
        };
        self.expire(now_ns);
        if !self.pending.contains_key(&key) && self.pending.len() >= MAX_PENDING {
            self.evict_oldest();
        }
        let entry = self.pending.entry(key.clone()).or_insert_with(|| Pending {
            buf: IpDefragBuf::new(payload.ip_number, Vec::new(), Vec::new()),
            first_ns: now_ns,
            fragments: 0,
        });
        if let Err(e) = entry.buf.add(offset, more, payload.payload) {
            self.pending.remove(&key);
            self.dropped += 1;
            return Outcome::Bad(e.to_string());
        }
        entry.fragments += 1;
        if !entry.buf.is_complete() {
            return Outcome::Held;
        }
        let Some(done) = self.pending.remove(&key) else {
            return Outcome::Held;
        };
        let (data, _) = done.buf.take_bufs();
        match whole_packet(ip, &slice, payload.ip_number, &data) {
            Some(packet) => Outcome::Complete {
                packet,
                fragments: done.fragments,
            },
            None => Outcome::Bad("reassembled datagram larger than 65,535 bytes".into()),
        }
    }

    fn expire(&mut self, now_ns: i128) {
        let before = self.pending.len();
        self.pending
            .retain(|_, p| now_ns.saturating_sub(p.first_ns) <= TIMEOUT_NS);
        self.dropped += (before - self.pending.len()) as u64;
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .pending
            .iter()
            .min_by_key(|(_, p)| p.first_ns)
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            self.pending.remove(&k);
            self.dropped += 1;
        }
    }
}

/// What identifies a fragment's datagram, its offset and its more-fragments flag.
fn fields(slice: &LaxIpSlice<'_>) -> Option<(Key, IpFragOffset, bool)> {
    match slice {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            let key = Key {
                src: IpAddr::V4(h.source_addr()),
                dst: IpAddr::V4(h.destination_addr()),
                id: u32::from(h.identification()),
                protocol: h.protocol().0,
            };
            Some((key, h.fragments_offset(), h.more_fragments()))
        }
        LaxIpSlice::Ipv6(v6) => {
            let frag = v6.extensions().clone().into_iter().find_map(|e| match e {
                Ipv6ExtensionSlice::Fragment(f) => Some(f.to_header()),
                _ => None,
            })?;
            let h = v6.header();
            let key = Key {
                src: IpAddr::V6(h.source_addr()),
                dst: IpAddr::V6(h.destination_addr()),
                id: frag.identification,
                protocol: v6.payload().ip_number.0,
            };
            Some((key, frag.fragment_offset, frag.more_fragments))
        }
    }
}

/// A fragment in a few words, as a packet list shows it:
/// `10.0.0.1 → 10.0.0.2 TCP ID=0x4001 offset=40 MF`.
pub fn describe(ip: &[u8]) -> String {
    let Some((k, offset, more)) = LaxIpSlice::from_slice(ip)
        .ok()
        .and_then(|(slice, _)| fields(&slice))
    else {
        return String::new();
    };
    let proto = match k.protocol {
        6 => "TCP".to_string(),
        17 => "UDP".to_string(),
        n => format!("proto {n}"),
    };
    format!(
        "{} → {} {proto} ID=0x{:x} offset={}{}",
        k.src,
        k.dst,
        k.id,
        u32::from(offset.value()) * 8,
        if more { " MF" } else { "" }
    )
}

/// The whole datagram: the completing fragment's IP header without fragmentation (IPv6: the base
/// header only, its next header the payload's protocol), then `data`.
fn whole_packet(
    ip: &[u8],
    slice: &LaxIpSlice<'_>,
    proto: IpNumber,
    data: &[u8],
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(60 + data.len());
    match slice {
        LaxIpSlice::Ipv4(_) => {
            let (mut h, _) = Ipv4Header::from_slice(ip).ok()?;
            h.more_fragments = false;
            h.fragment_offset = IpFragOffset::ZERO;
            h.total_len = u16::try_from(usize::from(h.header_len() as u16) + data.len()).ok()?;
            h.header_checksum = h.calc_header_checksum();
            h.write(&mut out).ok()?;
        }
        LaxIpSlice::Ipv6(_) => {
            let (mut h, _) = Ipv6Header::from_slice(ip).ok()?;
            h.next_header = proto;
            h.payload_length = u16::try_from(data.len()).ok()?;
            h.write(&mut out).ok()?;
        }
    }
    out.extend_from_slice(data);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, TcpSlice};

    /// An IPv4/TCP packet carrying `payload`, split into fragments of `size` payload bytes
    /// (a multiple of 8).
    fn ipv4_fragments(payload: &[u8], size: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
        let mut whole = Vec::new();
        PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 3001, 1, 512)
            .write(&mut whole, payload)
            .unwrap();
        let (h, rest) = Ipv4Header::from_slice(&whole).unwrap();
        let mut frags = Vec::new();
        for (i, chunk) in rest.chunks(size).enumerate() {
            let mut fh = h.clone();
            fh.identification = 77;
            fh.dont_fragment = false;
            fh.fragment_offset = IpFragOffset::try_new((i * size / 8) as u16).unwrap();
            fh.more_fragments = (i + 1) * size < rest.len();
            fh.total_len = (fh.header_len() + chunk.len()) as u16;
            fh.header_checksum = fh.calc_header_checksum();
            let mut f = Vec::new();
            fh.write(&mut f).unwrap();
            f.extend_from_slice(chunk);
            frags.push(f);
        }
        (whole, frags)
    }

    fn tcp_payload(ip: &[u8]) -> Vec<u8> {
        let (s, _) = LaxIpSlice::from_slice(ip).unwrap();
        assert!(!s.payload().fragmented);
        TcpSlice::from_slice(s.payload().payload)
            .unwrap()
            .payload()
            .to_vec()
    }

    #[test]
    fn ipv4_fragments_in_any_order_give_the_datagram_back() {
        let payload: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let (_, frags) = ipv4_fragments(&payload, 1480);
        assert_eq!(frags.len(), 3);
        for order in [[0, 1, 2], [2, 0, 1], [1, 2, 0]] {
            let mut d = Defragmenter::default();
            let mut last = Outcome::Held;
            for (n, &i) in order.iter().enumerate() {
                last = d.fragment(&frags[i], n as i128);
                if n < 2 {
                    assert_eq!(last, Outcome::Held);
                }
            }
            let Outcome::Complete { packet, fragments } = last else {
                panic!("{last:?}");
            };
            assert_eq!(fragments, 3);
            assert_eq!(tcp_payload(&packet), payload);
            let (h, _) = Ipv4Header::from_slice(&packet).unwrap();
            assert_eq!(h.header_checksum, h.calc_header_checksum());
        }
    }

    #[test]
    fn ipv6_fragments_give_the_datagram_back() {
        let payload: Vec<u8> = (0..2500u32).map(|i| (i % 13) as u8).collect();
        let mut whole = Vec::new();
        PacketBuilder::ipv6([1; 16], [2; 16], 64)
            .tcp(40000, 3001, 1, 512)
            .write(&mut whole, &payload)
            .unwrap();
        let (h, rest) = Ipv6Header::from_slice(&whole).unwrap();
        let size = 1232;
        let mut d = Defragmenter::default();
        let chunks: Vec<&[u8]> = rest.chunks(size).collect();
        let mut last = Outcome::Held;
        for (i, chunk) in chunks.iter().enumerate() {
            let mut fh = h.clone();
            fh.next_header = IpNumber::IPV6_FRAGMENTATION_HEADER;
            fh.payload_length = (8 + chunk.len()) as u16;
            let frag = etherparse::Ipv6FragmentHeader::new(
                IpNumber::TCP,
                IpFragOffset::try_new((i * size / 8) as u16).unwrap(),
                i + 1 < chunks.len(),
                0x1234,
            );
            let mut f = Vec::new();
            fh.write(&mut f).unwrap();
            frag.write(&mut f).unwrap();
            f.extend_from_slice(chunk);
            last = d.fragment(&f, 0);
        }
        let Outcome::Complete { packet, fragments } = last else {
            panic!("{last:?}");
        };
        assert_eq!(fragments, 3);
        assert_eq!(tcp_payload(&packet), payload);
    }

    #[test]
    fn incomplete_datagrams_are_dropped_after_the_timeout_and_beyond_the_bound() {
        let payload = vec![7u8; 3000];
        let (_, frags) = ipv4_fragments(&payload, 1480);
        let mut d = Defragmenter::default();
        assert_eq!(d.fragment(&frags[0], 0), Outcome::Held);
        // The rest comes too late: the first fragment was dropped, so nothing completes.
        assert_eq!(d.fragment(&frags[1], TIMEOUT_NS + 1), Outcome::Held);
        assert_eq!(d.fragment(&frags[2], TIMEOUT_NS + 2), Outcome::Held);
        assert_eq!(d.dropped, 1);
        assert_eq!(
            describe(&frags[1]),
            "10.0.0.1 → 10.0.0.2 TCP ID=0x4d offset=1480 MF"
        );
        // Bounded: MAX_PENDING + 1 different datagrams keep MAX_PENDING.
        let mut d = Defragmenter::default();
        for id in 0..=MAX_PENDING as u16 {
            let mut f = frags[0].clone();
            f[4..6].copy_from_slice(&id.to_be_bytes());
            let (mut h, rest) = Ipv4Header::from_slice(&f).unwrap();
            h.header_checksum = h.calc_header_checksum();
            let mut g = Vec::new();
            h.write(&mut g).unwrap();
            g.extend_from_slice(rest);
            assert_eq!(d.fragment(&g, i128::from(id)), Outcome::Held);
        }
        assert_eq!(d.pending.len(), MAX_PENDING);
        assert_eq!(d.dropped, 1);
    }

    #[test]
    fn a_misaligned_middle_fragment_is_bad_and_nothing_panics() {
        let payload = vec![1u8; 3000];
        let (_, frags) = ipv4_fragments(&payload, 1480);
        let mut bad = frags[0].clone();
        bad.truncate(bad.len() - 3); // not a multiple of 8, more fragments set
        let len = bad.len() as u16;
        bad[2..4].copy_from_slice(&len.to_be_bytes());
        let mut d = Defragmenter::default();
        assert!(matches!(d.fragment(&bad, 0), Outcome::Bad(_)));
        for cut in 0..frags[1].len() {
            let _ = d.fragment(&frags[1][..cut], 0);
        }
    }
}
