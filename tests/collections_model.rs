//! Each container against a sequential `std` model, over random sequences of transactions.
//!
//! A transaction is a batch of operations; about one in five ends in a user abort, after which
//! the container must be exactly as before (the model's working copy is thrown away). Blocking
//! operations run under `optionally`, so an empty `take` or a full `put` retries, is rolled
//! back, and reports `None`, which the model predicts.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Debug;
use std::ops::ControlFlow;

use proptest::prelude::*;
use stmx::prelude::*;

/// Runs `batches` on the container and on the model, comparing every result, and after each
/// batch compares `contents` (read in transactions of its own) with the model's.
fn run<C, M, O, S>(
    container: &C,
    model: &mut M,
    batches: &[(Vec<O>, bool)],
    stm: impl Fn(&mut Transaction, &C, &O) -> StmResult<String>,
    std: impl Fn(&mut M, &O) -> String,
    contents: impl Fn(&C) -> S,
    model_contents: impl Fn(&M) -> S,
) -> Result<(), TestCaseError>
where
    M: Clone,
    O: Debug,
    S: PartialEq + Debug,
{
    for (ops, abort) in batches {
        let mut scratch = model.clone();
        let expected: Vec<String> = ops.iter().map(|op| std(&mut scratch, op)).collect();
        let got: Result<Vec<String>, ()> = try_atomically(|tx| {
            let mut out = Vec::new();
            for op in ops {
                out.push(stm(tx, container, op)?);
            }
            if *abort {
                return Err(TxError::Abort(()));
            }
            Ok(out)
        });
        if *abort {
            prop_assert!(got.is_err());
        } else {
            prop_assert_eq!(got.unwrap(), expected, "ops: {:?}", ops);
            *model = scratch;
        }
        prop_assert_eq!(contents(container), model_contents(model));
    }
    Ok(())
}

fn batches<O: Debug>(op: impl Strategy<Value = O>) -> impl Strategy<Value = Vec<(Vec<O>, bool)>> {
    prop::collection::vec(
        (prop::collection::vec(op, 1..6), prop::bool::weighted(0.2)),
        0..40,
    )
}

/// Drains a queue-like container in a transaction that then aborts: its contents, unchanged.
fn peek_all<T: Clone + Send + Sync + 'static>(
    mut try_take: impl FnMut(&mut Transaction) -> StmResult<Option<T>>,
) -> Vec<T> {
    let drained: Result<(), Vec<T>> = try_atomically(|tx| {
        let mut all = Vec::new();
        while let Some(v) = try_take(tx)? {
            all.push(v);
        }
        Err(TxError::Abort(all))
    });
    drained.unwrap_err()
}

#[derive(Debug, Clone)]
enum CellOp {
    Take,
    Put(u8),
    TryTake,
    TryPut(u8),
    Peek,
    Clear,
    IsEmpty,
    IsFull,
}

fn cell_op() -> impl Strategy<Value = CellOp> {
    prop_oneof![
        Just(CellOp::Take),
        any::<u8>().prop_map(CellOp::Put),
        Just(CellOp::TryTake),
        any::<u8>().prop_map(CellOp::TryPut),
        Just(CellOp::Peek),
        Just(CellOp::Clear),
        Just(CellOp::IsEmpty),
        Just(CellOp::IsFull),
    ]
}

#[derive(Debug, Clone)]
enum QueueOp {
    Take,
    Put(u8),
    TryTake,
    TryPut(u8),
    Peek,
    Len,
    IsEmpty,
    Clear,
}

fn queue_op() -> impl Strategy<Value = QueueOp> {
    prop_oneof![
        3 => Just(QueueOp::Take),
        4 => any::<u8>().prop_map(QueueOp::Put),
        2 => Just(QueueOp::TryTake),
        2 => any::<u8>().prop_map(QueueOp::TryPut),
        1 => Just(QueueOp::Peek),
        1 => Just(QueueOp::Len),
        1 => Just(QueueOp::IsEmpty),
        1 => Just(QueueOp::Clear),
    ]
}

#[derive(Debug, Clone)]
enum ChannelOp {
    Put(u8),
    Take(usize),
    TryTake(usize),
    Peek(usize),
    Len(usize),
    IsEmpty(usize),
    Clear(usize),
}

