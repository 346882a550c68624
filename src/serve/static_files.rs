//! `--static DIR`: serve a front-end build folder at `/` (as the original express server served its
//! React build), with content types, an `index.html` fallback for client-side routes, and no way out
//! of the folder (no `..`, no symlink escapes).

use std::io;
use std::path::{Component, Path, PathBuf};

/// A folder served at `/`.
#[derive(Debug, Clone)]
pub struct StaticDir {
    root: PathBuf,
}

/// A file found for a request.
#[derive(Debug)]
pub struct StaticFile {
    pub path: PathBuf,
    pub content_type: &'static str,
    /// True when this is the SPA fallback (`index.html` for an unknown route).
    pub fallback: bool,
}

impl StaticDir {
    /// Open a folder; fails when it does not exist or is not a directory.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let root = std::fs::canonicalize(dir)?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a directory",
            ));
        }
        Ok(StaticDir { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Map a request path (`/assets/app.js`, percent-encoded, query already removed) to a file.
    /// `None` = 404. Paths with `..`, NUL or backslashes never resolve; a symlink that leads outside
    /// the folder is refused. Unknown paths without a file extension get `index.html` (SPA routes).
    pub fn resolve(&self, url_path: &str) -> Option<StaticFile> {
        let decoded = percent_decode(url_path)?;
        let mut rel = PathBuf::new();
        for seg in decoded.split('/') {
            if seg.is_empty() || seg == "." {
                continue;
            }
            if seg == ".." || seg.contains('\\') || seg.contains('\0') {
                return None;
            }
            // Each segment must be a single normal component on this platform.
            let mut comps = Path::new(seg).components();
            match (comps.next(), comps.next()) {
                (Some(Component::Normal(_)), None) => rel.push(seg),
                _ => return None,
            }
        }
        if let Some(found) = self.file_at(&rel) {
            return Some(found);
        }
        let last = decoded.rsplit('/').next().unwrap_or("");
        if !last.contains('.') {
            let index = self.file_at(Path::new("index.html"))?;
            return Some(StaticFile {
                fallback: true,
                ..index
            });
        }
        None
    }

    fn file_at(&self, rel: &Path) -> Option<StaticFile> {
        let mut candidate = self.root.join(rel);
        if candidate.is_dir() {
            candidate.push("index.html");
        }
        let real = std::fs::canonicalize(&candidate).ok()?;
        if !real.starts_with(&self.root) || !real.is_file() {
            return None;
        }
        Some(StaticFile {
            content_type: content_type(&real),
            path: real,
            fallback: false,
        })
    }
}

/// Decode `%XX` escapes; `None` when an escape is malformed or the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The Content-Type for a file, by extension.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" | "cjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "txt" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "wasm" => "application/wasm",
        "mp3" => "audio/mpeg",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> (tempfile::TempDir, StaticDir) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "<h1>app</h1>").unwrap();
        std::fs::create_dir(dir.path().join("static")).unwrap();
        std::fs::write(dir.path().join("static/main.js"), "x").unwrap();
        std::fs::write(dir.path().join("static/a b.css"), "y").unwrap();
        let sd = StaticDir::open(dir.path()).unwrap();
        (dir, sd)
    }

    #[test]
    fn files_resolve_with_their_content_type() {
        let (_d, sd) = site();
        let f = sd.resolve("/static/main.js").unwrap();
        assert_eq!(f.content_type, "text/javascript; charset=utf-8");
        assert!(!f.fallback);
        let f = sd.resolve("/static/a%20b.css").unwrap();
        assert_eq!(f.content_type, "text/css; charset=utf-8");
        let f = sd.resolve("/").unwrap();
        assert!(f.path.ends_with("index.html"));
        assert!(!f.fallback);
    }

    #[test]
    fn spa_routes_fall_back_to_index_but_missing_assets_are_404() {
        let (_d, sd) = site();
        let f = sd.resolve("/chat/room/7").unwrap();
        assert!(f.fallback);
        assert!(f.path.ends_with("index.html"));
        assert!(sd.resolve("/static/missing.js").is_none());
    }

    #[test]
    fn traversal_is_refused_in_every_spelling() {
        let (d, sd) = site();
        std::fs::write(d.path().parent().unwrap().join("wschat-secret.txt"), "s").ok();
        for p in [
            "/../wschat-secret.txt",
            "/static/../../wschat-secret.txt",
            "/%2e%2e/wschat-secret.txt",
            "/static/%2E%2E/%2E%2E/wschat-secret.txt",
            "/..%2fwschat-secret.txt",
            "/..\\wschat-secret.txt",
            "/%00",
            "/%zz",
        ] {
            assert!(sd.resolve(p).is_none_or(|f| f.fallback), "{p} escaped");
            if let Some(f) = sd.resolve(p) {
                assert!(f.path.starts_with(sd.root()));
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_leading_outside_are_refused() {
        let (d, sd) = site();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("x.txt"), "secret").unwrap();
        std::os::unix::fs::symlink(outside.path().join("x.txt"), d.path().join("leak.txt"))
            .unwrap();
        assert!(sd.resolve("/leak.txt").is_none());
    }
}
