//! `MegaRef`: a model test against a `BTreeMap` of paths, conflicts at path granularity, and
//! conserved totals under concurrent moves with auditors.

use std::collections::BTreeMap;
use std::thread;

use proptest::prelude::*;
use stmx::prelude::*;

mod common;
use common::attempts;

type Model = BTreeMap<Vec<u8>, i32>;

#[derive(Debug, Clone)]
enum Op {
    Get(Vec<u8>),
    Set(Vec<u8>, i32),
    Add(Vec<u8>, i32),
    CommuteAdd(Vec<u8>, i32),
    Remove(Vec<u8>),
    RemoveSubtree(Vec<u8>),
    Children(Vec<u8>),
    Snapshot,
    /// The same operation through `subref(prefix)`.
    Sub(Vec<u8>, Box<Op>),
}

fn path() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0..3_u8, 0..4)
}

fn leaf() -> impl Strategy<Value = Op> {
    prop_oneof![
        path().prop_map(Op::Get),
        (path(), -9_i32..9).prop_map(|(p, v)| Op::Set(p, v)),
        (path(), -9_i32..9).prop_map(|(p, v)| Op::Add(p, v)),
        (path(), -9_i32..9).prop_map(|(p, v)| Op::CommuteAdd(p, v)),
        path().prop_map(Op::Remove),
        path().prop_map(Op::RemoveSubtree),
        path().prop_map(Op::Children),
        Just(Op::Snapshot),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => leaf(),
        1 => (prop::collection::vec(0..3_u8, 1..3), leaf()).prop_map(|(p, o)| Op::Sub(p, Box::new(o))),
    ]
}

/// What a read returned, for comparison with the model.
#[derive(Debug, PartialEq)]
enum Seen {
    Value(Option<i32>),
    Keys(Vec<u8>),
    All(Vec<(Vec<u8>, i32)>),
}

fn model_apply(model: &mut Model, prefix: &[u8], op: &Op, seen: &mut Vec<Seen>) {
    let full = |p: &[u8]| [prefix, p].concat();
    match op {
        Op::Get(p) => seen.push(Seen::Value(model.get(&full(p)).copied())),
        Op::Set(p, v) => drop(model.insert(full(p), *v)),
        Op::Add(p, d) | Op::CommuteAdd(p, d) => {
            let k = full(p);
            let v = model.get(&k).copied().unwrap_or(0) + d;
            model.insert(k, v);
        }
        Op::Remove(p) => drop(model.remove(&full(p))),
        Op::RemoveSubtree(p) => {
            let k = full(p);
            model.retain(|path, _| !path.starts_with(&k));
        }
        Op::Children(p) => {
            let k = full(p);
            let mut keys: Vec<u8> = model
                .keys()
                .filter(|path| path.len() > k.len() && path.starts_with(&k))
                .map(|path| path[k.len()])
                .collect();
            keys.dedup();
            seen.push(Seen::Keys(keys));
        }
        Op::Snapshot => {
            let all = model
                .iter()
                .filter(|(path, _)| path.starts_with(prefix))
                .map(|(path, v)| (path[prefix.len()..].to_vec(), *v))
                .collect();
            seen.push(Seen::All(all));
        }
        Op::Sub(p, inner) => model_apply(model, &full(p), inner, seen),
    }
}

