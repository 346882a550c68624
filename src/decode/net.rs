//! Link layers (Ethernet, Linux cooked v1/v2, BSD loopback, raw IP), IPv4/IPv6 and TCP headers.
//!
//! One function, [`dissect`], turns a captured packet into borrowed views of its headers and the
//! TCP payload; the detail tree re-reads the same views to show every field.

use std::net::IpAddr;

use etherparse::{IpNumber, LaxIpSlice, TcpSlice};

use super::capture::LinkType;

/// The link-layer header of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Ethernet II, with up to two 802.1Q tags.
    Ethernet {
        dst: [u8; 6],
        src: [u8; 6],
        ethertype: u16,
        vlans: [Option<u16>; 2],
    },
    /// Linux cooked capture v1 (LINKTYPE_LINUX_SLL, 16-byte header).
    Sll {
        packet_type: u16,
        arphrd: u16,
        addr: [u8; 8],
        addr_len: u16,
        protocol: u16,
    },
    /// Linux cooked capture v2 (LINKTYPE_LINUX_SLL2, 20-byte header).
    Sll2 {
        protocol: u16,
        ifindex: u32,
        arphrd: u16,
        packet_type: u8,
        addr: [u8; 8],
        addr_len: u8,
    },
    /// BSD loopback / NULL: a 4-byte address family in host (or network, for LOOP) byte order.
    Null { family: u32 },
    /// No link header: the packet starts with the IP header.
    Raw,
}

/// A TCP segment inside an IPv4 or IPv6 packet.
#[derive(Debug, Clone)]
pub struct Dissected<'a> {
    pub link: Link,
    /// Length of the link-layer header (including VLAN tags).
    pub link_len: usize,
    pub ip: LaxIpSlice<'a>,
    pub tcp: TcpSlice<'a>,
    /// Offset of the TCP header in the captured bytes.
    pub tcp_offset: usize,
    /// The TCP payload (cut to what the IP length declares; may be short when the snap length cut it).
    pub payload: &'a [u8],
    /// The IP header declared more bytes than were captured.
    pub truncated: bool,
}

impl Dissected<'_> {
    pub fn src(&self) -> IpAddr {
        self.ip.source_addr()
    }
    pub fn dst(&self) -> IpAddr {
        self.ip.destination_addr()
    }
}

/// Why a packet is not a TCP segment we can follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Not IP (ARP, LLDP, ...) or an unsupported link type.
    NotIp(String),
    /// IP but not TCP (UDP, ICMP, ...): the protocol name.
    NotTcp(&'static str),
    /// An IP fragment, held until its datagram is complete ([`super::ipfrag`]); what it is, in
    /// a few words ([`super::ipfrag::describe`]; empty before the decoder looked at it).
    Fragment(String),
    /// Headers are cut or inconsistent.
    Malformed(String),
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;

fn be16(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(d.get(at..at + 2)?.try_into().ok()?))
}

fn be32(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(d.get(at..at + 4)?.try_into().ok()?))
}

fn short(what: &str) -> Skip {
    Skip::Malformed(format!("{what} header cut short"))
}

