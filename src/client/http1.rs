//! A small HTTP/1.1 client over one kept-alive connection: what Engine.IO long-polling needs
//! (GET and POST with a body, `Content-Length` or chunked responses, size limits).

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::ClientError;
use super::net::Stream;
use crate::wire::http as wh;

/// One HTTP response, body fully read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text, for error messages (lossy, cut at 200 bytes, one line).
    pub fn body_snippet(&self) -> String {
        let cut = &self.body[..self.body.len().min(200)];
        String::from_utf8_lossy(cut)
            .replace(['\r', '\n'], " ")
            .trim()
            .to_string()
    }
}

/// One keep-alive HTTP/1.1 connection.
#[derive(Debug)]
pub struct HttpConn {
    stream: Stream,
    /// Bytes read past the end of the previous response.
    buf: Vec<u8>,
    host: String,
    max_body: usize,
    /// False once the server said `Connection: close` or the body ran to EOF.
    reusable: bool,
}

impl HttpConn {
    /// Wrap a connected stream; `host` is the `Host:` header value, `max_body` the largest body read.
    pub fn new(stream: Stream, host: &str, max_body: usize) -> HttpConn {
        HttpConn {
            stream,
            buf: Vec::new(),
            host: host.to_string(),
            max_body,
            reusable: true,
        }
    }

    /// Whether another request may be sent on this connection.
    pub fn reusable(&self) -> bool {
        self.reusable
    }

    /// Send a request and read the whole response.
    pub async fn request(
        &mut self,
        method: &str,
        target: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, ClientError> {
        let mut req = Vec::with_capacity(256 + body.map_or(0, <[u8]>::len));
        req.extend_from_slice(method.as_bytes());
        req.push(b' ');
        req.extend_from_slice(target.as_bytes());
        req.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        req.extend_from_slice(self.host.as_bytes());
        req.extend_from_slice(b"\r\nUser-Agent: wschat/");
        req.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
        req.extend_from_slice(b"\r\nAccept: */*\r\n");
        if let Some(body) = body {
            req.extend_from_slice(b"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: ");
            req.extend_from_slice(body.len().to_string().as_bytes());
            req.extend_from_slice(b"\r\n\r\n");
            req.extend_from_slice(body);
        } else {
            req.extend_from_slice(b"\r\n");
        }
        self.stream.write_all(&req).await.map_err(ClientError::io)?;
        self.stream.flush().await.map_err(ClientError::io)?;
        self.read_response(method == "HEAD").await
    }

    async fn read_response(&mut self, head_only: bool) -> Result<Response, ClientError> {
        // RFC 9112 §2: a head, then a body framed by Content-Length or chunked or the connection end.
        let (head_len, status, reason, headers) = loop {
            match wh::ResponseHead::parse(&self.buf) {
                Ok(Some((head, n))) => {
                    let headers: Vec<(String, String)> = head
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_string(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    break (n, head.status, head.reason.to_string(), headers);
                }
                Ok(None) => {
                    if self.buf.len() > wh::MAX_HEAD_LEN {
                        return Err(ClientError::Http(format!(
                            "response head larger than {} bytes",
                            wh::MAX_HEAD_LEN
                        )));
                    }
                    if self.fill().await? == 0 {
                        return Err(ClientError::Closed {
                            during: "waiting for an HTTP response",
                        });
                    }
                }
                Err(e) => {
                    return Err(ClientError::Http(format!(
                        "malformed HTTP response head: {e}"
                    )));
                }
            }
        };
        self.buf.drain(..head_len);
        let mut resp = Response {
            status,
            reason,
            headers,
            body: Vec::new(),
        };
        if resp
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        {
            self.reusable = false;
        }
        if head_only || status == 204 || status == 304 || (100..200).contains(&status) {
            return Ok(resp);
        }
        let chunked = resp
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            resp.body = self.read_chunked().await?;
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len
                .trim()
                .parse()
                .map_err(|_| ClientError::Http(format!("bad Content-Length `{len}`")))?;
            self.check_size(len)?;
            while self.buf.len() < len {
                if self.fill().await? == 0 {
                    return Err(ClientError::Closed {
                        during: "reading an HTTP response body",
                    });
                }
            }
            resp.body = self.buf.drain(..len).collect();
        } else {
            // No framing: the body runs to the end of the connection.
            self.reusable = false;
            while self.fill().await? != 0 {
                self.check_size(self.buf.len())?;
            }
            resp.body = std::mem::take(&mut self.buf);
        }
        Ok(resp)
    }

    /// RFC 9112 §7.1: `size[;ext]CRLF data CRLF` ... `0CRLF [trailers] CRLF`.
    async fn read_chunked(&mut self) -> Result<Vec<u8>, ClientError> {
        let mut body = Vec::new();
        loop {
            let line_end = loop {
                if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                if self.buf.len() > 1024 {
                    return Err(ClientError::Http("chunk size line too long".into()));
                }
                if self.fill().await? == 0 {
                    return Err(ClientError::Closed {
                        during: "reading a chunked HTTP body",
                    });
                }
            };
            let line = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| ClientError::Http(format!("bad chunk size `{size_text}`")))?;
            self.buf.drain(..line_end + 2);
            if size == 0 {
                // Trailers until an empty line.
                loop {
                    let end = loop {
                        if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                            break i;
                        }
                        if self.fill().await? == 0 {
                            return Err(ClientError::Closed {
                                during: "reading HTTP trailers",
                            });
                        }
                    };
                    self.buf.drain(..end + 2);
                    if end == 0 {
                        return Ok(body);
                    }
                }
            }
            self.check_size(body.len() + size)?;
            while self.buf.len() < size + 2 {
                if self.fill().await? == 0 {
                    return Err(ClientError::Closed {
                        during: "reading a chunked HTTP body",
                    });
                }
            }
            if &self.buf[size..size + 2] != b"\r\n" {
                return Err(ClientError::Http("chunk not followed by CRLF".into()));
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.drain(..size + 2);
        }
    }

