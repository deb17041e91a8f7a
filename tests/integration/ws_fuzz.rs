//! WebSocket fuzzing over a real socket: random, truncated and oversized client frames, written
//! raw on a TLS stream. Every connection must end (a close frame or EOF) or keep answering (a
//! ping gets its pong); oversized declared lengths are refused with 1009; afterwards the server
//! still serves REST and new sockets, and logs no ERROR (the harness fails the test on one).
//!
//! `DIALTONE_WS_FUZZ_FRAMES` sets the number of frames (default 3,000; RELIABILITY.md has the
//! long run) and `DIALTONE_WS_FUZZ_SEED` the seed.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::client::TlsStream;

use crate::support::*;

/// The idle timeout under test: a truncated frame leaves the socket silent, and the server must
/// end it after this long.
const IDLE_SECS: u64 = 2;
/// How long a connection may take to end or to answer a ping: past the idle close and its
/// close-handshake timeout, with room for a loaded machine.
const BOUND: Duration = Duration::from_secs(IDLE_SECS * 5 + 20);
const MAX_FRAME: u64 = 64 * 1024;

/// xorshift64*: reproducible test data from a seed (not cryptography).
struct Rng(std::cell::Cell<u64>);

impl Rng {
    fn next(&self) -> u64 {
        let mut x = self.0.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A client frame: masked unless `masked` is false; `declared` overrides the length field.
fn frame(
    rng: &Rng,
    fin: bool,
    opcode: u8,
    payload: &[u8],
    declared: Option<u64>,
    masked: bool,
) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | (opcode & 0x0f)];
    let len = declared.unwrap_or(payload.len() as u64);
    let mask_bit = if masked { 0x80 } else { 0 };
    if len < 126 {
        out.push(mask_bit | len as u8);
    } else if len <= u64::from(u16::MAX) {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(mask_bit | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    let key = rng.bytes(4);
    if masked {
        out.extend_from_slice(&key);
    }
    out.extend(
        payload
            .iter()
            .enumerate()
            .map(|(i, b)| if masked { b ^ key[i % 4] } else { *b }),
    );
    out
}

/// JSON-ish text: fragments of real frames, mangled.
fn jsonish(rng: &Rng) -> Vec<u8> {
    const PIECES: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        "\"type\"",
        "\"channel.message.send\"",
        "\"subscribe\"",
        "\"sync\"",
        "\"message.broadcast\"",
        "\"channel_id\"",
        "\"body\"",
        "\"sender_name_enc\"",
        "\"after\"",
        "\"key_envelopes\"",
        "\"00000000-0000-4000-8000-000000000000\"",
        "null",
        "true",
        "1e999",
        "-0",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "\"x\"",
        "12345678901234567890",
    ];
    let n = rng.below(40) as usize;
    let mut s = Vec::new();
    for _ in 0..n {
        if rng.below(8) == 0 {
            s.extend(rng.bytes(rng.below(8) as usize));
        } else {
            s.extend_from_slice(PIECES[rng.below(PIECES.len() as u64) as usize].as_bytes());
        }
    }
    s
}

enum Sent {
    /// The connection may go on: check it answers.
    Open,
    /// A frame the server must refuse by closing (any close, or EOF).
    MustEnd,
    /// A declared length past the limit: the server must close with 1009.
    Oversized,
}

/// One random frame (or broken piece of one) for `tls`.
fn fuzz_frame(rng: &Rng) -> (Vec<u8>, Sent) {
    match rng.below(20) {
        // Valid text frames with random JSON-like or binary content: error events, stays open.
        0..=9 => (frame(rng, true, 0x1, &jsonish(rng), None, true), Sent::Open),
        10 => {
            let n = rng.below(300) as usize;
            // Invalid UTF-8 ends the socket, valid text gets an error event: either answers.
            (frame(rng, true, 0x1, &rng.bytes(n), None, true), Sent::Open)
        }
        11 => (
            frame(
                rng,
                true,
                0x2,
                &rng.bytes(rng.below(200) as usize),
                None,
                true,
            ),
            Sent::Open,
        ),
        // Fragmented text, the pieces in order.
        12 => {
            let text = jsonish(rng);
            let cut = text.len() / 2;
            let mut out = frame(rng, false, 0x1, &text[..cut], None, true);
            out.extend(frame(rng, true, 0x0, &text[cut..], None, true));
            (out, Sent::Open)
        }
        // A continuation with nothing started, an unknown opcode, an unmasked frame, a control
        // frame over 125 bytes: protocol errors.
        13 => (frame(rng, true, 0x0, b"{}", None, true), Sent::MustEnd),
        14 => (
            frame(rng, true, 0x3 + rng.below(5) as u8, b"{}", None, true),
            Sent::MustEnd,
        ),
        15 => (frame(rng, true, 0x1, b"{}", None, false), Sent::MustEnd),
        16 => (
            frame(rng, true, 0x9, &[b'p'; 126], None, true),
            Sent::MustEnd,
        ),
        // Oversized: one byte past the limit (sent whole), or a header declaring up to 2^63-1.
        17 => {
            let payload = vec![b' '; MAX_FRAME as usize + 1];
            (frame(rng, true, 0x1, &payload, None, true), Sent::Oversized)
        }
        18 => {
            let declared = MAX_FRAME + 1 + rng.below(i64::MAX as u64 - MAX_FRAME - 1);
            // Refused on the declared length alone, before any payload is buffered.
            (
                frame(rng, true, 0x1, b"{\"type\":", Some(declared), true),
                Sent::Oversized,
            )
        }
        // Truncated: a header announcing more than follows, then silence. The idle timeout
        // must end the socket.
        _ => {
            let full = frame(
                rng,
                true,
                0x1,
                &jsonish(rng),
                Some(100 + rng.below(1000)),
                true,
            );
            let keep = 1 + rng.below(full.len() as u64) as usize;
            (full[..keep].to_vec(), Sent::MustEnd)
        }
    }
}

/// Server frames as read off the socket.
#[derive(Debug)]
enum Got {
    Text,
    Pong(Vec<u8>),
    Close(Option<u16>),
    Other,
    Eof,
}

struct Conn {
    tls: TlsStream<tokio::net::TcpStream>,
    buf: Vec<u8>,
}

impl Conn {
    /// Open a socket and upgrade it. `slow` counts heads the server answered with 408: it reads
    /// a request head within 10 s (`client_request_timeout`), and on a CI machine running the
    /// whole suite on 2 cores this test's one client thread can be starved past that. That is
    /// the server's documented answer to a slow client, not what this test is about, so the
    /// worker opens again (at most 5 times in a row; every other answer fails the test).
    async fn open(server: &TestServer, token: &str, slow: &mut u64) -> Conn {
        for _ in 0..5 {
            match Self::try_open(server, token).await {
                Ok(conn) => return conn,
                Err(head) if head.starts_with("HTTP/1.1 408") => *slow += 1,
                Err(head) => panic!("upgrade refused: {head}"),
            }
        }
        panic!("five upgrades in a row got 408: the server is not reading request heads");
    }

