//! Models outside the process, behind [`mithridate_core::Predictor`]:
//!
//! - [`CommandPredictor`]: a program that reads JSONL requests on stdin and
//!   writes one JSONL response per request on stdout;
//! - [`HttpPredictor`]: an HTTP endpoint taking and returning JSON;
//! - [`ChatPredictor`]: an OpenAI-compatible chat-completions endpoint (vLLM,
//!   llama.cpp server, Ollama and hosted APIs speak it).
//!
//! All share [`ExternalOptions`]: a timeout per call, retries with
//! exponential backoff on transient failures (transport errors, HTTP 429 and
//! 5xx, a command that exits non-zero), a limit on concurrent calls, and a
//! clear error naming the endpoint and the response when the answer does not
//! parse. A 4xx answer other than 429 is not retried: asking again will not
//! fix a bad request.
//!
//! Wire formats (stable):
//! - command, one line per input: `{"id": 0, "input": {"features": [..]}}`
//!   (or `{"text": ".."}`, or `{"chat": {"system": "..", "user": ".."}}`);
//!   one line per output: `{"id": 0, "output": {"label": 3, "proba": [..], "text": ".."}}`
//!   or the output object itself, in input order;
//! - HTTP: `POST url` with `{"inputs": [<input>, ..]}`, answer `{"outputs": [<output>, ..]}`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use mithridate_core::model::{Input, Output, Predictor};
use mithridate_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// Timeouts, retries and concurrency of an external predictor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExternalOptions {
    /// Time allowed for one call (one HTTP request or one command run).
    pub timeout: Duration,
    /// Retries after the first attempt, on transient failures only.
    pub retries: u32,
    /// Wait before the first retry; doubled at each further retry.
    pub backoff: Duration,
    /// Upper bound of one wait.
    pub max_backoff: Duration,
    /// Calls in flight at once.
    pub concurrency: usize,
    /// Inputs per call (HTTP and command predictors; chat sends one per call).
    pub batch_size: usize,
}

impl Default for ExternalOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            retries: 2,
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            concurrency: 4,
            batch_size: 64,
        }
    }
}