    fn check_size(&self, len: usize) -> Result<(), ClientError> {
        if len > self.max_body {
            return Err(ClientError::Http(format!(
                "response body of {len} bytes exceeds the limit of {} bytes",
                self.max_body
            )));
        }
        Ok(())
    }

    async fn fill(&mut self) -> Result<usize, ClientError> {
        let mut chunk = [0u8; 8192];
        let n = self
            .stream
            .read(&mut chunk)
            .await
            .map_err(ClientError::io)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::net::{NetOptions, connect};
    use crate::client::url::Endpoint;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-connection server that answers each request (read until the blank line and the
    /// Content-Length body) with the next canned response.
    async fn serve(responses: Vec<&'static [u8]>) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let h = tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = Vec::new();
            for r in responses {
                loop {
                    if let Some(i) = buf.windows(4).position(|w: &[u8]| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_string();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length: "))
                            .map_or(0, |v| v.parse::<usize>().unwrap());
                        if buf.len() >= i + 4 + len {
                            let body =
                                String::from_utf8_lossy(&buf[i + 4..i + 4 + len]).to_string();
                            seen.push(format!("{head}\n\n{body}"));
                            buf.drain(..i + 4 + len);
                            break;
                        }
                    }
                    let mut c = [0u8; 1024];
                    let n = s.read(&mut c).await.unwrap();
                    buf.extend_from_slice(&c[..n]);
                }
                s.write_all(r).await.unwrap();
            }
            seen
        });
        (port, h)
    }

    #[tokio::test]
    async fn content_length_and_chunked_responses_on_one_kept_alive_connection() {
        let (port, server) = serve(vec![
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\n4ab\r\n2\r\n\x1e6\r\n0\r\nT: v\r\n\r\n",
        ])
        .await;
        let ep = Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let stream = connect(&ep, &NetOptions::default()).await.unwrap();
        let mut c = HttpConn::new(stream, &ep.authority, 1 << 20);
        let r = c
            .request("POST", "/socket.io/?EIO=4&transport=polling", Some(b"40"))
            .await
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, b"ok".as_slice()));
        let r = c.request("GET", "/x", None).await.unwrap();
        assert_eq!(r.body, b"4ab\x1e6");
        assert!(c.reusable());
        let seen = server.await.unwrap();
        assert!(
            seen[0].starts_with(
                "POST /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: 127.0.0.1:"
            )
        );
        assert!(seen[0].contains("Content-Length: 2"));
        assert!(seen[0].ends_with("\n\n40"));
        assert!(seen[1].starts_with("GET /x HTTP/1.1\r\n"));
    }

    #[tokio::test]
    async fn oversized_bodies_and_truncated_responses_are_errors() {
        let (port, _server) = serve(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"]).await;
        let ep = Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let mut c = HttpConn::new(
            connect(&ep, &NetOptions::default()).await.unwrap(),
            &ep.authority,
            10,
        );
        let err = c.request("GET", "/", None).await.unwrap_err();
        assert!(err.to_string().contains("exceeds the limit"), "{err}");

        let (port, server) =
            serve(vec![b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc"]).await;
        let ep = Endpoint::parse(&format!("http://127.0.0.1:{port}")).unwrap();
        let mut c = HttpConn::new(
            connect(&ep, &NetOptions::default()).await.unwrap(),
            &ep.authority,
            1000,
        );
        let req = c.request("GET", "/", None);
        let (res, _) = tokio::join!(req, server);
        let err = res.unwrap_err();
        assert!(matches!(err, ClientError::Closed { .. }), "{err}");
    }
}
