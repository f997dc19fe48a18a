//! Words for people: a count with its noun in the right number ("1 attempt", "2 attempts"),
//! and text from a .torrent or a tracker made safe to print.

use std::fmt;

/// A count and its noun, displayed as `"{n} {noun}"` with the singular for exactly one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counted {
    n: u64,
    one: &'static str,
    many: &'static str,
}

/// `n` followed by `one` when `n == 1`, else by `many`: `count(1, "try", "tries")`
/// displays as `1 try`.
pub fn count(n: impl TryInto<u64>, one: &'static str, many: &'static str) -> Counted {
    // Every count shown is a usize or smaller, so the conversion cannot fail on the
    // platforms we build for; saturate rather than panic if it ever did.
    let n = n.try_into().unwrap_or(u64::MAX);
    Counted { n, one, many }
}

impl fmt::Display for Counted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = if self.n == 1 { self.one } else { self.many };
        write!(f, "{} {noun}", self.n)
    }
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn singular_only_for_one() {
        assert_eq!(count(0u32, "attempt", "attempts").to_string(), "0 attempts");
        assert_eq!(count(1u32, "attempt", "attempts").to_string(), "1 attempt");
        assert_eq!(count(2usize, "try", "tries").to_string(), "2 tries");
        assert_eq!(count(1usize, "try", "tries").to_string(), "1 try");
    }
}

/// `s` with every control character (ESC, BEL, CR, newline ...) written as a `\u{..}`
/// escape, so that a hostile name cannot move the cursor, retitle the terminal or fake
/// lines of output.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return s.into();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect::<String>()
        .into()
}

#[cfg(test)]
mod printable_tests {
    use super::printable;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(printable("plain é 名"), "plain é 名");
        assert_eq!(printable("\x1b[31mred\x07\n"), "\\u{1b}[31mred\\u{7}\\u{a}");
    }
}