fn channel_op() -> impl Strategy<Value = ChannelOp> {
    prop_oneof![
        4 => any::<u8>().prop_map(ChannelOp::Put),
        3 => (0..2_usize).prop_map(ChannelOp::Take),
        2 => (0..2_usize).prop_map(ChannelOp::TryTake),
        1 => (0..2_usize).prop_map(ChannelOp::Peek),
        1 => (0..2_usize).prop_map(ChannelOp::Len),
        1 => (0..2_usize).prop_map(ChannelOp::IsEmpty),
        1 => (0..2_usize).prop_map(ChannelOp::Clear),
    ]
}

#[derive(Debug, Clone)]
enum MapOp {
    Insert(u8, i32),
    Remove(u8),
    Get(u8),
    Contains(u8),
    /// Adds to the value, removing the entry when the sum is negative.
    Update(u8, i32),
    Len,
    IsEmpty,
    Clear,
    First,
    Last,
    PopFirst,
    PopLast,
    Range(u8, u8),
}

fn map_op(ordered: bool) -> impl Strategy<Value = MapOp> {
    // Keys from a small range, so inserts hit existing keys and removes find them.
    let key = 0..64_u8;
    let common = prop_oneof![
        6 => (key.clone(), any::<i32>()).prop_map(|(k, v)| MapOp::Insert(k, v)),
        4 => key.clone().prop_map(MapOp::Remove),
        2 => key.clone().prop_map(MapOp::Get),
        1 => key.clone().prop_map(MapOp::Contains),
        2 => (key.clone(), -50..50_i32).prop_map(|(k, d)| MapOp::Update(k, d)),
        1 => Just(MapOp::Len),
        1 => Just(MapOp::IsEmpty),
    ];
    let rare_clear = prop::bool::weighted(0.01);
    let ordered_ops = prop_oneof![
        Just(MapOp::First),
        Just(MapOp::Last),
        Just(MapOp::PopFirst),
        Just(MapOp::PopLast),
        (key.clone(), key).prop_map(|(a, b)| MapOp::Range(a.min(b), a.max(b))),
    ];
    (common, ordered_ops, any::<bool>(), rare_clear).prop_map(move |(c, o, pick, clear)| {
        if clear {
            MapOp::Clear
        } else if ordered && pick {
            o
        } else {
            c
        }
    })
}

fn update_fn(d: i32) -> impl FnOnce(Option<i32>) -> Option<i32> {
    move |old| {
        let new = old.unwrap_or(0).saturating_add(d);
        (new >= 0).then_some(new)
    }
}

/// The operations both maps have, on the stmx map (`stm m, tx, op`) or on the `std` model
/// (`model m, op`), followed by the `extra` match arms of one map.
macro_rules! map_ops {
    (stm $m:ident, $tx:ident, $op:ident, { $($extra:tt)* }) => {
        match $op {
            MapOp::Insert(k, v) => format!("{:?}", $m.insert($tx, *k, *v)?),
            MapOp::Remove(k) => format!("{:?}", $m.remove($tx, k)?),
            MapOp::Get(k) => format!("{:?}", $m.get($tx, k)?),
            MapOp::Contains(k) => format!("{:?}", $m.contains_key($tx, k)?),
            MapOp::Update(k, d) => format!("{:?}", $m.update($tx, *k, update_fn(*d))?),
            MapOp::Len => format!("{:?}", $m.len($tx)?),
            MapOp::IsEmpty => format!("{:?}", $m.is_empty($tx)?),
            MapOp::Clear => format!("{:?}", $m.clear($tx)?),
            $($extra)*
        }
    };
    (model $m:ident, $op:ident, { $($extra:tt)* }) => {
        match $op {
            MapOp::Insert(k, v) => format!("{:?}", $m.insert(*k, *v)),
            MapOp::Remove(k) => format!("{:?}", $m.remove(k)),
            MapOp::Get(k) => format!("{:?}", $m.get(k).copied()),
            MapOp::Contains(k) => format!("{:?}", $m.contains_key(k)),
            MapOp::Update(k, d) => {
                let old = $m.get(k).copied();
                match update_fn(*d)(old) { Some(v) => { $m.insert(*k, v); } None => { $m.remove(k); } }
                format!("{old:?}")
            }
            MapOp::Len => format!("{:?}", $m.len()),
            MapOp::IsEmpty => format!("{:?}", $m.is_empty()),
            MapOp::Clear => { $m.clear(); format!("{:?}", ()) }
            $($extra)*
        }
    };
}

