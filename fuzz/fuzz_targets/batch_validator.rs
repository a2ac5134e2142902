//! Record batches through the engine's validator.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = strand_engine::ValidatedBatch::new(data.to_vec(), 1 << 20);
});
