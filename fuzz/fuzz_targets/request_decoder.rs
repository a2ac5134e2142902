//! Request frames (without their length prefix) through the broker's decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = strand_net::api::decode_frame(bytes::Bytes::copy_from_slice(data));
});
