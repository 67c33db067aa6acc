//! The conflict claims in the containers' docs, checked deterministically: a transaction runs
//! its operations, another thread then commits a second operation, and the first transaction
//! commits on its first attempt exactly when the two operations do not conflict.

use stmx::prelude::*;

mod common;
use common::attempts;

#[test]
fn the_harness_sees_a_conflict() {
    let map = THashMap::new();
    let n = attempts(
        |tx| map.insert(tx, 1, 'a').map(drop),
        || {
            atomically(|tx| map.insert(tx, 1, 'b'));
        },
    );
    assert_eq!(n, 2, "two inserts of one key must conflict");
    assert_eq!(atomically(|tx| map.get(tx, &1)), Some('a'));
}

/// Inserts of different keys touch different buckets and (being on different threads)
/// different stripes of the length. A key pair can still share a bucket (1 in 4096 here) and
/// two threads a stripe (1 in 16), so the claim is checked on five pairs, each with a new
/// thread: a shared hot `TVar` would make all five conflict.
#[test]
fn hash_map_inserts_of_different_keys_do_not_conflict() {
    let map = THashMap::with_capacity(4096);
    let first_try = (0..5_u32)
        .filter(|pair| {
            let (mine, theirs) = (2 * pair, 2 * pair + 1);
            let n = attempts(
                |tx| map.insert(tx, mine, ()).map(drop),
                || {
                    atomically(|tx| map.insert(tx, theirs, ()));
                },
            );
            n == 1
        })
        .count();
    assert!(
        first_try >= 3,
        "only {first_try} of 5 inserts of distinct keys ran without conflict"
    );
    assert_eq!(atomically(|tx| map.len(tx)), 10);
}

#[test]
fn a_take_and_a_put_do_not_conflict_unless_the_queue_is_empty() {
    for fifo in [TFifo::new(), TFifo::bounded(8)] {
        atomically(|tx| {
            fifo.put(tx, 1)?;
            fifo.put(tx, 2)
        });
        let n = attempts(
            |tx| fifo.take(tx).map(drop),
            || {
                atomically(|tx| fifo.put(tx, 3));
            },
        );
        assert_eq!(
            n,
            1,
            "take and put conflicted on a queue with values ({:?})",
            fifo.capacity()
        );

        // Empty: the taker read the slot the producer fills, so it must see the put.
        atomically(|tx| fifo.clear(tx));
        let marker = TVar::new(0);
        let n = attempts(
            |tx| {
                fifo.try_take(tx)?; // empty on the first attempt
                marker.write(tx, 1) // a writer, so its reads are validated at commit
            },
            || atomically(|tx| fifo.put(tx, 4)),
        );
        assert_eq!(
            n,
            2,
            "a take from an empty queue missed a put ({:?})",
            fifo.capacity()
        );
    }
}

#[test]
fn ports_consume_without_conflicting_with_each_other_or_with_put() {
    let channel = TChannel::new();
    let (a, b) = (channel.subscribe(), channel.subscribe());
    atomically(|tx| {
        channel.put(tx, 1)?;
        channel.put(tx, 2)
    });
    let n = attempts(
        |tx| a.take(tx).map(drop),
        || {
            atomically(|tx| b.take(tx));
        },
    );
    assert_eq!(n, 1, "two ports conflicted");
    let n = attempts(
        |tx| a.take(tx).map(drop),
        || atomically(|tx| channel.put(tx, 3)),
    );
    assert_eq!(n, 1, "a take conflicted with a put on a port with values");
}

#[test]
fn tarray_slots_are_independent_and_drain_sees_the_end_a_put_fills() {
    let array = TArray::new(4, 0_u32);
    let n = attempts(
        |tx| array.modify(tx, 1, |v| v + 1),
        || atomically(|tx| array.set(tx, 2, 9)),
    );
    assert_eq!(n, 1, "different slots do not conflict");
    let n = attempts(
        |tx| array.modify(tx, 1, |v| v + 1),
        || atomically(|tx| array.set(tx, 1, 9)),
    );
    assert_eq!(n, 2, "the same slot does");
    for fifo in [TFifo::new(), TFifo::bounded(8)] {
        atomically(|tx| fifo.put(tx, 1));
        let n = attempts(
            |tx| fifo.drain(tx).map(drop),
            || atomically(|tx| fifo.put(tx, 2)),
        );
        // Taking everything means reading the empty slot past the last value, which a put
        // fills: the two conflict, and the drain's second attempt takes both.
        assert_eq!(n, 2, "a drain sees the end of the queue");
        assert!(atomically(|tx| fifo.is_empty(tx)));
    }
}