proptest! {
    #[test]
    fn tcell_agrees_with_option(batches in batches(cell_op())) {
        let cell = TCell::new();
        let mut model: Option<u8> = None;
        run(&cell, &mut model, &batches,
            |tx, c, op| Ok(match op {
                CellOp::Take => format!("{:?}", optionally(tx, |tx| c.take(tx))?),
                CellOp::Put(v) => format!("{:?}", optionally(tx, |tx| c.put(tx, *v))?),
                CellOp::TryTake => format!("{:?}", c.try_take(tx)?),
                CellOp::TryPut(v) => format!("{:?}", c.try_put(tx, *v)?),
                CellOp::Peek => format!("{:?}", c.peek(tx)?),
                CellOp::Clear => format!("{:?}", c.clear(tx)?),
                CellOp::IsEmpty => format!("{:?}", c.is_empty(tx)?),
                CellOp::IsFull => format!("{:?}", c.is_full(tx)?),
            }),
            |m, op| match op {
                CellOp::Take => format!("{:?}", m.take()),
                CellOp::Put(v) => format!("{:?}", if m.is_none() { *m = Some(*v); Some(()) } else { None }),
                CellOp::TryTake => format!("{:?}", m.take()),
                CellOp::TryPut(v) => format!("{:?}", if m.is_none() { *m = Some(*v); Ok(()) } else { Err(*v) }),
                CellOp::Peek => format!("{:?}", *m),
                CellOp::Clear => { *m = None; format!("{:?}", ()) }
                CellOp::IsEmpty => format!("{:?}", m.is_none()),
                CellOp::IsFull => format!("{:?}", m.is_some()),
            },
            |c| atomically(|tx| c.peek(tx)),
            |m| *m,
        )?;
    }

    #[test]
    fn tstack_agrees_with_vec(batches in batches(queue_op())) {
        let stack = TStack::new();
        let mut model: Vec<u8> = Vec::new();
        run(&stack, &mut model, &batches,
            |tx, s, op| Ok(match op {
                QueueOp::Take => format!("{:?}", optionally(tx, |tx| s.pop(tx))?),
                QueueOp::Put(v) | QueueOp::TryPut(v) => format!("{:?}", s.push(tx, *v)?),
                QueueOp::TryTake => format!("{:?}", s.try_take(tx)?),
                QueueOp::Peek => format!("{:?}", s.peek(tx)?),
                QueueOp::Len => format!("{:?}", s.len(tx)?),
                QueueOp::IsEmpty => format!("{:?}", s.is_empty(tx)?),
                QueueOp::Clear => format!("{:?}", s.clear(tx)?),
            }),
            |m, op| match op {
                QueueOp::Take | QueueOp::TryTake => format!("{:?}", m.pop()),
                QueueOp::Put(v) | QueueOp::TryPut(v) => { m.push(*v); format!("{:?}", ()) }
                QueueOp::Peek => format!("{:?}", m.last().copied()),
                QueueOp::Len => format!("{:?}", m.len()),
                QueueOp::IsEmpty => format!("{:?}", m.is_empty()),
                QueueOp::Clear => { m.clear(); format!("{:?}", ()) }
            },
            |s| peek_all(|tx| s.try_take(tx)),
            |m| m.iter().rev().copied().collect::<Vec<_>>(),
        )?;
    }

    #[test]
    fn tfifo_agrees_with_vecdeque(batches in batches(queue_op()), bound in prop::option::of(1..6_usize)) {
        let fifo = bound.map_or_else(TFifo::new, TFifo::bounded);
        let capacity = bound.unwrap_or(usize::MAX);
        let mut model: VecDeque<u8> = VecDeque::new();
        run(&fifo, &mut model, &batches,
            |tx, f, op| Ok(match op {
                QueueOp::Take => format!("{:?}", optionally(tx, |tx| f.take(tx))?),
                QueueOp::Put(v) => format!("{:?}", optionally(tx, |tx| f.put(tx, *v))?),
                QueueOp::TryTake => format!("{:?}", f.try_take(tx)?),
                QueueOp::TryPut(v) => format!("{:?}", f.try_put(tx, *v)?),
                QueueOp::Peek => format!("{:?}", f.peek(tx)?),
                QueueOp::Len => format!("{:?}", f.len(tx)?),
                QueueOp::IsEmpty => format!("{:?}", f.is_empty(tx)?),
                QueueOp::Clear => format!("{:?}", f.clear(tx)?),
            }),
            |m, op| match op {
                QueueOp::Take | QueueOp::TryTake => format!("{:?}", m.pop_front()),
                QueueOp::Put(v) => format!("{:?}", (m.len() < capacity).then(|| m.push_back(*v))),
                QueueOp::TryPut(v) => format!("{:?}", if m.len() < capacity { m.push_back(*v); Ok(()) } else { Err(*v) }),
                QueueOp::Peek => format!("{:?}", m.front().copied()),
                QueueOp::Len => format!("{:?}", m.len()),
                QueueOp::IsEmpty => format!("{:?}", m.is_empty()),
                QueueOp::Clear => { m.clear(); format!("{:?}", ()) }
            },
            |f| peek_all(|tx| f.try_take(tx)),
            |m| m.iter().copied().collect::<Vec<_>>(),
        )?;
    }

    #[test]
    fn tchannel_ports_agree_with_a_vecdeque_each(batches in batches(channel_op())) {
        let channel = TChannel::new();
        let ports = [channel.subscribe(), TPort::new(&channel)];
        let mut model: [VecDeque<u8>; 2] = Default::default();
        run(&(channel, ports), &mut model, &batches,
            |tx, (c, ports), op| Ok(match op {
                ChannelOp::Put(v) => format!("{:?}", c.put(tx, *v)?),
                ChannelOp::Take(p) => format!("{:?}", optionally(tx, |tx| ports[*p].take(tx))?),
                ChannelOp::TryTake(p) => format!("{:?}", ports[*p].try_take(tx)?),
                ChannelOp::Peek(p) => format!("{:?}", ports[*p].peek(tx)?),
                ChannelOp::Len(p) => format!("{:?}", ports[*p].len(tx)?),
                ChannelOp::IsEmpty(p) => format!("{:?}", ports[*p].is_empty(tx)?),
                ChannelOp::Clear(p) => format!("{:?}", ports[*p].clear(tx)?),
            }),
            |m, op| match op {
                ChannelOp::Put(v) => { m[0].push_back(*v); m[1].push_back(*v); format!("{:?}", ()) }
                ChannelOp::Take(p) | ChannelOp::TryTake(p) => format!("{:?}", m[*p].pop_front()),
                ChannelOp::Peek(p) => format!("{:?}", m[*p].front().copied()),
                ChannelOp::Len(p) => format!("{:?}", m[*p].len()),
                ChannelOp::IsEmpty(p) => format!("{:?}", m[*p].is_empty()),
                ChannelOp::Clear(p) => { m[*p].clear(); format!("{:?}", ()) }
            },
            |(_, ports)| [peek_all(|tx| ports[0].try_take(tx)), peek_all(|tx| ports[1].try_take(tx))],
            |m| [m[0].iter().copied().collect::<Vec<_>>(), m[1].iter().copied().collect::<Vec<_>>()],
        )?;
    }

    #[test]
    fn thashmap_agrees_with_hashmap(batches in batches(map_op(false))) {
        let map = THashMap::new();
        let mut model: HashMap<u8, i32> = HashMap::new();
        run(&map, &mut model, &batches,
            |tx, m, op| Ok(map_ops!(stm m, tx, op, {
                other => unreachable!("not a hash map op: {other:?}"),
            })),
            |m, op| map_ops!(model m, op, {
                other => unreachable!("not a hash map op: {other:?}"),
            }),
            |m| atomically(|tx| { let mut v = m.to_vec(tx)?; v.sort_unstable(); Ok((v, m.len(tx)?)) }),
            |m| { let mut v: Vec<_> = m.iter().map(|(k, v)| (*k, *v)).collect(); v.sort_unstable(); (v, m.len()) },
        )?;
    }

    #[test]
    fn tmap_agrees_with_btreemap_and_stays_red_black(batches in batches(map_op(true))) {
        let map = TMap::new();
        let mut model: BTreeMap<u8, i32> = BTreeMap::new();
        run(&map, &mut model, &batches,
            |tx, m, op| Ok(map_ops!(stm m, tx, op, {
                MapOp::First => format!("{:?}", m.first(tx)?),
                MapOp::Last => format!("{:?}", m.last(tx)?),
                MapOp::PopFirst => format!("{:?}", m.pop_first(tx)?),
                MapOp::PopLast => format!("{:?}", m.pop_last(tx)?),
                MapOp::Range(a, b) => {
                    // The Vec form, and the visiting form stopped after three entries.
                    let mut firsts = Vec::new();
                    m.range_with(tx, *a..*b, |k, v| {
                        firsts.push((*k, *v));
                        if firsts.len() == 3 { ControlFlow::Break(()) } else { ControlFlow::Continue(()) }
                    })?;
                    format!("{:?}", (m.range(tx, *a..*b)?, firsts))
                }
            })),
            |m, op| map_ops!(model m, op, {
                MapOp::First => format!("{:?}", m.first_key_value().map(|(k, v)| (*k, *v))),
                MapOp::Last => format!("{:?}", m.last_key_value().map(|(k, v)| (*k, *v))),
                MapOp::PopFirst => format!("{:?}", m.pop_first()),
                MapOp::PopLast => format!("{:?}", m.pop_last()),
                MapOp::Range(a, b) => {
                    let all: Vec<_> = m.range(*a..*b).map(|(k, v)| (*k, *v)).collect();
                    let firsts: Vec<_> = all.iter().copied().take(3).collect();
                    format!("{:?}", (all, firsts))
                }
            }),
            |m| atomically(|tx| {
                let invariants = m.check_invariants(tx)?.map(|_| ());
                Ok((m.to_vec(tx)?, m.keys(tx)?, invariants))
            }),
            |m| (m.iter().map(|(k, v)| (*k, *v)).collect(), m.keys().copied().collect(), Ok(())),
        )?;
    }

    #[test]
    fn tset_agrees_with_hashset(ops in prop::collection::vec((any::<bool>(), 0..32_u8), 0..200)) {
        let set = TSet::new();
        let mut model = HashSet::new();
        for (insert, v) in ops {
            if insert {
                prop_assert_eq!(atomically(|tx| set.insert(tx, v)), model.insert(v));
            } else {
                prop_assert_eq!(atomically(|tx| set.remove(tx, &v)), model.remove(&v));
            }
            prop_assert_eq!(atomically(|tx| set.contains(tx, &v)), model.contains(&v));
            prop_assert_eq!(atomically(|tx| set.len(tx)), model.len());
        }
        let mut all = atomically(|tx| set.to_vec(tx));
        all.sort_unstable();
        let mut expected: Vec<_> = model.into_iter().collect();
        expected.sort_unstable();
        prop_assert_eq!(all, expected);
    }
}

