use std::cell::Cell;
use std::rc::Rc;

use stmx::prelude::*;

#[transactional]
struct Shared {
    ok: u32,
    counter: Rc<u32>,
    flag: Cell<bool>,
}

fn main() {}
