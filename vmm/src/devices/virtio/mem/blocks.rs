//! Which blocks of the region are plugged: one bit per block, and the count of set bits so
//! `plugged_size` never needs a scan.

use std::ops::Range;

/// What a range of blocks holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeState {
    Plugged,
    Unplugged,
    Mixed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlugBitmap {
    words: Vec<u64>,
    blocks: u64,
    plugged: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("saved plug bitmap has {words} words for {blocks} blocks, or bits beyond the last block")]
pub struct BitmapMismatch {
    words: usize,
    blocks: u64,
}

impl PlugBitmap {
    /// `blocks` blocks, all unplugged.
    pub fn new(blocks: u64) -> Self {
        PlugBitmap {
            words: vec![0; blocks.div_ceil(64) as usize],
            blocks,
            plugged: 0,
        }
    }

    /// Rebuilds a bitmap saved with [`Self::words`], checking it fits `blocks`.
    pub fn from_words(blocks: u64, words: Vec<u64>) -> Result<Self, BitmapMismatch> {
        let mismatch = BitmapMismatch {
            words: words.len(),
            blocks,
        };
        if words.len() as u64 != blocks.div_ceil(64) {
            return Err(mismatch);
        }
        let tail = blocks % 64;
        if tail != 0 && words.last().is_some_and(|w| w >> tail != 0) {
            return Err(mismatch);
        }
        let plugged = words.iter().map(|w| u64::from(w.count_ones())).sum();
        Ok(PlugBitmap {
            words,
            blocks,
            plugged,
        })
    }

    pub fn words(&self) -> &[u64] {
        &self.words
    }

    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Number of plugged blocks.
    pub fn plugged(&self) -> u64 {
        self.plugged
    }

    fn get(&self, block: u64) -> bool {
        self.words[(block / 64) as usize] >> (block % 64) & 1 == 1
    }

    /// The state of `range`; callers keep it inside `0..blocks` and non-empty.
    pub fn state(&self, range: Range<u64>) -> RangeState {
        let plugged = range.clone().filter(|&b| self.get(b)).count() as u64;
        match plugged {
            0 => RangeState::Unplugged,
            n if n == range.end - range.start => RangeState::Plugged,
            _ => RangeState::Mixed,
        }
    }

    /// Marks `range` plugged or unplugged; callers keep it inside `0..blocks`.
    pub fn set(&mut self, range: Range<u64>, plugged: bool) {
        for b in range {
            let (word, bit) = ((b / 64) as usize, 1u64 << (b % 64));
            let was = self.words[word] & bit != 0;
            if was != plugged {
                self.words[word] ^= bit;
                if plugged {
                    self.plugged += 1;
                } else {
                    self.plugged -= 1;
                }
            }
        }
    }

    pub fn clear(&mut self) {
        self.words.fill(0);
        self.plugged = 0;
    }

    /// Plugged runs as block ranges, for releasing them in few calls.
    pub fn plugged_runs(&self) -> Vec<Range<u64>> {
        let mut runs = Vec::new();
        let mut start = None;
        for b in 0..=self.blocks {
            let on = b < self.blocks && self.get(b);
            match (on, start) {
                (true, None) => start = Some(b),
                (false, Some(s)) => {
                    runs.push(s..b);
                    start = None;
                }
                _ => {}
            }
        }
        runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_ranges_and_counts() {
        let mut m = PlugBitmap::new(130);
        assert_eq!(m.state(0..130), RangeState::Unplugged);
        m.set(60..70, true);
        assert_eq!(m.plugged(), 10);
        assert_eq!(m.state(60..70), RangeState::Plugged);
        assert_eq!(m.state(59..70), RangeState::Mixed);
        m.set(65..70, true);
        assert_eq!(m.plugged(), 10, "plugging plugged blocks changes nothing");
        m.set(129..130, true);
        assert_eq!(m.plugged_runs(), vec![60..70, 129..130]);
        m.set(60..65, false);
        assert_eq!(m.plugged(), 6);
        let back = PlugBitmap::from_words(130, m.words().to_vec()).unwrap();
        assert_eq!(back, m);
        assert!(PlugBitmap::from_words(130, vec![0; 2]).is_err());
        assert!(PlugBitmap::from_words(130, vec![0, 0, 1 << 2]).is_err());
        m.clear();
        assert_eq!(m.plugged(), 0);
        assert!(m.plugged_runs().is_empty());
    }
}
