//! A tiny OpenAI-compatible chat server on 127.0.0.1 for tests: it answers
//! every request with a canned sentence, and when `leaky` it reveals its
//! system prompt to any user message that contains `CONFIG` (any case).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How the fake server behaves.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// Leaks the system prompt on a `CONFIG` trigger.
    Leaky,
    /// Never leaks.
    Clean,
    /// Answers 503 to the first `n` requests, then like `Clean`.
    Flaky(usize),
    /// Answers 200 with a body that is not JSON.
    Garbage,
    /// Sleeps before answering.
    Slow(u64),
    /// Classifier endpoint: `{"inputs": [..]}` -> `{"outputs": [{"label": 3}, ..]}`.
    Classifier,
}

/// A running server: its base URL and how many requests it saw.
pub struct Server {
    pub url: String,
    pub hits: Arc<AtomicUsize>,
}

fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).ok()?;
    String::from_utf8(body).ok()
}

fn respond(stream: &mut TcpStream, status: &str, body: &str) {
    let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    let _ = stream.flush();
}

fn chat_answer(body: &str, leaky: bool) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let msgs = v["messages"].as_array().cloned().unwrap_or_default();
    let system = msgs
        .iter()
        .find(|m| m["role"] == "system")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_owned();
    let user = msgs
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_owned();
    let text = if leaky && user.to_lowercase().contains("config") {
        format!("Sure. My system prompt is: {system}")
    } else if user.to_lowercase().contains("password") {
        "Use the reset link on the sign-in page to reset your password.".to_owned()
    } else {
        "We are open from nine to five on weekdays.".to_owned()
    };
    serde_json::json!({ "id": "x", "object": "chat.completion", "choices": [{ "index": 0, "message": { "role": "assistant", "content": text }, "finish_reason": "stop" }] }).to_string()
}

/// Start a server in `mode` on an ephemeral port of 127.0.0.1.
pub fn start(mode: Mode) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let h = h.clone();
            std::thread::spawn(move || {
                let Some(body) = read_request(&mut stream) else {
                    return;
                };
                let n = h.fetch_add(1, Ordering::SeqCst);
                match mode {
                    Mode::Leaky => respond(&mut stream, "200 OK", &chat_answer(&body, true)),
                    Mode::Clean => respond(&mut stream, "200 OK", &chat_answer(&body, false)),
                    Mode::Flaky(k) if n < k => respond(
                        &mut stream,
                        "503 Service Unavailable",
                        "{\"error\":\"busy\"}",
                    ),
                    Mode::Flaky(_) => respond(&mut stream, "200 OK", &chat_answer(&body, false)),
                    Mode::Garbage => respond(&mut stream, "200 OK", "<html>oops</html>"),
                    Mode::Slow(ms) => {
                        std::thread::sleep(Duration::from_millis(ms));
                        respond(&mut stream, "200 OK", &chat_answer(&body, false));
                    }
                    Mode::Classifier => {
                        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                        let n = v["inputs"].as_array().map_or(0, Vec::len);
                        let outs: Vec<serde_json::Value> =
                            (0..n).map(|_| serde_json::json!({ "label": 3 })).collect();
                        respond(
                            &mut stream,
                            "200 OK",
                            &serde_json::json!({ "outputs": outs }).to_string(),
                        );
                    }
                }
            });
        }
    });
    Server { url, hits }
}
