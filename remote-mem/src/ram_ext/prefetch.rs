//! Leap-style (ATC'20) trend prefetch: the stride that a majority of the recent remote faults
//! followed predicts the next pages; the window grows while predictions hit and collapses
//! when no trend is left.

/// Faults remembered for the trend.
const HISTORY: usize = 8;
/// Most pages fetched ahead of one fault.
pub const MAX_WINDOW: usize = 32;

/// Recent fault pages and the current prefetch window.
#[derive(Debug, Default)]
pub struct TrendPrefetcher {
    history: Vec<i64>,
    window: usize,
    /// Pages the last prediction named, to tell a hit from a miss.
    predicted: Vec<usize>,
    /// The page just past the last prediction: where the next fault lands when the
    /// prediction was fetched and used.
    next_expected: Option<usize>,
}

impl TrendPrefetcher {
    /// Records a remote fault on `page` and returns the pages to fetch with it, nearest
    /// first (each still to be checked by the caller: in range, not resident, remote).
    pub fn on_fault(&mut self, page: usize) -> Vec<usize> {
        let hit = self.predicted.contains(&page) || self.next_expected == Some(page);
        if self.history.len() == HISTORY {
            self.history.remove(0);
        }
        self.history.push(page as i64);
        let Some(stride) = self.majority_stride() else {
            self.window = 0;
            self.predicted.clear();
            self.next_expected = None;
            return Vec::new();
        };
        self.window = match (self.window, hit) {
            (0, _) => 2,
            (w, true) => (w * 2).min(MAX_WINDOW),
            (w, false) => w.max(2),
        };
        self.predicted = (1..=self.window as i64)
            .filter_map(|k| usize::try_from(page as i64 + k * stride).ok())
            .collect();
        self.next_expected = usize::try_from(page as i64 + (self.window as i64 + 1) * stride).ok();
        self.predicted.clone()
    }

    /// The stride between consecutive faults that more than half of the recent ones share
    /// (Boyer-Moore majority vote), if any; 0 is no trend.
    fn majority_stride(&self) -> Option<i64> {
        let deltas: Vec<i64> = self.history.windows(2).map(|w| w[1] - w[0]).collect();
        if deltas.len() < 2 {
            return None;
        }
        let mut candidate = 0;
        let mut count = 0usize;
        for &d in &deltas {
            if count == 0 {
                candidate = d;
                count = 1;
            } else if d == candidate {
                count += 1;
            } else {
                count -= 1;
            }
        }
        let votes = deltas.iter().filter(|&&d| d == candidate).count();
        (candidate != 0 && votes * 2 > deltas.len()).then_some(candidate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sequential_scan_grows_the_window() {
        let mut p = TrendPrefetcher::default();
        assert!(p.on_fault(100).is_empty());
        assert!(p.on_fault(101).is_empty()); // one delta is no trend yet
        assert_eq!(p.on_fault(102), vec![103, 104]);
        // The next fault lands on a predicted page: the window doubles.
        assert_eq!(p.on_fault(105), vec![106, 107, 108, 109]);
    }

    #[test]
    fn strides_and_backward_scans_are_followed() {
        let mut p = TrendPrefetcher::default();
        p.on_fault(1000);
        p.on_fault(996);
        assert_eq!(p.on_fault(992), vec![988, 984]);
        // Near the bottom, pages below zero are not predicted.
        let mut p = TrendPrefetcher::default();
        p.on_fault(8);
        p.on_fault(4);
        assert_eq!(p.on_fault(0), Vec::<usize>::new());
    }

    #[test]
    fn random_faults_fetch_nothing() {
        let mut p = TrendPrefetcher::default();
        for page in [5, 900, 17, 4000, 33, 70000, 2] {
            assert!(p.on_fault(page).is_empty());
        }
    }
}
