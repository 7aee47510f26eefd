//! Partitions of the event log.
//!
//! The log is split into `P` partitions by a stable hash of the device id,
//! so one device's events keep their order inside one partition and each
//! partition is driven by one node at a time. A [`Seq`] carries its
//! partition in its top 16 bits; the embedded backend has one partition
//! (number 0), so its sequences are plain counters.

use crate::Seq;

/// Number of a log partition, `0..P`.
pub type Partition = u32;

/// Most partitions a log may have.
pub const MAX_PARTITIONS: u32 = 1 << 12;

/// Bits of a [`Seq`] below its partition number.
const LOCAL_BITS: u32 = 48;

/// The partition of a device's events among `partitions`.
///
/// FNV-1a over the id's bytes: it must give the same answer on every node
/// and in every release, which a `std` hasher does not promise, and a
/// dependency for eight lines of arithmetic is not worth it.
pub fn partition_of(device_id: &str, partitions: u32) -> Partition {
    if partitions <= 1 {
        return 0;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in device_id.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(partitions)) as Partition
}

/// The partition a sequence belongs to.
pub fn seq_partition(seq: Seq) -> Partition {
    (seq >> LOCAL_BITS) as Partition
}

/// The sequence `local` of `partition`.
pub fn partition_seq(partition: Partition, local: u64) -> Seq {
    (u64::from(partition) << LOCAL_BITS) | (local & ((1 << LOCAL_BITS) - 1))
}

/// The part of a sequence below its partition number.
pub fn local_seq(seq: Seq) -> u64 {
    seq & ((1 << LOCAL_BITS) - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_partition_is_zero_and_plain_counters() {
        assert_eq!(partition_of("anything", 1), 0);
        assert_eq!(partition_seq(0, 42), 42);
        assert_eq!(seq_partition(42), 0);
    }

    #[test]
    fn sequences_carry_their_partition() {
        let s = partition_seq(7, 123_456);
        assert_eq!(seq_partition(s), 7);
        assert_eq!(local_seq(s), 123_456);
        assert!(partition_seq(7, 1) > partition_seq(6, u64::MAX));
    }

    #[test]
    fn the_hash_is_stable_and_spreads() {
        // Fixed values: every node and release must agree.
        assert_eq!(partition_of("dev-1", 16), partition_of("dev-1", 16));
        let fnv_a = 0xaf63_dc4c_8601_ec8c_u64; // FNV-1a("a")
        assert_eq!(partition_of("a", 1000), (fnv_a % 1000) as u32);
        let mut seen = [0u32; 16];
        for i in 0..1600 {
            seen[partition_of(&format!("device-{i}"), 16) as usize] += 1;
        }
        assert!(seen.iter().all(|n| (50..=150).contains(n)), "{seen:?}");
    }
}
