//! The Open Inference Protocol's REST endpoints over HTTP/1.1 (hyper): routing, body limits,
//! error bodies, and the accept loop with graceful shutdown.
//!
//! Every error is `{"error": "..."}` with a status: 400 for a bad request, 404 for an unknown
//! model, version or path, 405 for a wrong method, 413 for a body over the limit, 503 while
//! overloaded, unloaded or shutting down, 500 for a failure of ours.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};

use super::model::Served;
use super::oip::{self, ProtocolError};

/// The header naming the JSON part's length in a binary-data request or response.
const HEADER_LEN: &str = "inference-header-content-length";

/// What every handler shares.
pub(crate) struct State {
    pub served: Arc<Served>,
    pub max_body: usize,
    /// False once shutdown starts: the server is no longer ready, though still live.
    pub accepting: std::sync::atomic::AtomicBool,
    /// A broker connector's name and counters, appended to `/metrics`.
    pub connector: Option<(&'static str, Arc<super::connector::Shared>)>,
}

type Reply = Response<Full<Bytes>>;

fn reply(status: u16, content_type: &'static str, body: Vec<u8>) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn json_reply(status: u16, v: &Value) -> Reply {
    reply(status, "application/json", v.to_string().into_bytes())
}

fn error_reply(e: &ProtocolError) -> Reply {
    json_reply(e.status, &json!({"error": e.message}))
}

fn empty(status: u16) -> Reply {
    reply(status, "text/plain", Vec::new())
}

/// A request's route, parsed from its path.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Live,
    Ready,
    Server,
    Metrics,
    Index,
    AllStats,
    /// `/v2/models/{m}[/versions/{v}][/what]`.
    Model {
        name: &'a str,
        version: Option<&'a str>,
        what: ModelPart,
    },
    /// `/v2/repository/models/{m}/{load,unload}`.
    Repository {
        name: &'a str,
        load: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ModelPart {
    Metadata,
    Ready,
    Config,
    Stats,
    Infer,
}

fn route(path: &str) -> Option<Route<'_>> {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    Some(match parts.as_slice() {
        ["v2", "health", "live"] => Route::Live,
        ["v2", "health", "ready"] => Route::Ready,
        ["v2"] => Route::Server,
        ["metrics"] => Route::Metrics,
        ["v2", "repository", "index"] => Route::Index,
        ["v2", "models", "stats"] => Route::AllStats,
        ["v2", "repository", "models", name, op @ ("load" | "unload")] => {
            Route::Repository { name, load: *op == "load" }
        }
        ["v2", "models", name, rest @ ..] => {
            let (version, rest) = match rest {
                ["versions", v, rest @ ..] => (Some(*v), rest),
                rest => (None, rest),
            };
            let what = match rest {
                [] => ModelPart::Metadata,
                ["ready"] => ModelPart::Ready,
                ["config"] => ModelPart::Config,
                ["stats"] => ModelPart::Stats,
                ["infer"] => ModelPart::Infer,
                _ => return None,
            };
            Route::Model { name, version, what }
        }
        _ => return None,
    })
}

/// Answers one request; never fails (every failure is a protocol error reply).
pub(crate) async fn handle(req: Request<Incoming>, state: Arc<State>) -> Result<Reply, Infallible> {
    Ok(match answer(req, &state).await {
        Ok(r) => r,
        Err(e) => error_reply(&e),
    })
}

fn method_is(req: &Request<Incoming>, want: &Method) -> Result<(), ProtocolError> {
    if req.method() == want {
        Ok(())
    } else {
        Err(ProtocolError::status(
            405,
            format!("{} takes {want}, not {}", req.uri().path(), req.method()),
        ))
    }
}

async fn answer(req: Request<Incoming>, state: &State) -> Result<Reply, ProtocolError> {
    use std::sync::atomic::Ordering;
    let path = req.uri().path().to_owned();
    let Some(r) = route(&path) else {
        return Err(ProtocolError::status(404, format!("no endpoint {path}")));
    };
    let served = &state.served;
    let known = |name: &str| -> Result<(), ProtocolError> {
        if name == served.name {
            Ok(())
        } else {
            Err(ProtocolError::status(
                404,
                format!("unknown model `{name}` (serving `{}`)", served.name),
            ))
        }
    };
    match r {
        Route::Live => {
            method_is(&req, &Method::GET)?;
            Ok(empty(200))
        }
        Route::Ready => {
            method_is(&req, &Method::GET)?;
            let ready = state.accepting.load(Ordering::Acquire) && served.is_ready();
            Ok(empty(if ready { 200 } else { 503 }))
        }
        Route::Server => {
            method_is(&req, &Method::GET)?;
            Ok(json_reply(
                200,
                &json!({
                    "name": "streamscore",
                    "version": env!("CARGO_PKG_VERSION"),
                    "extensions": ["binary_tensor_data", "model_repository", "statistics"],
                }),
            ))
        }
        Route::Metrics => {
            method_is(&req, &Method::GET)?;
            Ok(reply(200, "text/plain; version=0.0.4", {
                let mut text = served.rt.metrics().prometheus();
                if let Some((name, c)) = &state.connector {
                    text += &c.counters.prometheus(name);
                }
                text.into_bytes()
            }))
        }
        Route::Index => {
            method_is(&req, &Method::POST)?;
            Ok(json_reply(200, &json!([served.index_entry()])))
        }
        Route::AllStats => {
            method_is(&req, &Method::GET)?;
            Ok(json_reply(200, &served.statistics()))
        }
        Route::Repository { name, load } => {
            method_is(&req, &Method::POST)?;
            known(name)?;
            // The body (optional parameters) is read and bounded but not used.
            let _ = read_body(req, 1 << 16).await?;
            if load {
                let rt = served.clone();
                tokio::task::spawn_blocking(move || rt.load())
                    .await
                    .map_err(|e| ProtocolError::status(500, format!("load failed: {e}")))??;
            } else {
                served.set_ready(false);
            }
            Ok(empty(200))
        }
        Route::Model { name, version, what } => {
            known(name)?;
            served.check_version(version)?;
            match what {
                ModelPart::Metadata => {
                    method_is(&req, &Method::GET)?;
                    Ok(json_reply(200, &served.metadata()))
                }
                ModelPart::Ready => {
                    method_is(&req, &Method::GET)?;
                    let ready = state.accepting.load(Ordering::Acquire) && served.is_ready();
                    Ok(empty(if ready { 200 } else { 503 }))
                }
                ModelPart::Config => {
                    method_is(&req, &Method::GET)?;
                    Ok(json_reply(200, &served.triton_config()))
                }
                ModelPart::Stats => {
                    method_is(&req, &Method::GET)?;
                    Ok(json_reply(200, &served.statistics()))
                }
                ModelPart::Infer => {
                    method_is(&req, &Method::POST)?;
                    infer(req, state).await
                }
            }
        }
    }
}

