//! Encryption of a repository (format version 2): the ciphers, the sealed layouts of whole
//! objects and of blobs, the key files and the key set. The format only: nothing here touches
//! storage; the repository layer applies it, through [`crate::sealing::Sealing`], to every
//! object it stores.

mod cipher;
mod envelope;
mod keys;

pub(crate) use cipher::Aead;
pub use cipher::{Cipher, SecretKey};
pub use envelope::{BLOB_OVERHEAD, Sealed, padme};
pub(crate) use envelope::{
    BlobOpenError, blob_aad, blob_epoch, envelope_header, frame_aad, open_blob_payload,
    open_object, seal_blob, seal_object,
};
pub(crate) use keys::config_key;
pub use keys::{KdfParams, KeyFile, KeySetRecord, Keys, Password};
