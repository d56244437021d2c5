//! Opening sealed whole objects and sealed configs: never panics, whatever the bytes; nothing
//! opens that was not sealed under the key (the fuzzer cannot forge a tag).
#![no_main]

use cairn_engine::ConfigFile;
use cairn_engine::decode::{Keys, Sealed, Sealing, SecretKey};
use cairn_engine::Cipher;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for cipher in [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305] {
        let sealing = Sealing::encrypted(std::sync::Arc::new(Keys::fixed(cipher)));
        for kind in [Sealed::Index, Sealed::Snapshot, Sealed::Wal, Sealed::Lock] {
            let opened = sealing.open_sealed(kind, "object x", data.to_vec());
            assert!(opened.is_err(), "the fuzzer forged a sealed object");
        }
    }
    if let Ok(ConfigFile::Sealed(s)) = ConfigFile::decode(data) {
        let opened = s.open(&SecretKey::from_bytes([1; 32]));
        assert!(!matches!(opened, Ok(Some(_))), "the fuzzer forged a config");
    }
});
