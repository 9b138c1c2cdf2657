//! [`ProtectorName`]: a protector's name, checked once where it enters a program.
//!
//! The contract's rule for a name: 1 to [`ProtectorName::MAX_LEN`] bytes of UTF-8 with no
//! whitespace and no control characters, so names print, log and compare unambiguously.
//! A daemon may lower the length limit (`max_name_len`), never raise it, so the daemon
//! builds names with [`ProtectorName::with_max_len`]; a client that checks with
//! [`ProtectorName::new`] before sending learns of a name no daemon accepts without a
//! round trip. [`InvalidName`]'s messages are the daemon's INVALID_ARGUMENT descriptions.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

/// A valid protector name. Dereferences to `str`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProtectorName(String);

/// Why a name is not a valid protector name. Its `Display` is a sentence fragment that
/// does not repeat the field, e.g. "must not be empty".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidName {
    /// The name is empty.
    Empty,
    /// The name is longer than allowed.
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// The name holds whitespace or a control character.
    Unprintable {
        /// The byte offset of the first such character.
        at: usize,
    },
}

impl fmt::Display for InvalidName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidName::Empty => f.write_str("must not be empty"),
            InvalidName::TooLong { len, max } => write!(f, "is too long: {len} bytes, max {max}"),
            InvalidName::Unprintable { at } => {
                write!(f, "contains whitespace or a control character at byte {at}")
            }
        }
    }
}

impl std::error::Error for InvalidName {}

impl ProtectorName {
    /// The contract's limit on a name's length in bytes.
    pub const MAX_LEN: usize = 256;

    /// `name` if it is valid under the contract's limit, [`ProtectorName::MAX_LEN`].
    pub fn new(name: impl Into<String>) -> Result<ProtectorName, InvalidName> {
        ProtectorName::with_max_len(name, ProtectorName::MAX_LEN)
    }

    /// `name` if it is valid and at most `max_len` bytes long (a daemon's `max_name_len`).
    pub fn with_max_len(name: impl Into<String>, max_len: usize) -> Result<ProtectorName, InvalidName> {
        let name = name.into();
        check(&name, max_len)?;
        Ok(ProtectorName(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name, as the `String` it was built from.
    pub fn into_string(self) -> String {
        self.0
    }

    /// Whether `name` is valid and at most `max_len` bytes long, checked where it is: for
    /// a caller that only looks a name up and need not keep it.
    pub fn check(name: &str, max_len: usize) -> Result<(), InvalidName> {
        check(name, max_len)
    }
}

/// The rules in the order they are reported: emptiness, length, then characters.
fn check(name: &str, max_len: usize) -> Result<(), InvalidName> {
    if name.is_empty() {
        return Err(InvalidName::Empty);
    }
    if name.len() > max_len {
        return Err(InvalidName::TooLong {
            len: name.len(),
            max: max_len,
        });
    }
    // The common name is printable ASCII: checked a word at a time, no decoding.
    if printable_ascii(name.as_bytes()) {
        return Ok(());
    }
    match name
        .char_indices()
        .find(|(_, c)| c.is_whitespace() || c.is_control())
    {
        Some((at, _)) => Err(InvalidName::Unprintable { at }),
        None => Ok(()),
    }
}

/// Whether every byte is printable ASCII (0x21 to 0x7e): ASCII's whitespace and control
/// characters are exactly the bytes up to 0x20 and 0x7f. Eight bytes at a time, the last
/// word overlapping the one before it; a name shorter than eight bytes is read as two
/// overlapping halves, or byte by byte below four.
#[inline]
fn printable_ascii(bytes: &[u8]) -> bool {
    let mut unprintable = 0;
    if let Some(last) = bytes.last_chunk::<8>() {
        let mut rest = bytes;
        while let Some((word, tail)) = rest.split_first_chunk::<8>() {
            unprintable |= unprintable_bytes(u64::from_le_bytes(*word));
            rest = tail;
        }
        if !rest.is_empty() {
            unprintable |= unprintable_bytes(u64::from_le_bytes(*last));
        }
    } else if let (Some(first), Some(last)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
        let word = u64::from(u32::from_le_bytes(*first)) | u64::from(u32::from_le_bytes(*last)) << 32;
        unprintable = unprintable_bytes(word);
    } else {
        return bytes.iter().all(|&b| b > 0x20 && b < 0x7f);
    }
    unprintable == 0
}

/// Nonzero when a byte of `word` is not printable ASCII. A byte at 0x80 or above has its
/// high bit set already. Below 0x80 no sum carries into the next byte: `b + 0x01` reaches
/// 0x80 only for 0x7f, and `b + 0x5f` stays below 0x80 only for bytes up to 0x20. (Past a
/// byte at 0x80 or above the sums may carry, but the word is rejected anyway.)
#[inline(always)]
fn unprintable_bytes(word: u64) -> u64 {
    const EACH: u64 = u64::from_le_bytes([1; 8]);
    (word | word.wrapping_add(EACH) | !word.wrapping_add(0x5f * EACH)) & (0x80 * EACH)
}

impl TryFrom<String> for ProtectorName {
    type Error = InvalidName;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        ProtectorName::new(name)
    }
}

impl TryFrom<&str> for ProtectorName {
    type Error = InvalidName;

    fn try_from(name: &str) -> Result<Self, Self::Error> {
        ProtectorName::new(name)
    }
}

impl FromStr for ProtectorName {
    type Err = InvalidName;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        ProtectorName::new(name)
    }
}

impl From<ProtectorName> for String {
    fn from(name: ProtectorName) -> String {
        name.0
    }
}

impl Deref for ProtectorName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for ProtectorName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for ProtectorName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProtectorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for ProtectorName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ProtectorName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names_are_kept_as_given() {
        for name in ["payments-db.eu/1", "ü", &"a".repeat(256)] {
            let valid = ProtectorName::new(name).expect(name);
            assert_eq!(valid.as_str(), name);
            assert_eq!(valid, name);
            assert_eq!(String::from(valid.clone()), name);
            assert_eq!(name.parse::<ProtectorName>(), Ok(valid));
        }
        assert!(ProtectorName::with_max_len("ü", 2).is_ok());
    }

