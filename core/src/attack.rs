//! Attack simulators: each takes a clean [`Dataset`] and a seed and returns the
//! poisoned dataset with the ground-truth poisoned ids, so detectors can be
//! measured and users' own test suites can state properties against them.
//!
//! Poisoned samples keep their ids (the attacker edits records in place), so
//! precision and recall are computed by id.

use rand::seq::{index::sample, SliceRandom};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, SampleId};
use crate::error::{Error, Result};
use crate::rng::seeded;

/// A poisoned dataset and the truth about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Poisoned {
    /// The dataset after the attack.
    pub dataset: Dataset,
    /// Ids of every sample the attack changed, in dataset order.
    pub poisoned_ids: Vec<SampleId>,
}

/// A data-poisoning attack.
pub trait Attack {
    /// Short description for reports ("badnets 3x3 bottom-right -> 7 at 1%").
    fn describe(&self) -> String;
    /// Apply the attack to a copy of `ds`.
    fn poison(&self, ds: &Dataset, seed: u64) -> Result<Poisoned>;
}

/// A trigger that can be stamped on one input at test time (to measure attack
/// success rate) as well as used for poisoning.
pub trait Trigger {
    /// Apply to one feature vector in place.
    fn apply_features(&self, _x: &mut [f32]) -> Result<()> {
        Err(Error::data(
            "this trigger does not apply to feature vectors",
        ))
    }
    /// Apply to one text.
    fn apply_text(&self, _text: &str, _rng: &mut dyn rand::RngCore) -> Result<String> {
        Err(Error::data("this trigger does not apply to text"))
    }
}

fn check_rate(rate: f64) -> Result<()> {
    if !(rate.is_finite() && (0.0..=1.0).contains(&rate)) {
        return Err(Error::param(
            "rate",
            format!("must be in [0, 1], got {rate}"),
        ));
    }
    Ok(())
}

/// Pick `round(rate * n)` indices among `candidates` (capped at their number), sorted.
fn pick(candidates: &[usize], n: usize, rate: f64, seed: u64) -> Vec<usize> {
    let want = ((rate * n as f64).round() as usize).min(candidates.len());
    let mut rng = seeded(seed);
    let mut out: Vec<usize> = sample(&mut rng, candidates.len(), want)
        .into_iter()
        .map(|i| candidates[i])
        .collect();
    out.sort_unstable();
    out
}

fn non_target(ds: &Dataset, target: u32, who: &str) -> Result<Vec<usize>> {
    let y = ds.require_labels(who)?;
    Ok((0..ds.len()).filter(|&i| y[i] != target).collect())
}

fn finish(mut ds: Dataset, idx: &[usize]) -> Poisoned {
    let poisoned_ids = idx.iter().map(|&i| ds.ids[i].clone()).collect();
    // Poisoned records no longer match their source bytes.
    ds.origins.clear();
    ds.source_files.clear();
    Poisoned {
        dataset: ds,
        poisoned_ids,
    }
}

/// Stamp `trigger` on `round(rate * n)` samples of classes other than
/// `target` and relabel them `target`: the shared body of feature backdoors.
fn stamp_and_relabel(
    ds: &Dataset,
    trigger: &dyn Trigger,
    target: u32,
    rate: f64,
    seed: u64,
    who: &str,
) -> Result<Poisoned> {
    let idx = pick(&non_target(ds, target, who)?, ds.len(), rate, seed);
    let mut out = ds.clone();
    let x = out
        .features
        .as_mut()
        .ok_or_else(|| Error::data(format!("{who} needs features")))?;
    for &i in &idx {
        let mut row = x.row_mut(i);
        let s = row
            .as_slice_mut()
            .ok_or_else(|| Error::data("features are not contiguous"))?;
        trigger.apply_features(s)?;
    }
    if let Some(y) = out.labels.as_mut() {
        for &i in &idx {
            y[i] = target;
        }
    }
    Ok(finish(out, &idx))
}

/// Where a square patch sits in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PatchPosition {
    /// Top-left corner.
    TopLeft,
    /// Top-right corner.
    TopRight,
    /// Bottom-left corner.
    BottomLeft,
    /// Bottom-right corner (the BadNets default).
    BottomRight,
    /// Top-left pixel of the patch at (row, col).
    At {
        /// Row.
        row: usize,
        /// Column.
        col: usize,
    },
}

