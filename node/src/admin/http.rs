//! The admin port's HTTP, as pure functions: a request head in, a route
//! out; a status and a body in, response bytes out. Only what a
//! Prometheus scraper, a load balancer's health check or curl sends is
//! understood: `GET` or `HEAD`, one request per connection.

use crate::limits::ADMIN_HEAD_BYTES_MAX;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Metrics,
    Healthz,
    Readyz,
    NotFound,
}

/// A request head, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub route: Route,
    /// `HEAD`: the answer has no body.
    pub head_only: bool,
}

/// Why a request head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("request head over {ADMIN_HEAD_BYTES_MAX} bytes")]
    TooLarge,
    #[error("malformed request head")]
    Malformed,
    #[error("method not allowed (GET or HEAD only)")]
    Method,
}

impl HeadError {
    pub fn status(self) -> u16 {
        match self {
            HeadError::TooLarge => 431,
            HeadError::Malformed => 400,
            HeadError::Method => 405,
        }
    }
}

/// Parses the request head at the start of `buf`: `Ok(None)` while it is
/// incomplete (read more, up to [`ADMIN_HEAD_BYTES_MAX`]).
pub fn parse_head(buf: &[u8]) -> Result<Option<Request>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) if buf.len() >= ADMIN_HEAD_BYTES_MAX => {
            return Err(HeadError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        // More headers than a scraper sends is no scraper.
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(_) => return Err(HeadError::Malformed),
    }
    let head_only = match req.method {
        Some("GET") => false,
        Some("HEAD") => true,
        _ => return Err(HeadError::Method),
    };
    let path = req.path.unwrap_or("/");
    // The query string changes nothing.
    let path = path.split('?').next().unwrap_or(path);
    let route = match path {
        "/metrics" => Route::Metrics,
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        _ => Route::NotFound,
    };
    Ok(Some(Request { route, head_only }))
}

/// The content type of the metrics: OpenMetrics text, which Prometheus
/// asks for and parses.
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// A whole response that closes the connection.
pub fn response(status: u16, content_type: &str, body: &str, head_only: bool) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_refusals() {
        let get =
            |path: &str| parse_head(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
        assert_eq!(
            get("/metrics"),
            Ok(Some(Request {
                route: Route::Metrics,
                head_only: false
            }))
        );
        assert_eq!(
            get("/readyz?verbose=1").map(|r| r.map(|r| r.route)),
            Ok(Some(Route::Readyz))
        );
        assert_eq!(
            get("/nope").map(|r| r.map(|r| r.route)),
            Ok(Some(Route::NotFound))
        );
        assert_eq!(
            parse_head(b"HEAD /healthz HTTP/1.1\r\n\r\n"),
            Ok(Some(Request {
                route: Route::Healthz,
                head_only: true
            }))
        );
        assert_eq!(parse_head(b"GET /metrics HTTP/1.1\r\nHost"), Ok(None));
        assert_eq!(
            parse_head(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Err(HeadError::Method)
        );
        assert_eq!(
            parse_head(b"\x00\x01 garbage\r\n\r\n"),
            Err(HeadError::Malformed)
        );
        let long = format!(
            "GET /metrics HTTP/1.1\r\nX: {}",
            "a".repeat(ADMIN_HEAD_BYTES_MAX)
        );
        assert_eq!(parse_head(long.as_bytes()), Err(HeadError::TooLarge));
    }

    #[test]
    fn a_head_answer_has_the_length_but_no_body() {
        let full = response(200, TEXT_CONTENT_TYPE, "ok\n", false);
        let head = response(200, TEXT_CONTENT_TYPE, "ok\n", true);
        assert!(full.ends_with(b"\r\n\r\nok\n"));
        assert!(head.ends_with(b"content-length: 3\r\nconnection: close\r\n\r\n"));
    }
}
