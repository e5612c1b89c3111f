//! The end-to-end tests, compiled into one binary (`cargo test -p taosbackup-cli --test e2e`):
//! `cli`, `daemon` and `reliability` drive the `taosbackup` binary against the emulator;
//! `engine` drives the engine with the real source and sink against the emulator. `common`
//! holds the shared helpers (the emulator, the storage emulators, free ports).

mod cli;
mod common;
mod daemon;
mod engine;
mod reliability;