    async fn try_open(server: &TestServer, token: &str) -> Result<Conn, String> {
        let mut tls = server.raw_tls().await;
        let head = format!(
            "GET /ws?subscribe=none HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: Bearer {token}\r\n\r\n"
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        // tokio-rustls may keep written bytes in its buffer until a flush.
        tls.flush().await.unwrap();
        let mut conn = Conn {
            tls,
            buf: Vec::new(),
        };
        let head = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(end) = conn.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&conn.buf[..end]).into_owned();
                    conn.buf.drain(..end + 4);
                    return head;
                }
                let mut chunk = [0u8; 4096];
                let n = conn
                    .tls
                    .read(&mut chunk)
                    .await
                    .expect("read the upgrade answer");
                assert!(n > 0, "EOF before the upgrade answer");
                conn.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
        .expect("an upgrade answer");
        if head.starts_with("HTTP/1.1 101") {
            Ok(conn)
        } else {
            Err(head)
        }
    }

    /// The next server frame (reads stop at EOF or a reset).
    async fn next(&mut self) -> Got {
        loop {
            if let Some((got, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return got;
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.tls.read(&mut chunk).await {
                Ok(0) | Err(_) => return Got::Eof,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Write, tolerating a server that already closed (a refused frame may end the socket while
    /// the rest is in flight).
    async fn send(&mut self, bytes: &[u8]) -> bool {
        self.tls.write_all(bytes).await.is_ok() && self.tls.flush().await.is_ok()
    }
}

fn parse_server_frame(buf: &[u8]) -> Option<(Got, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let opcode = buf[0] & 0x0f;
    assert_eq!(buf[1] & 0x80, 0, "server frames are never masked");
    let (len, mut at) = match buf[1] & 0x7f {
        126 => (
            u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize,
            4,
        ),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?;
    at += len;
    let got = match opcode {
        0x1 => Got::Text,
        0xA => Got::Pong(payload.to_vec()),
        0x8 => Got::Close(payload.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]]))),
        _ => Got::Other,
    };
    Some((got, at))
}

/// Wait until the connection ends; the close code, if a close frame came.
async fn until_end(conn: &mut Conn) -> Option<u16> {
    tokio::time::timeout(BOUND, async {
        let mut code = None;
        loop {
            match conn.next().await {
                Got::Close(c) => code = code.or(c).or(Some(1005)),
                Got::Eof => return code,
                _ => {}
            }
        }
    })
    .await
    .expect("stuck socket: the connection neither ended nor answered within the bound")
}

/// Ping and wait for the pong, or for the connection to end: true if it still answers.
async fn answers(conn: &mut Conn, rng: &Rng, n: u64) -> bool {
    let tag = format!("alive-{n}").into_bytes();
    if !conn.send(&frame(rng, true, 0x9, &tag, None, true)).await {
        until_end(conn).await;
        return false;
    }
    tokio::time::timeout(BOUND, async {
        loop {
            match conn.next().await {
                Got::Pong(p) if p == tag => return true,
                Got::Close(_) | Got::Eof => return false,
                _ => {}
            }
        }
    })
    .await
    .expect("stuck socket: no pong and no close within the bound")
}

/// What one worker saw.
#[derive(Default)]
struct Tally {
    sent: u64,
    connections: u64,
    ended: u64,
    oversized: u64,
    /// Upgrades answered 408 and opened again (see [`Conn::open`]).
    slow_heads: u64,
}

/// One worker: connections one after another until it has sent `frames`.
async fn worker(server: &TestServer, token: &str, seed: u64, frames: u64) -> Tally {
    let rng = Rng(std::cell::Cell::new(seed | 1));
    let mut t = Tally::default();
    while t.sent < frames {
        let mut conn = Conn::open(server, token, &mut t.slow_heads).await;
        t.connections += 1;
        // A connection lives for a random number of frames, or until one must end it.
        let life = 1 + rng.below(60);
        let mut open = true;
        for _ in 0..life {
            if t.sent >= frames {
                break;
            }
            let (bytes, kind) = fuzz_frame(&rng);
            t.sent += 1;
            let written = conn.send(&bytes).await;
            match kind {
                Sent::Open if !written => {
                    until_end(&mut conn).await;
                    open = false;
                }
                // Invalid UTF-8 and the like end the socket: that is an answer too.
                Sent::Open => {
                    if rng.below(8) == 0 && !answers(&mut conn, &rng, t.sent).await {
                        open = false;
                    }
                }
                Sent::MustEnd => {
                    until_end(&mut conn).await;
                    open = false;
                }
                Sent::Oversized => {
                    t.oversized += 1;
                    let code = until_end(&mut conn).await;
                    assert_eq!(
                        code,
                        Some(1009),
                        "an oversized frame ({} bytes sent) must close with 1009",
                        bytes.len()
                    );
                    open = false;
                }
            }
            if !open {
                t.ended += 1;
                break;
            }
        }
        if open && !answers(&mut conn, &rng, t.sent).await {
            t.ended += 1;
        }
    }
    t
}

#[tokio::test]
async fn random_truncated_and_oversized_frames() {
    let frames: u64 = std::env::var("DIALTONE_WS_FUZZ_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000);
    let seed: u64 = std::env::var("DIALTONE_WS_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    let server = TestServer::start_with(|s| {
        s.set("DIALTONE_WS_IDLE_SECS", IDLE_SECS.to_string());
        s.set("DIALTONE_WS_CLOSE_TIMEOUT_SECS", "1");
        s.set("DIALTONE_WS_PING_SECS", "1");
        // The fuzz sends frames far faster than a person: the send bucket is not under test.
        s.set("DIALTONE_WS_SEND_RATE", "100000");
        s.set("DIALTONE_WS_SEND_BURST", "100000");
        // Neither is the upgrade bucket: a refused frame ends its socket at once, so the workers
        // open about a thousand sockets in a few seconds.
        s.set("DIALTONE_LIMIT_WS_UPGRADE_IP", "100000/min");
    })
    .await;
    // A peer that never answers the idle close is dropped at DEBUG: no ERROR may appear.
    let alice = server.user("alice").await;
    // Truncated frames wait out the idle timeout: many connections at once keep that short.
    const WORKERS: u64 = 64;
    let tallies = futures_util::future::join_all((0..WORKERS).map(|w| {
        let share = frames / WORKERS + u64::from(w < frames % WORKERS);
        worker(
            &server,
            alice.token(),
            seed.wrapping_add(w * 0x9E37_79B9),
            share,
        )
    }))
    .await;
    let t = tallies.iter().fold(Tally::default(), |a, b| Tally {
        sent: a.sent + b.sent,
        connections: a.connections + b.connections,
        ended: a.ended + b.ended,
        oversized: a.oversized + b.oversized,
        slow_heads: a.slow_heads + b.slow_heads,
    });
    eprintln!(
        "ws fuzz: {} frames over {} connections; {} ended by the server, {} oversized refused \
         with 1009; {} upgrades answered 408 and opened again",
        t.sent, t.connections, t.ended, t.oversized, t.slow_heads
    );
    assert_eq!(t.sent, frames);
    assert!(
        t.connections > WORKERS && t.oversized > 0,
        "the mix exercised too little"
    );

    // The server still serves: REST, and a fresh socket that answers.
    alice.rest.channels().await.expect("REST still answers");
    let mut ws = server.ws(&alice).await;
    ws_ready(&mut ws).await;
}