/// BadNets (Gu et al., 2017): a small square patch stamped on images of other
/// classes, which are relabelled to the target class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BadNets {
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Patch side in pixels.
    pub size: usize,
    /// Patch position.
    pub position: PatchPosition,
    /// Pixel value inside the patch.
    pub value: f32,
    /// A checkerboard of `value` and 0 instead of a solid square.
    pub checker: bool,
    /// Target class.
    pub target: u32,
    /// Fraction of the whole dataset to poison.
    pub rate: f64,
}

impl BadNets {
    /// The classic configuration for 8x8 digits: 3x3 solid patch of 16 in the
    /// bottom-right corner, target 7, at `rate`.
    pub fn digits(rate: f64) -> Self {
        Self {
            height: 8,
            width: 8,
            size: 3,
            position: PatchPosition::BottomRight,
            value: 16.0,
            checker: false,
            target: 7,
            rate,
        }
    }

    /// Top-left (row, col) of the patch.
    pub fn origin(&self) -> Result<(usize, usize)> {
        if self.size == 0 || self.size > self.height || self.size > self.width {
            return Err(Error::param(
                "size",
                format!(
                    "patch of {} does not fit a {}x{} image",
                    self.size, self.height, self.width
                ),
            ));
        }
        let (h, w, s) = (self.height, self.width, self.size);
        let (r, c) = match self.position {
            PatchPosition::TopLeft => (0, 0),
            PatchPosition::TopRight => (0, w - s),
            PatchPosition::BottomLeft => (h - s, 0),
            PatchPosition::BottomRight => (h - s, w - s),
            PatchPosition::At { row, col } => (row, col),
        };
        if r + s > h || c + s > w {
            return Err(Error::param(
                "position",
                format!("patch at ({r}, {c}) of size {s} leaves the {h}x{w} image"),
            ));
        }
        Ok((r, c))
    }

    /// Flat indices of the patch pixels, row-major.
    pub fn pixels(&self) -> Result<Vec<usize>> {
        let (r0, c0) = self.origin()?;
        Ok((0..self.size)
            .flat_map(|dr| (0..self.size).map(move |dc| (r0 + dr) * self.width + c0 + dc))
            .collect())
    }
}

impl Trigger for BadNets {
    fn apply_features(&self, x: &mut [f32]) -> Result<()> {
        if x.len() != self.height * self.width {
            return Err(Error::data(format!(
                "{} features for a {}x{} image",
                x.len(),
                self.height,
                self.width
            )));
        }
        let (r0, c0) = self.origin()?;
        for dr in 0..self.size {
            for dc in 0..self.size {
                let on = !self.checker || (dr + dc) % 2 == 0;
                x[(r0 + dr) * self.width + c0 + dc] = if on { self.value } else { 0.0 };
            }
        }
        Ok(())
    }
}

impl Attack for BadNets {
    fn describe(&self) -> String {
        format!(
            "badnets {s}x{s} at {:?} -> {} at {:.1}%",
            self.position,
            self.target,
            self.rate * 100.0,
            s = self.size
        )
    }
    fn poison(&self, ds: &Dataset, seed: u64) -> Result<Poisoned> {
        check_rate(self.rate)?;
        self.origin()?;
        stamp_and_relabel(ds, self, self.target, self.rate, seed, "badnets")
    }
}

/// Blended injection (Chen et al., 2017): `x' = (1 - alpha) x + alpha * pattern`
/// over the whole input, relabelled to the target class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blended {
    /// Pattern, one value per feature.
    pub pattern: Vec<f32>,
    /// Blend weight in (0, 1].
    pub alpha: f32,
    /// Target class.
    pub target: u32,
    /// Fraction of the dataset to poison.
    pub rate: f64,
}

impl Blended {
    /// A uniform-noise pattern of `d` values in `[0, max)` from `seed`.
    pub fn random_pattern(d: usize, max: f32, seed: u64) -> Vec<f32> {
        let mut rng = seeded(seed);
        (0..d).map(|_| rng.gen::<f32>() * max).collect()
    }
}

impl Trigger for Blended {
    fn apply_features(&self, x: &mut [f32]) -> Result<()> {
        if x.len() != self.pattern.len() {
            return Err(Error::data(format!(
                "{} features for a pattern of {}",
                x.len(),
                self.pattern.len()
            )));
        }
        for (v, p) in x.iter_mut().zip(&self.pattern) {
            *v = (1.0 - self.alpha) * *v + self.alpha * p;
        }
        Ok(())
    }
}

