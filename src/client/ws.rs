//! WebSocket client for the dialtone v1 event protocol.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::net::{IpAddr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::tls::{Trust, client_config};
use super::{ClientError, ClientResult};
use crate::protocol::REDACTED;
use crate::protocol::rest::ErrorBody;
use crate::protocol::ws::{BEARER_SUBPROTOCOL_PREFIX, ClientFrame, Event, SUBPROTOCOL};

type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How to connect.
#[derive(Clone)]
pub struct WsOptions {
    /// `https://host:port` (the `/ws` path is added) or a full `wss://…/ws` URL.
    pub base_url: String,
    pub token: String,
    pub trust: Trust,
    /// Start with no channel subscriptions (`/ws?subscribe=none`).
    pub subscribe_none: bool,
    /// Send the token as the browser-style subprotocol `dialtone.v1, bearer.<token>` instead of an
    /// `Authorization` header.
    pub token_in_subprotocol: bool,
    /// Local address to connect from (load tests spread connections over 127.0.0.x).
    pub local_addr: Option<IpAddr>,
}

impl std::fmt::Debug for WsOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsOptions")
            .field("base_url", &self.base_url)
            .field("token", &REDACTED)
            .field("trust", &self.trust)
            .field("subscribe_none", &self.subscribe_none)
            .field("token_in_subprotocol", &self.token_in_subprotocol)
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl WsOptions {
    pub fn new(base_url: &str, token: &str, trust: Trust) -> Self {
        Self {
            base_url: base_url.to_owned(),
            token: token.to_owned(),
            trust,
            subscribe_none: false,
            token_in_subprotocol: false,
            local_addr: None,
        }
    }

    fn url(&self) -> String {
        let base = self.base_url.trim_end_matches('/');
        let base = if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            base.to_owned()
        };
        let base = if base.ends_with("/ws") {
            base
        } else {
            format!("{base}/ws")
        };
        if self.subscribe_none {
            format!("{base}?subscribe=none")
        } else {
            base
        }
    }
}

/// Per-connection choices of [`WsConnector::connect`].
#[derive(Clone, Copy)]
pub struct ConnectAs<'a> {
    pub token: &'a str,
    pub subscribe_none: bool,
    pub token_in_subprotocol: bool,
    pub local_addr: Option<IpAddr>,
}

impl std::fmt::Debug for ConnectAs<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectAs")
            .field("token", &REDACTED)
            .field("subscribe_none", &self.subscribe_none)
            .field("token_in_subprotocol", &self.token_in_subprotocol)
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

/// Opens many connections to one server, sharing one TLS configuration.
#[derive(Clone)]
pub struct WsConnector {
    opts: WsOptions,
    tls: Option<Arc<rustls::ClientConfig>>,
    host: String,
    port: u16,
}

