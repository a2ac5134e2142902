//! Bytes from another node through the node-frame decoder: it must refuse or decode,
//! never panic, and never buffer past its bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = bytes::Bytes::copy_from_slice(data);
    while let Ok(Some(frame)) = strand_replication::transport::Frame::decode(&mut buf) {
        let _ = frame.header.messages.len();
    }
});
