//! The built-in web chat page (HTML, CSS and the project's own small Socket.IO client script),
//! compiled into the binary.

const INDEX_HTML: &str = include_str!("assets/index.html");
const STYLE_CSS: &str = include_str!("assets/style.css");
const APP_JS: &str = include_str!("assets/app.js");
const SOCKETIO_JS: &str = include_str!("assets/socketio.js");

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
