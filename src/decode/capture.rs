//! Capture input: pcap and pcapng files (or stdin) read in constant memory, and live capture.
//!
//! Packets are pushed to a callback one at a time and borrowed from the reader's circular buffer,
//! so memory does not grow with the size of the file. Errors name the input, the record number and
//! the byte offset of the record that was wrong.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::{Arc, Mutex};

use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError};

/// Initial size of the reader's circular buffer; grown (up to [`MAX_RECORD`]) for larger records.
const BUFFER_SIZE: usize = 1 << 20;
/// Largest record accepted. A declared length above this is a corrupt record header.
pub const MAX_RECORD: usize = 64 << 20;
/// Largest packet in a legacy pcap record (Wireshark's WTAP_MAX_PACKET_SIZE_STANDARD).
const MAX_LEGACY_CAPLEN: u32 = 262_144;

/// A link-layer header type (the pcap LINKTYPE_ numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkType(pub i32);

impl LinkType {
    pub const NULL: LinkType = LinkType(0);
    pub const ETHERNET: LinkType = LinkType(1);
    pub const RAW: LinkType = LinkType(101);
    pub const LOOP: LinkType = LinkType(108);
    pub const LINUX_SLL: LinkType = LinkType(113);
    pub const IPV4: LinkType = LinkType(228);
    pub const IPV6: LinkType = LinkType(229);
    pub const LINUX_SLL2: LinkType = LinkType(276);

    /// Wireshark's name for the encapsulation.
    pub fn name(self) -> &'static str {
        match self {
            Self::NULL => "NULL/Loopback",
            Self::ETHERNET => "Ethernet",
            Self::RAW | Self::IPV4 | Self::IPV6 => "Raw IP",
            Self::LOOP => "OpenBSD loopback",
            Self::LINUX_SLL => "Linux cooked-mode capture v1",
            Self::LINUX_SLL2 => "Linux cooked-mode capture v2",
            _ => "Unknown",
        }
    }
}

impl fmt::Display for LinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

/// A capture timestamp: seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timestamp {
    pub secs: i64,
    pub nanos: u32,
}

impl Timestamp {
    /// Nanoseconds since the epoch (saturating).
    pub fn as_nanos(self) -> i128 {
        i128::from(self.secs) * 1_000_000_000 + i128::from(self.nanos)
    }

    /// `self - earlier` in nanoseconds (may be negative when a capture goes back in time).
    pub fn nanos_since(self, earlier: Timestamp) -> i128 {
        self.as_nanos() - earlier.as_nanos()
    }
}

/// One captured packet, borrowed from the reader.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// 1-based frame number, as Wireshark's `frame.number`.
    pub number: u64,
    pub ts: Timestamp,
    pub linktype: LinkType,
    /// The captured bytes (may be shorter than `orig_len` when the snap length cut it).
    pub data: &'a [u8],
    /// Length of the packet on the wire.
    pub orig_len: u32,
    /// Byte offset of the record in the file (0 for live capture).
    pub file_offset: u64,
}

/// What a packet callback asks the reader to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// Reading a capture failed; the message names the input and where.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("{input}: {error}")]
    Open { input: String, error: io::Error },
    #[error("{input}: is a directory, not a capture file")]
    Directory { input: String },
    #[error("{input}: empty file, not a pcap or pcapng capture")]
    Empty { input: String },
    #[error("{input}: not a pcap or pcapng file (starts with {magic})")]
    BadMagic { input: String, magic: String },
    #[error("{input}: truncated: record {record} at byte offset {offset} is cut short ({detail})")]
    Truncated {
        input: String,
        record: u64,
        offset: u64,
        detail: String,
    },
    #[error("{input}: corrupt record header: record {record} at byte offset {offset}: {detail}")]
    Corrupt {
        input: String,
        record: u64,
        offset: u64,
        detail: String,
    },
    #[error("{input}: read error at byte offset {offset}: {error}")]
    Read {
        input: String,
        offset: u64,
        error: io::Error,
    },
}

/// The last I/O error of a [`Recording`] reader, shared with the [`FileReader`].
type LastError = Arc<Mutex<Option<io::Error>>>;

