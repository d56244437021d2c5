//! Snapshot, config and lock file decoding: never panics on any bytes.
#![no_main]

use cairn_engine::Id;
use cairn_engine::decode::{Config, LockFile, Snapshot};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Snapshot::decode(data, &Id::of(data));
    let _ = Config::decode(data);
    let _ = LockFile::decode(data);
});
