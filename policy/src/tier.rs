//! Risk tiers and the controls each one requires.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A risk tier, from the guide the project starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Provenance and a clean validation set; backdoor tests before production use.
    Low,
    /// Provenance, anomaly detection, continuous validation; robust training
    /// optional; canaries on by default.
    Medium,
    /// All five layers, DP or certified training, backdoor tests on every
    /// release, only vetted (signed, allow-listed) sources.
    High,
}

impl Tier {
    /// All tiers, low to high.
    pub const ALL: [Tier; 3] = [Tier::Low, Tier::Medium, Tier::High];

    /// One sentence stating what the tier requires.
    pub fn requirement(self) -> &'static str {
        match self {
            Tier::Low => "provenance and a clean validation set; backdoor tests before production use",
            Tier::Medium => {
                "provenance, anomaly detection, continuous validation; robust training optional; canaries on by default"
            }
            Tier::High => {
                "all five layers, DP or certified training, backdoor tests on every release, only vetted (signed, allow-listed) sources"
            }
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tier::Low => "low",
            Tier::Medium => "medium",
            Tier::High => "high",
        })
    }
}

impl FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "low" => Ok(Tier::Low),
            "medium" => Ok(Tier::Medium),
            "high" => Ok(Tier::High),
            o => Err(format!("unknown tier {o:?} (expected high, medium or low)")),
        }
    }
}
