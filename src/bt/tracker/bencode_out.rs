//! The few bencoded replies a tracker writes. Keys are written in sorted order, as
//! canonical bencoding requires.

/// Appends a byte string `<len>:<bytes>`.
pub fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

/// Appends an integer `i<n>e`.
pub fn int(out: &mut Vec<u8>, n: u64) {
    out.push(b'i');
    out.extend_from_slice(n.to_string().as_bytes());
    out.push(b'e');
}

/// `d14:failure reason<len>:<reason>e`.
pub fn failure(reason: &str) -> Vec<u8> {
    let mut out = b"d".to_vec();
    bytes(&mut out, b"failure reason");
    bytes(&mut out, reason.as_bytes());
    out.push(b'e');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn failure_reply() {
        assert_eq!(super::failure("bad port"), b"d14:failure reason8:bad porte");
    }
}
