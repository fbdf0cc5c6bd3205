//! The Internet checksum (RFC 1071) and the TCP/UDP pseudo-header.

/// Adds `data`, read as big-endian 16-bit words (a last odd byte padded with zero), to the
/// unfolded sum `initial`.
pub fn sum(data: &[u8], initial: u64) -> u64 {
    // The one's complement sum does not depend on byte order (RFC 1071 §2(B)): add native 32-bit
    // words into 64-bit lanes (no carries to track, vectorises), then swap the folded result.
    let mut lanes = [0u64; 8];
    let mut blocks = data.chunks_exact(32);
    for block in &mut blocks {
        for (lane, w) in lanes.iter_mut().zip(block.chunks_exact(4)) {
            *lane += u64::from(u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
        }
    }
    let folded = fold(lanes.iter().sum());
    // Native words on a little-endian machine are byte-swapped big-endian words.
    let folded = if cfg!(target_endian = "little") {
        folded.swap_bytes()
    } else {
        folded
    };
    let mut acc = initial + u64::from(folded);
    let mut words = blocks.remainder().chunks_exact(4);
    for w in &mut words {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = words.remainder();
    let mut last = [0u8; 4];
    last[..rest.len()].copy_from_slice(rest);
    acc + u64::from(u32::from_be_bytes(last))
}

/// Folds an unfolded sum to 16 bits (not complemented).
pub fn fold(mut acc: u64) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The unfolded pseudo-header sum of a TCP or UDP segment of `len` bytes (header included).
pub fn pseudo_header(src: &[u8], dst: &[u8], protocol: u8, len: usize) -> u64 {
    sum(dst, sum(src, 0)) + u64::from(protocol) + len as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook definition, one 16-bit word at a time.
    fn reference(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            acc += u32::from(word);
            acc = (acc & 0xffff) + (acc >> 16);
        }
        acc as u16
    }

    #[test]
    fn matches_the_word_by_word_definition_for_every_length() {
        let data: Vec<u8> = (0..300u32).map(|i| (i * 151 + 7) as u8).collect();
        for len in 0..data.len() {
            assert_eq!(fold(sum(&data[..len], 0)), reference(&data[..len]), "{len}");
        }
        assert_eq!(fold(sum(&[0xff; 65_535], 0)), reference(&[0xff; 65_535]));
    }

    proptest::proptest! {
        #[test]
        fn matches_the_definition_on_random_data(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..5000),
            initial in 0u64..1 << 40,
        ) {
            let expected = fold(u64::from(reference(&data)) + initial);
            proptest::prop_assert_eq!(fold(sum(&data, initial)), expected);
        }
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: 0001 f203 f4f5 f6f7 sums to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data, 0)), 0xddf2);
    }
}