/// Parse the link layer; returns it, its length and the ethertype of what follows (None = IP by version nibble).
fn link_layer(linktype: LinkType, d: &[u8]) -> Result<(Link, usize, Option<u16>), Skip> {
    match linktype {
        LinkType::ETHERNET => {
            let dst: [u8; 6] = d
                .get(0..6)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| short("Ethernet"))?;
            let src: [u8; 6] = d
                .get(6..12)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| short("Ethernet"))?;
            let mut ethertype = be16(d, 12).ok_or_else(|| short("Ethernet"))?;
            let mut len = 14;
            let mut vlans = [None, None];
            let mut n = 0;
            while ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
                let tci = be16(d, len).ok_or_else(|| short("802.1Q"))?;
                ethertype = be16(d, len + 2).ok_or_else(|| short("802.1Q"))?;
                if let Some(slot) = vlans.get_mut(n) {
                    *slot = Some(tci & 0x0fff);
                }
                n += 1;
                len += 4;
                if n > 2 {
                    return Err(Skip::Malformed("more than two VLAN tags".into()));
                }
            }
            Ok((
                Link::Ethernet {
                    dst,
                    src,
                    ethertype,
                    vlans,
                },
                len,
                Some(ethertype),
            ))
        }
        LinkType::LINUX_SLL => {
            // https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL.html
            let packet_type = be16(d, 0).ok_or_else(|| short("SLL"))?;
            let arphrd = be16(d, 2).ok_or_else(|| short("SLL"))?;
            let addr_len = be16(d, 4).ok_or_else(|| short("SLL"))?;
            let addr: [u8; 8] = d
                .get(6..14)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| short("SLL"))?;
            let protocol = be16(d, 14).ok_or_else(|| short("SLL"))?;
            Ok((
                Link::Sll {
                    packet_type,
                    arphrd,
                    addr,
                    addr_len,
                    protocol,
                },
                16,
                Some(protocol),
            ))
        }
        LinkType::LINUX_SLL2 => {
            // https://www.tcpdump.org/linktypes/LINKTYPE_LINUX_SLL2.html
            let protocol = be16(d, 0).ok_or_else(|| short("SLL2"))?;
            let ifindex = be32(d, 4).ok_or_else(|| short("SLL2"))?;
            let arphrd = be16(d, 8).ok_or_else(|| short("SLL2"))?;
            let packet_type = *d.get(10).ok_or_else(|| short("SLL2"))?;
            let addr_len = *d.get(11).ok_or_else(|| short("SLL2"))?;
            let addr: [u8; 8] = d
                .get(12..20)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| short("SLL2"))?;
            Ok((
                Link::Sll2 {
                    protocol,
                    ifindex,
                    arphrd,
                    packet_type,
                    addr,
                    addr_len,
                },
                20,
                Some(protocol),
            ))
        }
        LinkType::NULL | LinkType::LOOP => {
            let raw: [u8; 4] = d
                .get(0..4)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| short("Null/Loopback"))?;
            // NULL is in the capturing host's byte order; LOOP in network order. Families are small.
            let le = u32::from_le_bytes(raw);
            let family = if linktype == LinkType::LOOP || le > 0xffff {
                u32::from_be_bytes(raw)
            } else {
                le
            };
            let ethertype = match family {
                2 => ETHERTYPE_IPV4,
                // AF_INET6 differs between BSDs (24, 28, 30) and Linux (10).
                10 | 24 | 28 | 30 => ETHERTYPE_IPV6,
                other => return Err(Skip::NotIp(format!("loopback family {other}"))),
            };
            Ok((Link::Null { family }, 4, Some(ethertype)))
        }
        LinkType::RAW | LinkType::IPV4 | LinkType::IPV6 => Ok((Link::Raw, 0, None)),
        other => Err(Skip::NotIp(format!("link type {other} is not supported"))),
    }
}

/// Where the IP header starts in a captured packet (after the link layer), if it is IP.
pub fn ip_start(linktype: LinkType, data: &[u8]) -> Option<usize> {
    match link_layer(linktype, data).ok()? {
        (_, len, None | Some(ETHERTYPE_IPV4) | Some(ETHERTYPE_IPV6)) => Some(len),
        _ => None,
    }
}

/// Dissect a captured packet down to its TCP payload.
pub fn dissect(linktype: LinkType, data: &[u8]) -> Result<Dissected<'_>, Skip> {
    let (link, link_len, ethertype) = link_layer(linktype, data)?;
    match ethertype {
        None | Some(ETHERTYPE_IPV4) | Some(ETHERTYPE_IPV6) => {}
        Some(0x0806) => return Err(Skip::NotIp("ARP".into())),
        Some(other) => return Err(Skip::NotIp(format!("ethertype 0x{other:04x}"))),
    }
    let ip_bytes = data.get(link_len..).unwrap_or_default();
    let (ip, _ext_err) =
        LaxIpSlice::from_slice(ip_bytes).map_err(|e| Skip::Malformed(format!("IP: {e}")))?;
    let payload = ip.payload();
    if payload.fragmented {
        return Err(Skip::Fragment(String::new()));
    }
    if payload.ip_number != IpNumber::TCP {
        return Err(Skip::NotTcp(ip_protocol_name(payload.ip_number)));
    }
    let truncated = payload.incomplete;
    let tcp =
        TcpSlice::from_slice(payload.payload).map_err(|e| Skip::Malformed(format!("TCP: {e}")))?;
    let tcp_offset = link_len + (ip_bytes.len() - payload.payload.len()).min(ip_bytes.len());
    let payload = tcp.payload();
    Ok(Dissected {
        link,
        link_len,
        ip,
        tcp,
        tcp_offset,
        payload,
        truncated,
    })
}

