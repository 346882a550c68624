//! The built-in web chat page (HTML, CSS and the project's own small Socket.IO client script),
//! compiled into the binary.

const INDEX_HTML: &str = include_str!("assets/index.html");
const STYLE_CSS: &str = include_str!("assets/style.css");
const APP_JS: &str = include_str!("assets/app.js");
const SOCKETIO_JS: &str = include_str!("assets/socketio.js");

/// The client script as an ES module (`import { io } from "/socket.io/socket.io.esm.min.js"`, as
/// the npm server's ESM bundle is imported): the same script, which also sets `window.io`.
const SOCKETIO_ESM: &str = concat!(
    include_str!("assets/socketio.js"),
    "\nconst io = window.io;\nexport { io, io as connect, io as default };\n"
);

/// The client script at a path under `/socket.io/`, as the npm server serves its bundles there.
pub fn client_script(path: &str) -> Option<&'static [u8]> {
    match path {
        "/socket.io/socket.io.js" | "/socket.io/socket.io.min.js" => Some(SOCKETIO_JS.as_bytes()),
        "/socket.io/socket.io.esm.min.js" => Some(SOCKETIO_ESM.as_bytes()),
        _ => None,
    }
}

/// The client script's `ETag`: a hash of the script, so that a browser revalidating its copy gets
/// the script of the build it talks to.
pub fn client_etag() -> &'static str {
    static ETAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ETAG.get_or_init(|| {
        // FNV-1a, 64 bits: a fingerprint, not a security measure.
        let h = SOCKETIO_JS.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        format!("\"{h:016x}\"")
    })
}

/// The asset at a request path: `(content type, body)`.
pub fn lookup(path: &str) -> Option<(&'static str, &'static [u8])> {
    Some(match path {
        "/" | "/index.html" => ("text/html; charset=utf-8", INDEX_HTML.as_bytes()),
        "/assets/style.css" => ("text/css; charset=utf-8", STYLE_CSS.as_bytes()),
        "/assets/app.js" => ("text/javascript; charset=utf-8", APP_JS.as_bytes()),
        "/assets/socketio.js" => ("text/javascript; charset=utf-8", SOCKETIO_JS.as_bytes()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_references_only_built_in_assets() {
        let (ct, html) = lookup("/").unwrap();
        assert!(ct.starts_with("text/html"));
        let html = std::str::from_utf8(html).unwrap();
        for src in ["/assets/style.css", "/assets/app.js", "/assets/socketio.js"] {
            assert!(html.contains(src), "page does not load {src}");
            assert!(lookup(src).is_some(), "{src} not served");
        }
        assert!(html.contains("Entrar na sala"));
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "no third-party script"
        );
        assert!(lookup("/nope.js").is_none());
    }
}
