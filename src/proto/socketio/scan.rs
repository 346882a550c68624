//! Allocation-free JSON well-formedness scanner for the Socket.IO payload fast path.
//!
//! [`scan`] checks the RFC 8259 grammar (§2 values, §4 objects, §5 arrays, §6 numbers, §7 strings)
//! in one pass without building anything and reports the shape of the top-level value and the
//! byte spans of a top-level array's first, second and last elements.
//!
//! It is deliberately conservative: it answers `Some` only for text that serde_json (the slow path
//! in `PacketRef::parse`) accepts with the same shape. Everything else (every error, and the rare
//! valid inputs it does not take: top-level numbers and literals, `\u` escapes of UTF-16
//! surrogates, nesting deeper than [`MAX_DEPTH`]) answers `None`, and the caller asks serde_json,
//! which decides and produces the exact error kind and byte offset.

/// Deepest nesting the scanner follows (the top-level array or object counts as 1); deeper text
/// goes to serde_json. Must stay below 128 (the width of the container stack bitset).
const MAX_DEPTH: u32 = 120;

/// The top-level value of a payload; element spans are byte ranges of the scanned text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FastShape {
    /// An array with its element count and the spans of its first, second and last elements.
    Array {
        count: usize,
        first: Option<(usize, usize)>,
        second: Option<(usize, usize)>,
        last: Option<(usize, usize)>,
    },
    /// An object.
    Object,
    /// A string.
    String,
}

/// Scans `text` as exactly one JSON value surrounded by optional whitespace (RFC 8259 §2 `ws`).
///
/// `Some` means well-formed (and accepted by serde_json); `None` means "ask serde_json".
pub(super) fn scan(text: &str) -> Option<FastShape> {
    let mut s = Scanner {
        b: text.as_bytes(),
        i: 0,
    };
    s.ws();
    let shape = match s.peek()? {
        b'"' => {
            s.string()?;
            FastShape::String
        }
        b'{' => {
            s.value()?;
            FastShape::Object
        }
        b'[' => {
            s.i += 1;
            let mut count = 0usize;
            let mut first = None;
            let mut second = None;
            let mut last = None;
            s.ws();
            if s.peek()? == b']' {
                s.i += 1;
            } else {
                loop {
                    s.ws();
                    let start = s.i;
                    s.value_below(1)?;
                    let el = Some((start, s.i));
                    match count {
                        0 => first = el,
                        1 => second = el,
                        _ => {}
                    }
                    last = el;
                    count += 1;
                    s.ws();
                    // RFC 8259 §5: elements are separated by commas; no trailing comma.
                    match s.peek()? {
                        b',' => s.i += 1,
                        b']' => {
                            s.i += 1;
                            break;
                        }
                        _ => return None,
                    }
                }
            }
            FastShape::Array {
                count,
                first,
                second,
                last,
            }
        }
        _ => return None,
    };
    s.ws();
    (s.i == s.b.len()).then_some(shape)
}

/// A byte that ends a run of unescaped string characters: `"`, `\\` or a control character.
#[inline(always)]
fn is_special(c: u8) -> bool {
    c == b'"' || c == b'\\' || c < 0x20
}

/// The high bit of each byte of `w` (little-endian) that may be [`is_special`]: per byte, `x - k`
/// borrows into the high bit exactly when `x < k` (for `x < 0x80`), which finds control
/// characters (`k` = 0x20) and, after XOR with `"` or `\\`, those bytes (`k` = 1). A borrow can
/// only make false hits in bytes above a true hit, so the lowest hit is exact.
#[inline(always)]
fn special_mask(w: u64) -> u64 {
    const ONES: u64 = u64::MAX / 255;
    const HIGH: u64 = ONES << 7;
    let below = |w: u64, k: u64| w.wrapping_sub(ONES * k) & !w & HIGH;
    below(w, 0x20)
        | below(w ^ (ONES * u64::from(b'"')), 1)
        | below(w ^ (ONES * u64::from(b'\\')), 1)
}

