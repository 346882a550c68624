//! Bench message ids: the marker written into each chat message and the cheap scan that finds it.
//!
//! Every message the bench sends carries, inside the `message` text of the chat payload, a fixed
//! 32-byte id: `~wsb~` + sender index (8 hex) + sequence number (8 hex) + intended send time in
//! microseconds since the run's epoch (11 hex), padded with `.` up to `--size`. The receive hot
//! path never builds a JSON tree: it looks for the marker with a precompiled `memmem` finder and
//! reads the three fixed-width hex fields in place.
//!
//! Hex digits and `~` need no JSON escaping, so the id survives any server that re-serializes the
//! payload (node's `JSON.stringify`, Python's `json.dumps` with spaces, ...).

use memchr::memmem;

/// The marker that starts every bench id.
pub const MARKER: &[u8; 5] = b"~wsb~";
const SENDER_HEX: usize = 8;
const SEQ_HEX: usize = 8;
const TIME_HEX: usize = 11;
/// Length of the id (marker + fields); the smallest accepted `--size`.
pub const ID_LEN: usize = MARKER.len() + SENDER_HEX + SEQ_HEX + TIME_HEX;
/// Largest intended send time an id can carry (2^44 µs, about 203 days).
pub const MAX_TIME_US: u64 = (1 << (4 * TIME_HEX)) - 1;

