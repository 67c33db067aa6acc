//! Rich Hickey's ant colony, the classic Clojure STM demo, on a `MegaRef` world: each ant is a
//! thread that moves, picks up food and carries it home in transactions on paths `[x, y]`
//! of one shared world. Ants in different parts of the grid do not conflict; an evaporation
//! thread fades the pheromone trails with `commute_in` (which conflicts with nobody); an
//! auditor checks in whole-world snapshots that no food is created or destroyed.
//!
//! `cargo run --release --example ants [SECONDS]` (default 2). Prints moves per second,
//! conflict restarts, the audit, and a picture of the grid (`H` home, `*` food, `a`/`A` an ant
//! without/with food, `:` a pheromone trail).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use stmx::World;
use stmx::prelude::*;

const DIM: u32 = 24;
const HOME: u32 = 5; // the home is the square [0, HOME) x [0, HOME)
const ANTS: u32 = HOME * HOME;
const FOOD_CELLS: u32 = 40;
const FOOD_PER_CELL: u32 = 10;

#[derive(Clone, Copy, Debug, PartialEq)]
struct Ant {
    dir: u8, // 0..8, clockwise from north
    food: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Cell {
    food: u32,
    pher: u32,
    ant: Option<Ant>,
}

fn home(x: u32, y: u32) -> bool {
    x < HOME && y < HOME
}

fn ahead(x: u32, y: u32, dir: u8) -> (u32, u32) {
    const DX: [i64; 8] = [0, 1, 1, 1, 0, -1, -1, -1];
    const DY: [i64; 8] = [-1, -1, 0, 1, 1, 1, 0, -1];
    let d = usize::from(dir % 8);
    let wrap = |v: i64| v.rem_euclid(i64::from(DIM)) as u32;
    (wrap(i64::from(x) + DX[d]), wrap(i64::from(y) + DY[d]))
}

fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// One step of the ant at `(x, y)`; returns its new position.
fn step(
    world: &MegaRef<u32, Cell>,
    tx: &mut Transaction,
    (x, y): (u32, u32),
    roll: u64,
) -> StmResult<(u32, u32)> {
    let here = world.get_in(tx, &[x, y])?.unwrap_or_default();
    let Some(mut ant) = here.ant else {
        return Ok((x, y)); // not ours any more: cannot happen, each ant is one thread
    };
    if ant.food && home(x, y) {
        // Drop the food at home.
        ant.food = false;
        ant.dir = (ant.dir + 4) % 8;
        world.set_in(
            tx,
            &[x, y],
            Cell {
                food: here.food + 1,
                ant: Some(ant),
                ..here
            },
        )?;
        return Ok((x, y));
    }
    if !ant.food && here.food > 0 && !home(x, y) {
        // Take one unit of food and turn back.
        ant.food = true;
        ant.dir = (ant.dir + 4) % 8;
        world.set_in(
            tx,
            &[x, y],
            Cell {
                food: here.food - 1,
                ant: Some(ant),
                ..here
            },
        )?;
        return Ok((x, y));
    }
    // Carrying food: head roughly home (north-west), leaving a trail; else wander.
    ant.dir = if ant.food {
        if roll.is_multiple_of(4) {
            (roll % 8) as u8
        } else {
            7
        }
    } else if roll.is_multiple_of(3) {
        ((u64::from(ant.dir) + roll % 3 + 7) % 8) as u8
    } else {
        ant.dir
    };
    let (nx, ny) = ahead(x, y, ant.dir);
    let there = world.get_in(tx, &[nx, ny])?.unwrap_or_default();
    if there.ant.is_some() {
        world.set_in(
            tx,
            &[x, y],
            Cell {
                ant: Some(Ant {
                    dir: (ant.dir + 1) % 8,
                    ..ant
                }),
                ..here
            },
        )?;
        return Ok((x, y));
    }
    let pher = here.pher + if ant.food { 8 } else { 0 };
    world.set_in(
        tx,
        &[x, y],
        Cell {
            ant: None,
            pher,
            ..here
        },
    )?;
    world.set_in(
        tx,
        &[nx, ny],
        Cell {
            ant: Some(ant),
            ..there
        },
    )?;
    Ok((nx, ny))
}

/// Food on the grid plus food carried by ants.
fn total_food(world: &World<u32, Cell>) -> u32 {
    world
        .iter()
        .map(|(_, c)| c.food + u32::from(c.ant.is_some_and(|a| a.food)))
        .sum()
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .map_or(2.0, |s| s.parse().expect("SECONDS"));
    // 576 cells on one level: more stripes than the default 32, so that cells seldom share one.
    let world: MegaRef<u32, Cell> = MegaRef::with_guards(256);
    let mut seed = 0x2545_F491_4F6C_DD1D_u64;
    atomically(|tx| {
        for x in 0..DIM {
            for y in 0..DIM {
                world.set_in(tx, &[x, y], Cell::default())?;
            }
        }
        Ok(())
    });
    for _ in 0..FOOD_CELLS {
        let (x, y) = (
            HOME + (next(&mut seed) % u64::from(DIM - HOME)) as u32,
            (next(&mut seed) % u64::from(DIM)) as u32,
        );
        atomically(|tx| {
            world.alter_in(tx, &[x, y], |c| {
                c.map(|c| Cell {
                    food: c.food + FOOD_PER_CELL,
                    ..*c
                })
            })
        });
    }
    let ants: Vec<(u32, u32)> = (0..ANTS).map(|i| (i % HOME, i / HOME)).collect();
    atomically(|tx| {
        for (i, &(x, y)) in ants.iter().enumerate() {
            world.alter_in(tx, &[x, y], |c| {
                c.map(|c| Cell {
                    ant: Some(Ant {
                        dir: (i % 8) as u8,
                        food: false,
                    }),
                    ..*c
                })
            })?;
        }
        Ok(())
    });
    let food = total_food(&atomically(|tx| world.snapshot(tx)));

    let (running, moves, audits) = (AtomicBool::new(true), AtomicU64::new(0), AtomicU64::new(0));
    let before = stmx::stats();
    let started = Instant::now();
    thread::scope(|s| {
        for (i, &position) in ants.iter().enumerate() {
            let (world, running, moves) = (&world, &running, &moves);
            s.spawn(move || {
                let (mut pos, mut seed) = (position, 0x9E37_79B9_7F4A_7C15_u64 ^ (i as u64 + 1));
                while running.load(Ordering::Relaxed) {
                    let roll = next(&mut seed);
                    pos = atomically(|tx| step(world, tx, pos, roll));
                    moves.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // Evaporation: fades every trail, one cell per (short) transaction; a commute never
        // conflicts with another commute, only with an ant reading that cell at that moment.
        s.spawn(|| {
            while running.load(Ordering::Relaxed) {
                for x in 0..DIM {
                    for y in 0..DIM {
                        atomically(|tx| {
                            world.commute_in(tx, &[x, y], |c| {
                                c.map(|c| Cell {
                                    pher: c.pher * 7 / 8,
                                    ..*c
                                })
                            })
                        });
                    }
                }
                thread::sleep(Duration::from_millis(50));
            }
        });
        // The auditor: every snapshot must hold all the food.
        s.spawn(|| {
            while running.load(Ordering::Relaxed) {
                let seen = total_food(&atomically(|tx| world.snapshot(tx)));
                assert_eq!(seen, food, "a snapshot saw food created or destroyed");
                audits.fetch_add(1, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(5));
            }
        });
        thread::sleep(Duration::from_secs_f64(seconds));
        running.store(false, Ordering::Relaxed);
    });
    let elapsed = started.elapsed().as_secs_f64();
    let stats = stmx::stats() - before;
    let last = atomically(|tx| world.snapshot(tx));
    let at_home: u32 = last
        .iter()
        .filter(|(p, _)| home(p[0], p[1]))
        .map(|(_, c)| c.food)
        .sum();
    let moved = moves.load(Ordering::Relaxed);
    println!(
        "{ANTS} ants, {:.1} s: {moved} moves ({:.0}/s), {} commits, {} conflict restarts ({:.3} per commit), {} audits",
        elapsed,
        moved as f64 / elapsed,
        stats.commits,
        stats.conflicts,
        stats.conflicts as f64 / stats.commits.max(1) as f64,
        audits.load(Ordering::Relaxed)
    );
    for y in 0..DIM {
        let row: String = (0..DIM)
            .map(|x| {
                let c = last.get_in(&[x, y]).copied().unwrap_or_default();
                match (c.ant, home(x, y), c.food > 0, c.pher > 0) {
                    (Some(a), ..) => {
                        if a.food {
                            'A'
                        } else {
                            'a'
                        }
                    }
                    (None, true, ..) => 'H',
                    (None, false, true, _) => '*',
                    (None, false, false, true) => ':',
                    _ => '.',
                }
            })
            .collect();
        println!("{row}");
    }
    let total = total_food(&last);
    println!("food: {total} in all ({at_home} brought home), {food} at the start");
    if total != food {
        eprintln!("FAILED: food was created or destroyed");
        std::process::exit(1);
    }
    println!("OK: food conserved in every snapshot");
}