impl WsConnector {
    pub fn new(base_url: &str, trust: &Trust) -> ClientResult<Self> {
        let opts = WsOptions::new(base_url, "", trust.clone());
        let uri: tungstenite::http::Uri = opts
            .url()
            .parse()
            .map_err(|e| ClientError::Config(format!("WebSocket URL: {e}")))?;
        let plain = uri.scheme_str() == Some("ws");
        let host = uri
            .host()
            .ok_or_else(|| ClientError::Config("WebSocket URL has no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if plain { 80 } else { 443 });
        let tls = if plain {
            None
        } else {
            Some(Arc::new(client_config(trust)?))
        };
        Ok(Self {
            opts,
            tls,
            host,
            port,
        })
    }

    /// TCP to the first resolved address that accepts (from `local` when given).
    async fn open_tcp(&self, local: Option<IpAddr>) -> ClientResult<TcpStream> {
        let transport = |e: std::io::Error| ClientError::Transport(format!("connect: {e}"));
        let targets = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(transport)?
            .filter(|a| local.is_none_or(|l| l.is_ipv4() == a.is_ipv4()));
        let mut last = None;
        for target in targets {
            let socket = if target.is_ipv4() {
                TcpSocket::new_v4()
            } else {
                TcpSocket::new_v6()
            }
            .map_err(transport)?;
            if let Some(ip) = local {
                socket.bind(SocketAddr::new(ip, 0)).map_err(transport)?;
            }
            match socket.connect(target).await {
                Ok(stream) => {
                    stream.set_nodelay(true).map_err(transport)?;
                    return Ok(stream);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(match last {
            Some(e) => transport(e),
            None => ClientError::Transport(format!("cannot resolve {}", self.host)),
        })
    }

    pub async fn connect(&self, who: &ConnectAs<'_>) -> ClientResult<WsClient> {
        let opts = WsOptions {
            subscribe_none: who.subscribe_none,
            ..self.opts.clone()
        };
        let mut request = opts
            .url()
            .into_client_request()
            .map_err(|e| ClientError::Config(format!("WebSocket URL: {e}")))?;
        let header = |v: String| {
            HeaderValue::from_str(&v)
                .map_err(|_| ClientError::Config("token is not a valid header value".into()))
        };
        if who.token_in_subprotocol {
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                header(format!(
                    "{SUBPROTOCOL}, {BEARER_SUBPROTOCOL_PREFIX}{}",
                    who.token
                ))?,
            );
        } else {
            request
                .headers_mut()
                .insert("Authorization", header(format!("Bearer {}", who.token))?);
        }
        let stream = self.open_tcp(who.local_addr).await?;
        let connector = match &self.tls {
            Some(cfg) => Connector::Rustls(cfg.clone()),
            None => Connector::Plain,
        };
        // tungstenite zero-fills its whole read buffer on every read: the 128 KiB default cost a
        // quarter of the load generator's CPU (and 128 KiB of memory per socket).
        let config = WebSocketConfig::default()
            .read_buffer_size(16 * 1024)
            .max_message_size(Some(16 << 20))
            .max_frame_size(Some(16 << 20));
        let (ws, response) = tokio_tungstenite::client_async_tls_with_config(
            request,
            stream,
            Some(config),
            Some(connector),
        )
        .await
        .map_err(|e| match e {
            tungstenite::Error::Http(res) => refusal(res.status().as_u16(), res.body().as_deref()),
            other => ClientError::Transport(other.to_string()),
        })?;
        let protocol = response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (sink, stream) = ws.split();
        Ok(WsClient {
            sink: WsSender(sink),
            stream: WsReceiver(stream),
            protocol,
        })
    }
}

/// A refused upgrade: the server's `{error, code}` body when it sent one (what arrived with the
/// response head), else the raw text as the message.
fn refusal(status: u16, body: Option<&[u8]>) -> ClientError {
    let body = body.unwrap_or_default();
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => ClientError::Api {
            status,
            code: b.code,
            message: b.error,
        },
        Err(_) => ClientError::Api {
            status,
            code: String::new(),
            message: String::from_utf8_lossy(body).into_owned(),
        },
    }
}

/// What arrives on the socket.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Event(Box<Event>),
    /// The server closed the socket.
    Closed {
        code: u16,
        reason: String,
    },
}

/// A connected event stream.
pub struct WsClient {
    sink: WsSender,
    stream: WsReceiver,
    /// The subprotocol the server accepted, if any.
    pub protocol: Option<String>,
}

/// The sending half.
pub struct WsSender(SplitSink<Stream, Message>);
/// The receiving half.
pub struct WsReceiver(SplitStream<Stream>);

impl WsClient {
    pub async fn connect(opts: &WsOptions) -> ClientResult<Self> {
        WsConnector::new(&opts.base_url, &opts.trust)?
            .connect(&ConnectAs {
                token: &opts.token,
                subscribe_none: opts.subscribe_none,
                token_in_subprotocol: opts.token_in_subprotocol,
                local_addr: opts.local_addr,
            })
            .await
    }

    pub async fn send(&mut self, frame: &ClientFrame) -> ClientResult<()> {
        self.sink.send(frame).await
    }

    /// Send any message (tests send malformed frames this way).
    pub async fn send_raw(&mut self, msg: Message) -> ClientResult<()> {
        self.sink.send_raw(msg).await
    }

    /// The next event or close; `None` when the connection ended without a close frame.
    pub async fn next(&mut self) -> ClientResult<Option<Incoming>> {
        self.stream.next().await
    }

    /// [`WsClient::next`] with a deadline.
    pub async fn next_within(&mut self, limit: Duration) -> ClientResult<Option<Incoming>> {
        tokio::time::timeout(limit, self.next())
            .await
            .map_err(|_| ClientError::Timeout("no WebSocket event".into()))?
    }

    /// Wait (up to `limit`) for the first event of `kind`, skipping others.
    pub async fn expect_event(&mut self, kind: &str, limit: Duration) -> ClientResult<Event> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_within(left).await? {
                Some(Incoming::Event(e)) if e.kind == kind => return Ok(*e),
                Some(Incoming::Event(_)) => continue,
                Some(Incoming::Closed { code, reason }) => {
                    return Err(ClientError::Transport(format!(
                        "closed ({code} {reason}) while waiting for {kind}"
                    )));
                }
                None => {
                    return Err(ClientError::Transport(format!(
                        "connection ended while waiting for {kind}"
                    )));
                }
            }
        }
    }

