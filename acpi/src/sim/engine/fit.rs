//! First-fit search over servers in O(log n): a segment tree keeping, per subtree, the largest free
//! CPU and the largest free memory. First fit on the lowest index is what makes consolidation pack
//! the low servers and leave the high ones empty to sleep.

/// Tolerance so that float sums of fractional requests do not make an exact fit fail.
pub const EPS: f64 = 1e-9;

/// Marks a server that cannot take VMs (asleep or suspending).
const INELIGIBLE: f64 = -1.0;

/// First-fit index over servers' free CPU and memory.
#[derive(Debug, Clone)]
pub struct FirstFit {
    leaves: usize,
    cpu: Vec<f64>,
    mem: Vec<f64>,
}

impl FirstFit {
    /// `n` servers, all ineligible.
    pub fn new(n: usize) -> Self {
        let leaves = n.max(1).next_power_of_two();
        FirstFit {
            leaves,
            cpu: vec![INELIGIBLE; 2 * leaves],
            mem: vec![INELIGIBLE; 2 * leaves],
        }
    }

    /// Sets server `i`'s free capacity (it may take VMs).
    pub fn set(&mut self, i: usize, cpu_free: f64, mem_free: f64) {
        self.write(i, cpu_free, mem_free);
    }

    /// Marks server `i` as unable to take VMs.
    pub fn remove(&mut self, i: usize) {
        self.write(i, INELIGIBLE, INELIGIBLE);
    }

    fn write(&mut self, i: usize, cpu: f64, mem: f64) {
        let mut node = self.leaves + i;
        self.cpu[node] = cpu;
        self.mem[node] = mem;
        while node > 1 {
            node /= 2;
            self.cpu[node] = self.cpu[2 * node].max(self.cpu[2 * node + 1]);
            self.mem[node] = self.mem[2 * node].max(self.mem[2 * node + 1]);
        }
    }

    /// Lowest-index eligible server with at least `cpu` free cores and `mem` free GiB.
    #[cfg(test)]
    pub fn find(&self, cpu: f64, mem: f64) -> Option<usize> {
        self.find_from(0, cpu, mem)
    }

    /// Like [`FirstFit::find`] among servers with index >= `start`.
    pub fn find_from(&self, start: usize, cpu: f64, mem: f64) -> Option<usize> {
        self.descend(1, 0, self.leaves, start, cpu - EPS, mem - EPS)
    }

    fn descend(
        &self,
        node: usize,
        lo: usize,
        hi: usize,
        start: usize,
        cpu: f64,
        mem: f64,
    ) -> Option<usize> {
        // The maxima may come from different servers, so a subtree that passes can still fail
        // below: then the right sibling is tried (backtracking, rare in practice).
        if hi <= start || self.cpu[node] < cpu || self.mem[node] < mem {
            return None;
        }
        if node >= self.leaves {
            return Some(lo);
        }
        let mid = (lo + hi) / 2;
        self.descend(2 * node, lo, mid, start, cpu, mem)
            .or_else(|| self.descend(2 * node + 1, mid, hi, start, cpu, mem))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lowest_index_that_fits_both_dimensions() {
        let mut f = FirstFit::new(5);
        assert_eq!(f.find(1.0, 1.0), None);
        f.set(0, 4.0, 1.0);
        f.set(1, 1.0, 8.0);
        f.set(3, 2.0, 2.0);
        assert_eq!(f.find(1.0, 1.0), Some(0));
        assert_eq!(f.find(2.0, 2.0), Some(3));
        assert_eq!(f.find(1.0, 8.0), Some(1));
        f.remove(3);
        assert_eq!(f.find(2.0, 2.0), None);
        assert_eq!(f.find(0.5, 0.5), Some(0));
        assert_eq!(f.find_from(1, 0.5, 0.5), Some(1));
        assert_eq!(f.find_from(2, 0.5, 0.5), None);
        assert_eq!(f.find_from(9, 0.5, 0.5), None);
    }
}
