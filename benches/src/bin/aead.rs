//! Which AEAD a repository should use: seals and opens blobs of database-chunk sizes with
//! AES-256-GCM and ChaCha20-Poly1305 (12- and 24-byte nonces) on one core, side by side in one
//! run, and prints MB/s.
//!
//! `cargo run --release -p cairn-benches --bin aead [seconds per case]`

use std::time::{Duration, Instant};

use aes_gcm::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};

/// MB/s of `f`, which handles `size` bytes a call, run for `secs` seconds.
fn throughput(size: usize, secs: f64, f: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs_f64(secs) {
        for _ in 0..64 {
            f();
        }
        n += 64;
    }
    (n * size as u64) as f64 / start.elapsed().as_secs_f64() / 1e6
}

fn measure<C: AeadInPlace>(cipher: &C, nonce_len: usize, size: usize, secs: f64) -> (f64, f64) {
    let mut buf: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let nonce = aes_gcm::aead::generic_array::GenericArray::clone_from_slice(&vec![7u8; nonce_len]);
    let aad = [1u8; 33];
    let run = |f: &mut dyn FnMut()| throughput(size, secs, f);
    let seal = run(&mut || {
        let tag = cipher
            .encrypt_in_place_detached(&nonce, &aad, &mut buf)
            .expect("seal");
        std::hint::black_box(tag);
    });
    let tag = cipher
        .encrypt_in_place_detached(&nonce, &aad, &mut buf)
        .expect("seal");
    let sealed = buf.clone();
    let open = run(&mut || {
        buf.copy_from_slice(&sealed);
        cipher
            .decrypt_in_place_detached(&nonce, &aad, &mut buf, &tag)
            .expect("open");
    });
    (seal, open)
}

/// The same with ring's implementations (BoringSSL's assembly).
fn measure_ring(alg: &'static ring::aead::Algorithm, size: usize, secs: f64) -> (f64, f64) {
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey};
    let key = LessSafeKey::new(UnboundKey::new(alg, &[9u8; 32]).expect("key"));
    let mut buf: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let aad = [1u8; 33];
    let run = |f: &mut dyn FnMut()| throughput(size, secs, f);
    let seal = run(&mut || {
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key([7; 12]),
                Aad::from(&aad),
                &mut buf,
            )
            .expect("seal");
        let _ = std::hint::black_box(tag);
    });
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key([7; 12]),
            Aad::from(&aad),
            &mut buf,
        )
        .expect("seal");
    let mut sealed = buf.clone();
    sealed.extend_from_slice(tag.as_ref());
    let mut work = sealed.clone();
    let open = run(&mut || {
        work.copy_from_slice(&sealed);
        key.open_in_place(
            Nonce::assume_unique_for_key([7; 12]),
            Aad::from(&aad),
            &mut work,
        )
        .expect("open");
    });
    (seal, open)
}

fn main() {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let key = [9u8; 32];
    println!("| cipher | blob bytes | seal MB/s | open MB/s |");
    println!("|---|---|---|---|");
    for size in [2048usize, 8192, 65536, 1 << 20] {
        let aes = aes_gcm::Aes256Gcm::new_from_slice(&key).expect("key");
        let (s, o) = measure(&aes, 12, size, secs);
        println!("| AES-256-GCM | {size} | {s:.0} | {o:.0} |");
        let cc = ChaCha20Poly1305::new_from_slice(&key).expect("key");
        let (s, o) = measure(&cc, 12, size, secs);
        println!("| ChaCha20-Poly1305 | {size} | {s:.0} | {o:.0} |");
        let xc = XChaCha20Poly1305::new_from_slice(&key).expect("key");
        let (s, o) = measure(&xc, 24, size, secs);
        println!("| XChaCha20-Poly1305 | {size} | {s:.0} | {o:.0} |");
        let (s, o) = measure_ring(&ring::aead::AES_256_GCM, size, secs);
        println!("| AES-256-GCM (ring) | {size} | {s:.0} | {o:.0} |");
        let (s, o) = measure_ring(&ring::aead::CHACHA20_POLY1305, size, secs);
        println!("| ChaCha20-Poly1305 (ring) | {size} | {s:.0} | {o:.0} |");
    }
}
