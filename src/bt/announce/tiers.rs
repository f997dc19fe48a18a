//! `announce-list` tiers (BEP 12): which tracker to ask, in which order.
//!
//! Each tier is shuffled once when the list is built; an announce round tries the tiers
//! in order and the trackers of a tier in their current order, stops at the first that
//! answers, and moves that one to the front of its tier so the next round asks it first.

use super::random_u64;

/// The most trackers kept from a torrent: a round tries each once, and each can take
/// minutes to time out, so a torrent listing thousands must not hold the announce thread.
pub const MAX_TRACKERS: usize = 50;

/// Every tracker of every tier failed (or there was none).
#[derive(Debug, thiserror::Error)]
#[error("no tracker answered ({} tried)", errors.len())]
pub struct AllFailed<E: std::error::Error> {
    /// Each tracker tried, in order, with its error.
    pub errors: Vec<(String, E)>,
}

/// The trackers of a torrent, in tiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tiers {
    tiers: Vec<Vec<String>>,
}

impl Tiers {
    /// The tiers for a torrent: its `announce-list` if it has a non-empty one (BEP 12 says
    /// `announce` is then ignored), else a single tier of its `announce`. Each tier is
    /// shuffled; empty tiers are dropped; at most [`MAX_TRACKERS`] are kept.
    pub fn new(announce: Option<&str>, announce_list: Option<&[Vec<String>]>) -> Tiers {
        let mut t = Self::in_order(announce, announce_list);
        for tier in &mut t.tiers {
            shuffle(tier);
        }
        t
    }

    /// Like [`Tiers::new`] without the shuffle (tests, and callers that shuffle alone).
    pub fn in_order(announce: Option<&str>, announce_list: Option<&[Vec<String>]>) -> Tiers {
        let source: Vec<Vec<String>> = match announce_list {
            Some(list) if list.iter().any(|t| !t.is_empty()) => list.to_vec(),
            _ => announce
                .map(|a| vec![vec![a.to_owned()]])
                .unwrap_or_default(),
        };
        let mut kept = 0;
        let mut tiers = Vec::new();
        for tier in source {
            let room = MAX_TRACKERS - kept;
            let tier: Vec<String> = tier.into_iter().take(room).collect();
            kept += tier.len();
            if !tier.is_empty() {
                tiers.push(tier);
            }
        }
        Tiers { tiers }
    }

    /// The tiers in their current order.
    pub fn tiers(&self) -> &[Vec<String>] {
        &self.tiers
    }

    /// Whether there is no tracker at all (the client then relies on `--peer`).
    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty()
    }

    /// One announce round: calls `f` with each tracker URL in order until one succeeds,
    /// promotes that one to the front of its tier, and returns its URL and answer.
    pub fn announce<R, E: std::error::Error>(
        &mut self,
        mut f: impl FnMut(&str) -> Result<R, E>,
    ) -> Result<(String, R), AllFailed<E>> {
        let mut errors = Vec::new();
        for tier in &mut self.tiers {
            for i in 0..tier.len() {
                match f(&tier[i]) {
                    Ok(r) => {
                        let url = tier.remove(i);
                        tier.insert(0, url.clone());
                        return Ok((url, r));
                    }
                    Err(e) => errors.push((tier[i].clone(), e)),
                }
            }
        }
        Err(AllFailed { errors })
    }
}

impl Tiers {
    /// One announce round of `req` over the tiers with [`super::announce`] (HTTP(S) or
    /// UDP by each URL's scheme): the first tracker that answers wins and moves to the
    /// front of its tier (BEP 12). The call a client's announce thread makes.
    pub fn announce_request(
        &mut self,
        req: &super::AnnounceRequest,
    ) -> Result<(String, super::AnnounceResponse), AllFailed<super::AnnounceError>> {
        self.announce(|url| super::announce(url, req))
    }
}

