//! Arbitrary op lists against the near tier and its `BTreeMap` model, with the
//! structure's invariants checked after every op (see `nearfar::store::model`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use nearfar::store::model::{Op, Shape, run};

fuzz_target!(|input: (Shape, Vec<Op>)| {
    let (shape, ops) = input;
    if let Err(e) = run(shape, &ops) {
        panic!("{e}");
    }
});
