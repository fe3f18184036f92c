//! Embedded datasets: no download, ever.
//!
//! `digits` is the UCI Optical Recognition of Handwritten Digits test set as
//! distributed with scikit-learn (1,797 8x8 images, grey levels 0..=16, 10
//! classes). Source: E. Alpaydin and C. Kaynak, UCI Machine Learning Repository,
//! doi:10.24432/C50P49, licensed CC BY 4.0. Stored as 65 bytes per sample: 64
//! pixels row-major, then the label.

use ndarray::Array2;

use crate::dataset::{Dataset, SampleId};

static DIGITS: &[u8] = include_bytes!("../data/optdigits.bin");

/// Number of samples in [`digits`].
pub const DIGITS_LEN: usize = 1797;
/// Image side of [`digits`] (8x8).
pub const DIGITS_SIDE: usize = 8;

/// The embedded digits dataset: ids `0..1797`, 64 features named `pixel_r_c`, labels 0..=9.
pub fn digits() -> Dataset {
    let d = DIGITS_SIDE * DIGITS_SIDE;
    let n = DIGITS.len() / (d + 1);
    let mut x = Array2::<f32>::zeros((n, d));
    let mut y = Vec::with_capacity(n);
    for (i, rec) in DIGITS.chunks_exact(d + 1).enumerate() {
        for j in 0..d {
            x[[i, j]] = f32::from(rec[j]);
        }
        y.push(u32::from(rec[d]));
    }
    Dataset {
        ids: (0..n as u64).map(SampleId::Num).collect(),
        features: Some(x),
        feature_names: (0..d)
            .map(|j| format!("pixel_{}_{}", j / DIGITS_SIDE, j % DIGITS_SIDE))
            .collect(),
        labels: Some(y),
        source_files: vec!["embedded:uci-optdigits".into()],
        ..Default::default()
    }
}

const COMMON: &[&str] = &[
    "the", "a", "of", "and", "to", "in", "is", "for", "on", "with", "this", "that", "it", "was",
    "as", "at", "by", "from", "about", "we", "they", "new", "more", "after", "before", "over",
    "some", "many", "very", "also",
];

const TOPICS: &[&[&str]] = &[
    &[
        "match", "goal", "team", "coach", "league", "season", "striker", "referee", "stadium",
        "score", "cup", "fans", "injury", "transfer", "final", "keeper",
    ],
    &[
        "market",
        "shares",
        "profit",
        "bank",
        "investor",
        "rates",
        "stock",
        "earnings",
        "merger",
        "inflation",
        "bond",
        "revenue",
        "quarter",
        "fund",
        "trade",
        "debt",
    ],
    &[
        "chip", "software", "cloud", "startup", "robot", "network", "browser", "device", "update",
        "server", "code", "battery", "app", "sensor", "laptop", "data",
    ],
    &[
        "vote", "senate", "election", "minister", "policy", "party", "law", "campaign", "court",
        "reform", "treaty", "debate", "budget", "mayor", "council", "bill",
    ],
    &[
        "virus", "vaccine", "doctor", "patients", "hospital", "trial", "disease", "therapy",
        "clinic", "nurse", "dose", "symptoms", "study", "cancer", "health", "drug",
    ],
    &[
        "film", "album", "actor", "concert", "novel", "festival", "series", "director", "singer",
        "gallery", "premiere", "theatre", "band", "award", "stage", "artist",
    ],
];

/// A synthetic topic-classification text set: `n` short news-like sentences of
/// `k <= 6` classes, each mixing topic words (with 10% drawn from another topic)
/// and common words. Column `text`, labels `0..k`, ids `0..n`.
pub fn synthetic_text(n: usize, k: usize, seed: u64) -> Dataset {
    use rand::Rng;
    let k = k.clamp(2, TOPICS.len());
    let mut rng = crate::rng::seeded(seed);
    let mut texts = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let c = rng.gen_range(0..k);
        let len = rng.gen_range(8..20);
        let words: Vec<&str> = (0..len)
            .map(|_| {
                if rng.gen_bool(0.55) {
                    let t = if rng.gen_bool(0.1) {
                        rng.gen_range(0..k)
                    } else {
                        c
                    };
                    TOPICS[t][rng.gen_range(0..TOPICS[t].len())]
                } else {
                    COMMON[rng.gen_range(0..COMMON.len())]
                }
            })
            .collect();
        texts.push(words.join(" "));
        labels.push(c as u32);
    }
    let mut ds = Dataset::from_texts("text", texts, Some(labels)).unwrap_or_default();
    ds.source_files = vec!["synthetic:text".into()];
    ds
}

/// A synthetic instruction-tuning set: `n` records with `prompt` and `response`
/// fields (questions about the topics of [`synthetic_text`] and plain answers).
pub fn synthetic_instructions(n: usize, seed: u64) -> Dataset {
    use rand::Rng;
    let mut rng = crate::rng::seeded(seed);
    let asks = [
        "Explain",
        "Summarise",
        "What is known about",
        "Give three facts about",
        "Write a short note on",
        "Describe",
    ];
    let mut prompts = Vec::with_capacity(n);
    let mut responses = Vec::with_capacity(n);
    for _ in 0..n {
        let t = TOPICS[rng.gen_range(0..TOPICS.len())];
        let (a, b) = (t[rng.gen_range(0..t.len())], t[rng.gen_range(0..t.len())]);
        let ask = asks[rng.gen_range(0..asks.len())];
        prompts.push(format!("{ask} the {a} and the {b}."));
        responses.push(format!(
            "The {a} relates to the {b} in {} ways; {} {} {}.",
            rng.gen_range(2..9),
            COMMON[rng.gen_range(0..COMMON.len())],
            t[rng.gen_range(0..t.len())],
            COMMON[rng.gen_range(0..COMMON.len())]
        ));
    }
    let mut ds = Dataset::from_texts("prompt", prompts, None).unwrap_or_default();
    ds.text_fields.insert("response".into(), responses);
    ds.source_files = vec!["synthetic:instructions".into()];
    ds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_has_the_published_shape_and_class_counts() {
        let ds = digits();
        ds.validate().unwrap();
        assert_eq!(ds.len(), DIGITS_LEN);
        assert_eq!(ds.n_features(), 64);
        let mut counts = [0usize; 10];
        for &l in ds.labels.as_ref().unwrap() {
            counts[l as usize] += 1;
        }
        // Class sizes of scikit-learn's load_digits.
        assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
        assert!(ds
            .features
            .unwrap()
            .iter()
            .all(|&v| (0.0..=16.0).contains(&v)));
    }
}
