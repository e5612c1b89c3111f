//! The change-feed conformance suite on the in-memory fake feed (`taosbackup-source`'s tests
//! run the same checks on the `tmq` and `wal` feeds against the emulator).

use taosbackup_testkit::feed_suite::{self, FakeHarness};

#[tokio::test]
async fn the_fake_feed_passes_the_feed_suite() {
    feed_suite::run(&mut FakeHarness::new()).await;
}
