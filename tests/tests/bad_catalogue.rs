//! A catalogue of malformed control lines, each sent over a real socket by
//! a welcomed member while two others talk: each gets its documented
//! outcome, the connection is kept, and the talkers lose no packet. The
//! catalogue is docs/reliability.md's table; this test fails when the two
//! disagree (the table it would write is in target/bad-inputs.md).

use std::time::Duration;

use proto::control::{ClientMessage, ErrorCode};
use switchboard_tests::{alice_talks_to_bob, drain_media, start_router};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A case: what it is, the bytes of its line (newline added), and the
/// errors it is answered with, in order.
struct Case {
    what: String,
    line: Vec<u8>,
    expect: Vec<ErrorCode>,
}

fn case(what: impl Into<String>, line: impl Into<Vec<u8>>, expect: &[ErrorCode]) -> Case {
    Case {
        what: what.into(),
        line: line.into(),
        expect: expect.to_vec(),
    }
}

fn catalogue() -> Vec<Case> {
    use ErrorCode::*;
    let mut v = vec![
        case("not JSON", "hello", &[BadJson]),
        case(
            "truncated object",
            r#"{"type":"JOIN","room":"lobby""#,
            &[BadJson],
        ),
        case(
            "invalid UTF-8",
            b"{\"type\":\"CHAT\",\"text\":\"\xff\xfe\"}".to_vec(),
            &[BadJson],
        ),
        case("NUL bytes", b"\x00\x00\x00".to_vec(), &[BadJson]),
        case("trailing garbage", r#"{"type":"HEARTBEAT"} x"#, &[BadJson]),
        case("nesting 10,000 deep", "[".repeat(10_000), &[BadJson]),
        case("a JSON string", r#""HEARTBEAT""#, &[BadMessage]),
        case("a JSON number", "42", &[BadMessage]),
        case("JSON null", "null", &[BadMessage]),
        case("an empty object", "{}", &[BadMessage]),
        case("type is a number", r#"{"type":42}"#, &[BadMessage]),
        case("type is null", r#"{"type":null}"#, &[BadMessage]),
        case(
            "type is an object",
            r#"{"type":{"name":"JOIN"}}"#,
            &[BadMessage],
        ),
        case(
            "an unknown type",
            r#"{"type":"SELF_DESTRUCT"}"#,
            &[UnknownType],
        ),
        case("an empty type", r#"{"type":""}"#, &[UnknownType]),
        case(
            "a 10,000-character type",
            format!(r#"{{"type":"{}"}}"#, "X".repeat(10_000)),
            &[UnknownType],
        ),
        case(
            "room is a number",
            r#"{"type":"JOIN","room":7}"#,
            &[BadField],
        ),
        case("room missing", r#"{"type":"JOIN"}"#, &[BadField]),
        case(
            "priority negative",
            r#"{"type":"MIC_REQUEST","priority":-1}"#,
            &[BadField],
        ),
        case(
            "priority 256",
            r#"{"type":"MIC_REQUEST","priority":256}"#,
            &[BadField],
        ),
        case(
            "priority a string",
            r#"{"type":"MIC_REQUEST","priority":"1"}"#,
            &[BadField],
        ),
        case(
            "offset a string",
            r#"{"type":"LIST_MEMBERS","offset":"a"}"#,
            &[BadField],
        ),
        case(
            "offset 2^64",
            r#"{"type":"LIST_MEMBERS","offset":18446744073709551616}"#,
            &[BadField],
        ),
        case("chat text missing", r#"{"type":"CHAT"}"#, &[BadField]),
        case(
            "chat text an array",
            r#"{"type":"CHAT","text":["a"]}"#,
            &[BadField],
        ),
        case(
            "chat to a number",
            r#"{"type":"CHAT","text":"a","to":1}"#,
            &[BadField],
        ),
        case(
            "session_id negative",
            r#"{"type":"ALLOW_JOIN","session_id":-5}"#,
            &[BadField],
        ),
        case(
            "session_id a float",
            r#"{"type":"DENY_JOIN","session_id":1.5}"#,
            &[BadField],
        ),
        case(
            "audio a string",
            r#"{"type":"MEDIA_STATE","audio":"yes","video":false}"#,
            &[BadField],
        ),
        case(
            "file size negative",
            r#"{"type":"FILE_OFFER","name":"a","size":-1,"sha256":"00","chunk_size":1024}"#,
            &[BadField],
        ),
        case(
            "reports not a list",
            r#"{"type":"VIDEO_STATS","reports":{}}"#,
            &[BadField],
        ),
        case(
            "version a string",
            r#"{"type":"HELLO","version":"1","nickname":"x"}"#,
            &[BadField],
        ),
        case(
            "HELLO again",
            r#"{"type":"HELLO","version":1,"nickname":"x"}"#,
            &[AlreadyWelcomed],
        ),
        case(
            "id an object",
            r#"{"type":"HEARTBEAT","id":{}}"#,
            &[BadField],
        ),
        case("id a list", r#"{"type":"HEARTBEAT","id":[1]}"#, &[BadField]),
        case("id true", r#"{"type":"HEARTBEAT","id":true}"#, &[BadField]),
        case(
            "id 65 characters",
            format!(r#"{{"type":"HEARTBEAT","id":"{}"}}"#, "i".repeat(65)),
            &[BadField],
        ),
    ];
    // Every message type, four ways wrong.
    for ty in ClientMessage::TYPES {
        v.push(case(
            format!("{ty} in lower case"),
            format!(r#"{{"type":"{}"}}"#, ty.to_lowercase()),
            &[UnknownType],
        ));
        v.push(case(
            format!("{ty} with a trailing space"),
            format!(r#"{{"type":"{ty} "}}"#),
            &[UnknownType],
        ));
        v.push(case(
            format!("{ty} inside an array"),
            format!(r#"[{{"type":"{ty}"}}]"#),
            &[BadMessage],
        ));
        v.push(case(
            format!("{ty} with a negative id"),
            format!(r#"{{"type":"{ty}","id":-1}}"#),
            &[BadField],
        ));
    }
    v
}

/// Reads lines until the HEARTBEAT_ACK carrying `sync`; the error codes
/// seen before it.
async fn errors_until(
    r: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    sync: &str,
) -> Vec<ErrorCode> {
    let mut codes = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        match tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line)).await {
            Ok(Ok(n)) if n > 0 => {}
            other => {
                panic!("connection ended or silent waiting for {sync}: {other:?}; errors {codes:?}")
            }
        }
        let v: serde_json::Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => panic!("unparseable line {line:?}: {e}"),
        };
        match v["type"].as_str() {
            Some("HEARTBEAT_ACK") if v["id"] == sync => return codes,
            Some("ERROR") => {
                let code: ErrorCode = match serde_json::from_value(v["code"].clone()) {
                    Ok(c) => c,
                    Err(e) => panic!("{e}"),
                };
                assert!(
                    v["message"].as_str().is_some_and(|m| !m.is_empty()),
                    "an error with no message: {line}"
                );
                codes.push(code);
            }
            _ => {}
        }
    }
}

/// The line as the table shows it: printable, at most 60 characters.
fn shown(line: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(line)
        .chars()
        .map(|c| if c.is_control() { '·' } else { c })
        .collect();
    let mut out: String = s.chars().take(60).collect();
    if s.chars().count() > 60 {
        out.push('…');
    }
    out.replace('|', "\\|").replace('`', "'")
}

#[tokio::test]
async fn a_catalogue_of_bad_lines_each_gets_its_documented_outcome() {
    let router = start_router(|c| c.limits.error_burst = 10_000).await;
    let addr = router.control_addr();
    let ((_alice, ma), (_bob, mb)) = alice_talks_to_bob(addr).await;
    // Alice talks all along: 20 ms frames until the catalogue is done.
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let talker = tokio::spawn(async move {
        let mut sent = 0u32;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let seq = sent as u16;
                    if ma.send_rtp(96, seq, u32::from(seq) * 160, &[3; 160]).await.is_ok() {
                        sent += 1;
                    }
                }
                _ = stopped.changed() => return sent,
            }
        }
    });
    let counter = tokio::spawn(async move { drain_media(&mb, Duration::from_secs(2)).await.len() });

    let s = match TcpStream::connect(addr).await {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    if let Err(e) = w
        .write_all(b"{\"type\":\"HELLO\",\"version\":1,\"nickname\":\"xavier\"}\n{\"type\":\"JOIN\",\"room\":\"lobby\"}\n{\"type\":\"HEARTBEAT\",\"id\":\"start\"}\n")
        .await
    {
        panic!("{e}");
    }
    assert!(errors_until(&mut r, "start").await.is_empty());

    let cases = catalogue();
    assert!(cases.len() >= 100, "{} cases", cases.len());
    let mut table = String::from("| # | line sent | outcome |\n|---|---|---|\n");
    let mut wrong = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let sync = format!("s{i}");
        let mut bytes = c.line.clone();
        bytes.push(b'\n');
        bytes.extend_from_slice(
            format!("{{\"type\":\"HEARTBEAT\",\"id\":\"{sync}\"}}\n").as_bytes(),
        );
        if let Err(e) = w.write_all(&bytes).await {
            panic!("case {i} ({}): write: {e}", c.what);
        }
        let got = errors_until(&mut r, &sync).await;
        if got != c.expect {
            wrong.push(format!(
                "{i} {}: expected {:?}, got {got:?}",
                c.what, c.expect
            ));
        }
        let outcome = got
            .iter()
            .map(|e| {
                format!(
                    "`{}`",
                    serde_json::to_string(e)
                        .unwrap_or_default()
                        .trim_matches('"')
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        table.push_str(&format!(
            "| {} | {}: `{}` | {outcome}, connection kept |\n",
            i + 1,
            c.what,
            shown(&c.line)
        ));
    }
    let _ = stop.send(true);
    let sent = talker.await.unwrap_or(0);
    let heard = counter.await.unwrap_or(0);
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bad-inputs.md");
    let _ = std::fs::write(&out, &table);
    assert!(wrong.is_empty(), "outcomes differ:\n{}", wrong.join("\n"));
    assert_eq!(
        heard as u32, sent,
        "Bob heard every one of Alice's packets meanwhile"
    );
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/reliability.md"
    ))
    .unwrap_or_default();
    assert!(
        docs.contains(&table),
        "docs/reliability.md's table of bad inputs is not this catalogue's: copy {}",
        out.display()
    );
    router.shutdown().await;
}
