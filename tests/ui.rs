//! Compile-time guarantees and the messages that teach them: each case in `tests/ui/<area>/` is
//! one mistake, and its `.stderr` is what the user reads. Bless with
//! `TRYBUILD=overwrite cargo test --test ui` and read the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/attr/*.rs");
    t.compile_fail("tests/ui/column/*.rs");
    t.compile_fail("tests/ui/scoping/*.rs");
    t.compile_fail("tests/ui/escape/*.rs");
    t.compile_fail("tests/ui/web/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
