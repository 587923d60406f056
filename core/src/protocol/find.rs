//! Finding the next interesting byte eight bytes at a time (SWAR on a `u64`): wasm32 has no
//! SIMD in Envoy's V8 by default, and prompts, ids and token text are mostly bytes the
//! scanners only need to step over.

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `w` that is zero. Bits above a zero byte may be set wrongly
/// (a borrow), never below it, so the lowest set bit is always a true zero byte.
#[inline(always)]
fn zero_bytes(w: u64) -> u64 {
    w.wrapping_sub(LO) & !w & HI
}

#[inline(always)]
fn splat(b: u8) -> u64 {
    LO.wrapping_mul(u64::from(b))
}

#[inline(always)]
fn word(chunk: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(chunk);
    u64::from_le_bytes(bytes)
}

/// Index of the first `a` or `b` in `s`.
#[inline]
pub fn find2(s: &[u8], a: u8, b: u8) -> Option<usize> {
    let (sa, sb) = (splat(a), splat(b));
    find_by(
        s,
        |w| zero_bytes(w ^ sa) | zero_bytes(w ^ sb),
        |c| c == a || c == b,
    )
}

/// Index of the first `"`, `{`, `}`, `[` or `]` in `s`: what matters inside a skipped value.
#[inline]
pub fn find_structural(s: &[u8]) -> Option<usize> {
    // `[` and `]` are `{` and `}` without bit 0x20, and no other byte ORs to those two.
    let (quote, open, close, case) = (splat(b'"'), splat(b'{'), splat(b'}'), splat(0x20));
    find_by(
        s,
        |w| {
            let folded = w | case;
            zero_bytes(w ^ quote) | zero_bytes(folded ^ open) | zero_bytes(folded ^ close)
        },
        is_structural,
    )
}

/// The first hit in `s`: `hits` marks the high bit of each hit byte of an 8-byte word (its
/// lowest set bit must be a true hit), `is_hit` judges the bytes of the last partial word.
#[inline(always)]
fn find_by(s: &[u8], hits: impl Fn(u64) -> u64, is_hit: impl Fn(u8) -> bool) -> Option<usize> {
    let mut chunks = s.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let h = hits(word(chunk));
        if h != 0 {
            return Some(at + (h.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&c| is_hit(c))
        .map(|p| at + p)
}

#[inline(always)]
pub fn is_structural(c: u8) -> bool {
    matches!(c, b'"' | b'{' | b'[' | b'}' | b']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find2_agrees_with_a_plain_search_at_every_position() {
        for len in 0..40 {
            for at in 0..=len {
                for (a, b, hit) in [
                    (b'"', b'\\', b'"'),
                    (b'"', b'\\', b'\\'),
                    (b'\n', b'\r', b'\r'),
                ] {
                    // Every other byte value around the hit, including 0x00, 0x80 and 0xff.
                    for filler in [0u8, b'a', 0x21, 0x23, 0x5b, 0x80, 0xff] {
                        let mut s = vec![filler; len];
                        if at < len {
                            s[at] = hit;
                        }
                        let want = s.iter().position(|&c| c == a || c == b);
                        assert_eq!(
                            find2(&s, a, b),
                            want,
                            "len {len} at {at} filler {filler:#x}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn find_structural_agrees_with_a_plain_search_for_every_byte_value() {
        for hit in 0..=255u8 {
            for at in 0..20 {
                let mut s = vec![b'x'; 20];
                s[at] = hit;
                let want = s.iter().position(|&c| is_structural(c));
                assert_eq!(find_structural(&s), want, "byte {hit:#x} at {at}");
            }
        }
    }

    #[test]
    fn the_first_of_several_hits_wins() {
        let s = b"abcdefg\"h\\ij\"";
        assert_eq!(find2(s, b'"', b'\\'), Some(7));
        assert_eq!(find2(b"\x01\x00\"", b'"', b'\\'), Some(2));
        assert_eq!(find_structural(b"aaaaaaa]{\"}"), Some(7));
        assert_eq!(find_structural(b"\x00\x01[x"), Some(2));
    }
}
