//! bvTorrent lines (`bv::codec`, `bv::tracker::parse_mask_update`) on arbitrary bytes.
//!
//! Selector byte: 0 the descriptor a tracker sends; 1 a client list; 2 what a client
//! sends the tracker (registration line, then 12-byte commands and mask lines, as the
//! tracker's session reads them). The next byte (cases 1, 2) is the chunk count. Whatever
//! is accepted re-encodes and reads back equal; counts stay under their limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use swarmlet::bv::codec::{
    COMMAND_LEN, Command, Descriptor, MAX_CHUNKS, MAX_CLIENTS_LISTED, MAX_SHORT_LINE,
    encode_client_list, parse_registration, read_client_list, read_line,
};
use swarmlet::bv::tracker::parse_mask_update;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    match sel % 3 {
        0 => {
            let Ok(d) = Descriptor::read(&mut &rest[..]) else {
                return;
            };
            assert!(d.chunks.len() <= MAX_CHUNKS);
            assert!(!d.name.is_empty() && !d.name.contains(&b'/') && !d.name.contains(&0));
            assert!(
                d.chunks
                    .iter()
                    .all(|c| c.size > 0 && c.size <= d.max_chunk_size)
            );
            let enc = d.encode();
            let again = Descriptor::read(&mut &enc[..]).expect("an encoded descriptor reads");
            assert_eq!(again, d);
        }
        1 => {
            let Some((&n, list)) = rest.split_first() else {
                return;
            };
            let n = usize::from(n);
            let Ok(entries) = read_client_list(&mut &list[..], n) else {
                return;
            };
            assert!(entries.len() <= MAX_CLIENTS_LISTED);
            assert!(entries.iter().all(|e| e.mask.len() == n));
            let enc = encode_client_list(entries.iter());
            let again = read_client_list(&mut &enc[..], n).expect("an encoded list reads");
            assert_eq!(again, entries);
        }
        _ => {
            let Some((&n, mut input)) = rest.split_first() else {
                return;
            };
            let n = usize::from(n);
            // The registration line, bounded as the tracker bounds it.
            let Ok(line) = read_line(&mut input, (n + 8).min(MAX_SHORT_LINE)) else {
                return;
            };
            let Ok((port, mask)) = parse_registration(&line, n) else {
                return;
            };
            let mut enc = format!("{port},").into_bytes();
            enc.extend_from_slice(&mask);
            assert_eq!(parse_registration(&enc, n).unwrap(), (port, mask));
            while let Some((block, tail)) = input.split_first_chunk::<COMMAND_LEN>() {
                input = tail;
                match Command::parse(block) {
                    Some(c) => assert_eq!(c.bytes(), block),
                    None => return,
                }
                if Command::parse(block) == Some(Command::UpdateMask) {
                    let Some((m, tail)) = input.split_at_checked(n + 1) else {
                        return;
                    };
                    input = tail;
                    match parse_mask_update(m.to_vec(), n) {
                        Ok(mask) => {
                            assert_eq!(mask.len(), n);
                            assert_eq!(&m[..n], &mask[..]);
                        }
                        Err(_) => return,
                    }
                }
            }
        }
    }
});