fn run(
    world: &MegaRef<u8, i32>,
    tx: &mut Transaction,
    op: &Op,
    seen: &mut Vec<Seen>,
) -> StmResult<()> {
    match op {
        Op::Get(p) => seen.push(Seen::Value(world.get_in(tx, p)?)),
        Op::Set(p, v) => world.set_in(tx, p, *v)?,
        Op::Add(p, d) => world.alter_in(tx, p, |v| Some(v.copied().unwrap_or(0) + d))?,
        Op::CommuteAdd(p, d) => {
            let d = *d;
            world.commute_in(tx, p, move |v| Some(v.copied().unwrap_or(0) + d))?;
        }
        Op::Remove(p) => drop(world.remove_in(tx, p)?),
        Op::RemoveSubtree(p) => world.remove_subtree(tx, p)?,
        Op::Children(p) => seen.push(Seen::Keys(world.children(tx, p)?)),
        Op::Snapshot => {
            let w = world.snapshot(tx)?;
            seen.push(Seen::All(w.iter().map(|(p, v)| (p, *v)).collect()));
        }
        Op::Sub(p, inner) => run(&world.subref(p), tx, inner, seen)?,
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(debug_assertions) { 128 } else { 1024 }))]

    #[test]
    fn megaref_matches_a_btreemap_of_paths(
        // Up to 120 transactions of up to 7 changes: enough commits to stack the world's
        // layers past a compaction (at 128), and to fold them both in a reader and in a
        // compaction.
        txs in prop::collection::vec((prop::collection::vec(op(), 1..8), any::<bool>()), 1..120),
    ) {
        let world: MegaRef<u8, i32> = MegaRef::with_guards(8);
        let mut model = Model::new();
        for (ops, abort) in txs {
            let mut scratch = model.clone();
            let mut want = Vec::new();
            for op in &ops {
                model_apply(&mut scratch, &[], op, &mut want);
            }
            let mut seen = Vec::new();
            let r: Result<(), ()> = try_atomically(|tx| {
                seen.clear();
                for op in &ops {
                    run(&world, tx, op, &mut seen)?;
                }
                if abort { Err(TxError::Abort(())) } else { Ok(()) }
            });
            prop_assert_eq!(r.is_err(), abort);
            prop_assert_eq!(&seen, &want);
            if !abort {
                model = scratch;
            }
            let snapshot = atomically(|tx| world.snapshot(tx));
            // `get_in` first: it looks through the snapshot's layers; `iter` folds them.
            for (p, v) in &model {
                prop_assert_eq!(snapshot.get_in(p), Some(v));
            }
            prop_assert_eq!(snapshot.get_in(&[3]), None);
            let all: Vec<(Vec<u8>, i32)> = snapshot.iter().map(|(p, v)| (p, *v)).collect();
            let expected: Vec<(Vec<u8>, i32)> = model.iter().map(|(p, v)| (p.clone(), *v)).collect();
            prop_assert_eq!(all, expected);
            prop_assert_eq!(snapshot.len(), model.len());
        }
    }
}

#[test]
fn writes_of_sibling_paths_do_not_conflict() {
    let world: MegaRef<&str, i32> = MegaRef::new();
    atomically(|tx| {
        world.set_in(tx, &["a", "x"], 1)?;
        world.set_in(tx, &["a", "y"], 1)
    });
    let n = attempts(
        |tx| world.alter_in(tx, &["a", "x"], |v| v.map(|v| v + 1)),
        || atomically(|tx| world.alter_in(tx, &["a", "y"], |v| v.map(|v| v + 10))),
    );
    assert_eq!(n, 1, "siblings");
    let n = attempts(
        |tx| world.commute_in(tx, &["a", "x"], |v| v.map(|v| v * 2)),
        || atomically(|tx| world.commute_in(tx, &["a", "x"], |v| v.map(|v| v + 1))),
    );
    assert_eq!(n, 1, "two commutes of one path");
    let snapshot = atomically(|tx| world.snapshot(tx));
    assert_eq!(snapshot.get_in(&["a", "x"]), Some(&6));
    assert_eq!(snapshot.get_in(&["a", "y"]), Some(&11));
}

#[test]
fn a_path_conflicts_with_its_prefixes_and_extensions() {
    let world: MegaRef<&str, i32> = MegaRef::new();
    atomically(|tx| world.set_in(tx, &["a", "b"], 1));
    let cases: [(&[&str], &[&str]); 2] = [(&["a"], &["a", "b"]), (&["a", "b"], &["a"])];
    for (mine, theirs) in cases {
        // A read of `mine` (in a transaction that writes something) against a write of `theirs`.
        let n = attempts(
            |tx| {
                world.get_in(tx, mine)?;
                world.set_in(tx, &["elsewhere"], 0)
            },
            || atomically(|tx| world.set_in(tx, theirs, 5)),
        );
        assert_eq!(n, 2, "read {mine:?} against a write of {theirs:?}");
        // A write of `mine` against a write of `theirs`.
        let n = attempts(
            |tx| world.set_in(tx, mine, 7),
            || atomically(|tx| world.set_in(tx, theirs, 8)),
        );
        assert_eq!(n, 2, "write {mine:?} against a write of {theirs:?}");
    }
}