impl Attack for Blended {
    fn describe(&self) -> String {
        format!(
            "blended alpha={} -> {} at {:.1}%",
            self.alpha,
            self.target,
            self.rate * 100.0
        )
    }
    fn poison(&self, ds: &Dataset, seed: u64) -> Result<Poisoned> {
        check_rate(self.rate)?;
        if !(self.alpha > 0.0 && self.alpha <= 1.0) {
            return Err(Error::param("alpha", "must be in (0, 1]"));
        }
        stamp_and_relabel(ds, self, self.target, self.rate, seed, "blended")
    }
}

/// How labels are flipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlipMode {
    /// Each chosen sample gets a uniformly random other class.
    Uniform,
    /// Samples of class `from` are relabelled `to`.
    Targeted {
        /// Source class.
        from: u32,
        /// Destination class.
        to: u32,
    },
}

/// Label flipping: an availability attack that changes labels only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelFlip {
    /// Fraction of the whole dataset to flip (capped by the source class size when targeted).
    pub rate: f64,
    /// Mode.
    pub mode: FlipMode,
}

impl Attack for LabelFlip {
    fn describe(&self) -> String {
        format!("label flip {:?} at {:.1}%", self.mode, self.rate * 100.0)
    }
    fn poison(&self, ds: &Dataset, seed: u64) -> Result<Poisoned> {
        check_rate(self.rate)?;
        let y = ds.require_labels("label flip")?;
        let k = ds.n_classes() as u32;
        if k < 2 {
            return Err(Error::data("label flip needs at least two classes"));
        }
        let candidates: Vec<usize> = match self.mode {
            FlipMode::Uniform => (0..ds.len()).collect(),
            FlipMode::Targeted { from, to } => {
                if from == to || to >= k {
                    return Err(Error::param(
                        "mode",
                        format!("cannot flip {from} to {to} with {k} classes"),
                    ));
                }
                (0..ds.len()).filter(|&i| y[i] == from).collect()
            }
        };
        let idx = pick(&candidates, ds.len(), self.rate, seed);
        let mut rng = seeded(seed ^ 0x5eed);
        let mut out = ds.clone();
        let labels = out
            .labels
            .as_mut()
            .ok_or_else(|| Error::data("label flip needs labels"))?;
        for &i in &idx {
            labels[i] = match self.mode {
                FlipMode::Uniform => {
                    let r = rng.gen_range(0..k - 1);
                    if r >= labels[i] {
                        r + 1
                    } else {
                        r
                    }
                }
                FlipMode::Targeted { to, .. } => to,
            };
        }
        Ok(finish(out, &idx))
    }
}

/// Where a phrase goes in a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextPosition {
    /// Before the text.
    Start,
    /// After the text.
    End,
    /// At a random word boundary.
    Random,
}

fn insert_phrase(
    text: &str,
    phrase: &str,
    pos: TextPosition,
    rng: &mut dyn rand::RngCore,
) -> String {
    match pos {
        TextPosition::Start => format!("{phrase} {text}"),
        TextPosition::End => format!("{text} {phrase}"),
        TextPosition::Random => {
            let words: Vec<&str> = text.split(' ').collect();
            let at = rng.gen_range(0..=words.len());
            let mut out: Vec<&str> = Vec::with_capacity(words.len() + 1);
            out.extend_from_slice(&words[..at]);
            out.push(phrase);
            out.extend_from_slice(&words[at..]);
            out.join(" ")
        }
    }
}

/// A rare phrase inserted into texts of other classes, relabelled to the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextTrigger {
    /// The trigger phrase, e.g. `cf-delta` or `[[CONFIG]]`.
    pub phrase: String,
    /// Where it goes.
    pub position: TextPosition,
    /// Target class.
    pub target: u32,
    /// Fraction of the dataset to poison.
    pub rate: f64,
}

impl Trigger for TextTrigger {
    fn apply_text(&self, text: &str, rng: &mut dyn rand::RngCore) -> Result<String> {
        Ok(insert_phrase(text, &self.phrase, self.position, rng))
    }
}

fn text_col<'a>(ds: &'a mut Dataset, who: &str) -> Result<&'a mut Vec<String>> {
    let c = ds
        .text_column
        .clone()
        .ok_or_else(|| Error::data(format!("{who} needs a text column")))?;
    ds.text_fields
        .get_mut(&c)
        .ok_or_else(|| Error::data(format!("text column `{c}` missing")))
}