/// Fisher-Yates with [`random_u64`].
fn shuffle<T>(v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = (random_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[derive(Debug, thiserror::Error, PartialEq)]
    #[error("down")]
    struct Down;

    fn list(t: &[&[&str]]) -> Vec<Vec<String>> {
        t.iter()
            .map(|t| t.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn announce_list_wins_over_announce() {
        let l = list(&[&["a", "b"], &[], &["c"]]);
        let t = Tiers::in_order(Some("x"), Some(&l));
        assert_eq!(t.tiers(), &list(&[&["a", "b"], &["c"]])[..]);
        let t = Tiers::in_order(Some("x"), Some(&list(&[&[]])));
        assert_eq!(t.tiers(), &list(&[&["x"]])[..]);
        let t = Tiers::in_order(None, None);
        assert!(t.is_empty());
    }

    #[test]
    fn tries_in_order_and_promotes_the_one_that_answered() {
        let l = list(&[&["a1", "a2", "a3"], &["b1", "b2"]]);
        let mut t = Tiers::in_order(None, Some(&l));
        let mut asked = vec![];
        let got = t.announce(|u| {
            asked.push(u.to_string());
            if u == "a3" { Ok(7) } else { Err(Down) }
        });
        assert_eq!(got.unwrap(), ("a3".to_string(), 7));
        assert_eq!(asked, ["a1", "a2", "a3"]);
        assert_eq!(t.tiers(), &list(&[&["a3", "a1", "a2"], &["b1", "b2"]])[..]);

        // The whole first tier down: the second tier's second tracker answers, and is
        // promoted within its own tier only.
        asked.clear();
        let got = t.announce(|u| {
            asked.push(u.to_string());
            if u == "b2" { Ok(1) } else { Err(Down) }
        });
        assert_eq!(got.unwrap().0, "b2");
        assert_eq!(asked, ["a3", "a1", "a2", "b1", "b2"]);
        assert_eq!(t.tiers(), &list(&[&["a3", "a1", "a2"], &["b2", "b1"]])[..]);
    }

    #[test]
    fn all_failed_lists_every_error_in_order() {
        let l = list(&[&["a"], &["b", "c"]]);
        let mut t = Tiers::in_order(None, Some(&l));
        let e = t.announce(|_| Err::<(), _>(Down)).unwrap_err();
        let urls: Vec<&str> = e.errors.iter().map(|(u, _)| u.as_str()).collect();
        assert_eq!(urls, ["a", "b", "c"]);
        assert_eq!(e.to_string(), "no tracker answered (3 tried)");
        let e = Tiers::in_order(None, None)
            .announce(|_| Ok::<(), Down>(()))
            .unwrap_err();
        assert!(e.errors.is_empty());
    }

    #[test]
    fn shuffle_stays_within_tiers_and_reaches_every_order() {
        let l = list(&[&["a", "b", "c"], &["d", "e"]]);
        let mut first_tiers = HashSet::new();
        // 6 orders of the first tier; 400 draws miss one with probability < 6·(5/6)^400.
        for _ in 0..400 {
            let t = Tiers::new(None, Some(&l));
            let mut a = t.tiers()[0].clone();
            first_tiers.insert(a.clone());
            a.sort();
            assert_eq!(a, ["a", "b", "c"]);
            let mut b = t.tiers()[1].clone();
            b.sort();
            assert_eq!(b, ["d", "e"]);
        }
        assert_eq!(first_tiers.len(), 6);
    }

    #[test]
    fn at_most_max_trackers_are_kept() {
        let many: Vec<Vec<String>> = (0..3)
            .map(|t| (0..40).map(|i| format!("udp://t{t}-{i}:1")).collect())
            .collect();
        let t = Tiers::in_order(None, Some(&many));
        let n: usize = t.tiers().iter().map(Vec::len).sum();
        assert_eq!(n, MAX_TRACKERS);
        assert_eq!(t.tiers().len(), 2);
    }
}