/// With a single guard stripe every path shares its guards, yet writers still conflict by
/// path: the commit checks what changed in the world since the snapshot, path by path.
#[test]
fn writers_conflict_by_path_even_when_every_guard_collides() {
    let world: MegaRef<u32, u32> = MegaRef::with_guards(1);
    atomically(|tx| world.set_in(tx, &[1, 2], 0));
    let cases: [(&[u32], &[u32], bool); 6] = [
        (&[1], &[2], false),
        (&[1, 5], &[2, 5], false),
        (&[3], &[4, 1], false),
        (&[1], &[1], true),
        (&[1], &[1, 2], true),
        (&[1, 2], &[1], true),
    ];
    for (mine, theirs, conflict) in cases {
        let n = attempts(
            |tx| world.alter_in(tx, mine, |v| Some(v.copied().unwrap_or(0) + 1)),
            || atomically(|tx| world.set_in(tx, theirs, 9)),
        );
        assert_eq!(
            n,
            1 + u32::from(conflict),
            "a write of {mine:?} against a write of {theirs:?}"
        );
    }
    // Finding nothing to remove is checked at commit too.
    let n = attempts(
        |tx| world.remove_in(tx, &[7]).map(drop),
        || atomically(|tx| world.set_in(tx, &[7], 1)),
    );
    assert_eq!(n, 2, "remove_in of a missing value against a write of it");
    assert_eq!(atomically(|tx| world.get_in(tx, &[7])), None);
}

/// A writer's check at commit sees the changes committed since its snapshot even when a
/// compaction folded them into a new base meanwhile: the base keeps their paths. A change of
/// the writer's path among them is a conflict (no lost update); changes elsewhere are not.
#[test]
fn a_writers_check_sees_through_a_compaction() {
    for (theirs_too, conflict) in [(true, true), (false, false)] {
        let world: MegaRef<u32, u32> = MegaRef::new();
        atomically(|tx| world.set_in(tx, &[1], 0));
        let n = attempts(
            |tx| world.alter_in(tx, &[1], |v| Some(v.copied().unwrap_or(0) + 1)),
            || {
                if theirs_too {
                    atomically(|tx| world.set_in(tx, &[1], 100));
                }
                // Enough commits, one change each, for a compaction (at 128 layers) to fold
                // them, and the change of `[1]` with them.
                for i in 0..160 {
                    atomically(|tx| world.set_in(tx, &[2, i], i));
                }
            },
        );
        assert_eq!(
            n,
            1 + u32::from(conflict),
            "theirs wrote [1] too: {theirs_too}"
        );
        let expected = if theirs_too { 101 } else { 1 };
        assert_eq!(atomically(|tx| world.get_in(tx, &[1])), Some(expected));
    }
}

/// A writer's view of its path stays consistent with the rest of its snapshot: once another
/// commit changed the path and another variable together, the attempt cannot read the new
/// variable with the old path.
#[test]
fn a_writer_never_sees_its_path_older_than_the_rest_of_its_view() {
    let world: MegaRef<u32, u32> = MegaRef::new();
    let other = TVar::new(0_u32);
    atomically(|tx| world.set_in(tx, &[1], 0));
    let mut first = true;
    let mut seen = Vec::new();
    atomically(|tx| {
        let mut old = None;
        world.alter_in(tx, &[1], |v| {
            old = v.copied();
            Some(old.unwrap_or(0) + 1)
        })?;
        if std::mem::take(&mut first) {
            thread::scope(|s| {
                s.spawn(|| {
                    atomically(|tx| {
                        world.set_in(tx, &[1], 5)?;
                        other.write(tx, 5)
                    })
                });
            });
        }
        seen.push((old, other.read(tx)?));
        Ok(())
    });
    assert_eq!(
        seen,
        [(Some(5), 5)],
        "an attempt saw [1] and the other variable out of step"
    );
    assert_eq!(atomically(|tx| world.get_in(tx, &[1])), Some(6));
}