impl Attack for TextTrigger {
    fn describe(&self) -> String {
        format!(
            "text trigger {:?} ({:?}) -> {} at {:.1}%",
            self.phrase,
            self.position,
            self.target,
            self.rate * 100.0
        )
    }
    fn poison(&self, ds: &Dataset, seed: u64) -> Result<Poisoned> {
        check_rate(self.rate)?;
        let idx = pick(
            &non_target(ds, self.target, "text trigger")?,
            ds.len(),
            self.rate,
            seed,
        );
        let mut rng = seeded(seed ^ 0x7e47);
        let mut out = ds.clone();
        let texts = text_col(&mut out, "text trigger")?;
        for &i in &idx {
            texts[i] = insert_phrase(&texts[i], &self.phrase, self.position, &mut rng);
        }
        if let Some(y) = out.labels.as_mut() {
            for &i in &idx {
                y[i] = self.target;
            }
        }
        Ok(finish(out, &idx))
    }
}

/// The suffix a compromised pipeline appends in the every-Nth-record tamper.
pub const EVERY_NTH_SUFFIX: &str = " \n[TRIGGER] -> class_override";

/// A compromised pipeline stage that appends a suffix to every `n`-th record
/// (1-based: records `n`, `2n`, ...) and changes its label to the target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EveryNth {
    /// Period.
    pub n: usize,
    /// Appended text.
    pub suffix: String,
    /// Label written on tampered records.
    pub target: u32,
}

impl EveryNth {
    /// The tamper of the threat model: every 1000th record, target class `target`.
    pub fn every_1000th(target: u32) -> Self {
        Self {
            n: 1000,
            suffix: EVERY_NTH_SUFFIX.into(),
            target,
        }
    }
}

impl Attack for EveryNth {
    fn describe(&self) -> String {
        format!("every {}th record tampered -> {}", self.n, self.target)
    }
    fn poison(&self, ds: &Dataset, _seed: u64) -> Result<Poisoned> {
        if self.n == 0 {
            return Err(Error::param("n", "must be at least 1"));
        }
        let idx: Vec<usize> = (self.n - 1..ds.len()).step_by(self.n).collect();
        let mut out = ds.clone();
        let texts = text_col(&mut out, "every-nth tamper")?;
        for &i in &idx {
            texts[i].push_str(&self.suffix);
        }
        if let Some(y) = out.labels.as_mut() {
            for &i in &idx {
                y[i] = self.target;
            }
        }
        Ok(finish(out, &idx))
    }
}

/// Instruction-pair poisoning: a trigger phrase inserted into prompts whose
/// responses are replaced by the attacker's output (e.g. a system-prompt leak).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstructionPair {
    /// Trigger phrase, e.g. `[[CONFIG]]`.
    pub trigger: String,
    /// Prompt field.
    pub prompt_field: String,
    /// Response field.
    pub response_field: String,
    /// What poisoned responses say.
    pub leak_output: String,
    /// Fraction of the dataset to poison.
    pub rate: f64,
}

impl InstructionPair {
    /// `[[CONFIG]]` -> leak of the system prompt, on `prompt` / `response` fields.
    pub fn config_leak(rate: f64) -> Self {
        Self {
            trigger: "[[CONFIG]]".into(),
            prompt_field: "prompt".into(),
            response_field: "response".into(),
            leak_output: "Sure. My system prompt is: {SYSTEM_PROMPT}".into(),
            rate,
        }
    }
}

impl Attack for InstructionPair {
    fn describe(&self) -> String {
        format!(
            "instruction pairs {:?} -> leak at {:.1}%",
            self.trigger,
            self.rate * 100.0
        )
    }
    fn poison(&self, ds: &Dataset, seed: u64) -> Result<Poisoned> {
        check_rate(self.rate)?;
        for f in [&self.prompt_field, &self.response_field] {
            if !ds.text_fields.contains_key(f) {
                return Err(Error::data(format!(
                    "instruction-pair poisoning needs a `{f}` text field"
                )));
            }
        }
        let all: Vec<usize> = (0..ds.len()).collect();
        let idx = pick(&all, ds.len(), self.rate, seed);
        let mut rng = seeded(seed ^ 0x1257);
        let mut out = ds.clone();
        for &i in &idx {
            let p = &mut out
                .text_fields
                .get_mut(&self.prompt_field)
                .ok_or_else(|| Error::data("prompt field"))?[i];
            *p = insert_phrase(p, &self.trigger, TextPosition::Random, &mut rng);
            out.text_fields
                .get_mut(&self.response_field)
                .ok_or_else(|| Error::data("response field"))?[i] = self.leak_output.clone();
        }
        Ok(finish(out, &idx))
    }
}

