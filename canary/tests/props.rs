//! Property tests: tokens never collide; the scanner finds every planted
//! token wherever it sits (chunk boundaries and parallel range boundaries
//! included), exactly once, with the right line; parsers never panic.
#![allow(clippy::unwrap_used)] // test helpers panic on setup failure by design

use std::collections::HashSet;

use mithridate_canary::registry::{Registry, Site};
use mithridate_canary::scan::{Scanner, Target};
use mithridate_canary::token::{HoneypotKind, SecretKey};
use proptest::prelude::*;

fn registry(seed: u64, n: usize) -> (Registry, Vec<(u64, String)>) {
    let key = SecretKey::from_seed(seed);
    let mut r = Registry::new(&key);
    let mut toks = Vec::new();
    for i in 0..n {
        let (t, h) = r
            .mint(&key, HoneypotKind::ALL[i % 4], Site::file("p"))
            .unwrap();
        toks.push((h.id, t));
    }
    (r, toks)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn tokens_never_collide(seed in any::<u64>(), n in 1usize..400) {
        let (r, toks) = registry(seed, n);
        let set: HashSet<&String> = toks.iter().map(|t| &t.1).collect();
        prop_assert_eq!(set.len(), n);
        let digests: HashSet<&String> = r.honeypots.iter().map(|h| &h.digest).collect();
        prop_assert_eq!(digests.len(), n);
        // No token contains another (the scanner could otherwise confuse them).
        for (_, a) in &toks {
            for (_, b) in &toks {
                prop_assert!(a == b || !a.contains(b.as_str()));
            }
        }
    }

    #[test]
    fn scanning_finds_every_planted_token_wherever_it_sits(
        seed in any::<u64>(),
        filler in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'\n'), Just(b'A'), Just(b'K'), Just(b' '), any::<u8>()], 0..3000),
        places in proptest::collection::vec((0usize..4, 0.0f64..1.0), 1..12),
        chunk in 1usize..64,
        split in 8u64..512,
    ) {
        let (r, toks) = registry(seed, 4);
        let mut text = filler.clone();
        let mut inserted: Vec<(usize, u64)> = Vec::new();
        // Insert from the back so earlier offsets stay valid.
        let mut pos: Vec<(usize, usize)> =
            places.iter().map(|&(k, f)| (k, (f * text.len() as f64) as usize)).collect();
        pos.sort_by_key(|p| std::cmp::Reverse(p.1));
        for (k, at) in pos {
            let t = toks[k].1.as_bytes();
            text.splice(at..at, t.iter().copied());
            for e in &mut inserted {
                e.0 += t.len();
            }
            inserted.push((at, toks[k].0));
        }
        inserted.sort();
        let s = Scanner::builder().registry(&r).chunk_size(chunk).split_above(split).build().unwrap();
        for hits in [s.scan_bytes(&text, "mem"), s.scan_reader(text.as_slice(), "mem").unwrap()] {
            let found: Vec<(usize, u64)> = hits
                .iter()
                .map(|h| match &h.target {
                    Target::Honeypot { honeypot } => (h.offset as usize, honeypot.id),
                    Target::Canary { .. } => (usize::MAX, 0),
                })
                .collect();
            // Filler bytes may complete a prefix only into a non-token, so hits are exactly the insertions.
            prop_assert_eq!(&found, &inserted);
            for h in &hits {
                let line = text[..h.offset as usize].iter().filter(|&&b| b == b'\n').count() as u64 + 1;
                prop_assert_eq!(h.line, line);
            }
        }
    }

    #[test]
    fn exact_canaries_are_found_across_chunk_boundaries(
        pre in "[a-z \n]{0,300}", post in "[a-z \n]{0,300}", chunk in 1usize..40,
    ) {
        let canary = "violet heron granite";
        let text = format!("{pre}{canary}{post}");
        let s = Scanner::builder().exact("c", canary).chunk_size(chunk).build().unwrap();
        let hits = s.scan_reader(text.as_bytes(), "mem").unwrap();
        let expected = text.matches(canary).count();
        prop_assert_eq!(hits.len(), expected);
    }

    #[test]
    fn registry_and_canary_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        std::fs::write(&p, &bytes).unwrap();
        let _ = Registry::load(&p);
        let _ = mithridate_canary::canaries::CanarySet::load(&p);
        let _ = SecretKey::from_hex(&String::from_utf8_lossy(&bytes));
    }
}

#[test]
fn registry_parser_names_the_bad_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("r.json");
    let (mut r, _) = registry(1, 2);
    r.honeypots[1].digest = "abc".into();
    std::fs::write(&p, serde_json::to_string(&r).unwrap()).unwrap();
    let e = Registry::load(&p).unwrap_err().to_string();
    assert!(e.contains("honeypots[1].digest"), "{e}");
}