/// Reads a body of at most `max` bytes: a declared length over it is refused before
/// anything is read, and a body that runs past it is cut off.
async fn read_body(req: Request<Incoming>, max: usize) -> Result<Bytes, ProtocolError> {
    let too_large = || ProtocolError::status(413, format!("the request body is over {max} bytes"));
    if let Some(len) = req.headers().get(CONTENT_LENGTH) {
        let len: u64 = len
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ProtocolError::bad("Content-Length is not a length"))?;
        if len > max as u64 {
            return Err(too_large());
        }
    }
    match Limited::new(req.into_body(), max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ProtocolError::bad(format!("reading the request body: {e}"))),
    }
}

async fn infer(req: Request<Incoming>, state: &State) -> Result<Reply, ProtocolError> {
    if let Some(enc) = req.headers().get(CONTENT_ENCODING)
        && enc.as_bytes() != b"identity"
    {
        return Err(ProtocolError::status(
            415,
            format!("Content-Encoding {enc:?} is not supported; send the body uncompressed"),
        ));
    }
    let header = req
        .headers()
        .get(HEADER_LEN)
        .map(|v| v.to_str().map(str::to_owned))
        .transpose()
        .map_err(|_| ProtocolError::bad("Inference-Header-Content-Length is not text"))?;
    let body = read_body(req, state.max_body).await?;
    let json_len = oip::header_len(header.as_deref(), body.len())?;
    let request = oip::parse(&body, json_len)?;
    drop(body);
    let encoded = state.served.infer(request).await?;
    if encoded.binary.is_empty() {
        return Ok(reply(200, "application/json", encoded.json));
    }
    let json_len = encoded.json.len();
    let mut body = encoded.json;
    body.extend_from_slice(&encoded.binary);
    let mut r = reply(200, "application/octet-stream", body);
    r.headers_mut().insert(HEADER_LEN, HeaderValue::from(json_len));
    Ok(r)
}

/// Resolves once the stop flag is true (or its sender is gone). The flag's guard is dropped
/// at once, so the future stays `Send`.
async fn stopped(rx: &mut tokio::sync::watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Accepts connections until `stop` turns true, then asks every open connection to finish its
/// request in flight and close, waiting at most `drain` for them.
pub(crate) async fn accept_loop(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    drain: Duration,
) {
    use hyper::server::conn::http1;
    use hyper_util::rt::TokioIo;
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of descriptors and the like: the listener stays, the next
                        // accept may succeed.
                        log::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let mut stop = stop.clone();
                conns.spawn(async move {
                    let service = hyper::service::service_fn(move |req| handle(req, state.clone()));
                    let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                    let mut conn = std::pin::pin!(conn);
                    tokio::select! {
                        _ = conn.as_mut() => {}
                        _ = stopped(&mut stop) => {
                            conn.as_mut().graceful_shutdown();
                            let _ = conn.await;
                        }
                    }
                });
                // Reap finished connections so the set does not grow with the total served.
                while conns.try_join_next().is_some() {}
            }
            _ = stopped(&mut stop) => break,
        }
    }
    drop(listener);
    let drained =
        tokio::time::timeout(drain, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        log::warn!("{} connections still open after {drain:?}: closed", conns.len());
        conns.abort_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/v2/health/live"), Some(Route::Live));
        assert_eq!(route("/v2/"), Some(Route::Server));
        assert_eq!(
            route("/v2/models/m/versions/3/infer"),
            Some(Route::Model { name: "m", version: Some("3"), what: ModelPart::Infer })
        );
        assert_eq!(
            route("/v2/models/m"),
            Some(Route::Model { name: "m", version: None, what: ModelPart::Metadata })
        );
        assert_eq!(
            route("/v2/repository/models/m/unload"),
            Some(Route::Repository { name: "m", load: false })
        );
        assert_eq!(route("/v2/models/m/explode"), None);
        assert_eq!(route("/v3"), None);
        assert_eq!(route(""), None);
    }
}
