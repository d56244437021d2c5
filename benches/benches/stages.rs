//! Per-core throughput of each pipeline stage, to locate the bottleneck of backup, restore and
//! check: chunking, hashing, compression, decompression with verification, index lookups.
//! Run: `cargo bench -p cairn-benches --bench stages`. Figures are written down in
//! `benches/RESULTS.md`.

use std::hint::black_box;

use cairn_benches::Rng;
use cairn_engine::Id;
use cairn_engine::decode::{
    BlobEntry, BlobKind, Chunker, ChunkerParams, Compression, IndexCache, PackRecord, compress,
    verify_blob,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const MIB: usize = 1 << 20;

fn pages(mib: usize) -> Vec<u8> {
    let mut rng = Rng(3);
    (0..(mib * MIB / 8192) as u64)
        .flat_map(|p| rng.page(8192, p))
        .collect()
}

fn stages(c: &mut Criterion) {
    let data = pages(32);
    let chunker = Chunker::new(&ChunkerParams::with_average(8192).expect("params"));
    let chunks: Vec<&[u8]> = chunker
        .cut_all(&data)
        .into_iter()
        .map(|r| &data[r])
        .collect();

    let mut g = c.benchmark_group("stage");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    g.bench_function("chunk (FastCDC, 8 KiB average)", |b| {
        b.iter(|| black_box(chunker.cut_all(black_box(&data)).len()))
    });
    g.bench_function("hash (BLAKE3 per chunk)", |b| {
        b.iter(|| {
            for ch in &chunks {
                black_box(Id::of(ch));
            }
        })
    });
    g.bench_function("compress (zstd 3 per chunk)", |b| {
        b.iter(|| {
            for ch in &chunks {
                black_box(compress(ch, Some(3)));
            }
        })
    });
    let stored: Vec<(BlobEntry, Vec<u8>)> = chunks
        .iter()
        .map(|ch| {
            let (compression, bytes) = compress(ch, Some(3));
            let entry = BlobEntry {
                cipher: None,
                id: Id::of(ch),
                kind: BlobKind::Data,
                compression,
                offset: 16,
                stored_len: bytes.len() as u32,
                raw_len: ch.len() as u32,
                frame: None,
            };
            (entry, bytes)
        })
        .collect();
    g.bench_function("decompress + verify (restore, check)", |b| {
        b.iter(|| {
            for (e, s) in &stored {
                black_box(verify_blob(e, s).expect("valid"));
            }
        })
    });
    g.finish();

    // Index lookups in a cache of 1M chunks (about 8 GiB of data at 8 KiB chunks).
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = IndexCache::open(dir.path()).expect("cache");
    let ids: Vec<Id> = (0..1_000_000u32)
        .map(|i| Id::of(&i.to_le_bytes()))
        .collect();
    for (n, group) in ids.chunks(50_000).enumerate() {
        let blobs = group
            .iter()
            .enumerate()
            .map(|(i, id)| BlobEntry {
                cipher: None,
                id: *id,
                kind: BlobKind::Data,
                compression: Compression::Zstd,
                offset: 16 + i as u64 * 100,
                stored_len: 56,
                raw_len: 8192,
                frame: None,
            })
            .collect();
        let record = PackRecord {
            id: Id::of(&n.to_le_bytes()),
            len: 16 + group.len() as u64 * 100 + 1_000_000,
            blobs,
        };
        cache
            .absorb(&Id::of(format!("index {n}").as_bytes()), &[record])
            .expect("absorb");
    }
    let mut g = c.benchmark_group("index");
    g.throughput(Throughput::Elements(10_000));
    g.bench_function("lookup, present (RocksDB, 1M chunks)", |b| {
        b.iter(|| {
            for id in ids.iter().step_by(100) {
                black_box(cache.contains(BlobKind::Data, id).expect("lookup"));
            }
        })
    });
    let absent: Vec<Id> = (0..10_000u32)
        .map(|i| Id::of(&(i + 5_000_000).to_le_bytes()))
        .collect();
    g.bench_function("lookup, absent (RocksDB, 1M chunks)", |b| {
        b.iter(|| {
            for id in &absent {
                black_box(cache.contains(BlobKind::Data, id).expect("lookup"));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
