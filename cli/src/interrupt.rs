//! Stopping a backup on SIGINT (Ctrl-C) or SIGTERM (a service manager, `kill`): the first
//! signal asks the backup to stop cleanly (what was uploaded is indexed, no snapshot is
//! saved), a second one quits at once (still safe: see the write ordering in ARCHITECTURE.md).
//! Either way the exit status is 128 + the signal's number, as if the signal had killed it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use signal_hook::consts::{SIGINT, SIGTERM};

/// The signal that stopped this process's work, 0 if none.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

/// Watches for SIGINT and SIGTERM from now on, setting `stop` at the first. The message is
/// printed from a thread of its own, where printing is safe.
pub fn watch(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("cairn-signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                if stop.swap(true, Ordering::SeqCst) {
                    std::process::exit(128 + signal);
                }
                RECEIVED.store(signal, Ordering::SeqCst);
                let again = if signal == SIGINT {
                    "Ctrl-C"
                } else {
                    "the signal"
                };
                errln!("stopping: indexing what was uploaded ({again} again to quit at once)");
            }
        })?;
    Ok(())
}

/// The exit status of work stopped by a signal: 130 for SIGINT, 143 for SIGTERM.
pub fn exit_status() -> u8 {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => 128 + SIGINT as u8,
        s => 128u8.saturating_add(s as u8),
    }
}
