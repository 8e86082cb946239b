//! Byte sizes on the command line: `8G`, `64M`, `4096`, `512K` (powers of 1024).

/// A size string that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("bad size {0:?}: expected a number with optional K, M, G or T suffix")]
pub struct BadSize(pub String);

/// Parses a size with an optional binary suffix.
pub fn parse_size(s: &str) -> Result<u64, BadSize> {
    let t = s.trim();
    let (num, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(BadSize(s.into())),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = num.trim().parse().map_err(|_| BadSize(s.into()))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| BadSize(s.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suffixes_and_rejects_junk() {
        assert_eq!(parse_size("8G"), Ok(8 << 30));
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("x").is_err());
        assert!(parse_size("9999999999999T").is_err());
        assert!(parse_size("").is_err());
    }
}
