//! End-to-end tests of the `cairn` binary and of the engine's public API, in one test binary.

#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

mod common;

mod cache;
mod check;
mod concurrency;
mod crafted;
mod dedup;
mod encryption;
mod errors;
mod fixture;
mod lifecycle;
mod outcomes;
mod pg;
mod restore;
mod roundtrip;
mod s3;
mod storage;
mod wal_spool;
