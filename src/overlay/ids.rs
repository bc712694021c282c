//! Ids callvcr invents (tokens, their `jti`, context ids): drawn from a generator seeded by `seed:`
//! in `proxy.yaml`, so the same run gives the same ids.

use std::sync::Mutex;

/// A seeded id generator (SplitMix64), shared by the overlays.
#[derive(Debug)]
pub struct Ids {
    /// The seed, kept so [`Ids::reset`] can start the sequence again.
    seed: u64,
    /// SplitMix64 state.
    state: Mutex<u64>,
}

impl Ids {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Ids {
        Ids { seed, state: Mutex::new(seed) }
    }

    /// The seed it started from.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The next 64 random bits.
    pub fn next_u64(&self) -> u64 {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(*s)
    }

    /// `n` random bytes.
    pub fn bytes(&self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(n);
        out
    }

    /// A random (version 4 shaped) UUID, lower-case hex.
    pub fn uuid(&self) -> String {
        uuid_from(self.next_u64(), self.next_u64())
    }

    /// Back to the seed.
    pub fn reset(&self) {
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = self.seed;
    }
}

/// SplitMix64's output function.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Formats 128 bits as a version 4, variant 1 UUID.
pub(crate) fn uuid_from(hi: u64, lo: u64) -> String {
    let hi = (hi & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000;
    let lo = (lo & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xFFFF,
        hi & 0xFFFF,
        lo >> 48,
        lo & 0xFFFF_FFFF_FFFF
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_ids_and_reset_repeats_them() {
        let a = Ids::new(7);
        let b = Ids::new(7);
        let first: Vec<String> = (0..3).map(|_| a.uuid()).collect();
        assert_eq!(first, (0..3).map(|_| b.uuid()).collect::<Vec<_>>());
        a.reset();
        assert_eq!(a.uuid(), first[0]);
        assert_ne!(Ids::new(8).uuid(), first[0]);
    }

    #[test]
    fn uuids_are_version_4_shaped() {
        let u = Ids::new(1).uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"), "{u}");
    }
}