/// A `Read` that remembers the last I/O error, which pcap-parser reduces to `ReadError`.
struct Recording<R> {
    inner: R,
    last_error: LastError,
    /// Bytes peeked before pcap-parser took over, replayed by the first read.
    prefix: Vec<u8>,
    prefix_left: usize,
}

/// The first read hands pcap-parser at least this much (or the whole input).
const FIRST_READ: usize = 64 * 1024;

impl<R: Read> Recording<R> {
    fn read_once(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let copy = io::Error::new(e.kind(), e.to_string());
                    if let Ok(mut slot) = self.last_error.lock() {
                        *slot = Some(e);
                    }
                    return Err(copy);
                }
                ok => return ok,
            }
        }
    }
}

impl<R: Read> Read for Recording<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.prefix_left > 0 {
            // pcap-parser probes the format with what its first read returns: hand it the whole
            // file header (section header blocks can be long), not just the peeked magic.
            let mut n = 0;
            while n < buf.len() && n < FIRST_READ {
                let Some(dst) = buf.get_mut(n..) else { break };
                if self.prefix_left > 0 {
                    let take = self.prefix_left.min(dst.len());
                    let from = self.prefix.len() - self.prefix_left;
                    if let (Some(d), Some(s)) =
                        (dst.get_mut(..take), self.prefix.get(from..from + take))
                    {
                        d.copy_from_slice(s);
                    }
                    self.prefix_left -= take;
                    n += take;
                    continue;
                }
                match self.read_once(dst)? {
                    0 => break,
                    k => n += k,
                }
            }
            return Ok(n);
        }
        self.read_once(buf)
    }
}

/// Per-interface parameters of a pcapng section.
#[derive(Debug, Clone, Copy)]
struct Interface {
    linktype: LinkType,
    /// Timestamp units per second.
    resolution: u64,
    /// Seconds added to every timestamp.
    offset: i64,
}

/// Which file format the reader found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Pcap,
    PcapNg,
}

/// Streaming reader of one pcap or pcapng input.
pub struct FileReader {
    input: String,
    reader: Box<dyn PcapReaderIterator + Send>,
    format: Format,
    big_endian: bool,
    legacy: Option<(LinkType, bool /* nanosecond */, u32 /* snaplen */)>,
    interfaces: Vec<Interface>,
    /// Records (blocks) read so far, header included.
    records: u64,
    last_error: LastError,
}

impl FileReader {
    /// Open a file, or stdin for `-`.
    pub fn open(path: &Path) -> Result<FileReader, CaptureError> {
        let input = display_name(path);
        if path.as_os_str() == "-" {
            return Self::from_read(input, io::stdin());
        }
        let meta = std::fs::metadata(path).map_err(|source| CaptureError::Open {
            input: input.clone(),
            error: source,
        })?;
        if meta.is_dir() {
            return Err(CaptureError::Directory { input });
        }
        let file = File::open(path).map_err(|source| CaptureError::Open {
            input: input.clone(),
            error: source,
        })?;
        Self::from_read(input, file)
    }