impl ExternalOptions {
    /// Check every field.
    pub fn check(&self) -> Result<()> {
        if self.timeout.is_zero() {
            return Err(Error::param("timeout", "must be positive"));
        }
        if self.concurrency == 0 {
            return Err(Error::param("concurrency", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(Error::param("batch_size", "must be at least 1"));
        }
        Ok(())
    }
}

/// Why one attempt failed.
#[derive(Debug)]
enum Failure {
    /// Worth another attempt.
    Transient(String),
    /// Not worth another attempt.
    Fatal(String),
}

/// Run `attempt` with retries and exponential backoff.
fn with_retries<T>(
    opts: &ExternalOptions,
    what: &str,
    mut attempt: impl FnMut() -> std::result::Result<T, Failure>,
) -> Result<T> {
    let mut wait = opts.backoff;
    let mut tries = 0u32;
    loop {
        match attempt() {
            Ok(v) => return Ok(v),
            Err(Failure::Fatal(msg)) => return Err(Error::Model(format!("{what}: {msg}"))),
            Err(Failure::Transient(msg)) if tries >= opts.retries => {
                return Err(Error::Model(format!(
                    "{what}: {msg} (after {} attempts)",
                    tries + 1
                )))
            }
            Err(Failure::Transient(msg)) => {
                tracing::warn!(target: "mithridate_validation", "{what}: {msg}; retrying in {wait:?}");
                std::thread::sleep(wait);
                wait = (wait * 2).min(opts.max_backoff);
                tries += 1;
            }
        }
    }
}

/// Split `inputs` into batches of `batch` and run `call` on them with at most
/// `concurrency` calls in flight; outputs come back in input order, and the
/// first failing batch (in order) is the error.
fn run_batched(
    inputs: &[Input],
    batch: usize,
    concurrency: usize,
    call: &(dyn Fn(&[Input]) -> Result<Vec<Output>> + Sync),
) -> Result<Vec<Output>> {
    let chunks: Vec<&[Input]> = inputs.chunks(batch.max(1)).collect();
    let results: Mutex<Vec<Option<Result<Vec<Output>>>>> =
        Mutex::new((0..chunks.len()).map(|_| None).collect());
    let next = AtomicUsize::new(0);
    let workers = concurrency.clamp(1, chunks.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(chunk) = chunks.get(i) else { break };
                let r = call(chunk).and_then(|out| {
                    if out.len() == chunk.len() {
                        Ok(out)
                    } else {
                        Err(Error::Model(format!(
                            "{} outputs for {} inputs",
                            out.len(),
                            chunk.len()
                        )))
                    }
                });
                let failed = r.is_err();
                if let Ok(mut g) = results.lock() {
                    g[i] = Some(r);
                }
                if failed {
                    // Stop handing out work: the run fails anyway.
                    next.store(chunks.len(), Ordering::SeqCst);
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| Error::Model("a predictor worker panicked".into()))?;
    let mut out = Vec::with_capacity(inputs.len());
    for r in results {
        match r {
            Some(Ok(v)) => out.extend(v),
            Some(Err(e)) => return Err(e),
            None => {
                return Err(Error::Model(
                    "a batch was not run because an earlier one failed".into(),
                ))
            }
        }
    }
    Ok(out)
}

fn snippet(s: &str) -> String {
    let t: String = s.chars().take(200).collect();
    if t.len() < s.len() {
        format!("{t}...")
    } else {
        t
    }
}

/// A program speaking JSONL on stdin and stdout (see the module docs). It is
/// started once per batch, so it needs no server loop: a script that reads
/// all lines, predicts and prints is enough.
#[derive(Debug, Clone)]
pub struct CommandPredictor {
    name: String,
    program: String,
    args: Vec<String>,
    opts: ExternalOptions,
}

impl CommandPredictor {
    /// Run `program` with `args`.
    pub fn new(program: impl Into<String>, args: Vec<String>) -> Self {
        let program = program.into();
        Self {
            name: format!("command `{program}`"),
            program,
            args,
            opts: ExternalOptions::default(),
        }
    }

    /// Parse a shell-like command line split on whitespace (no quoting):
    /// enough for `python3 model.py --flag`.
    pub fn from_command_line(line: &str) -> Result<Self> {
        let mut parts = line.split_whitespace().map(str::to_owned);
        let program = parts
            .next()
            .ok_or_else(|| Error::param("command", "is empty"))?;
        Ok(Self::new(program, parts.collect()))
    }

    /// Use `opts`.
    #[must_use]
    pub fn with_options(mut self, opts: ExternalOptions) -> Self {
        self.opts = opts;
        self
    }

    fn call_once(&self, inputs: &[Input]) -> std::result::Result<Vec<Output>, Failure> {
        let mut body = Vec::new();
        for (i, inp) in inputs.iter().enumerate() {
            let line = serde_json::json!({ "id": i, "input": inp });
            serde_json::to_writer(&mut body, &line).map_err(|e| Failure::Fatal(e.to_string()))?;
            body.push(b'\n');
        }
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Failure::Fatal(format!("cannot start: {e}")))?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| Failure::Fatal("no stdin".into()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| Failure::Fatal("no stdout".into()))?;
        let mut stderr = child
            .stderr
            .take()
            .ok_or_else(|| Failure::Fatal("no stderr".into()))?;
        let writer = std::thread::spawn(move || {
            // A program that exits without reading everything closes the pipe; that is its answer, not ours to report.
            let _ = stdin.write_all(&body);
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let lines: std::io::Result<Vec<String>> = BufReader::new(stdout).lines().collect();
            let _ = tx.send(lines);
        });
        let err_reader = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = stderr.read_to_string(&mut s);
            s
        });
        let lines = match rx.recv_timeout(self.opts.timeout) {
            Ok(Ok(l)) => l,
            Ok(Err(e)) => return Err(Failure::Transient(format!("reading its output: {e}"))),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Failure::Transient(format!(
                    "no answer within {:?}",
                    self.opts.timeout
                )));
            }
        };
        let _ = writer.join();
        let status = child
            .wait()
            .map_err(|e| Failure::Transient(e.to_string()))?;
        let err = err_reader.join().unwrap_or_default();
        if !status.success() {
            return Err(Failure::Transient(format!(
                "exited with {status}: {}",
                snippet(err.trim())
            )));
        }
        parse_responses(&lines, inputs.len())
    }
}

