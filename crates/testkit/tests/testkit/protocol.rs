//! The wire protocol, driven by the real `taos` connector (and, for hostile frames, a raw
//! WebSocket client) over a real socket.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt, TryStreamExt};
use taos::{AsyncFetchable, AsyncQueryable, AsyncTBuilder, TaosBuilder};
use taosbackup_testkit::{Emulator, EmulatorConfig, EmulatorHandle};
use tokio_tungstenite::tungstenite::Message;

fn emu() -> EmulatorHandle {
    Emulator::start(EmulatorConfig::default()).expect("emulator starts")
}

fn emu_with(f: impl FnOnce(&mut EmulatorConfig)) -> EmulatorHandle {
    let mut c = EmulatorConfig::default();
    f(&mut c);
    Emulator::start(c).expect("emulator starts")
}

async fn connect(dsn: &str) -> taos::Taos {
    let taos = TaosBuilder::from_dsn(dsn)
        .unwrap()
        .build()
        .await
        .expect("connects");
    crate::nodelay(&taos).await;
    taos
}

/// Polls `cond` until it holds or `limit` passes; the condition is the synchronisation.
async fn eventually(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cond()
}

async fn seed(taos: &taos::Taos, rows: usize) {
    taos.exec("CREATE DATABASE IF NOT EXISTS p").await.unwrap();
    taos.exec("CREATE TABLE IF NOT EXISTS p.t (ts TIMESTAMP, v INT, s VARCHAR(20))")
        .await
        .unwrap();
    let mut sql = String::from("INSERT INTO p.t VALUES ");
    for i in 0..rows {
        sql.push_str(&format!(
            "({}, {}, 'row{}') ",
            1_700_000_000_000i64 + i as i64,
            i,
            i
        ));
    }
    assert_eq!(taos.exec(&sql).await.unwrap(), rows);
}

#[tokio::test]
async fn handshake_reports_the_configured_version() {
    let emu = emu_with(|c| c.server_version = "3.3.5.1".into());
    let builder = TaosBuilder::from_dsn(emu.dsn()).unwrap();
    let taos = builder.build().await.unwrap();
    crate::nodelay(&taos).await;
    let (v,): (String,) = taos
        .query_one("SELECT SERVER_VERSION()")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v, "3.3.5.1");
}

#[tokio::test]
async fn wrong_password_is_tdengine_auth_failure() {
    let emu = emu();
    let dsn = format!("ws://root:wrong@{}", emu.addr());
    // taos-ws opens the socket lazily: the login happens with the first statement.
    let taos = TaosBuilder::from_dsn(dsn).unwrap().build().await.unwrap();
    let err = taos
        .exec("SHOW DATABASES")
        .await
        .expect_err("login refused");
    assert_eq!(err.code(), taos::Code::new(0x0357), "{err}");
    // The right password still works on the same server.
    let dsn = format!("ws://root:taosdata@{}", emu.addr());
    let taos = connect(&dsn).await;
    taos.exec("CREATE DATABASE ok").await.unwrap();
}

#[tokio::test]
async fn dsn_database_must_exist() {
    let emu = emu();
    let taos = TaosBuilder::from_dsn(format!("{}/nodb", emu.dsn()))
        .unwrap()
        .build()
        .await
        .unwrap();
    let err = taos
        .exec("SHOW DATABASES")
        .await
        .expect_err("missing database refused at login");
    assert_eq!(err.code(), taos::Code::new(0x0388), "{err}");
    connect(&emu.dsn())
        .await
        .exec("CREATE DATABASE yesdb")
        .await
        .unwrap();
    let taos = connect(&format!("{}/yesdb", emu.dsn())).await;
    taos.exec("CREATE TABLE t (ts TIMESTAMP, v INT)")
        .await
        .expect("DSN database is current");
}

