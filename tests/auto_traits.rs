//! Pins the auto traits of the public types.

use stmx::prelude::*;

fn is_send<T: Send>() {}
fn is_sync<T: Sync>() {}

#[test]
fn tvar_is_send_and_sync_when_its_value_is() {
    is_send::<TVar<u64>>();
    is_sync::<TVar<u64>>();
    is_send::<TVar<Vec<String>>>();
    is_sync::<TVar<std::sync::Mutex<u8>>>();
    is_send::<StmError>();
    is_sync::<StmError>();
    is_send::<stmx::Stats>();
}

#[test]
fn containers_are_send_and_sync_when_their_contents_are() {
    fn both<T: Send + Sync + Clone>() {}
    both::<TCell<String>>();
    both::<TStack<String>>();
    both::<TFifo<String>>();
    both::<TChannel<String>>();
    both::<TPort<String>>();
    both::<THashMap<String, Vec<u8>>>();
    both::<TMap<u64, String>>();
    both::<TSet<String>>();
    both::<TArray<String>>();
    both::<TSem>();
    both::<
        THashMap<u8, u8, std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>>,
    >();
}
