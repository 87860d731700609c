use super::snapshot::{decode, encode};
use super::*;

fn batch(id: u64, epoch: u32, seq: i64) -> ProducerBatch {
    ProducerBatch {
        producer_id: id,
        epoch,
        first_sequence: seq,
    }
}

/// A table where producer 7 (epoch 1) wrote `n` batches of 10 records,
/// sequence 0, 10, 20, ... at offsets 100, 110, ...
fn table_with(n: i64) -> ProducerTable {
    let mut t = ProducerTable::default();
    for i in 0..n {
        let b = batch(7, 1, i * 10);
        assert_eq!(t.check(&b, 10), Ok(Verdict::Append));
        t.record(&b, 10, 100 + i * 10, 1_000 + i);
    }
    t
}

#[test]
fn the_next_sequence_appends_and_a_kept_batch_is_a_duplicate_with_its_offsets() {
    let t = table_with(3);
    assert_eq!(t.check(&batch(7, 1, 30), 4), Ok(Verdict::Append));
    assert_eq!(
        t.check(&batch(7, 1, 10), 10),
        Ok(Verdict::Duplicate(WrittenBatch {
            first_sequence: 10,
            count: 10,
            base_offset: 110
        }))
    );
    // A producer new to this partition starts at 0: a batch that overtook
    // the first one is refused, so the first is not then taken for written.
    assert_eq!(t.check(&batch(8, 0, 0), 1), Ok(Verdict::Append));
    assert_eq!(
        t.check(&batch(8, 0, 500), 1),
        Err(SequenceError::Gap {
            expected: 0,
            got: 500
        })
    );
    // So does a newer epoch.
    assert_eq!(
        t.check(&batch(7, 2, 30), 1),
        Err(SequenceError::Gap {
            expected: 0,
            got: 30
        })
    );
}

#[test]
fn gaps_old_epochs_forgotten_and_overlapping_batches_are_refused() {
    let t = table_with(7);
    assert_eq!(
        t.check(&batch(7, 1, 71), 1),
        Err(SequenceError::Gap {
            expected: 70,
            got: 71
        })
    );
    assert_eq!(
        t.check(&batch(7, 0, 70), 1),
        Err(SequenceError::Fenced {
            epoch: 0,
            current: 1
        })
    );
    // Only the last five (sequences 20..70) are kept.
    assert_eq!(
        t.check(&batch(7, 1, 10), 10),
        Err(SequenceError::TooOld {
            oldest_kept: 20,
            got: 10
        })
    );
    assert!(matches!(
        t.check(&batch(7, 1, 20), 9),
        Ok(Verdict::Duplicate(_)) | Err(SequenceError::Mismatch { .. })
    ));
    assert_eq!(
        t.check(&batch(7, 1, 25), 5),
        Err(SequenceError::Mismatch { got: 25, count: 5 })
    );
    assert_eq!(t.entry(7).map(|e| e.batches.len()), Some(KEPT_BATCHES));
}

#[test]
fn a_new_epoch_starts_afresh_and_fences_the_old_one() {
    let mut t = table_with(2);
    let b = batch(7, 2, 0);
    assert_eq!(t.check(&b, 3), Ok(Verdict::Append));
    t.record(&b, 3, 500, 2_000);
    let e = t.entry(7).unwrap();
    assert_eq!((e.epoch, e.batches.len()), (2, 1));
    assert!(matches!(
        t.check(&batch(7, 1, 20), 10),
        Err(SequenceError::Fenced { .. })
    ));
    assert_eq!(t.check(&batch(7, 2, 3), 1), Ok(Verdict::Append));
}

#[test]
fn expiry_forgets_idle_producers() {
    let mut t = table_with(2);
    t.record(&batch(9, 0, 0), 1, 1, 5_000);
    assert_eq!(t.expire(2_000), 1);
    assert!(t.entry(7).is_none());
    assert!(t.entry(9).is_some());
}

#[test]
fn snapshots_round_trip_and_every_damage_is_refused() {
    let mut t = table_with(7);
    t.record(&batch(3, 4, 0), 1, 170, 9);
    let bytes = encode(&t, 171);
    let (back, next) = decode(&bytes).unwrap();
    assert_eq!((back, next), (t.clone(), 171));
    let empty = encode(&ProducerTable::default(), 0);
    assert_eq!(decode(&empty).unwrap(), (ProducerTable::default(), 0));
    for i in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[i] ^= 0x10;
        assert!(decode(&bad).is_err(), "flipped byte {i} accepted");
    }
    for len in 0..bytes.len() {
        assert!(decode(&bytes[..len]).is_err(), "cut at {len} accepted");
    }
}

#[test]
fn the_registry_fences_old_epochs_and_forgets_idle_producers() {
    let r = Registry::default();
    assert_eq!(r.check(1, 0, 10), Err(RegistryError::Unknown(1)));
    r.observe(1, 0, 10);
    r.observe(2, 3, 10);
    assert_eq!(r.check(1, 0, 20), Ok(()));
    r.observe(2, 2, 30); // an older epoch seen later does not lower it
    assert!(matches!(
        r.check(2, 2, 40),
        Err(RegistryError::Fenced { current: 3, .. })
    ));
    assert!(matches!(
        r.check(2, 4, 40),
        Err(RegistryError::NeverIssued { current: 3, .. })
    ));
    // Producer 1 last wrote at 20, producer 2 was seen at 30.
    assert_eq!(r.expire(25), vec![1]);
    assert_eq!(r.len(), 1);
}