/// Both query generations: binary actions 6/7 (≥ 3.3.0.8) and JSON query/fetch/fetch_block.
#[tokio::test]
async fn both_protocol_generations_return_the_same_rows() {
    for version in ["3.3.6.0", "3.3.0.0", "3.1.1.0"] {
        let emu = emu_with(|c| {
            c.server_version = version.into();
            c.block_rows = 100; // several blocks per result
        });
        let taos = connect(&emu.dsn()).await;
        seed(&taos, 1000).await;
        let rows: Vec<(i64, i32, String)> = taos
            .query("SELECT ts, v, s FROM p.t")
            .await
            .unwrap()
            .deserialize()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(rows.len(), 1000, "server {version}");
        assert!(
            rows.iter()
                .enumerate()
                .all(|(i, r)| r.1 == i as i32 && r.2 == format!("row{i}"))
        );
        assert!(
            eventually(Duration::from_secs(5), || emu.open_results() == 0).await,
            "results freed ({version})"
        );
    }
}

#[tokio::test]
async fn legacy_rest_ws_path_is_the_fallback() {
    let emu = emu_with(|c| c.legacy_paths_only = true);
    let taos = connect(&emu.dsn()).await;
    seed(&taos, 3).await;
    let (n,): (i64,) = taos
        .query_one("SELECT count(*) FROM p.t")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 3);
}

#[tokio::test]
async fn token_dsn_uses_rest_ws_and_is_checked() {
    let emu = emu_with(|c| c.token = Some("s3cret".into()));
    let taos = connect(&format!("{}?token=s3cret", emu.dsn())).await;
    taos.exec("CREATE DATABASE tok").await.unwrap();
    let bad = TaosBuilder::from_dsn(format!("{}?token=nope", emu.dsn()))
        .unwrap()
        .build()
        .await
        .unwrap();
    let err = bad
        .exec("SHOW DATABASES")
        .await
        .expect_err("a wrong token is refused");
    // The HTTP upgrade answers 401, which taos-ws reports as its UNAUTHORIZED code.
    assert_eq!(err.code(), taos::Code::new(0xE006), "{err}");
}

#[tokio::test]
async fn abandoned_results_are_freed_when_the_client_leaves() {
    let emu = emu_with(|c| c.block_rows = 10);
    {
        let taos = connect(&emu.dsn()).await;
        seed(&taos, 100).await;
        let mut rs = taos.query("SELECT * FROM p.t").await.unwrap();
        let first = rs
            .blocks()
            .try_next()
            .await
            .unwrap()
            .expect("a first block");
        assert_eq!(first.nrows(), 10);
        assert_eq!(emu.open_results(), 1, "one result open mid-fetch");
        // Keep the result set alive while the connection goes away.
        std::mem::forget(rs);
    }
    assert!(
        eventually(Duration::from_secs(5), || emu.open_results() == 0
            && emu.open_connections() == 0)
        .await,
        "results of a vanished client are freed (open results {}, connections {})",
        emu.open_results(),
        emu.open_connections()
    );
}

#[tokio::test]
async fn many_concurrent_connections() {
    let emu = emu();
    connect(&emu.dsn())
        .await
        .exec("CREATE DATABASE c")
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let dsn = emu.dsn();
        tasks.push(tokio::spawn(async move {
            let taos = connect(&dsn).await;
            taos.exec(format!("CREATE TABLE c.t{i} (ts TIMESTAMP, v INT)"))
                .await
                .unwrap();
            for j in 0..20 {
                taos.exec(format!(
                    "INSERT INTO c.t{i} VALUES ({}, {j})",
                    1_700_000_000_000i64 + j
                ))
                .await
                .unwrap();
            }
            let (n,): (i64,) = taos
                .query_one(format!("SELECT count(*) FROM c.t{i}"))
                .await
                .unwrap()
                .unwrap();
            n
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 20);
    }
}

#[tokio::test]
async fn dropped_connections_never_yield_answers_and_new_ones_work() {
    let emu = emu();
    let taos = connect(&emu.dsn()).await;
    seed(&taos, 5).await;
    emu.disconnect_all();
    assert!(eventually(Duration::from_secs(5), || emu.open_connections() == 0).await);
    // taos-ws 0.12.3 notices a dead socket only when a write fails, so a query on the old
    // connection errors or never completes; it must never return rows.
    let old = tokio::time::timeout(Duration::from_secs(3), async {
        let first = taos
            .query_one::<_, (i64,)>("SELECT count(*) FROM p.t")
            .await;
        if first.is_ok() {
            return first;
        }
        taos.query_one::<_, (i64,)>("SELECT count(*) FROM p.t")
            .await
    })
    .await;
    assert!(
        !matches!(old, Ok(Ok(Some(_)))),
        "a dropped connection answered: {old:?}"
    );
    let fresh = connect(&emu.dsn()).await;
    let (n,): (i64,) = fresh
        .query_one("SELECT count(*) FROM p.t")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 5);
}