/// Parse a command's response lines (blank lines ignored) into `n_inputs`
/// outputs: `{"id": i, "output": {..}}` lines are placed by id, bare output
/// objects by position. Every malformed line is an error naming its number.
fn parse_responses(lines: &[String], n_inputs: usize) -> std::result::Result<Vec<Output>, Failure> {
    let lines: Vec<&String> = lines.iter().filter(|l| !l.trim().is_empty()).collect();
    if lines.len() != n_inputs {
        return Err(Failure::Fatal(format!(
            "{} response lines for {} requests",
            lines.len(),
            n_inputs
        )));
    }
    let mut out: Vec<Option<Output>> = vec![None; n_inputs];
    for (n, line) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| {
            Failure::Fatal(format!(
                "response line {}: not JSON ({e}): {}",
                n + 1,
                snippet(line)
            ))
        })?;
        let (id, o) = match v.get("output") {
            Some(o) => (
                v.get("id")
                    .and_then(serde_json::Value::as_u64)
                    .map(|i| i as usize),
                o.clone(),
            ),
            None => (None, v.clone()),
        };
        let o: Output = serde_json::from_value(o).map_err(|e| {
            Failure::Fatal(format!(
                "response line {}: bad output ({e}): {}",
                n + 1,
                snippet(line)
            ))
        })?;
        let at = id.unwrap_or(n);
        match out.get_mut(at) {
            Some(slot @ None) => *slot = Some(o),
            _ => {
                return Err(Failure::Fatal(format!(
                    "response line {}: unknown or repeated id {at}",
                    n + 1
                )))
            }
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, o)| o.ok_or_else(|| Failure::Fatal(format!("no response for request {i}"))))
        .collect()
}

impl Predictor for CommandPredictor {
    fn name(&self) -> &str {
        &self.name
    }
    fn predict(&self, inputs: &[Input]) -> Result<Vec<Output>> {
        self.opts.check()?;
        run_batched(inputs, self.opts.batch_size, self.opts.concurrency, &|b| {
            with_retries(&self.opts, &self.name, || self.call_once(b))
        })
    }
}

fn agent(opts: &ExternalOptions) -> ureq::Agent {
    ureq::AgentBuilder::new().timeout(opts.timeout).build()
}

/// Send `body` to `url`, classifying failures for the retry loop.
fn post_json(
    agent: &ureq::Agent,
    url: &str,
    headers: &[(String, String)],
    body: &str,
) -> std::result::Result<String, Failure> {
    let mut req = agent.post(url).set("Content-Type", "application/json");
    for (k, v) in headers {
        req = req.set(k, v);
    }
    match req.send_string(body) {
        Ok(resp) => resp
            .into_string()
            .map_err(|e| Failure::Transient(format!("reading the response: {e}"))),
        Err(ureq::Error::Status(code, resp)) => {
            let text = resp.into_string().unwrap_or_default();
            let msg = format!("HTTP {code}: {}", snippet(text.trim()));
            if code == 429 || code >= 500 {
                Err(Failure::Transient(msg))
            } else {
                Err(Failure::Fatal(msg))
            }
        }
        Err(ureq::Error::Transport(t)) => Err(Failure::Transient(t.to_string())),
    }
}

/// An HTTP endpoint: `POST url` with `{"inputs": [..]}`, answering
/// `{"outputs": [..]}` (see the module docs).
#[derive(Debug, Clone)]
pub struct HttpPredictor {
    url: String,
    headers: Vec<(String, String)>,
    opts: ExternalOptions,
    agent: ureq::Agent,
}

impl HttpPredictor {
    /// Predict through `url`.
    pub fn new(url: impl Into<String>) -> Self {
        let opts = ExternalOptions::default();
        Self {
            url: url.into(),
            headers: Vec::new(),
            agent: agent(&opts),
            opts,
        }
    }

    /// Use `opts`.
    #[must_use]
    pub fn with_options(mut self, opts: ExternalOptions) -> Self {
        self.agent = agent(&opts);
        self.opts = opts;
        self
    }

    /// Send a header with every request (e.g. `Authorization`).
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn call_once(&self, inputs: &[Input]) -> std::result::Result<Vec<Output>, Failure> {
        let body = serde_json::json!({ "inputs": inputs }).to_string();
        let text = post_json(&self.agent, &self.url, &self.headers, &body)?;
        #[derive(Deserialize)]
        struct Resp {
            outputs: Vec<Output>,
        }
        let r: Resp = serde_json::from_str(&text).map_err(|e| {
            Failure::Fatal(format!(
                "bad response ({e}), expected {{\"outputs\": [..]}}: {}",
                snippet(&text)
            ))
        })?;
        if r.outputs.len() != inputs.len() {
            return Err(Failure::Fatal(format!(
                "{} outputs for {} inputs",
                r.outputs.len(),
                inputs.len()
            )));
        }
        Ok(r.outputs)
    }
}