/// What one bench id says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageId {
    /// Index of the sending client (0-based, over the whole run).
    pub sender: u32,
    /// Sender's sequence number (0-based: the k-th slot of its open-loop schedule).
    pub seq: u32,
    /// Intended send time, µs since the run's epoch.
    pub t_us: u64,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn put_hex(out: &mut [u8], mut v: u64) {
    for b in out.iter_mut().rev() {
        *b = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

#[inline]
fn hex_val(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

#[inline]
fn read_hex(bytes: &[u8]) -> Option<u64> {
    bytes
        .iter()
        .try_fold(0u64, |acc, &b| Some((acc << 4) | hex_val(b)?))
}

/// Write the id into `out`, which must be exactly [`ID_LEN`] bytes.
pub fn write_id(out: &mut [u8], id: MessageId) {
    debug_assert_eq!(out.len(), ID_LEN);
    let (m, rest) = out.split_at_mut(MARKER.len());
    m.copy_from_slice(MARKER);
    let (s, rest) = rest.split_at_mut(SENDER_HEX);
    put_hex(s, u64::from(id.sender));
    let (q, t) = rest.split_at_mut(SEQ_HEX);
    put_hex(q, u64::from(id.seq));
    put_hex(t, id.t_us.min(MAX_TIME_US));
}

/// The id as a string (for building templates and in tests).
pub fn id_string(id: MessageId) -> String {
    let mut buf = [0u8; ID_LEN];
    write_id(&mut buf, id);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Finds bench ids in received text. Build once per worker and reuse (the finder is precompiled).
#[derive(Clone)]
pub struct Scanner {
    finder: memmem::Finder<'static>,
}

impl Default for Scanner {
    fn default() -> Self {
        Self::new()
    }
}

impl Scanner {
    pub fn new() -> Self {
        Scanner {
            finder: memmem::Finder::new(MARKER),
        }
    }

    /// The first well-formed bench id in `text`, if any. A marker followed by anything but
    /// 27 hex digits is skipped and the scan goes on.
    #[inline]
    pub fn find(&self, text: &[u8]) -> Option<MessageId> {
        let mut from = 0;
        while let Some(rel) = self.finder.find(text.get(from..)?) {
            let at = from + rel + MARKER.len();
            if let Some(fields) = text.get(at..at + ID_LEN - MARKER.len()) {
                let (s, rest) = fields.split_at(SENDER_HEX);
                let (q, t) = rest.split_at(SEQ_HEX);
                if let (Some(sender), Some(seq), Some(t_us)) =
                    (read_hex(s), read_hex(q), read_hex(t))
                {
                    return Some(MessageId {
                        sender: sender as u32,
                        seq: seq as u32,
                        t_us,
                    });
                }
            }
            from = at;
        }
        None
    }
}

/// A reusable message: the JSON arguments of `send_message` (or the text frame for `--raw`) with
/// the id's position recorded, so each send patches 32 bytes in place and allocates nothing.
#[derive(Debug, Clone)]
pub struct Template {
    text: String,
    id_at: usize,
}

impl Template {
    /// The `send_message` data of the original app, `{"room":R,"author":A,"message":M,"time":T}`,
    /// where `M` is the id padded with `.` to `size` bytes.
    pub fn chat(room: &str, author: &str, size: usize, time: &str) -> Template {
        // Field order as the original app sends it (serde_json's map would sort the keys).
        let prefix = format!(
            r#"{{"room":{},"author":{},"message":""#,
            json_str(room),
            json_str(author)
        );
        let text = format!("{prefix}{}\",\"time\":{}}}", padded(size), json_str(time));
        Template {
            text,
            id_at: prefix.len(),
        }
    }

    /// A plain text frame for `--raw` echo servers: the id padded with `.` to `size` bytes.
    pub fn raw(size: usize) -> Template {
        Template {
            text: padded(size),
            id_at: 0,
        }
    }

    /// Patch the id in place and return the text.
    #[inline]
    pub fn fill(&mut self, id: MessageId) -> &str {
        let mut buf = [0u8; ID_LEN];
        write_id(&mut buf, id);
        // The id is ASCII (marker and hex digits), replacing ASCII: the text stays UTF-8.
        let id_text = std::str::from_utf8(&buf).unwrap_or("");
        self.text
            .replace_range(self.id_at..self.id_at + ID_LEN, id_text);
        &self.text
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

/// A placeholder id (all zero hex) padded with `.` to `size` bytes.
fn padded(size: usize) -> String {
    let mut s = String::with_capacity(size.max(ID_LEN));
    s.push_str(&id_string(MessageId {
        sender: 0,
        seq: 0,
        t_us: 0,
    }));
    while s.len() < size {
        s.push('.');
    }
    s
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trips_through_the_scanner() {
        let id = MessageId {
            sender: 123_456,
            seq: 7,
            t_us: 98_765_432_101,
        };
        let s = id_string(id);
        assert_eq!(s.len(), ID_LEN);
        assert_eq!(s, "~wsb~0001e24000000007016fee0e525");
        let text = format!(
            r#"42["receive_message",{{"room":"r","author":"a","message":"{s}....","time":"1:2"}}]"#
        );
        assert_eq!(Scanner::new().find(text.as_bytes()), Some(id));
    }

    #[test]
    fn scanner_skips_malformed_markers_and_finds_the_real_one() {
        let id = MessageId {
            sender: 1,
            seq: 2,
            t_us: 3,
        };
        let text = format!("~wsb~nothex~wsb~{}", &id_string(id)[MARKER.len()..]);
        assert_eq!(Scanner::new().find(text.as_bytes()), Some(id));
        assert_eq!(Scanner::new().find(b"~wsb~0000"), None, "truncated id");
        assert_eq!(Scanner::new().find(b"hello"), None);
        assert_eq!(Scanner::new().find(b""), None);
    }

    #[test]
    fn chat_template_is_the_original_apps_send_message_data_and_patches_in_place() {
        let mut t = Template::chat("wsb-1-3", "bench-7", 40, "12:30");
        let id = MessageId {
            sender: 7,
            seq: 1,
            t_us: 1000,
        };
        let text = t.fill(id).to_string();
        let expected_msg = format!("{}........", id_string(id));
        assert_eq!(
            text,
            format!(
                r#"{{"room":"wsb-1-3","author":"bench-7","message":"{expected_msg}","time":"12:30"}}"#
            )
        );
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["message"].as_str().unwrap().len(), 40);
        assert_eq!(Scanner::new().find(text.as_bytes()), Some(id));
        // A second fill overwrites the same bytes.
        let id2 = MessageId {
            sender: 7,
            seq: 2,
            t_us: 2000,
        };
        assert_eq!(Scanner::new().find(t.fill(id2).as_bytes()), Some(id2));
        assert_eq!(t.len(), text.len());
    }

    #[test]
    fn json_special_characters_in_room_and_author_are_escaped() {
        let mut t = Template::chat("r\"1", "a\\b", ID_LEN, "t");
        let v: serde_json::Value = serde_json::from_str(t.fill(MessageId {
            sender: 1,
            seq: 2,
            t_us: 3,
        }))
        .unwrap();
        assert_eq!(v["room"], "r\"1");
        assert_eq!(v["author"], "a\\b");
    }

    #[test]
    fn raw_template_is_id_plus_padding() {
        let mut t = Template::raw(36);
        let id = MessageId {
            sender: 1,
            seq: 1,
            t_us: 1,
        };
        assert_eq!(t.fill(id).len(), 36);
        assert!(t.fill(id).ends_with("...."));
        assert_eq!(Scanner::new().find(t.fill(id).as_bytes()), Some(id));
    }

    #[test]
    fn large_times_are_clamped_not_wrapped() {
        let id = MessageId {
            sender: u32::MAX,
            seq: u32::MAX,
            t_us: u64::MAX,
        };
        let got = Scanner::new().find(id_string(id).as_bytes()).unwrap();
        assert_eq!(got.sender, u32::MAX);
        assert_eq!(got.seq, u32::MAX);
        assert_eq!(got.t_us, MAX_TIME_US);
    }

    /// Differential: the raw scan agrees with a full JSON parse of what a server relays, for any
    /// id, room, author and size, whatever the server's JSON spacing.
    mod differential {
        use super::*;
        use proptest::prelude::*;

        fn parse_reference(text: &str) -> Option<MessageId> {
            let json = text.strip_prefix("42")?;
            let v: serde_json::Value = serde_json::from_str(json).ok()?;
            let msg = v.get(1)?.get("message")?.as_str()?;
            let hex = msg.strip_prefix("~wsb~")?;
            Some(MessageId {
                sender: u32::from_str_radix(hex.get(0..8)?, 16).ok()?,
                seq: u32::from_str_radix(hex.get(8..16)?, 16).ok()?,
                t_us: u64::from_str_radix(hex.get(16..27)?, 16).ok()?,
            })
        }

        proptest! {
            #[test]
            fn scan_matches_a_json_parse(
                sender in any::<u32>(),
                seq in any::<u32>(),
                t_us in 0..MAX_TIME_US,
                room in "[ -~]{0,20}",
                author in "\\PC{0,12}",
                size in ID_LEN..200usize,
                pretty in any::<bool>(),
            ) {
                let id = MessageId { sender, seq, t_us };
                let mut t = Template::chat(&room, &author, size, "9:05");
                // What a server emits: the data re-serialized (maybe spaced) in receive_message.
                let data: serde_json::Value = serde_json::from_str(t.fill(id)).unwrap();
                let relayed = serde_json::json!(["receive_message", data]);
                let body = if pretty { serde_json::to_string_pretty(&relayed).unwrap() } else { relayed.to_string() };
                let text = format!("42{body}");
                prop_assert_eq!(Scanner::new().find(text.as_bytes()), parse_reference(&text));
                prop_assert_eq!(Scanner::new().find(text.as_bytes()), Some(id));
            }
        }
    }
}
