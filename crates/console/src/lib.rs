//! The web console for webhook owners, served at `/console` on the REST
//! listener.
//!
//! Owns: the console's static files (plain HTML, CSS and JavaScript
//! modules, embedded in the binary at build time; nothing is fetched from
//! another origin at run time) and the headers they are served with: a
//! strict `Content-Security-Policy` (scripts, styles and requests from this
//! origin only, no inline script, no framing).
//!
//! Must not: hold credentials or data. The pages sign in with a device
//! token or an admin key kept in the tab's `sessionStorage`, and talk to the
//! `/v1` API like any other client.

use axum::{
    extract::Path,
    http::{header, HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Redirect, Response},
    routing::get,
    Router,
};

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $type:expr) => {
        Asset {
            name: $name,
            content_type: $type,
            body: include_bytes!(concat!("../assets/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file under `/console/assets/`.
const ASSETS: &[Asset] = &[
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("main.js", JS),
    asset!("api.js", JS),
    asset!("ui.js", JS),
    asset!("charts.js", JS),
    asset!("webhooks.js", JS),
    asset!("deliveries.js", JS),
    asset!("admin.js", JS),
];

/// The page every console address serves.
const INDEX: &[u8] = include_bytes!("../assets/index.html");

/// Scripts, styles, images and API calls from this origin only; no inline
/// script or style, no plugins, no framing, no form posts elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The console's routes: `/console` (the page), `/console/` (redirect) and
/// `/console/assets/{file}`. Merge into the REST router.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/console", get(index))
        .route(
            "/console/",
            get(|| async { Redirect::permanent("/console") }),
        )
        .route("/console/assets/{file}", get(asset))
}

async fn index() -> Response {
    served("text/html; charset=utf-8", INDEX)
}

async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|a| a.name == file) {
        Some(a) => served(a.content_type, a.body),
        None => {
            let mut resp = (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"error":{"code":"NOT_FOUND","message":"no such console file"}}"#,
            )
                .into_response();
            secure(&mut resp);
            resp
        }
    }
}

fn served(content_type: &'static str, body: &'static [u8]) -> Response {
    let mut resp = (
        [
            (header::CONTENT_TYPE, content_type),
            // Revalidated on each load: a new binary's files replace the old.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response();
    secure(&mut resp);
    resp
}

/// The security headers of every console answer.
fn secure(resp: &mut Response) {
    let h = resp.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn fetch(path: &str) -> (StatusCode, axum::http::HeaderMap, String) {
        let resp = router::<()>()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.expect("body").to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    #[tokio::test]
    async fn the_page_and_its_files_are_served_with_a_strict_policy() {
        let (status, h, body) = fetch("/console").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("<script type=\"module\" src=\"/console/assets/main.js\">"));
        let csp = h[header::CONTENT_SECURITY_POLICY].to_str().expect("csp");
        assert!(csp.contains("script-src 'self';") && csp.contains("frame-ancestors 'none'"));
        assert!(!csp.contains("unsafe"), "{csp}");
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        for a in ASSETS {
            let (status, h, _) = fetch(&format!("/console/assets/{}", a.name)).await;
            assert_eq!(status, StatusCode::OK, "{}", a.name);
            assert_eq!(h[header::CONTENT_TYPE], a.content_type);
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
        let (status, h, _) = fetch("/console/assets/nope.js").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(h.contains_key(header::CONTENT_SECURITY_POLICY));
    }

    /// Everything the page and its modules load is embedded: no other
    /// origin, no inline script or style, no module that is not served.
    #[test]
    fn nothing_is_loaded_from_elsewhere_or_inline() {
        let index = String::from_utf8_lossy(INDEX);
        assert!(!index.contains("style="), "inline style in index.html");
        for tag in index.split("<script").skip(1) {
            assert!(
                tag.contains("src=\"/console/assets/"),
                "inline script: {tag}"
            );
        }
        for a in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
            let text = String::from_utf8_lossy(a.body);
            // The SVG namespace and an example in a placeholder name other
            // origins without loading anything from them.
            let rest = text
                .replace("\"http://www.w3.org/2000/svg\"", "")
                .replace("placeholder: \"https://example.com/hooks\"", "");
            assert!(
                !rest.contains("http://") && !rest.contains("https://"),
                "{} names another origin",
                a.name
            );
            assert!(
                a.name == "api.js" || !text.contains("fetch("),
                "{} calls fetch: API calls go through api.js",
                a.name
            );
            assert!(
                !text.contains("innerHTML"),
                "{} builds markup from strings",
                a.name
            );
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let from = line.rsplit('"').nth(1).unwrap_or_default();
                let name = from.trim_start_matches("./");
                assert!(ASSETS.iter().any(|a| a.name == name), "{}: {line}", a.name);
            }
        }
    }
}
