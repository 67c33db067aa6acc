//! `nested` scopes, `or_else` alternatives, per-variable `rollback` and aborts, nested at
//! random, against a sequential model of scopes.

use proptest::prelude::*;
use stmx::prelude::*;

const VARS: usize = 4;

#[derive(Debug, Clone)]
enum Op {
    Read(usize),
    Write(usize, i64),
    Rollback(usize),
    /// `nested(ops)`, then abort if the flag is set.
    Nested(Vec<Op>, bool),
    /// `or_else(ops, then retry if the flag is set; second)`.
    OrElse(Vec<Op>, bool, Vec<Op>),
}

fn op() -> impl Strategy<Value = Op> {
    let leaf = prop_oneof![
        (0..VARS).prop_map(Op::Read),
        (0..VARS, -50_i64..50).prop_map(|(i, v)| Op::Write(i, v)),
        (0..VARS).prop_map(Op::Rollback),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            (prop::collection::vec(inner.clone(), 0..5), any::<bool>())
                .prop_map(|(ops, abort)| Op::Nested(ops, abort)),
            (
                prop::collection::vec(inner.clone(), 0..5),
                any::<bool>(),
                prop::collection::vec(inner, 0..5)
            )
                .prop_map(|(a, r, b)| Op::OrElse(a, r, b)),
        ]
    })
}

/// The model: the current values and, per open scope, the values when it began.
fn model(ops: &[Op], cur: &mut [i64; VARS], scope_start: &[i64; VARS], reads: &mut Vec<i64>) {
    for op in ops {
        match op {
            Op::Read(i) => reads.push(cur[*i]),
            Op::Write(i, v) => cur[*i] = *v,
            Op::Rollback(i) => {
                cur[*i] = scope_start[*i];
                reads.push(cur[*i]);
            }
            Op::Nested(inner, abort) => {
                let start = *cur;
                model(inner, cur, &start, reads);
                if *abort {
                    *cur = start;
                }
            }
            Op::OrElse(first, retry, second) => {
                let start = *cur;
                model(first, cur, &start, reads);
                if *retry {
                    *cur = start;
                    model(second, cur, &start, reads);
                }
            }
        }
    }
}

/// The same program in a transaction.
fn run(
    tx: &mut Transaction,
    ops: &[Op],
    vars: &[TVar<i64>],
    reads: &mut Vec<i64>,
) -> StmResult<()> {
    for op in ops {
        match op {
            Op::Read(i) => reads.push(vars[*i].read(tx)?),
            Op::Write(i, v) => vars[*i].write(tx, *v)?,
            Op::Rollback(i) => reads.push(vars[*i].rollback(tx)?),
            Op::Nested(inner, abort) => {
                let r = tx.nested(|tx| -> Result<(), TxError<()>> {
                    run(tx, inner, vars, reads)?;
                    if *abort {
                        Err(TxError::Abort(()))
                    } else {
                        Ok(())
                    }
                })?;
                assert_eq!(r.is_err(), *abort);
            }
            Op::OrElse(first, retry_first, second) => {
                // Reads of a rolled-back alternative stay in the model's list, as here.
                let mut first_reads = Vec::new();
                let mut second_reads = Vec::new();
                tx.or_else(
                    |tx| {
                        first_reads.clear();
                        run(tx, first, vars, &mut first_reads)?;
                        if *retry_first { stmx::retry() } else { Ok(()) }
                    },
                    |tx| {
                        second_reads.clear();
                        run(tx, second, vars, &mut second_reads)
                    },
                )?;
                reads.extend(first_reads);
                reads.extend(second_reads);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(if cfg!(debug_assertions) { 256 } else { 2048 }))]

    #[test]
    fn scopes_rollbacks_and_alternatives_match_the_model(
        ops in prop::collection::vec(op(), 0..12),
        initial in [-50_i64..50, -50_i64..50, -50_i64..50, -50_i64..50],
        abort_all in any::<bool>(),
    ) {
        let vars: Vec<TVar<i64>> = initial.iter().copied().map(TVar::new).collect();
        let mut expected = initial;
        let mut model_reads = Vec::new();
        model(&ops, &mut expected, &initial, &mut model_reads);

        let mut reads = Vec::new();
        let r: Result<(), ()> = try_atomically(|tx| {
            reads.clear();
            run(tx, &ops, &vars, &mut reads)?;
            if abort_all { Err(TxError::Abort(())) } else { Ok(()) }
        });
        prop_assert_eq!(r.is_err(), abort_all);
        prop_assert_eq!(&reads, &model_reads);
        let committed: Vec<i64> = vars.iter().map(TVar::read_atomic).collect();
        let want = if abort_all { initial } else { expected };
        prop_assert_eq!(committed, want.to_vec());
    }
}