/// Position of the first [`is_special`] byte of `bytes` from `at` on: eight bytes at a time, the
/// last few one at a time.
#[inline(always)]
fn find_special(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let rest = bytes.get(at..)?;
        match rest.first_chunk::<8>() {
            Some(chunk) => {
                let hit = special_mask(u64::from_le_bytes(*chunk));
                if hit != 0 {
                    return Some(at + (hit.trailing_zeros() / 8) as usize);
                }
                at += 8;
            }
            None => return rest.iter().position(|&c| is_special(c)).map(|k| at + k),
        }
    }
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// RFC 8259 §2: `ws = *( %x20 / %x09 / %x0A / %x0D )`.
    #[inline(always)]
    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    /// One string, at its opening quote (RFC 8259 §7).
    #[inline(always)]
    fn string(&mut self) -> Option<()> {
        let b = self.b;
        let mut i = self.i + 1;
        loop {
            // Unescaped characters are U+0020 and up except `"` and `\\` (§7 `unescaped`).
            i = find_special(b, i)?;
            match b.get(i)? {
                b'"' => {
                    self.i = i + 1;
                    return Some(());
                }
                b'\\' => match b.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                    b'u' => {
                        // §7 `\uXXXX`; surrogates (lone or paired) are left to serde_json, which
                        // treats lone ones differently depending on where the string is.
                        let mut unit = 0u32;
                        for &h in b.get(i + 2..i + 6)? {
                            unit = unit * 16 + char::from(h).to_digit(16)?;
                        }
                        if (0xD800..=0xDFFF).contains(&unit) {
                            return None;
                        }
                        i += 6;
                    }
                    _ => return None,
                },
                _ => return None,
            }
        }
    }

    /// Digits `*DIGIT`; returns how many.
    #[inline(always)]
    fn digits(&mut self) -> usize {
        let n = self
            .b
            .get(self.i..)
            .unwrap_or_default()
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        self.i += n;
        n
    }

    /// One number (RFC 8259 §6): `[ minus ] int [ frac ] [ exp ]`, no leading zeros.
    #[inline(always)]
    fn number(&mut self) -> Option<()> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek()? {
            b'0' => {
                self.i += 1;
                if matches!(self.peek(), Some(b'0'..=b'9')) {
                    return None;
                }
            }
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return None;
            }
        }
        Some(())
    }

    /// A literal name (RFC 8259 §3): `true`, `false` or `null`.
    #[inline(always)]
    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.i + word.len();
        (self.b.get(self.i..end)? == word).then(|| self.i = end)
    }

    /// An object member's name and the name separator (RFC 8259 §4).
    #[inline(always)]
    fn key(&mut self) -> Option<()> {
        self.ws();
        if self.peek()? != b'"' {
            return None;
        }
        self.string()?;
        self.ws();
        if self.peek()? != b':' {
            return None;
        }
        self.i += 1;
        Some(())
    }

    /// One value of any kind at the top level, at its first byte (whitespace skipped).
    fn value(&mut self) -> Option<()> {
        self.value_below(0)
    }

    /// One value of any kind inside `outer` enclosing containers. Iterative: the kinds of the
    /// open containers are a bitset (bit d set = the container at depth d is an object).
    fn value_below(&mut self, outer: u32) -> Option<()> {
        let mut objects: u128 = 0;
        let mut depth = 0u32;
        loop {
            self.ws();
            match self.peek()? {
                b'"' => self.string()?,
                b'-' | b'0'..=b'9' => self.number()?,
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                open @ (b'[' | b'{') => {
                    if outer + depth >= MAX_DEPTH {
                        return None;
                    }
                    self.i += 1;
                    let is_object = open == b'{';
                    let bit = 1u128 << depth;
                    if is_object {
                        objects |= bit;
                    } else {
                        objects &= !bit;
                    }
                    depth += 1;
                    self.ws();
                    let close = if is_object { b'}' } else { b']' };
                    if self.peek()? == close {
                        // Empty container: a complete value.
                        self.i += 1;
                        depth -= 1;
                    } else {
                        if is_object {
                            self.key()?;
                        }
                        continue;
                    }
                }
                _ => return None,
            }
            // After a complete value: close containers, or take a separator and the next member.
            loop {
                let Some(top) = depth.checked_sub(1) else {
                    return Some(());
                };
                let in_object = (objects >> top) & 1 == 1;
                self.ws();
                match self.peek()? {
                    b',' => {
                        self.i += 1;
                        if in_object {
                            self.key()?;
                        }
                        break;
                    }
                    b']' if !in_object => {
                        self.i += 1;
                        depth = top;
                    }
                    b'}' if in_object => {
                        self.i += 1;
                        depth = top;
                    }
                    _ => return None,
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn find_special_is_the_first_special_byte(
            bytes in prop::collection::vec(prop_oneof![any::<u8>(), Just(b'"'), Just(b'\\'), 0x18u8..0x24], 0..40)
        ) {
            prop_assert_eq!(find_special(&bytes, 0), bytes.iter().position(|&c| is_special(c)));
            for at in 0..=bytes.len() + 1 {
                let expected = bytes.get(at..).and_then(|r| r.iter().position(|&c| is_special(c)).map(|k| at + k));
                prop_assert_eq!(find_special(&bytes, at), expected);
            }
        }
    }
}