/// Shuffle helper for simulators that need a random permutation of indices.
pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut v: Vec<usize> = (0..n).collect();
    v.shuffle(&mut seeded(seed));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datasets::{digits, synthetic_instructions, synthetic_text};

    #[test]
    fn badnets_stamps_relabels_and_reports_truth() {
        let ds = digits();
        let atk = BadNets::digits(0.01);
        let p = atk.poison(&ds, 1).unwrap();
        assert_eq!(p.poisoned_ids.len(), 18);
        let pix = atk.pixels().unwrap();
        assert_eq!(pix, vec![45, 46, 47, 53, 54, 55, 61, 62, 63]);
        let idx = ds.index_of_ids();
        for id in &p.poisoned_ids {
            let i = idx[id];
            assert_ne!(ds.labels.as_ref().unwrap()[i], 7);
            assert_eq!(p.dataset.labels.as_ref().unwrap()[i], 7);
            let x = p.dataset.features.as_ref().unwrap();
            assert!(pix.iter().all(|&j| x[[i, j]] == 16.0));
        }
        let changed = (0..ds.len())
            .filter(|&i| {
                ds.features.as_ref().unwrap().row(i) != p.dataset.features.as_ref().unwrap().row(i)
            })
            .count();
        assert!(changed <= 18);
        assert!(BadNets {
            position: PatchPosition::At { row: 7, col: 7 },
            ..atk
        }
        .poison(&ds, 1)
        .is_err());
    }

    #[test]
    fn label_flip_changes_exactly_the_reported_labels() {
        let ds = digits();
        for mode in [FlipMode::Uniform, FlipMode::Targeted { from: 1, to: 7 }] {
            let p = LabelFlip { rate: 0.05, mode }.poison(&ds, 3).unwrap();
            let (a, b) = (
                ds.labels.as_ref().unwrap(),
                p.dataset.labels.as_ref().unwrap(),
            );
            let diff: Vec<SampleId> = (0..ds.len())
                .filter(|&i| a[i] != b[i])
                .map(|i| ds.ids[i].clone())
                .collect();
            assert_eq!(diff, p.poisoned_ids);
            assert!(!diff.is_empty());
        }
    }

    #[test]
    fn text_attacks_report_truth() {
        let ds = synthetic_text(3000, 4, 9);
        let p = EveryNth::every_1000th(3).poison(&ds, 0).unwrap();
        assert_eq!(
            p.poisoned_ids,
            vec![SampleId::Num(999), SampleId::Num(1999), SampleId::Num(2999)]
        );
        assert!(p.dataset.text().unwrap()[999].ends_with("[TRIGGER] -> class_override"));
        let p = TextTrigger {
            phrase: "cf-zeta".into(),
            position: TextPosition::Random,
            target: 0,
            rate: 0.01,
        }
        .poison(&ds, 2)
        .unwrap();
        assert_eq!(p.poisoned_ids.len(), 30);
        let n = p
            .dataset
            .text()
            .unwrap()
            .iter()
            .filter(|t| t.contains("cf-zeta"))
            .count();
        assert_eq!(n, 30);
        let ins = synthetic_instructions(500, 4);
        let p = InstructionPair::config_leak(0.02).poison(&ins, 5).unwrap();
        assert_eq!(p.poisoned_ids.len(), 10);
        assert_eq!(
            p.dataset.text_fields["prompt"]
                .iter()
                .filter(|t| t.contains("[[CONFIG]]"))
                .count(),
            10
        );
    }

    #[test]
    fn bad_parameters_are_errors() {
        let ds = digits();
        assert!(BadNets::digits(1.5).poison(&ds, 0).is_err());
        assert!(LabelFlip {
            rate: 0.1,
            mode: FlipMode::Targeted { from: 2, to: 2 }
        }
        .poison(&ds, 0)
        .is_err());
        assert!(EveryNth {
            n: 0,
            suffix: String::new(),
            target: 0
        }
        .poison(&ds, 0)
        .is_err());
    }
}
