//! The repository stands alone: every Markdown link points to a file in it,
//! the verification snippets of `docs/receiving.md` verify a real signed
//! delivery (Node and Python; `.ci/run` installs both), and the requests of
//! `docs/profiles.md` answer as it shows (curl).

use crate::support::*;
use serde_json::json;
use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !matches!(name.as_str(), "target" | ".git" | "node_modules") {
                markdown_files(&path, out);
            }
        } else if name.ends_with(".md") {
            out.push(path);
        }
    }
}

/// Relative link targets of `[text](target)` in a Markdown text.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].split_whitespace().next().unwrap_or("");
        rest = &rest[end..];
        if target.is_empty()
            || target.starts_with('#')
            || target.contains("://")
            || target.starts_with("mailto:")
        {
            continue;
        }
        out.push(target.split('#').next().unwrap_or(target).to_owned());
    }
    out
}

#[test]
fn every_markdown_link_points_to_a_file_in_the_repository() {
    let root = repo();
    let mut files = Vec::new();
    markdown_files(&root, &mut files);
    assert!(files.len() >= 5, "found {} Markdown files", files.len());
    let mut broken = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        for target in links(&text) {
            let resolved = f.parent().expect("dir").join(&target);
            if !resolved.exists() {
                broken.push(format!("{} → {target}", f.display()));
            }
        }
        // The team's workspace beside the repository (spelled in two parts so
        // that this file does not match the search it stands for).
        let outside = format!("{}/shared/", "..");
        assert!(
            !text.contains(&outside),
            "{} points outside the repository",
            f.display()
        );
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

/// The body of the fenced block of `doc` whose info string is `info`.
fn snippet(doc: &str, info: &str) -> String {
    let open = format!("```{info}\n");
    let start = doc
        .find(&open)
        .unwrap_or_else(|| panic!("no ```{info} block"))
        + open.len();
    let end = doc[start..].find("```").expect("closed block") + start;
    doc[start..end].to_owned()
}

fn tool(name: &str) -> Command {
    let ok = Command::new(name)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "{name} is needed for this test (.ci/run installs it)");
    Command::new(name)
}

