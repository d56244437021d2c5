//! Snapshot, config, lock file and WAL record decoding: never panics on any bytes.
#![no_main]

use cairn_engine::Id;
use cairn_engine::decode::{Config, LockFile, Snapshot, WalRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Snapshot::decode(data, &Id::of(data));
    let _ = Config::decode(data);
    let _ = LockFile::decode(data);
    let _ = WalRecord::decode(data, "000000010000000000000001");
});
