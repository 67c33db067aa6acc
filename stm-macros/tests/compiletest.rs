//! Compile-fail tests: misuse of `#[transactional]` gives an error at the offending span.
//! The expected messages are in `tests/ui/*.stderr`; bless new ones with `TRYBUILD=overwrite`.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
