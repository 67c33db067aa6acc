//! Random sequences of transactions, run against a plain sequential model.

use proptest::prelude::*;
use stmx::prelude::*;

const VARS: usize = 4;

#[derive(Debug, Clone)]
enum Step {
    Read(usize),
    Write(usize, i64),
    Add(usize, i64),
    /// `or_else(first; retry-if-flag, second)`.
    OrElse(Vec<Step>, bool, Vec<Step>),
    /// `optionally(steps; retry-if-flag)`.
    Optionally(Vec<Step>, bool),
}

#[derive(Debug, Clone)]
struct Txn {
    steps: Vec<Step>,
    abort: bool,
}

fn step() -> impl Strategy<Value = Step> {
    let leaf = prop_oneof![
        (0..VARS).prop_map(Step::Read),
        (0..VARS, -100_i64..100).prop_map(|(i, v)| Step::Write(i, v)),
        (0..VARS, -10_i64..10).prop_map(|(i, d)| Step::Add(i, d)),
    ];
    leaf.prop_recursive(2, 16, 4, |inner| {
        prop_oneof![
            (
                prop::collection::vec(inner.clone(), 0..4),
                any::<bool>(),
                prop::collection::vec(inner.clone(), 0..4)
            )
                .prop_map(|(a, r, b)| Step::OrElse(a, r, b)),
            (prop::collection::vec(inner, 0..4), any::<bool>())
                .prop_map(|(a, r)| Step::Optionally(a, r)),
        ]
    })
}

fn txn() -> impl Strategy<Value = Txn> {
    (
        prop::collection::vec(step(), 0..8),
        prop::bool::weighted(0.2),
    )
        .prop_map(|(steps, abort)| Txn { steps, abort })
}

/// The model: steps applied to a working copy; a retried alternative restores its snapshot.
fn model_steps(state: &mut [i64; VARS], steps: &[Step], reads: &mut Vec<i64>) {
    for s in steps {
        match s {
            Step::Read(i) => reads.push(state[*i]),
            Step::Write(i, v) => state[*i] = *v,
            Step::Add(i, d) => state[*i] += d,
            Step::OrElse(first, retries, second) => {
                let saved = *state;
                model_steps(state, first, reads);
                if *retries {
                    *state = saved;
                    model_steps(state, second, reads);
                }
            }
            Step::Optionally(body, retries) => {
                let saved = *state;
                model_steps(state, body, reads);
                if *retries {
                    *state = saved;
                }
            }
        }
    }
}

fn stm_steps(
    tx: &mut Transaction,
    vars: &[TVar<i64>],
    steps: &[Step],
    reads: &mut Vec<i64>,
) -> StmResult<()> {
    for s in steps {
        match s {
            Step::Read(i) => reads.push(vars[*i].read(tx)?),
            Step::Write(i, v) => vars[*i].write(tx, *v)?,
            Step::Add(i, d) => vars[*i].modify(tx, |x| x + d)?,
            Step::OrElse(first, retries, second) => {
                // Both closures need the read log; they run one after the other.
                let log = std::cell::RefCell::new(std::mem::take(reads));
                tx.or_else(
                    |tx| {
                        stm_steps(tx, vars, first, &mut log.borrow_mut())?;
                        if *retries { retry() } else { Ok(()) }
                    },
                    |tx| stm_steps(tx, vars, second, &mut log.borrow_mut()),
                )?;
                *reads = log.into_inner();
            }
            Step::Optionally(body, retries) => {
                optionally(tx, |tx| {
                    stm_steps(tx, vars, body, reads)?;
                    if *retries { retry() } else { Ok(()) }
                })?;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn transactions_agree_with_a_sequential_model(txns in prop::collection::vec(txn(), 1..12)) {
        let vars: Vec<TVar<i64>> = (0..VARS).map(|_| TVar::new(0)).collect();
        let mut model = [0_i64; VARS];
        for t in &txns {
            let mut working = model;
            let mut expected_reads = Vec::new();
            model_steps(&mut working, &t.steps, &mut expected_reads);
            if !t.abort {
                model = working;
            }

            let mut reads = Vec::new();
            let result: Result<(), ()> = try_atomically(|tx| {
                reads.clear();
                stm_steps(tx, &vars, &t.steps, &mut reads)?;
                if t.abort { Err(TxError::Abort(())) } else { Ok(()) }
            });
            prop_assert_eq!(result.is_err(), t.abort);
            prop_assert_eq!(&reads, &expected_reads);
            let committed: Vec<i64> = vars.iter().map(TVar::read_atomic).collect();
            prop_assert_eq!(committed, model.to_vec());
        }
    }
}
