//! Words for people: a count with its noun in the right number ("1 attempt", "2 attempts").

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
