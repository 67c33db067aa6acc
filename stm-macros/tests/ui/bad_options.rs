use stmx::prelude::*;

#[transactional(plain)]
struct A {
    a: u32,
}

#[transactional(frobnicate)]
struct B {
    b: u32,
}

#[transactional]
struct C {
    #[transactional(mutable)]
    c: u32,
    #[transactional]
    d: u32,
}

fn main() {}
