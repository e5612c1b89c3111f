//! The connector's blocking API against the emulator.

use taos::sync::{Fetchable, Queryable, TBuilder};
use taosbackup_testkit::{Emulator, EmulatorConfig};

#[test]
fn sync_api_works_too() {
    let emu = Emulator::start(EmulatorConfig::default()).unwrap();
    let taos = TBuilder::build(&taos::TaosBuilder::from_dsn(emu.dsn()).unwrap()).unwrap();
    // The socket opens at the first request; then Nagle's algorithm goes (crate::nodelay).
    taos.exec("SELECT SERVER_VERSION()").unwrap();
    crate::nagle_off();
    taos.exec("CREATE DATABASE s KEEP 36500").unwrap();
    taos.exec("CREATE TABLE s.t (ts TIMESTAMP, v BIGINT UNSIGNED, n NCHAR(4))")
        .unwrap();
    assert_eq!(
        taos.exec("INSERT INTO s.t VALUES (1, 1, 'α') (2, NULL, NULL)")
            .unwrap(),
        2
    );
    let rows: Vec<(i64, Option<u64>, Option<String>)> = taos
        .query("SELECT * FROM s.t")
        .unwrap()
        .deserialize()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows, vec![(1, Some(1), Some("α".into())), (2, None, None)]);
    let rs = taos.query("SELECT count(*) FROM s.t").unwrap();
    assert_eq!(rs.fields()[0].name(), "count(*)");
}