    pub async fn close(&mut self) -> ClientResult<()> {
        self.sink.close().await
    }

    pub fn split(self) -> (WsSender, WsReceiver) {
        (self.sink, self.stream)
    }
}

impl WsSender {
    pub async fn send(&mut self, frame: &ClientFrame) -> ClientResult<()> {
        let text = serde_json::to_string(frame).map_err(|e| ClientError::Config(e.to_string()))?;
        self.send_raw(Message::text(text)).await
    }

    pub async fn send_raw(&mut self, msg: Message) -> ClientResult<()> {
        self.0
            .send(msg)
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))
    }

    pub async fn close(&mut self) -> ClientResult<()> {
        self.0
            .close()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))
    }
}

impl WsReceiver {
    /// The next event or close; pings are answered by the library.
    pub async fn next(&mut self) -> ClientResult<Option<Incoming>> {
        loop {
            let Some(msg) = self.0.next().await else {
                return Ok(None);
            };
            match msg {
                Ok(Message::Text(text)) => {
                    let event: Event = serde_json::from_str(text.as_str())
                        .map_err(|e| ClientError::Decode(format!("event: {e}")))?;
                    return Ok(Some(Incoming::Event(Box::new(event))));
                }
                Ok(Message::Close(frame)) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    return Ok(Some(Incoming::Closed { code, reason }));
                }
                Ok(_) => continue,
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Ok(None);
                }
                Err(e) => return Err(ClientError::Transport(e.to_string())),
            }
        }
    }

    /// The next frame unparsed (the load generator reads only what it needs).
    pub async fn next_raw(&mut self) -> ClientResult<RawIncoming> {
        loop {
            match self.0.next().await {
                None => return Ok(RawIncoming::Ended),
                Some(Ok(Message::Text(t))) => return Ok(RawIncoming::Text(t)),
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    return Ok(RawIncoming::Closed { code, reason });
                }
                Some(Ok(_)) => continue,
                Some(Err(
                    tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                )) => return Ok(RawIncoming::Ended),
                Some(Err(e)) => return Err(ClientError::Transport(e.to_string())),
            }
        }
    }
}

/// An unparsed frame.
#[derive(Debug, Clone, PartialEq)]
pub enum RawIncoming {
    Text(tungstenite::Utf8Bytes),
    Closed {
        code: u16,
        reason: String,
    },
    /// The connection ended without a close frame.
    Ended,
}

#[cfg(test)]
mod redaction_tests {
    use super::{ConnectAs, WsOptions};
    use crate::client::tls::Trust;

    #[test]
    fn connect_options_debug_hides_token() {
        let opts = WsOptions::new("https://localhost:1", "tok_ws_secret", Trust::SystemRoots);
        let who = ConnectAs {
            token: "tok_ws_secret",
            subscribe_none: false,
            token_in_subprotocol: true,
            local_addr: None,
        };
        let out = format!("{opts:?} {who:?}");
        assert!(!out.contains("tok_ws_secret"), "{out}");
        assert!(out.contains("<redacted>"), "{out}");
    }
}
