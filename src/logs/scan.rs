//! Finding the newlines of a byte buffer fast: the drain splits every chunk it reads into lines with it, and a
//! segment read back from disk rebuilds its index with it (the `.log` file is the lines, each followed by `\n`).

/// Calls `block(offset, mask)` for each whole 16-byte block of `hay` holding a `\n` (bit k of `mask` set when
/// byte `offset + k` is one); returns where the blocks end (the caller scans the rest).
#[inline(always)]
fn newline_blocks(hay: &[u8], mut block: impl FnMut(usize, u32)) -> usize {
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8};
        // Short lines are the common case, so a 16-byte bitmask beats a search call per line.
        // SAFETY: SSE2 is part of the x86_64 baseline; every load is unaligned and within `hay`.
        unsafe {
            let nl = _mm_set1_epi8(b'\n' as i8);
            while i + 16 <= hay.len() {
                let v = _mm_loadu_si128(hay.as_ptr().add(i).cast::<__m128i>());
                let mask = _mm_movemask_epi8(_mm_cmpeq_epi8(v, nl)) as u32;
                if mask != 0 {
                    block(i, mask);
                }
                i += 16;
            }
        }
    }
    i
}

/// Appends the end offset (`base` + index) of every `\n` in `hay` to `out`.
pub fn newline_positions(hay: &[u8], base: usize, out: &mut Vec<u32>) {
    let rest = newline_blocks(hay, |i, mut mask| {
        while mask != 0 {
            out.push((base + i + mask.trailing_zeros() as usize) as u32);
            mask &= mask - 1;
        }
    });
    out.extend(memchr::memchr_iter(b'\n', &hay[rest..]).map(|p| (base + rest + p) as u32));
}

/// How many `\n`s `hay` holds.
pub fn count_newlines(hay: &[u8]) -> usize {
    let mut n = 0;
    let rest = newline_blocks(hay, |_, mask| n += mask.count_ones() as usize);
    n + memchr::memchr_iter(b'\n', &hay[rest..]).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `newline_positions` must produce: every `\n` of `hay`, offset by `base`.
    fn expected_newlines(hay: &[u8], base: usize) -> Vec<u32> {
        memchr::memchr_iter(b'\n', hay).map(|p| (base + p) as u32).collect()
    }

    fn assert_scan_matches_memchr(hay: &[u8], what: &str) {
        for base in [0, 1 << 20] {
            let mut got = vec![7]; // the scan appends: what the caller already had stays in front
            newline_positions(hay, base, &mut got);
            let mut want = vec![7];
            want.extend(expected_newlines(hay, base));
            assert_eq!(got, want, "{what}, {} bytes, base {base}", hay.len());
        }
        assert_eq!(count_newlines(hay), expected_newlines(hay, 0).len(), "{what}: count");
    }

    #[test]
    fn newline_scan_finds_every_newline_like_memchr() {
        // The SSE2 scan handles whole 16-byte blocks and leaves the tail to memchr; the cases sit on both sides
        // of every block boundary, so a lost or misplaced bit in the mask shows up.
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for len in (0..300).chain([1023, 1024, 1025, 4096 + 17, 65_536 + 3]) {
            assert_scan_matches_memchr(&vec![b'\n'; len], "all newlines");
            assert_scan_matches_memchr(&vec![b'x'; len], "no newline");
            // Every offset of a short input; the first and last 70 (past a 64-byte block) of a long one.
            let offsets = if len < 300 { len } else { 70 };
            for at in 0..offsets {
                let mut hay = vec![b'x'; len];
                hay[at] = b'\n';
                assert_scan_matches_memchr(&hay, &format!("one newline at {at}"));
                hay[len - 1 - at] = b'\n';
                assert_scan_matches_memchr(&hay, &format!("newlines at {at} and {}", len - 1 - at));
            }
            // Random bytes, and text with about one newline in eight (bytes next to 0x0a and high bit set included).
            let random: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            assert_scan_matches_memchr(&random, "random bytes");
            let text: Vec<u8> = (0..len)
                .map(|_| match next() % 16 {
                    0 | 1 => b'\n',
                    2 => 0x8a,
                    3 => 0x0b,
                    r => b'a' + r as u8,
                })
                .collect();
            assert_scan_matches_memchr(&text, "random text");
        }
        // Every alignment of the input against the 16-byte loads.
        let text: Vec<u8> = (0..200).map(|i| if i % 3 == 0 { b'\n' } else { b'y' }).collect();
        for start in 0..64 {
            assert_scan_matches_memchr(&text[start..], &format!("slice from {start}"));
        }
    }
}
