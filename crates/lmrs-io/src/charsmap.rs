//! Checking a SentencePiece `Precompiled` charsmap before `tokenizers` uses it.
//!
//! The charsmap is a double-array trie (darts-clone's unit layout: an offset, a label byte, a
//! has-leaf bit, a value) followed by the normalized strings it points into. `tokenizers`
//! (through `spm_precompiled` 0.1.4) walks it without bounds checks when it normalizes text:
//! a unit index outside the array, or a leaf value outside the strings or inside a UTF-8
//! character, panics at encode time, long after the file loaded. This walks every state that
//! normalization can reach (keys are graphemes of at most 5 bytes, or single characters) and
//! checks each index and value, so such a file is refused when it is loaded.

/// Longest key the normalizer looks up: graphemes shorter than 6 bytes, else single chars.
const MAX_KEY: usize = 5;

fn has_leaf(u: usize) -> bool {
    (u >> 8) & 1 == 1
}
fn value(u: usize) -> usize {
    u & ((1usize << 31) - 1)
}
fn label(u: usize) -> usize {
    u & ((1usize << 31) | 0xFF)
}
fn offset(u: usize) -> usize {
    (u >> 10) << ((u & (1usize << 9)) >> 6)
}

/// Check a decoded charsmap; `Err` says what is wrong.
pub fn check(charsmap: &[u8]) -> Result<(), String> {
    let size = charsmap
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .ok_or("the charsmap is shorter than its 4-byte header")?;
    let units = size / 4;
    let body = &charsmap[4..];
    if body.len() < units * 4 {
        return Err(format!(
            "the charsmap declares {units} trie units but holds {} bytes",
            body.len()
        ));
    }
    let array: Vec<usize> = body[..units * 4]
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let normalized = std::str::from_utf8(&body[units * 4..])
        .map_err(|_| "the charsmap's normalized strings are not UTF-8".to_string())?;
    let unit = |pos: usize| -> Result<usize, String> {
        array
            .get(pos)
            .copied()
            .ok_or_else(|| format!("the charsmap trie points at unit {pos} of {}", array.len()))
    };
    // Breadth first, so every node is first met at its smallest depth.
    let root = unit(0)?;
    let mut seen = vec![false; array.len()];
    let mut frontier = vec![offset(root)];
    for _depth in 0..MAX_KEY {
        let mut next = Vec::new();
        for node in frontier {
            for c in 1..=255usize {
                // Every probe reads a unit, as the normalizer's lookup does.
                let u = unit(node ^ c)?;
                if label(u) != c {
                    continue;
                }
                let child = (node ^ c) ^ offset(u);
                if has_leaf(u) {
                    let v = value(unit(child)?);
                    if v > normalized.len() || !normalized.is_char_boundary(v) {
                        return Err(format!(
                            "a charsmap entry points at byte {v} of {} normalized bytes",
                            normalized.len()
                        ));
                    }
                }
                // Out-of-bounds children fail at the next depth's probes.
                if seen.get(child).is_none_or(|s| !s) {
                    if let Some(s) = seen.get_mut(child) {
                        *s = true;
                    }
                    next.push(child);
                }
            }
        }
        frontier = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(units: &[u32], normalized: &[u8]) -> Vec<u8> {
        let mut v = ((units.len() * 4) as u32).to_le_bytes().to_vec();
        for u in units {
            v.extend(u.to_le_bytes());
        }
        v.extend(normalized);
        v
    }

    /// A one-key trie: byte `b'a'` maps to normalized string at `value`.
    fn one_key(value: u32) -> Vec<u32> {
        // Root unit 0 has offset 0; 'a' (97) lands on unit 97: label 97, the leaf bit, offset
        // 1, so its leaf is unit 97 ^ 1 = 96, which holds the value. 256 units: every probe
        // from a node stays in the array, as in darts-clone's 256-unit blocks.
        let mut units = vec![0u32; 256];
        units[97] = 97 | (1 << 8) | (1 << 10);
        units[96] = value;
        units
    }

    #[test]
    fn in_bounds_values_pass_and_out_of_bounds_ones_are_refused() {
        assert!(check(&map(&one_key(0), b"A\0")).is_ok());
        let e = check(&map(&one_key(40), b"A\0")).unwrap_err();
        assert!(e.contains("byte 40 of 2"), "{e}");
        // Inside a multi-byte character.
        assert!(check(&map(&one_key(1), "é\0".as_bytes())).is_err());
        assert!(check(&[1, 0]).is_err());
        assert!(check(&map(&[], b"")).unwrap_err().contains("unit 0"));
        // A trie smaller than one block: a probe falls outside it.
        assert!(check(&map(&one_key(0)[..128], b"A\0"))
            .unwrap_err()
            .contains("of 128"));
        // Declared units beyond the data.
        let mut m = map(&one_key(0), b"");
        m[0] = 255;
        m[1] = 255;
        assert!(check(&m).is_err());
    }
}
