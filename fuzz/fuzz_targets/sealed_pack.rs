//! Decoding an encrypted pack (sealed directory, sealed blobs): never panics, whatever the
//! bytes, and no blob opens that was not sealed under the key.
#![no_main]

use cairn_engine::Cipher;
use cairn_engine::decode::{Keys, Sealing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let sealing = Sealing::encrypted(std::sync::Arc::new(Keys::fixed(Cipher::Aes256Gcm)));
    // A directory that opens needs the key, which the fuzzer does not have.
    assert!(
        sealing.open_pack(data).is_err(),
        "the fuzzer forged a sealed pack directory"
    );
});