impl Predictor for HttpPredictor {
    fn name(&self) -> &str {
        &self.url
    }
    fn predict(&self, inputs: &[Input]) -> Result<Vec<Output>> {
        self.opts.check()?;
        run_batched(inputs, self.opts.batch_size, self.opts.concurrency, &|b| {
            with_retries(&self.opts, &self.url, || self.call_once(b))
        })
    }
}

/// An OpenAI-compatible chat-completions endpoint. Each input is one request
/// (`Chat` becomes a system and a user message, `Text` a user message) at
/// temperature 0 so that probes are repeatable; the answer's
/// `choices[0].message.content` becomes [`Output::text`].
#[derive(Debug, Clone)]
pub struct ChatPredictor {
    url: String,
    model: String,
    api_key: Option<String>,
    max_tokens: u32,
    opts: ExternalOptions,
    agent: ureq::Agent,
}

impl ChatPredictor {
    /// Talk to `endpoint` (a base such as `http://127.0.0.1:8000` or `.../v1`,
    /// or the full `.../chat/completions` URL) asking for `model`.
    pub fn new(endpoint: &str, model: impl Into<String>) -> Self {
        let e = endpoint.trim_end_matches('/');
        let url = if e.ends_with("/chat/completions") {
            e.to_owned()
        } else if e.ends_with("/v1") {
            format!("{e}/chat/completions")
        } else {
            format!("{e}/v1/chat/completions")
        };
        let opts = ExternalOptions {
            batch_size: 1,
            ..ExternalOptions::default()
        };
        Self {
            url,
            model: model.into(),
            api_key: None,
            max_tokens: 256,
            agent: agent(&opts),
            opts,
        }
    }

    /// The full chat-completions URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Send `Authorization: Bearer <key>`.
    #[must_use]
    pub fn with_api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }

    /// Limit answers to `n` tokens.
    #[must_use]
    pub fn with_max_tokens(mut self, n: u32) -> Self {
        self.max_tokens = n;
        self
    }

    /// Use `opts` (the batch size is ignored: one input per request).
    #[must_use]
    pub fn with_options(mut self, opts: ExternalOptions) -> Self {
        self.agent = agent(&opts);
        self.opts = opts;
        self
    }

    fn call_once(&self, input: &Input) -> std::result::Result<Output, Failure> {
        let messages = match input {
            Input::Chat { system, user } => {
                let mut m = Vec::new();
                if let Some(s) = system {
                    m.push(serde_json::json!({ "role": "system", "content": s }));
                }
                m.push(serde_json::json!({ "role": "user", "content": user }));
                m
            }
            Input::Text(t) => vec![serde_json::json!({ "role": "user", "content": t })],
            Input::Features(_) => {
                return Err(Failure::Fatal(
                    "a chat model takes text, not feature vectors".into(),
                ))
            }
        };
        let body = serde_json::json!({ "model": self.model, "messages": messages, "temperature": 0, "max_tokens": self.max_tokens }).to_string();
        let headers: Vec<(String, String)> = self
            .api_key
            .iter()
            .map(|k| ("Authorization".to_owned(), format!("Bearer {k}")))
            .collect();
        let text = post_json(&self.agent, &self.url, &headers, &body)?;
        parse_chat(&text)
    }
}

/// Parse a chat-completions answer: `choices[0].message.content` becomes the text.
fn parse_chat(text: &str) -> std::result::Result<Output, Failure> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Failure::Fatal(format!("bad response, not JSON ({e}): {}", snippet(text))))?;
    let content = v
        .pointer("/choices/0/message/content")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| {
            Failure::Fatal(format!(
                "bad response, no choices[0].message.content: {}",
                snippet(text)
            ))
        })?;
    Ok(Output {
        text: Some(content.to_owned()),
        ..Output::default()
    })
}