fn ip_protocol_name(n: IpNumber) -> &'static str {
    match n {
        IpNumber::UDP => "UDP",
        IpNumber::ICMP => "ICMP",
        IpNumber::IPV6_ICMP => "ICMPv6",
        IpNumber::IGMP => "IGMP",
        IpNumber::SCTP => "SCTP",
        _ => "IP",
    }
}

/// Format a MAC address as Wireshark does (`aa:bb:cc:dd:ee:ff`).
pub fn mac(m: &[u8]) -> String {
    let mut s = String::with_capacity(m.len() * 3);
    for (i, b) in m.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4/TCP packet 10.0.0.1:1234 -> 10.0.0.2:80 with payload "hi".
    fn ipv4_tcp() -> Vec<u8> {
        let builder = etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(1234, 80, 1000, 512);
        let mut v = Vec::new();
        builder.write(&mut v, b"hi").unwrap();
        v
    }

    #[test]
    fn every_link_type_reaches_the_tcp_payload() {
        let ip = ipv4_tcp();
        let mut eth = vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x08, 0x00];
        eth.extend_from_slice(&ip);
        let mut vlan = vec![
            1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x81, 0x00, 0x00, 0x05, 0x08, 0x00,
        ];
        vlan.extend_from_slice(&ip);
        let mut sll = vec![0, 0, 3, 4, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
        sll.extend_from_slice(&ip);
        let mut sll2 = vec![
            0x08, 0x00, 0, 0, 0, 0, 0, 1, 3, 4, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
        ];
        sll2.extend_from_slice(&ip);
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(&ip);
        let mut lo = 2u32.to_be_bytes().to_vec();
        lo.extend_from_slice(&ip);
        for (lt, bytes) in [
            (LinkType::ETHERNET, &eth),
            (LinkType::ETHERNET, &vlan),
            (LinkType::LINUX_SLL, &sll),
            (LinkType::LINUX_SLL2, &sll2),
            (LinkType::NULL, &null),
            (LinkType::LOOP, &lo),
            (LinkType::RAW, &ip),
        ] {
            let d = dissect(lt, bytes).unwrap_or_else(|e| panic!("{lt}: {e:?}"));
            assert_eq!(d.payload, b"hi", "{lt}");
            assert_eq!(d.tcp.source_port(), 1234);
            assert_eq!(d.src().to_string(), "10.0.0.1");
            assert_eq!(
                &bytes[d.tcp_offset..d.tcp_offset + 2],
                &1234u16.to_be_bytes()
            );
        }
        let d = dissect(LinkType::ETHERNET, &vlan).unwrap();
        assert!(matches!(
            d.link,
            Link::Ethernet {
                vlans: [Some(5), None],
                ..
            }
        ));
    }

    #[test]
    fn ipv6_and_non_tcp_and_garbage() {
        let builder = etherparse::PacketBuilder::ipv6([0; 16], [1; 16], 64).tcp(1, 2, 3, 4);
        let mut v = Vec::new();
        builder.write(&mut v, b"x").unwrap();
        assert_eq!(dissect(LinkType::RAW, &v).unwrap().payload, b"x");
        let builder = etherparse::PacketBuilder::ipv4([1; 4], [2; 4], 64).udp(1, 2);
        let mut u = Vec::new();
        builder.write(&mut u, b"x").unwrap();
        assert_eq!(dissect(LinkType::RAW, &u).unwrap_err(), Skip::NotTcp("UDP"));
        assert!(matches!(
            dissect(LinkType::ETHERNET, &[1, 2, 3]),
            Err(Skip::Malformed(_))
        ));
        assert!(matches!(
            dissect(LinkType::RAW, &[0x45, 0, 0]),
            Err(Skip::Malformed(_))
        ));
        assert!(matches!(dissect(LinkType(147), &v), Err(Skip::NotIp(_))));
    }

    #[test]
    fn ethernet_padding_is_not_payload() {
        let ip = etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64).tcp(1, 2, 3, 4);
        let mut v = vec![0u8; 12];
        v.extend_from_slice(&[0x08, 0x00]);
        ip.write(&mut v, b"").unwrap();
        v.extend_from_slice(&[0u8; 6]); // padded to 60 bytes
        assert_eq!(dissect(LinkType::ETHERNET, &v).unwrap().payload, b"");
    }
}