#[test]
fn snapshots_and_children_conflict_with_writes_below_them_only() {
    let world: MegaRef<&str, i32> = MegaRef::new();
    atomically(|tx| {
        world.set_in(tx, &["a", "x"], 1)?;
        world.set_in(tx, &["b", "x"], 1)
    });
    let a = world.subref(&["a"]);
    let n = attempts(
        |tx| {
            a.snapshot(tx)?;
            world.set_in(tx, &["c"], 0)
        },
        || atomically(|tx| world.set_in(tx, &["b", "y"], 2)),
    );
    assert_eq!(n, 1, "a snapshot of [a] and a write below [b]");
    let n = attempts(
        |tx| {
            a.snapshot(tx)?;
            world.set_in(tx, &["c"], 0)
        },
        || atomically(|tx| world.set_in(tx, &["a", "z"], 2)),
    );
    assert_eq!(n, 2, "a snapshot of [a] and a write below it");
    let n = attempts(
        |tx| {
            world.children(tx, &["a"])?;
            world.set_in(tx, &["c"], 1)
        },
        || atomically(|tx| world.remove_subtree(tx, &["a", "x"])),
    );
    assert_eq!(n, 2, "children of [a] and a child removed");
    // The root's own operations conflict with a write anywhere (through the world itself).
    let n = attempts(
        |tx| {
            world.snapshot(tx)?;
            world.set_in(tx, &["c"], 2)
        },
        || atomically(|tx| world.set_in(tx, &["b", "x", "deep"], 3)),
    );
    assert_eq!(n, 2, "a whole-world snapshot and a write deep below it");
    let n = attempts(
        |tx| {
            world.children(tx, &[])?;
            world.set_in(tx, &["c"], 3)
        },
        || atomically(|tx| world.remove_subtree(tx, &["b"])),
    );
    assert_eq!(n, 2, "children of the root and a child removed");
    let n = attempts(
        |tx| {
            world.get_in(tx, &[])?;
            world.set_in(tx, &["c"], 4)
        },
        || atomically(|tx| world.commute_in(tx, &["a", "x"], |v| v.map(|v| v + 1))),
    );
    assert_eq!(n, 2, "the root's value and a commute below it");
    // A read-only transaction never conflicts.
    let n = attempts(
        |tx| world.snapshot(tx).map(drop),
        || atomically(|tx| world.set_in(tx, &["a", "w"], 3)),
    );
    assert_eq!(n, 1, "read-only");
}

#[test]
fn write_skew_across_two_paths_is_impossible() {
    // Each transaction reads one path and, if both are "on", turns the other off: run
    // serially, at least one stays on.
    for _ in 0..50 {
        let world: MegaRef<&str, bool> = MegaRef::new();
        atomically(|tx| {
            world.set_in(tx, &["doctors", "ann"], true)?;
            world.set_in(tx, &["doctors", "bob"], true)
        });
        thread::scope(|s| {
            for (me, other) in [("ann", "bob"), ("bob", "ann")] {
                let world = &world;
                s.spawn(move || {
                    atomically(|tx| {
                        let on_call = world.get_in(tx, &["doctors", other])? == Some(true);
                        if on_call {
                            world.set_in(tx, &["doctors", me], false)?;
                        }
                        Ok(())
                    })
                });
            }
        });
        let w = atomically(|tx| world.snapshot(tx));
        assert!(
            w.get_in(&["doctors", "ann"]) == Some(&true)
                || w.get_in(&["doctors", "bob"]) == Some(&true),
            "both went off call: write skew"
        );
    }
}