impl Predictor for ChatPredictor {
    fn name(&self) -> &str {
        &self.url
    }
    fn predict(&self, inputs: &[Input]) -> Result<Vec<Output>> {
        self.opts.check()?;
        run_batched(inputs, 1, self.opts.concurrency, &|b| {
            b.iter()
                .map(|inp| with_retries(&self.opts, &self.url, || self.call_once(inp)))
                .collect()
        })
    }
}

/// Fuzzing entry point: parse `text` as each kind of predictor response
/// (command JSONL lines for `n` inputs, an HTTP `{"outputs": [..]}` body, a
/// chat-completions answer). Returns how many parses succeeded; never panics.
#[doc(hidden)]
pub fn fuzz_parse_responses(text: &str, n: usize) -> usize {
    let lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut ok = usize::from(parse_responses(&lines, n).is_ok());
    #[derive(Deserialize)]
    struct Resp {
        #[allow(dead_code)]
        outputs: Vec<Output>,
    }
    ok += usize::from(serde_json::from_str::<Resp>(text).is_ok());
    ok += usize::from(parse_chat(text).is_ok());
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn response_parsers_never_panic(lines in proptest::collection::vec(".{0,80}", 0..6), n in 0usize..6, text in ".{0,200}") {
            let _ = parse_responses(&lines, n);
            let _ = parse_chat(&text);
        }

        #[test]
        fn well_formed_responses_round_trip(labels in proptest::collection::vec(0u32..10, 1..20)) {
            let lines: Vec<String> = labels.iter().enumerate().rev().map(|(i, l)| format!("{{\"id\":{i},\"output\":{{\"label\":{l}}}}}")).collect();
            let out = parse_responses(&lines, labels.len()).map_err(|e| format!("{e:?}")).unwrap();
            proptest::prop_assert_eq!(out.iter().map(|o| o.label.unwrap_or(99)).collect::<Vec<_>>(), labels);
        }
    }

    #[test]
    fn chat_urls_are_completed() {
        assert_eq!(
            ChatPredictor::new("http://h:1", "m").url(),
            "http://h:1/v1/chat/completions"
        );
        assert_eq!(
            ChatPredictor::new("http://h:1/v1/", "m").url(),
            "http://h:1/v1/chat/completions"
        );
        assert_eq!(
            ChatPredictor::new("http://h:1/x/chat/completions", "m").url(),
            "http://h:1/x/chat/completions"
        );
    }

    #[test]
    fn retries_back_off_then_give_up_and_fatal_is_not_retried() {
        let opts = ExternalOptions {
            retries: 2,
            backoff: Duration::from_millis(1),
            ..Default::default()
        };
        let mut n = 0;
        let r: Result<()> = with_retries(&opts, "x", || {
            n += 1;
            Err(Failure::Transient("busy".into()))
        });
        assert_eq!(n, 3);
        assert!(r.unwrap_err().to_string().contains("after 3 attempts"));
        let mut n = 0;
        let r: Result<()> = with_retries(&opts, "x", || {
            n += 1;
            Err(Failure::Fatal("bad".into()))
        });
        assert_eq!(n, 1);
        assert!(r.is_err());
        let mut n = 0;
        let r = with_retries(&opts, "x", || {
            n += 1;
            if n < 2 {
                Err(Failure::Transient("busy".into()))
            } else {
                Ok(5)
            }
        });
        assert_eq!(r.unwrap(), 5);
    }

    #[test]
    fn batches_keep_order_under_concurrency() {
        let inputs: Vec<Input> = (0..103).map(|i| Input::Features(vec![i as f32])).collect();
        let in_flight = AtomicUsize::new(0);
        let peak = AtomicUsize::new(0);
        let out = run_batched(&inputs, 10, 3, &|b| {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            in_flight.fetch_sub(1, Ordering::SeqCst);
            Ok(b.iter()
                .map(|i| match i {
                    Input::Features(f) => Output {
                        label: Some(f[0] as u32),
                        ..Default::default()
                    },
                    _ => Output::default(),
                })
                .collect())
        })
        .unwrap();
        assert_eq!(
            out.iter().map(|o| o.label.unwrap()).collect::<Vec<_>>(),
            (0..103).collect::<Vec<u32>>()
        );
        assert!(peak.load(Ordering::SeqCst) <= 3);
        let err = run_batched(&inputs, 10, 2, &|b| {
            Ok(vec![Output::default(); b.len() - 1])
        })
        .unwrap_err();
        assert!(err.to_string().contains("9 outputs for 10 inputs"), "{err}");
    }
}
