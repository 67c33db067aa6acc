//! `TArray`, `TSem`, `TFifo::drain` and `THashMap::with_hasher`, against std models.

use std::collections::VecDeque;
use std::collections::hash_map::DefaultHasher;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use proptest::prelude::*;
use stmx::prelude::*;

#[derive(Debug, Clone)]
enum ArrayOp {
    Get(usize),
    Set(usize, i32),
    Add(usize, i32),
}

#[derive(Debug, Clone)]
enum FifoOp {
    Put(u16),
    Take,
    Drain,
}

proptest! {
    #[test]
    fn tarray_matches_a_vec(
        initial in prop::collection::vec(-100_i32..100, 1..12),
        ops in prop::collection::vec(
            prop_oneof![
                (0..12_usize).prop_map(ArrayOp::Get),
                (0..12_usize, -100_i32..100).prop_map(|(i, v)| ArrayOp::Set(i, v)),
                (0..12_usize, -5_i32..5).prop_map(|(i, d)| ArrayOp::Add(i, d)),
            ],
            0..40,
        ),
    ) {
        let array = TArray::from_vec(initial.clone());
        let mut model = initial;
        for op in ops {
            match op {
                ArrayOp::Get(i) => {
                    let i = i % model.len();
                    prop_assert_eq!(atomically(|tx| array.get(tx, i)), model[i]);
                }
                ArrayOp::Set(i, v) => {
                    let i = i % model.len();
                    atomically(|tx| array.set(tx, i, v));
                    model[i] = v;
                }
                ArrayOp::Add(i, d) => {
                    let i = i % model.len();
                    atomically(|tx| array.modify(tx, i, |x| x + d));
                    model[i] += d;
                }
            }
            prop_assert_eq!(atomically(|tx| array.to_vec(tx)), model.clone());
        }
        prop_assert_eq!(atomically(|tx| array.len(tx)), model.len());
    }

    #[test]
    fn tfifo_drain_matches_a_vecdeque(
        bounded in any::<bool>(),
        ops in prop::collection::vec(
            prop_oneof![
                3 => any::<u16>().prop_map(FifoOp::Put),
                1 => Just(FifoOp::Take),
                1 => Just(FifoOp::Drain),
            ],
            0..60,
        ),
    ) {
        const CAP: usize = 8;
        let fifo = if bounded { TFifo::bounded(CAP) } else { TFifo::new() };
        let mut model = VecDeque::new();
        for op in ops {
            match op {
                FifoOp::Put(v) => {
                    let put = atomically(|tx| fifo.try_put(tx, v)).is_ok();
                    prop_assert_eq!(put, !bounded || model.len() < CAP);
                    if put {
                        model.push_back(v);
                    }
                }
                FifoOp::Take => prop_assert_eq!(atomically(|tx| fifo.try_take(tx)), model.pop_front()),
                FifoOp::Drain => {
                    let all: Vec<u16> = model.drain(..).collect();
                    prop_assert_eq!(atomically(|tx| fifo.drain(tx)), all);
                }
            }
            prop_assert_eq!(atomically(|tx| fifo.len(tx)), model.len());
        }
    }
}

#[test]
#[should_panic(expected = "TArray index 3 out of bounds (length 3)")]
fn tarray_index_past_the_end_panics_with_the_length() {
    let a = TArray::new(3, 0_u8);
    atomically(|tx| a.get(tx, 3));
}

#[test]
fn tsem_acquire_waits_for_a_release_and_never_hands_out_more_than_it_has() {
    let sem = TSem::new(2);
    let inside = AtomicUsize::new(0);
    let peak = AtomicUsize::new(0);
    thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| {
                for _ in 0..200 {
                    atomically(|tx| sem.acquire(tx));
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    thread::yield_now();
                    inside.fetch_sub(1, Ordering::SeqCst);
                    atomically(|tx| sem.release(tx));
                }
            });
        }
    });
    assert!(peak.load(Ordering::SeqCst) <= 2);
    assert_eq!(atomically(|tx| sem.available(tx)), 2);
    // A blocked acquire wakes on release_n.
    let empty = TSem::new(0);
    thread::scope(|s| {
        let waiter = s.spawn(|| {
            atomically(|tx| {
                empty.acquire(tx)?;
                empty.acquire(tx)
            })
        });
        thread::sleep(Duration::from_millis(10));
        atomically(|tx| empty.release_n(tx, 3));
        waiter.join().unwrap();
    });
    assert_eq!(atomically(|tx| empty.available(tx)), 1);
    assert!(atomically(|tx| empty.try_acquire(tx)));
    assert!(!atomically(|tx| empty.try_acquire(tx)));
}

#[test]
fn thashmap_with_a_chosen_hasher() {
    type Fixed = BuildHasherDefault<DefaultHasher>;
    let map: THashMap<u32, String, Fixed> = THashMap::with_hasher(Fixed::default());
    atomically(|tx| {
        for i in 0..100 {
            map.insert(tx, i, i.to_string())?;
        }
        Ok(())
    });
    assert_eq!(atomically(|tx| map.len(tx)), 100);
    assert_eq!(atomically(|tx| map.get(tx, &42)), Some("42".to_string()));
    assert_eq!(atomically(|tx| map.remove(tx, &42)), Some("42".to_string()));
    let copy = map.clone();
    assert_eq!(atomically(|tx| copy.len(tx)), 99);
}

#[test]
fn tport_len_counts_what_the_port_has_not_taken() {
    let channel = TChannel::new();
    let port = channel.subscribe();
    atomically(|tx| {
        for i in 0..5 {
            channel.put(tx, i)?;
        }
        Ok(())
    });
    assert_eq!(atomically(|tx| port.len(tx)), 5);
    atomically(|tx| port.take(tx));
    assert_eq!(atomically(|tx| port.len(tx)), 4);
}