    #[test]
    fn invalid_names_say_which_rule_they_break() {
        let long = "a".repeat(300);
        let cases = [
            ("", "must not be empty"),
            (long.as_str(), "is too long: 300 bytes, max 256"),
            ("db one", "contains whitespace or a control character at byte 2"),
            ("db\u{7}", "contains whitespace or a control character at byte 2"),
            ("é\u{0}", "contains whitespace or a control character at byte 2"),
            ("db\u{a0}", "contains whitespace or a control character at byte 2"),
            ("\n", "contains whitespace or a control character at byte 0"),
        ];
        for (name, want) in cases {
            let e = ProtectorName::try_from(name).expect_err(name);
            assert_eq!(e.to_string(), want, "{name:?}");
            assert_eq!(
                ProtectorName::check(name, ProtectorName::MAX_LEN),
                Err(e),
                "in place: {name:?}"
            );
        }
        assert_eq!(
            ProtectorName::with_max_len("abcde", 4),
            Err(InvalidName::TooLong { len: 5, max: 4 })
        );
        assert_eq!(
            ProtectorName::check("abcde", 4),
            Err(InvalidName::TooLong { len: 5, max: 4 })
        );
        assert_eq!(ProtectorName::check("abcd", 4), Ok(()));
    }

    #[test]
    fn the_word_test_finds_every_byte_at_every_place_in_names_of_every_short_length() {
        // Every ASCII byte, and a byte of a two-byte character, at each place of names of
        // 1 to 40 bytes: the word test against the byte rule it stands for.
        let fillers: [&[u8]; 2] = [b"a", b"~"];
        for len in 1..=40 {
            for at in 0..len {
                for filler in fillers {
                    for b in (0u8..0x80).chain([0xc3]) {
                        let mut name = filler.repeat(len);
                        name[at] = b;
                        let want = name.iter().all(|&b| b > 0x20 && b < 0x7f);
                        assert_eq!(printable_ascii(&name), want, "{name:?}");
                    }
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn check_agrees_with_the_character_rule(name in "(?s)[\\x00-\\x7f]{0,24}.?[\\x00-\\x7f]{0,24}") {
            let want = if name.is_empty() {
                Err(InvalidName::Empty)
            } else {
                match name.char_indices().find(|(_, c)| c.is_whitespace() || c.is_control()) {
                    Some((at, _)) => Err(InvalidName::Unprintable { at }),
                    None => Ok(()),
                }
            };
            proptest::prop_assert_eq!(check(&name, usize::MAX), want);
        }
    }

    #[test]
    fn the_ascii_fast_path_agrees_with_the_character_rule_for_every_character() {
        // The rule as written for characters, the reference the byte test must match.
        let reference = |name: &str| {
            name.char_indices()
                .find(|(_, c)| c.is_whitespace() || c.is_control())
        };
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            let name = format!("a{c}b");
            let want = match reference(&name) {
                Some((at, _)) => Err(InvalidName::Unprintable { at }),
                None => Ok(()),
            };
            assert_eq!(check(&name, ProtectorName::MAX_LEN), want, "{c:?}");
        }
    }
}