#[tokio::test]
async fn the_documented_snippets_verify_a_real_delivery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data")).start();
    let receiver = Receiver::start().await;
    let t = bootstrap(&server, "dev-docs").await;
    let doc = std::fs::read_to_string(repo().join("docs/receiving.md")).expect("receiving.md");
    let js = dir.path().join("verify.js");
    let py = dir.path().join("verify.py");
    std::fs::write(&js, snippet(&doc, "js verify")).expect("write");
    std::fs::write(&py, snippet(&doc, "python verify")).expect("write");
    // An engine-style secret and a plain one: both key forms.
    for (i, secret) in ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "plain secret ✓"]
        .into_iter()
        .enumerate()
    {
        let (status, v) = configure(
            &server,
            &t.token,
            json!({"webhook_url": receiver.url("/"), "enabled_events": ["*"], "secret": secret}),
        )
        .await;
        assert_eq!(status, 200, "{v}");
        let mut client = grpc(&server).await;
        publish(
            &mut client,
            event(
                "dev-docs",
                "message.received",
                r#"{"text":"Ol\u00e1 <b>","n":1.50,"10":"ten","2":[1E2,{"b":true,"a":null}]}"#,
            ),
        )
        .await
        .expect("publish");
        let got = receiver.wait_for(i + 1, 10).await;
        let d = &got[i];
        let body = dir.path().join(format!("body-{i}.json"));
        std::fs::write(&body, &d.body).expect("write body");
        for (runner, script) in [("node", &js), ("python3", &py)] {
            let out = tool(runner)
                .arg(script)
                .arg(secret)
                .arg(&body)
                .arg(d.header("webhook-id"))
                .arg(d.header("webhook-timestamp"))
                .arg(d.header("webhook-signature"))
                .output()
                .expect("run");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                stdout.trim(),
                "ok",
                "{runner} with {secret:?}: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The fenced blocks of `doc` after each `## ` heading that names a profile
/// in backticks: `(profile, sh command, JSON answer)`, in order.
fn profile_examples(doc: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut profile = None;
    let mut pending: Option<String> = None;
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if let Some(h) = line.strip_prefix("## ") {
            profile = h
                .split('`')
                .nth(1)
                .filter(|_| h.contains("(`"))
                .map(str::to_owned);
            continue;
        }
        let Some(info) = line.strip_prefix("```").filter(|i| !i.is_empty()) else {
            continue;
        };
        let body: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        let body = body.join("\n");
        match (info, &profile) {
            ("sh", Some(_)) => pending = Some(body),
            ("json", Some(p)) => {
                if let Some(cmd) = pending.take() {
                    out.push((p.clone(), cmd, body));
                }
            }
            _ => {}
        }
    }
    out
}

/// Keys that differ from run to run: compared by type only.
const VOLATILE: &[&str] = &["id", "appId", "createdAt", "updatedAt", "created_at"];

/// `got` has `want`'s shape key by key, and its values except volatile ones.
fn same_shape(want: &serde_json::Value, got: &serde_json::Value, at: &str) {
    use serde_json::Value as V;
    match (want, got) {
        (V::Object(w), V::Object(g)) => {
            let mut wk: Vec<_> = w.keys().collect();
            let mut gk: Vec<_> = g.keys().collect();
            wk.sort();
            gk.sort();
            assert_eq!(wk, gk, "keys at {at}");
            for (k, wv) in w {
                let path = format!("{at}.{k}");
                if VOLATILE.contains(&k.as_str()) {
                    assert_eq!(
                        std::mem::discriminant(wv),
                        std::mem::discriminant(&g[k]),
                        "type at {path}: {}",
                        g[k]
                    );
                } else {
                    same_shape(wv, &g[k], &path);
                }
            }
        }
        (V::Array(w), V::Array(g)) => {
            assert_eq!(w.len(), g.len(), "length at {at}: {got}");
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                same_shape(wv, gv, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(want, got, "value at {at}"),
    }
}

/// docs/profiles.md: every documented request, sent with curl to a real
/// server's profile listeners, answers what the document shows.
#[tokio::test]
async fn the_documented_profile_requests_answer_as_shown() {
    let doc = std::fs::read_to_string(repo().join("docs/profiles.md")).expect("profiles.md");
    let examples = profile_examples(&doc);
    for p in ["whautochat", "status-envelope", "org-apps"] {
        assert!(
            examples.iter().filter(|(n, _, _)| n == p).count() >= 4,
            "examples of {p} in profiles.md"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerBuilder::new(&dir.path().join("data"))
        .profiles(&["whautochat", "status-envelope", "org-apps"])
        .start();
    let (_, admin) = organization(&server, "acme").await;
    let (status, app) = call(
        &server,
        reqwest::Method::POST,
        "/v1/organization/apps",
        &admin,
        Some(json!({"name": "support line"})),
    )
    .await;
    assert_eq!(status, 201, "{app}");
    let app_id = app["id"].as_str().expect("app id").to_owned();
    // Checks curl is there (.ci/run installs it).
    drop(tool("curl"));
    let mut id = String::new();
    for (profile, cmd, answer) in examples {
        let want: serde_json::Value =
            serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{answer}: {e}"));
        let out = Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .env("BASE", server.profile_url(&profile, ""))
            .env("KEY", &admin)
            .env("ADMIN", &admin)
            .env("APP_ID", &app_id)
            .env("ID", &id)
            .output()
            .expect("run the documented curl command");
        let got: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{cmd}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
        same_shape(&want, &got, &format!("{profile}: {cmd}\n  answer"));
        if let Some(new) = got
            .get("id")
            .or_else(|| got.get("data").and_then(|d| d.get("id")))
        {
            id = new.as_str().map_or_else(|| new.to_string(), str::to_owned);
        }
    }
}
