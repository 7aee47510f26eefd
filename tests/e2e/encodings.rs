//! Producer JSON as real producers encode it (Python's `\u00e1`, Go's
//! `\u003c`, PHP's `\/`, `1.50`, `1E2`, integer-like keys, U+2028) reaches
//! the receiver in the form `JSON.stringify` writes, so the vendor's Node
//! verify snippet holds for every accepted event; forms that parsers read
//! differently are refused naming `data`. Runs `node` (installed by `.ci/run`).

use crate::support::*;
use serde_json::{json, Value};
use std::process::Command;

/// The vendor's snippet, applied to each delivery body: drop `signature`,
/// `JSON.stringify` the rest, HMAC it with the secret, compare.
const VERIFY_JS: &str = r#"
const crypto = require("crypto");
const fs = require("fs");
function verify(payload, signature, secret) {
  const expected =
    "sha256=" +
    crypto.createHmac("sha256", secret).update(JSON.stringify(payload)).digest("hex");
  return signature.length === expected.length &&
    crypto.timingSafeEqual(Buffer.from(signature), Buffer.from(expected));
}
// With `node -e`, the arguments start at argv[1].
const [secret, ...files] = process.argv.slice(1);
for (const f of files) {
  const { signature, ...payload } = JSON.parse(fs.readFileSync(f, "utf8"));
  console.log(verify(payload, signature, secret) ? "ok" : "FAIL " + f);
}
"#;

fn node() -> Command {
    let probe = Command::new("node").arg("--version").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "this test runs Node (the vendor's verify snippet): install nodejs (.ci/run does)"
    );
    Command::new("node")
}

#[tokio::test]
async fn every_producer_encoding_verifies_with_the_vendors_node_snippet() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let receiver = Receiver::start().await;
    let t = bootstrap(&server, "dev-enc").await;
    let secret = "a-plain-secret-0123456789";
    let (status, v) = configure(
        &server,
        &t.token,
        json!({"webhook_url": receiver.url("/"), "enabled_events": ["*"], "secret": secret}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    // Raw producer bytes, as each ecosystem writes them.
    let accepted = [
        r#"{"text":"Ol\u00e1"}"#,
        r#"{"html":"\u003cb\u003e \u0026"}"#,
        r#"{"url":"https:\/\/example.com\/a"}"#,
        r#"{"price":1.50,"count":1E2,"neg":-0,"tiny":1e-7,"huge":1e21}"#,
        r#"{"b":1,"10":3,"2":2,"a":{"1":1,"0":0}}"#,
        "{\"line\":\"a\\u2028b\",\"raw\":\"a\u{2028}b\"}",
        r#"{"emoji":"\ud83d\ude00","ctl":"\u0001\t"}"#,
        r#"{"big":9007199254740992,"f":0.1,"arr":[1.0,2.50,{"9":9,"8":8}]}"#,
        "{ \"spaced\" : [ 1 , 2 ] ,\n \"x\" : true }",
    ];
    let http = reqwest::Client::new();
    for data in accepted {
        let body = format!(r#"{{"device_id":"dev-enc","event":"message.received","data":{data}}}"#);
        let resp = http
            .post(server.url("/v1/events"))
            .bearer_auth(INGEST_KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("publish");
        assert_eq!(
            resp.status(),
            202,
            "{data}: {}",
            resp.text().await.unwrap_or_default()
        );
    }
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let refused = [
        r#"{"a":1,"a":2}"#.to_owned(),
        r#"{"x":1e400}"#.to_owned(),
        r#"{"id":9007199254740993}"#.to_owned(),
        r#"{"s":"\ud800"}"#.to_owned(),
        format!(r#"{{"deep":{deep}}}"#),
    ];
    for data in &refused {
        let body = format!(r#"{{"device_id":"dev-enc","event":"message.received","data":{data}}}"#);
        let resp = http
            .post(server.url("/v1/events"))
            .bearer_auth(INGEST_KEY)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("publish");
        assert_eq!(resp.status(), 400, "{}", &data[..data.len().min(60)]);
        let v: Value = resp.json().await.expect("json");
        assert_eq!(v["error"]["details"][0]["field"], "data", "{v}");
    }
    let got = receiver.wait_for(accepted.len(), 15).await;
    assert_eq!(
        got.len(),
        accepted.len(),
        "only the accepted events are delivered"
    );
    let files: Vec<std::path::PathBuf> = got
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let path = dir.path().join(format!("delivery-{i}.json"));
            std::fs::write(&path, &r.body).expect("write body");
            path
        })
        .collect();
    let out = node()
        .arg("-e")
        .arg(VERIFY_JS)
        .arg(secret)
        .args(&files)
        .output()
        .expect("run node");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        accepted.len(),
        "{text}\n{:?}",
        got.iter()
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect::<Vec<_>>()
    );
    for (line, r) in lines.iter().zip(&got) {
        assert_eq!(*line, "ok", "{}", String::from_utf8_lossy(&r.body));
    }
}
