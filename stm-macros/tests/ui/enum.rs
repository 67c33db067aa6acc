use stmx::prelude::*;

#[transactional]
enum Light {
    Red,
    Green,
}

fn main() {
    let _ = Light::Red; // no follow-on error: the enum is still there
    let _ = Light::Green;
}