#[test]
fn moves_between_random_paths_conserve_the_total_in_every_snapshot() {
    const CELLS: u32 = 64;
    let world: MegaRef<u32, i64> = MegaRef::new();
    atomically(|tx| {
        for c in 0..CELLS {
            world.set_in(tx, &[c / 8, c % 8], 100)?;
        }
        Ok(())
    });
    let total = 100 * i64::from(CELLS);
    let moves = if cfg!(debug_assertions) {
        2_000
    } else {
        20_000
    };
    thread::scope(|s| {
        for t in 0..2_u64 {
            let world = &world;
            s.spawn(move || {
                let mut seed = 0x9E37_79B9 + t;
                for _ in 0..moves {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let (from, to) = ((seed % 64) as u32, ((seed >> 8) % 64) as u32);
                    atomically(|tx| {
                        let v = world.get_in(tx, &[from / 8, from % 8])?.unwrap_or(0);
                        let n = v.min(3);
                        world.set_in(tx, &[from / 8, from % 8], v - n)?;
                        world.alter_in(tx, &[to / 8, to % 8], |w| Some(w.copied().unwrap_or(0) + n))
                    });
                }
            });
        }
        let world = &world;
        s.spawn(move || {
            for _ in 0..200 {
                let (looked_up, folded): (i64, i64) = atomically(|tx| {
                    let w = world.snapshot(tx)?;
                    // Through the snapshot's layers first, then folded flat.
                    let looked_up = (0..CELLS)
                        .map(|c| w.get_in(&[c / 8, c % 8]).copied().unwrap_or(0))
                        .sum();
                    Ok((looked_up, w.iter().map(|(_, v)| *v).sum()))
                });
                assert_eq!(
                    looked_up, total,
                    "a snapshot saw money created or destroyed"
                );
                assert_eq!(
                    folded, total,
                    "a folded snapshot saw money created or destroyed"
                );
            }
        });
    });
    let sum: i64 = atomically(|tx| world.snapshot(tx))
        .iter()
        .map(|(_, v)| *v)
        .sum();
    assert_eq!(sum, total);
}

/// Many small commits (the world's layers are compacted again and again) and one transaction
/// of many writes (its own layers folded in its commit), against a model; snapshots taken
/// along the way keep their values.
#[test]
fn snapshots_outlive_compactions_and_big_transactions() {
    let world: MegaRef<u32, u64> = MegaRef::new();
    let mut model: BTreeMap<Vec<u32>, u64> = BTreeMap::new();
    let mut kept = Vec::new();
    let mut seed = 0x2545_F491_u64;
    for i in 0..3_000_u64 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let path = [(seed % 5) as u32, ((seed >> 8) % 7) as u32];
        match seed % 10 {
            0 => {
                atomically(|tx| world.remove_subtree(tx, &path[..1]));
                model.retain(|p, _| p[0] != path[0]);
            }
            1 => {
                atomically(|tx| world.remove_in(tx, &path));
                model.remove(&path[..]);
            }
            2 => {
                atomically(|tx| world.commute_in(tx, &path, |v| Some(v.copied().unwrap_or(0) + 1)));
                *model.entry(path.to_vec()).or_insert(0) += 1;
            }
            _ => {
                atomically(|tx| world.set_in(tx, &path, i));
                model.insert(path.to_vec(), i);
            }
        }
        if i % 97 == 0 {
            kept.push((atomically(|tx| world.snapshot(tx)), model.clone()));
        }
    }
    atomically(|tx| {
        for i in 0..1_000_u32 {
            world.set_in(tx, &[9, i], u64::from(i))?;
        }
        Ok(())
    });
    for i in 0..1_000_u32 {
        model.insert(vec![9, i], u64::from(i));
    }
    kept.push((atomically(|tx| world.snapshot(tx)), model));
    for (snapshot, model) in &kept {
        for (p, v) in model {
            assert_eq!(snapshot.get_in(p), Some(v), "{p:?}");
        }
        let all: Vec<(Vec<u32>, u64)> = snapshot.iter().map(|(p, v)| (p, *v)).collect();
        let want: Vec<(Vec<u32>, u64)> = model.iter().map(|(p, v)| (p.clone(), *v)).collect();
        assert_eq!(all, want);
        assert_eq!(snapshot.len(), model.len());
    }
}

#[cfg(feature = "persist")]
#[test]
fn a_world_round_trips_through_serde() {
    let world: MegaRef<String, u32> = MegaRef::new();
    atomically(|tx| {
        world.set_in(tx, &["a".into(), "b".into()], 1)?;
        world.set_in(tx, &["a".into()], 2)?;
        world.set_in(tx, &[], 3)
    });
    let snapshot = atomically(|tx| world.snapshot(tx));
    let bytes = postcard::to_stdvec(&snapshot).unwrap();
    let back: stmx::World<String, u32> = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(back, snapshot);
    assert_eq!(back.get_in(&["a".to_string(), "b".to_string()]), Some(&1));
    assert_eq!(back.len(), 3);
}
