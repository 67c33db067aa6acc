//! `#[transactional]` used through `stm-core` directly, without the `stmx` facade: the
//! generated code must find the runtime as `::stm_core`.

use std::sync::Arc;
use std::thread;

use stm_core::{StmResult, Transaction, atomically, guard, transactional};

#[transactional]
#[derive(Debug)]
struct Slot<T>
where
    T: Clone + Send + Sync + 'static,
{
    value: Option<T>,
    puts: u64,
}

fn put<T: Clone + Send + Sync + 'static>(tx: &mut Transaction, s: &Slot<T>, v: T) -> StmResult<()> {
    guard(s.value(tx)?.is_none())?;
    s.set_value(tx, Some(v))?;
    s.modify_puts(tx, |n| n + 1)
}

fn take<T: Clone + Send + Sync + 'static>(tx: &mut Transaction, s: &Slot<T>) -> StmResult<T> {
    let v = stm_core::unwrap_or_retry(s.value(tx)?)?;
    s.set_value(tx, None)?;
    Ok(v)
}

#[test]
fn smoke() {
    let s = Slot::new(None, 0);
    atomically(|tx| put(tx, &s, "x"));
    let snap = s.snapshot_atomic();
    assert_eq!((snap.value, snap.puts), (Some("x"), 1));
    assert_eq!(atomically(|tx| take(tx, &s)), "x");
}

#[test]
fn a_slot_hands_every_value_over_once_in_order() {
    const N: u64 = 2_000;
    let slot = Arc::new(Slot::new(None, 0));
    let producer = {
        let slot = Arc::clone(&slot);
        thread::spawn(move || {
            for i in 0..N {
                atomically(|tx| put(tx, &slot, i));
            }
        })
    };
    for i in 0..N {
        assert_eq!(atomically(|tx| take(tx, &slot)), i);
    }
    producer.join().unwrap();
    assert_eq!(slot.snapshot_atomic().puts, N);
}