    /// Read a capture from any byte source (`input` names it in errors).
    pub fn from_read<R: Read + Send + 'static>(
        input: String,
        read: R,
    ) -> Result<FileReader, CaptureError> {
        // Peek at the magic ourselves first so the errors can be precise.
        let last_error = LastError::default();
        let mut rec = Recording {
            inner: read,
            last_error: last_error.clone(),
            prefix: Vec::new(),
            prefix_left: 0,
        };
        let mut head = [0u8; 4];
        let mut got = 0;
        while got < head.len() {
            match rec.read_once(head.get_mut(got..).unwrap_or_default()) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) => {
                    let source = last_error
                        .lock()
                        .ok()
                        .and_then(|mut s| s.take())
                        .unwrap_or(e);
                    return Err(if source.raw_os_error() == Some(21) {
                        CaptureError::Directory { input }
                    } else {
                        CaptureError::Read {
                            input,
                            offset: 0,
                            error: source,
                        }
                    });
                }
            }
        }
        let prefix = head.get(..got).unwrap_or_default().to_vec();
        if got == 0 {
            return Err(CaptureError::Empty { input });
        }
        let magic = u32::from_le_bytes(head);
        let known = matches!(
            magic,
            0xa1b2_c3d4
                | 0xd4c3_b2a1
                | 0xa1b2_3c4d
                | 0x4d3c_b2a1
                | 0xa1b2_cd34
                | 0x34cd_b2a1
                | 0x0a0d_0d0a
        );
        if !known {
            return Err(CaptureError::BadMagic {
                input,
                magic: hex_prefix(&prefix),
            });
        }
        rec.prefix_left = prefix.len();
        rec.prefix = prefix;
        let reader = match pcap_parser::create_reader(BUFFER_SIZE, rec) {
            Ok(r) => r,
            Err(PcapError::Eof | PcapError::Incomplete(_) | PcapError::UnexpectedEof) => {
                return Err(CaptureError::Truncated {
                    input,
                    record: 0,
                    offset: 0,
                    detail: "the file header is incomplete".into(),
                });
            }
            Err(PcapError::HeaderNotRecognized) => {
                return Err(CaptureError::BadMagic {
                    input,
                    magic: hex_prefix(&head),
                });
            }
            Err(e) => {
                return Err(CaptureError::Corrupt {
                    input,
                    record: 0,
                    offset: 0,
                    detail: format!("file header: {e}"),
                });
            }
        };
        let format = if magic == 0x0a0d_0d0a {
            Format::PcapNg
        } else {
            Format::Pcap
        };
        Ok(FileReader {
            input,
            reader,
            format,
            big_endian: false,
            legacy: None,
            interfaces: Vec::new(),
            records: 0,
            last_error,
        })
    }

    /// The input's name as used in messages.
    pub fn input(&self) -> &str {
        &self.input
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// Bytes consumed so far (for progress).
    pub fn position(&self) -> u64 {
        self.reader.consumed() as u64
    }

    /// Call `on_packet` for every packet; `first_number` is the frame number of the first packet.
    /// Returns the number of packets delivered.
    pub fn for_each<F>(&mut self, first_number: u64, mut on_packet: F) -> anyhow::Result<u64>
    where
        F: FnMut(&Packet<'_>) -> anyhow::Result<Flow>,
    {
        let mut number = first_number;
        loop {
            let offset = self.reader.consumed() as u64;
            match self.reader.next() {
                Ok((len, block)) => {
                    self.records += 1;
                    let flow = match block {
                        PcapBlockOwned::LegacyHeader(h) => {
                            self.legacy = Some((
                                LinkType(h.network.0),
                                h.is_nanosecond_precision(),
                                h.snaplen,
                            ));
                            self.big_endian = h.is_bigendian();
                            Flow::Continue
                        }
                        PcapBlockOwned::Legacy(b) => {
                            let (linktype, nano, _) =
                                self.legacy.unwrap_or((LinkType::ETHERNET, false, 0));
                            if b.caplen > MAX_LEGACY_CAPLEN {
                                return Err(corrupt(
                                    &self.input,
                                    self.records,
                                    offset,
                                    format!("captured length {} is too large", b.caplen),
                                )
                                .into());
                            }
                            let nanos = if nano {
                                b.ts_usec
                            } else {
                                b.ts_usec.saturating_mul(1000)
                            };
                            if nanos >= 1_000_000_000 {
                                return Err(corrupt(
                                    &self.input,
                                    self.records,
                                    offset,
                                    format!("timestamp fraction {} out of range", b.ts_usec),
                                )
                                .into());
                            }
                            let pkt = Packet {
                                number,
                                ts: Timestamp {
                                    secs: i64::from(b.ts_sec),
                                    nanos,
                                },
                                linktype,
                                data: b.data,
                                orig_len: b.origlen,
                                file_offset: offset,
                            };
                            number += 1;
                            on_packet(&pkt)?
                        }
                        PcapBlockOwned::NG(block) => match block {
                            Block::SectionHeader(shb) => {
                                self.interfaces.clear();
                                self.big_endian = shb.big_endian();
                                Flow::Continue
                            }
                            Block::InterfaceDescription(idb) => {
                                let resolution = idb.ts_resolution().unwrap_or(1_000_000).max(1);
                                self.interfaces.push(Interface {
                                    linktype: LinkType(idb.linktype.0),
                                    resolution,
                                    offset: idb.ts_offset(),
                                });
                                Flow::Continue
                            }
                            Block::EnhancedPacket(epb) => {
                                let Some(iface) = self.interfaces.get(epb.if_id as usize).copied()
                                else {
                                    return Err(corrupt(
                                        &self.input,
                                        self.records,
                                        offset,
                                        format!("packet refers to unknown interface {}", epb.if_id),
                                    )
                                    .into());
                                };
                                let units = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
                                let secs = (units / iface.resolution) as i64 + iface.offset;
                                let frac = units % iface.resolution;
                                let nanos = (u128::from(frac) * 1_000_000_000
                                    / u128::from(iface.resolution))
                                    as u32;
                                let data = epb.data.get(..epb.caplen as usize).unwrap_or(epb.data);
                                let pkt = Packet {
                                    number,
                                    ts: Timestamp { secs, nanos },
                                    linktype: iface.linktype,
                                    data,
                                    orig_len: epb.origlen,
                                    file_offset: offset,
                                };
                                number += 1;
                                on_packet(&pkt)?
                            }
                            Block::SimplePacket(spb) => {
                                let Some(iface) = self.interfaces.first().copied() else {
                                    return Err(corrupt(
                                        &self.input,
                                        self.records,
                                        offset,
                                        "simple packet block before any interface".into(),
                                    )
                                    .into());
                                };
                                let pkt = Packet {
                                    number,
                                    ts: Timestamp::default(),
                                    linktype: iface.linktype,
                                    data: spb.data,
                                    orig_len: spb.origlen,
                                    file_offset: offset,
                                };
                                number += 1;
                                on_packet(&pkt)?
                            }
                            _ => Flow::Continue,
                        },
                    };
                    // No shift per record: refill() shifts once per buffer (consume() would
                    // move the unread half of the buffer every time the position passes the middle).
                    self.reader.consume_noshift(len);
                    if flow == Flow::Stop {
                        return Ok(number - first_number);
                    }
                }
                Err(PcapError::Eof) => return Ok(number - first_number),
                Err(PcapError::Incomplete(_)) => self.refill(offset)?,
                Err(PcapError::BufferTooSmall) => {
                    let need = self.declared_record_len();
                    let limit = match self.format {
                        Format::Pcap => MAX_LEGACY_CAPLEN as usize + 16,
                        Format::PcapNg => MAX_RECORD,
                    };
                    match need {
                        Some(n) if n <= limit => {
                            let want = (n + 4096).next_power_of_two().max(BUFFER_SIZE * 2);
                            if !self.reader.grow(want) {
                                return Err(self
                                    .corrupt(offset, format!("record of {n} bytes does not fit"))
                                    .into());
                            }
                            self.refill(offset)?;
                        }
                        Some(n) => {
                            return Err(self
                                .corrupt(offset, format!("declared length {n} is too large"))
                                .into());
                        }
                        None => {
                            return Err(self
                                .corrupt(offset, "record does not fit the buffer".into())
                                .into());
                        }
                    }
                }
                Err(PcapError::UnexpectedEof) => {
                    let have = self.reader.data().len();
                    let detail = match self.declared_record_len() {
                        Some(n) if n > have => format!("{have} of {n} bytes present"),
                        _ => format!("{have} bytes left, a record header needs more"),
                    };
                    return Err(CaptureError::Truncated {
                        input: self.input.clone(),
                        record: self.records + 1,
                        offset,
                        detail,
                    }
                    .into());
                }
                Err(PcapError::ReadError) => return Err(self.read_error(offset).into()),
                Err(e) => {
                    let detail = describe_parse_error(&e);
                    return Err(self.corrupt(offset, detail).into());
                }
            }
        }
    }

    fn refill(&mut self, offset: u64) -> Result<(), CaptureError> {
        if self.reader.refill().is_err() {
            return Err(self.read_error(offset));
        }
        Ok(())
    }

    fn read_error(&self, offset: u64) -> CaptureError {
        let source = self.last_error.lock().ok().and_then(|mut s| s.take());
        CaptureError::Read {
            input: self.input.clone(),
            offset,
            error: source.unwrap_or_else(|| io::Error::other("read failed")),
        }
    }

    fn corrupt(&self, offset: u64, detail: String) -> CaptureError {
        corrupt(&self.input, self.records + 1, offset, detail)
    }

    /// The total length the record at the head of the buffer declares, if its header is there.
    fn declared_record_len(&self) -> Option<usize> {
        let data = self.reader.data();
        let word = |at: usize| -> Option<u32> {
            let b: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
            Some(if self.big_endian {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            })
        };
        match self.format {
            Format::Pcap => word(8).map(|caplen| caplen as usize + 16),
            Format::PcapNg => {
                // A section header block carries its own byte order: look at its magic.
                if data.get(..4) == Some(&[0x0a, 0x0d, 0x0d, 0x0a]) {
                    let bom: [u8; 4] = data.get(8..12)?.try_into().ok()?;
                    let len: [u8; 4] = data.get(4..8)?.try_into().ok()?;
                    return Some(if bom == [0x1a, 0x2b, 0x3c, 0x4d] {
                        u32::from_be_bytes(len) as usize
                    } else {
                        u32::from_le_bytes(len) as usize
                    });
                }
                word(4).map(|n| n as usize)
            }
        }
    }
}

/// A corrupt-record error for record number `record` (1-based, file header included).
fn corrupt(input: &str, record: u64, offset: u64, detail: String) -> CaptureError {
    CaptureError::Corrupt {
        input: input.to_string(),
        record,
        offset,
        detail,
    }
}

fn describe_parse_error(e: &PcapError<&[u8]>) -> String {
    match e {
        PcapError::NomError(_, kind) => format!("malformed block ({kind:?})"),
        PcapError::OwnedNomError(_, kind) => format!("malformed block ({kind:?})"),
        PcapError::HeaderNotRecognized => "block not recognized".into(),
        other => other.to_string(),
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    let mut s = String::new();
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    if s.is_empty() {
        "nothing".into()
    } else {
        format!("0x{s}")
    }
}

/// How an input path is named in messages.
pub fn display_name(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "<stdin>".into()
    } else {
        path.display().to_string()
    }
}

/// Live capture through libpcap (the `live` cargo feature).
#[cfg(feature = "live")]
pub mod live {
    use super::{Flow, LinkType, Packet, Timestamp};
    use anyhow::Context;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Capture on `interface` (optionally with a BPF `filter`) until `stop` is set, the callback
    /// asks to stop, or the interface goes away.
    pub fn run<F>(
        interface: &str,
        filter: Option<&str>,
        stop: Arc<AtomicBool>,
        mut on_packet: F,
    ) -> anyhow::Result<u64>
    where
        F: FnMut(&Packet<'_>) -> anyhow::Result<Flow>,
    {
        let mut cap = pcap::Capture::from_device(interface)
            .with_context(|| format!("while opening interface {interface}"))?
            .promisc(false)
            .snaplen(262_144)
            .immediate_mode(true)
            .timeout(200)
            .open()
            .with_context(|| format!("while starting live capture on {interface} (are you root?)"))?
            // Non-blocking, so Ctrl-C is noticed even when no packet comes (in immediate mode
            // libpcap may ignore the read timeout and block).
            .setnonblock()
            .with_context(|| format!("while setting up live capture on {interface}"))?;
        if let Some(f) = filter {
            cap.filter(f, true)
                .with_context(|| format!("while compiling capture filter `{f}`"))?;
        }
        let linktype = LinkType(cap.get_datalink().0);
        let mut number = 1u64;
        while !stop.load(Ordering::Relaxed) {
            match cap.next_packet() {
                Ok(p) => {
                    let pkt = Packet {
                        number,
                        ts: Timestamp {
                            secs: p.header.ts.tv_sec,
                            nanos: (p.header.ts.tv_usec as u32).saturating_mul(1000),
                        },
                        linktype,
                        data: p.data,
                        orig_len: p.header.len,
                        file_offset: 0,
                    };
                    number += 1;
                    if on_packet(&pkt)? == Flow::Stop {
                        break;
                    }
                }
                Err(pcap::Error::TimeoutExpired) => {
                    // Nothing to read: wait a little (bounded latency, no busy loop).
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(pcap::Error::NoMorePackets) => break,
                Err(e) => {
                    return Err(
                        anyhow::Error::new(e).context(format!("while capturing on {interface}"))
                    );
                }
            }
        }
        Ok(number - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy_header(linktype: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&4u16.to_le_bytes());
        v.extend_from_slice(&0i32.to_le_bytes());
        v.extend_from_slice(&0u32.to_le_bytes());
        v.extend_from_slice(&65535u32.to_le_bytes());
        v.extend_from_slice(&linktype.to_le_bytes());
        v
    }

    fn record(v: &mut Vec<u8>, ts: u32, data: &[u8]) {
        v.extend_from_slice(&ts.to_le_bytes());
        v.extend_from_slice(&500u32.to_le_bytes());
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
    }

    fn read_all(bytes: Vec<u8>) -> anyhow::Result<Vec<(u64, Vec<u8>, Timestamp)>> {
        let mut r = FileReader::from_read("t.pcap".into(), io::Cursor::new(bytes))?;
        let mut out = Vec::new();
        r.for_each(1, |p| {
            out.push((p.number, p.data.to_vec(), p.ts));
            Ok(Flow::Continue)
        })?;
        Ok(out)
    }

    #[test]
    fn legacy_pcap_records_are_delivered_in_order_with_timestamps() {
        let mut v = legacy_header(1);
        record(&mut v, 10, b"abc");
        record(&mut v, 11, b"defg");
        let got = read_all(v).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0, 1);
        assert_eq!(got[1].1, b"defg");
        assert_eq!(
            got[1].2,
            Timestamp {
                secs: 11,
                nanos: 500_000
            }
        );
    }

    #[test]
    fn truncated_record_names_record_number_and_offset() {
        let mut v = legacy_header(1);
        record(&mut v, 10, b"abc");
        record(&mut v, 11, b"defghij");
        v.truncate(v.len() - 3);
        let err = read_all(v).unwrap_err().to_string();
        assert!(
            err.contains("t.pcap: truncated: record 3 at byte offset 43"),
            "{err}"
        );
    }

    #[test]
    fn corrupt_caplen_is_reported_not_allocated() {
        let mut v = legacy_header(1);
        record(&mut v, 10, b"abc");
        v.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xf0, 0, 0, 0, 0]);
        v.extend_from_slice(&[0u8; 64]);
        let err = read_all(v).unwrap_err().to_string();
        assert!(
            err.contains("corrupt record header: record 3 at byte offset 43"),
            "{err}"
        );
    }

    #[test]
    fn wrong_magic_and_empty_input_are_clear_errors() {
        let err =
            FileReader::from_read("x".into(), io::Cursor::new(b"GET / HTTP/1.1\r\n".to_vec()))
                .err()
                .unwrap()
                .to_string();
        assert_eq!(err, "x: not a pcap or pcapng file (starts with 0x47455420)");
        let err = FileReader::from_read("e".into(), io::Cursor::new(Vec::new()))
            .err()
            .unwrap()
            .to_string();
        assert_eq!(err, "e: empty file, not a pcap or pcapng capture");
    }

    #[test]
    fn a_record_larger_than_the_buffer_grows_it() {
        let mut v = legacy_header(1);
        let big = vec![7u8; 200_000];
        // 200 kB records: bigger than half the initial buffer, still valid.
        for _ in 0..8 {
            record(&mut v, 1, &big);
        }
        let got = read_all(v).unwrap();
        assert_eq!(got.len(), 8);
        assert!(got.iter().all(|g| g.1.len() == 200_000));
    }
}