/// Hostile frames get error replies in taosAdapter's shape and the connection survives.
#[tokio::test]
async fn malformed_frames_get_errors_and_the_connection_survives() {
    let emu = emu();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("{}/ws", emu.dsn()))
        .await
        .unwrap();
    async fn send_recv(
        ws: &mut tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        m: Message,
    ) -> serde_json::Value {
        ws.send(m).await.unwrap();
        loop {
            match ws.next().await.expect("a reply").unwrap() {
                Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                Message::Binary(b) => return serde_json::json!({ "binary": b.len() }),
                _ => continue,
            }
        }
    }
    // Before login, queries are refused.
    let r = send_recv(
        &mut ws,
        Message::Text(r#"{"action":"query","args":{"req_id":1,"sql":"show databases"}}"#.into()),
    )
    .await;
    assert_ne!(r["code"], 0);
    assert_eq!(r["req_id"], 1);
    let r = send_recv(
        &mut ws,
        Message::Text(
            r#"{"action":"conn","args":{"req_id":2,"user":"root","password":"taosdata","db":""}}"#
                .into(),
        ),
    )
    .await;
    assert_eq!(r["code"], 0, "{r}");
    assert_eq!(r["action"], "conn");
    for (frame, what) in [
        (Message::Text("{not json".into()), "bad json"),
        (
            Message::Text(r#"{"action":"no_such_action","args":{"req_id":7}}"#.into()),
            "unknown action",
        ),
        (Message::Binary(vec![1, 2, 3].into()), "short binary"),
        (
            Message::Binary(
                [7u64.to_le_bytes(), 0u64.to_le_bytes(), 99u64.to_le_bytes()]
                    .concat()
                    .into(),
            ),
            "unknown binary action",
        ),
        (
            Message::Binary(
                [8u64.to_le_bytes(), 0u64.to_le_bytes(), 6u64.to_le_bytes()]
                    .concat()
                    .into(),
            ),
            "query without sql",
        ),
        (
            Message::Binary(
                [
                    &9u64.to_le_bytes()[..],
                    &0u64.to_le_bytes(),
                    &5u64.to_le_bytes(),
                    &[0xff; 4],
                ]
                .concat()
                .into(),
            ),
            "write without block",
        ),
        (
            Message::Text(
                r#"{"action":"query","args":{"req_id":10,"sql":"SELEKT nonsense"}}"#.into(),
            ),
            "syntax error",
        ),
        (
            Message::Text(r#"{"action":"fetch","args":{"req_id":11,"id":424242}}"#.into()),
            "unknown result",
        ),
    ] {
        let r = send_recv(&mut ws, frame).await;
        assert!(r.get("code").is_some_and(|c| c != 0), "{what}: {r}");
        assert!(
            r.get("message").is_some_and(|m| m.is_string()),
            "{what}: {r}"
        );
    }
    let r = send_recv(
        &mut ws,
        Message::Text(r#"{"action":"query","args":{"req_id":12,"sql":"SHOW DATABASES"}}"#.into()),
    )
    .await;
    assert_eq!(r["code"], 0, "connection still serves: {r}");
    assert_eq!(r["req_id"], 12);
}

#[tokio::test]
async fn taos_emu_binary_prints_its_address_and_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_taos-emu"))
        .args(["--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let dsn = line
        .trim()
        .strip_prefix("listening on ")
        .expect("address line")
        .to_string();
    assert!(dsn.starts_with("ws://127.0.0.1:"), "{line}");
    let taos = connect(&dsn).await;
    taos.exec("CREATE DATABASE bin").await.unwrap();
    // SIGTERM, as an operator or systemd stops it.
    let pid = i32::try_from(child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let start = Instant::now();
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "taos-emu ignores SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "clean exit on SIGTERM: {exit}");
}

#[test]
fn bad_server_version_is_refused_by_taos_emu() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_taos-emu"))
        .args(["--listen", "127.0.0.1:0", "--server-version", "3.3"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("four dot-separated numbers"));
}