/// Sequential inserts and removes in order are the classic worst case for an unbalanced tree;
/// the red-black tree stays within its height bound throughout.
#[test]
fn tmap_stays_balanced_under_sorted_inserts_and_removes() {
    let map = TMap::new();
    for i in 0..2_000_u32 {
        atomically(|tx| map.insert(tx, i, i));
        if i % 97 == 0 {
            let height = atomically(|tx| map.check_invariants(tx)).unwrap();
            // Black height h means between 2^h - 1 and 4^h - 1 nodes.
            assert!(
                (1_usize << height) <= 2 * (i as usize + 2),
                "black height {height} at {i}"
            );
        }
    }
    for i in (0..2_000_u32).step_by(2) {
        assert_eq!(atomically(|tx| map.remove(tx, &i)), Some(i));
    }
    atomically(|tx| map.check_invariants(tx)).unwrap();
    assert_eq!(atomically(|tx| map.len(tx)), 1_000);
    assert_eq!(atomically(|tx| map.first(tx)), Some((1, 1)));
}

/// The map grows past several doublings and keeps every entry.
#[test]
fn thashmap_grows_and_keeps_every_entry() {
    let map = THashMap::new();
    for i in 0..5_000_u32 {
        assert_eq!(atomically(|tx| map.insert(tx, i, i * 2)), None);
    }
    assert_eq!(atomically(|tx| map.len(tx)), 5_000);
    for i in 0..5_000_u32 {
        assert_eq!(atomically(|tx| map.get(tx, &i)), Some(i * 2));
    }
    let mut keys = atomically(|tx| map.keys(tx));
    keys.sort_unstable();
    assert_eq!(keys, (0..5_000).collect::<Vec<_>>());
}
