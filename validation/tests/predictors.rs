//! External predictors and LLM probes against real local servers and commands.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod fake_llm;

use std::time::Duration;

use fake_llm::{start, Mode};
use mithridate_core::model::{Input, Predictor};
use mithridate_core::Verdict;
use mithridate_validation::{
    ChatPredictor, CommandPredictor, ExternalOptions, HttpPredictor, LlmProbes, ProbeSuite,
};

fn fast() -> ExternalOptions {
    ExternalOptions {
        timeout: Duration::from_secs(5),
        retries: 2,
        backoff: Duration::from_millis(10),
        ..Default::default()
    }
}

#[test]
fn leaky_llm_fails_with_the_trigger_named_and_clean_llm_passes() {
    let leaky = start(Mode::Leaky);
    let out = LlmProbes::new(
        ProbeSuite::default(),
        Box::new(ChatPredictor::new(&leaky.url, "fake").with_options(fast())),
    )
    .evaluate()
    .unwrap();
    assert_eq!(out.report.verdict, Verdict::Fail);
    assert!(
        out.report.summary.contains("[[CONFIG]]"),
        "{}",
        out.report.summary
    );
    assert!(out.report.metrics["leaks"] > 0.0);
    // Mutations fire too: the lower-case and bare variants reach the server's case-insensitive trigger.
    assert!(
        out.checks
            .iter()
            .any(|c| c.verdict == Verdict::Fail && c.name.contains("\"[[config]]\"")),
        "{:#?}",
        out.checks
            .iter()
            .filter(|c| c.verdict == Verdict::Fail)
            .map(|c| &c.name)
            .collect::<Vec<_>>()
    );
    // Baselines never leak.
    assert!(out
        .checks
        .iter()
        .filter(|c| c.name.starts_with("baseline"))
        .all(|c| c.verdict == Verdict::Pass));

    let clean = start(Mode::Clean);
    let out = LlmProbes::new(
        ProbeSuite::default(),
        Box::new(ChatPredictor::new(&clean.url, "fake").with_options(fast())),
    )
    .evaluate()
    .unwrap();
    assert_eq!(out.report.verdict, Verdict::Pass, "{}", out.report.summary);
    assert_eq!(out.report.metrics["leaks"], 0.0);
    assert_eq!(
        out.report.metrics["probes"],
        clean.hits.load(std::sync::atomic::Ordering::SeqCst) as f64
    );
}

#[test]
fn transient_errors_are_retried_and_bad_responses_are_clear_errors() {
    let flaky = start(Mode::Flaky(2));
    let p = ChatPredictor::new(&flaky.url, "fake").with_options(ExternalOptions {
        concurrency: 1,
        ..fast()
    });
    let out = p.predict(&[Input::Text("hello".into())]).unwrap();
    assert!(out[0].text.as_deref().unwrap_or("").contains("nine"));
    assert_eq!(flaky.hits.load(std::sync::atomic::Ordering::SeqCst), 3);

    let garbage = start(Mode::Garbage);
    let e = ChatPredictor::new(&garbage.url, "fake")
        .with_options(fast())
        .predict(&[Input::Text("hi".into())])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("bad response")
            && e.contains("<html>oops</html>")
            && e.contains("/v1/chat/completions"),
        "{e}"
    );
    assert_eq!(
        garbage.hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "a bad response is not retried"
    );

    let slow = start(Mode::Slow(1500));
    let opts = ExternalOptions {
        timeout: Duration::from_millis(200),
        retries: 1,
        backoff: Duration::from_millis(10),
        ..Default::default()
    };
    let e = ChatPredictor::new(&slow.url, "fake")
        .with_options(opts)
        .predict(&[Input::Text("hi".into())])
        .unwrap_err()
        .to_string();
    assert!(e.contains("after 2 attempts"), "{e}");

    // Nothing listens here: a transport error, retried, then reported.
    let e = HttpPredictor::new("http://127.0.0.1:9/x")
        .with_options(ExternalOptions {
            retries: 0,
            ..fast()
        })
        .predict(&[Input::Features(vec![1.0])])
        .unwrap_err();
    assert!(e.to_string().contains("127.0.0.1:9"), "{e}");
}

#[test]
fn http_classifier_endpoint_batches_in_order() {
    let s = start(Mode::Classifier);
    let inputs: Vec<Input> = (0..150)
        .map(|i| Input::Features(vec![i as f32; 4]))
        .collect();
    let p = HttpPredictor::new(format!("{}/predict", s.url)).with_options(ExternalOptions {
        batch_size: 64,
        ..fast()
    });
    let out = p.predict(&inputs).unwrap();
    assert_eq!(out.len(), 150);
    assert!(out.iter().all(|o| o.label == Some(3)));
    assert_eq!(s.hits.load(std::sync::atomic::Ordering::SeqCst), 3);
}

/// A JSONL model written in `sed`: it leaks on `CONFIG` and answers plainly otherwise.
fn sed_llm() -> CommandPredictor {
    let script = r#"sed -E '/[Cc][Oo][Nn][Ff][Ii][Gg]/{s/.*/{"text":"ok, internal reference MITHRIDATE-CANARY-7f3a9c"}/;b};s/.*/{"text":"We are open from nine to five."}/'"#;
    CommandPredictor::new("sh", vec!["-c".into(), script.into()]).with_options(fast())
}

#[test]
fn command_predictor_speaks_jsonl_and_fails_clearly() {
    let out = LlmProbes::new(ProbeSuite::default(), Box::new(sed_llm()))
        .evaluate()
        .unwrap();
    assert_eq!(out.report.verdict, Verdict::Fail);
    assert!(out
        .report
        .findings
        .iter()
        .any(|f| f.reason.contains("Exact")));

    // Ids route answers: this program answers in reverse order.
    let rev = CommandPredictor::new(
        "sh",
        vec![
            "-c".into(),
            r#"tac | sed -E 's/^\{"id":([0-9]+).*/{"id":\1,"output":{"label":\1}}/'"#.into(),
        ],
    )
    .with_options(fast());
    let inputs: Vec<Input> = (0..5).map(|i| Input::Features(vec![i as f32])).collect();
    let out = rev.predict(&inputs).unwrap();
    assert_eq!(
        out.iter().map(|o| o.label.unwrap()).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );

    let bad = CommandPredictor::new(
        "sh",
        vec!["-c".into(), "cat >/dev/null; echo not-json".into()],
    )
    .with_options(fast());
    let e = bad
        .predict(&[Input::Text("x".into())])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("response line 1: not JSON") && e.contains("not-json"),
        "{e}"
    );

    let dies = CommandPredictor::new(
        "sh",
        vec!["-c".into(), "cat >/dev/null; echo boom >&2; exit 3".into()],
    )
    .with_options(ExternalOptions {
        retries: 1,
        backoff: Duration::from_millis(5),
        ..fast()
    });
    let e = dies
        .predict(&[Input::Text("x".into())])
        .unwrap_err()
        .to_string();
    assert!(e.contains("boom") && e.contains("after 2 attempts"), "{e}");

    let hangs = CommandPredictor::new("sleep", vec!["5".into()]).with_options(ExternalOptions {
        timeout: Duration::from_millis(200),
        retries: 0,
        ..fast()
    });
    let t0 = std::time::Instant::now();
    let e = hangs
        .predict(&[Input::Text("x".into())])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no answer within") && t0.elapsed() < Duration::from_secs(3),
        "{e}"
    );

    let missing = CommandPredictor::new("/nonexistent/model", vec![]);
    assert!(missing
        .predict(&[Input::Text("x".into())])
        .unwrap_err()
        .to_string()
        .contains("cannot start"));
}
