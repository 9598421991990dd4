//! How a call will go, decided the moment it is placed: pure functions of the configuration, the
//! called number and how many times that number was called before, so a run can be reproduced.
//!
//! Two rules pick the ending ([`Ending`]): the called number's last digit (the default, so a test
//! chooses an outcome by choosing a number), or a weighted [`Mix`] drawn with a seed (for
//! benchmarks). A seeded draw is keyed by (seed, number, occurrence) rather than by arrival order,
//! so the same contact gets the same sequence of outcomes whatever order concurrent workers dial
//! in, and its retry gets a fresh draw.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How a call ends if nobody hangs it up early (the contract's type, shared with the dial
/// worker's in-process simulator).
pub use shared::carrier_sim::Ending;

/// A malformed `CARRIER_SIM_MIX` or `CARRIER_SIM_TALK_MS`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanSyntaxError(String);

/// Weights of each ending, from `answered=0.7,busy=0.1,no-answer=0.2`. Weights need not sum to
/// 1 (they are normalised); an ending not named has weight 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Mix {
    /// Cumulative normalised weights in [`Ending::ALL`] order; the last is 1.
    cumulative: [f64; 5],
}

impl Mix {
    /// The probability of `ending` (normalised weight).
    pub fn probability(&self, ending: Ending) -> f64 {
        let i = Ending::ALL
            .iter()
            .position(|e| *e == ending)
            .unwrap_or_default();
        let below = if i == 0 { 0.0 } else { self.cumulative[i - 1] };
        self.cumulative[i] - below
    }

    /// The ending for a uniform draw `u` in [0, 1).
    pub fn pick(&self, u: f64) -> Ending {
        for (ending, bound) in Ending::ALL.iter().zip(self.cumulative) {
            if u < bound {
                return *ending;
            }
        }
        // Only reachable through rounding at u ≈ 1: the last ending with a weight.
        Ending::ALL
            .iter()
            .rev()
            .find(|e| self.probability(**e) > 0.0)
            .copied()
            .unwrap_or(Ending::Answered)
    }
}

impl FromStr for Mix {
    type Err = PlanSyntaxError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut weights = [0.0f64; 5];
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| PlanSyntaxError(format!("expected name=weight, found {part:?}")))?;
            let name = name.trim().to_ascii_lowercase();
            let ending = Ending::parse_name(&name).ok_or_else(|| {
                PlanSyntaxError(format!(
                    "unknown outcome {name:?} (expected answered, busy, no-answer, failed, voicemail)"
                ))
            })?;
            let weight: f64 = weight
                .trim()
                .parse()
                .map_err(|_| PlanSyntaxError(format!("weight of {name} is not a number")))?;
            if !weight.is_finite() || weight < 0.0 {
                return Err(PlanSyntaxError(format!(
                    "weight of {name} must be a non-negative number"
                )));
            }
            let i = Ending::ALL
                .iter()
                .position(|e| *e == ending)
                .unwrap_or_default();
            weights[i] += weight;
        }
        let total: f64 = weights.iter().sum();
        if total <= 0.0 {
            return Err(PlanSyntaxError(
                "at least one outcome needs a positive weight".into(),
            ));
        }
        let mut cumulative = [0.0; 5];
        let mut running = 0.0;
        for (i, w) in weights.iter().enumerate() {
            running += w / total;
            cumulative[i] = running;
        }
        // Rounding must not leave a gap below 1 that no ending covers.
        cumulative[4] = 1.0;
        Ok(Self { cumulative })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = Ending::ALL
            .iter()
            .filter(|e| self.probability(**e) > 0.0)
            .map(|e| format!("{}={:.4}", e.as_str(), self.probability(*e)))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// How long an answered call talks: a fixed time, or uniform in an inclusive range (`50-500`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TalkTime {
    /// Always this many milliseconds.
    Fixed(u64),
    /// Uniform between the two bounds, in milliseconds, inclusive.
    Uniform(u64, u64),
}

impl TalkTime {
    /// The talk time for a uniform draw `u` in [0, 1).
    pub fn pick(self, u: f64) -> Duration {
        match self {
            Self::Fixed(ms) => Duration::from_millis(ms),
            Self::Uniform(lo, hi) => {
                let span = (hi - lo + 1) as f64;
                let offset = ((u * span) as u64).min(hi - lo);
                Duration::from_millis(lo + offset)
            }
        }
    }
}

impl FromStr for TalkTime {
    type Err = PlanSyntaxError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ms = |t: &str| {
            t.trim()
                .parse::<u64>()
                .map_err(|_| PlanSyntaxError(format!("{t:?} is not a whole number of ms")))
        };
        match s.split_once('-') {
            None => Ok(Self::Fixed(ms(s)?)),
            Some((lo, hi)) => {
                let (lo, hi) = (ms(lo)?, ms(hi)?);
                if lo > hi {
                    return Err(PlanSyntaxError(format!("range {lo}-{hi} runs backwards")));
                }
                Ok(if lo == hi {
                    Self::Fixed(lo)
                } else {
                    Self::Uniform(lo, hi)
                })
            }
        }
    }
}

impl fmt::Display for TalkTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(ms) => write!(f, "{ms}"),
            Self::Uniform(lo, hi) => write!(f, "{lo}-{hi}"),
        }
    }
}

/// What decides every call's fate.
#[derive(Debug, Clone, PartialEq)]
pub struct Planner {
    /// `None`: the digit rule; `Some`: a seeded draw from the mix.
    pub mix: Option<Mix>,
    /// How long answered calls (and voicemails) last.
    pub talk: TalkTime,
    /// Seeds every draw (the mix and a talk-time range).
    pub seed: u64,
}

/// One call's fate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// How it ends.
    pub ending: Ending,
    /// How long it talks once connected (irrelevant when it does not connect).
    pub talk: Duration,
}

impl Planner {
    /// The plan for the `occurrence`-th call (0-based) this simulator receives to `number`.
    pub fn plan(&self, number: &str, occurrence: u64) -> Plan {
        let ending = match &self.mix {
            None => Ending::by_last_digit(number),
            Some(mix) => mix.pick(unit(self.seed, number, occurrence, 0)),
        };
        let talk = self.talk.pick(unit(self.seed, number, occurrence, 1));
        Plan { ending, talk }
    }
}

/// A uniform draw in [0, 1) determined by its key: FNV-1a over the number, then SplitMix64
/// finalisers mixing in the seed, the occurrence and which draw of the call this is. Stable across
/// Rust releases and platforms (unlike `DefaultHasher`).
pub fn unit(seed: u64, number: &str, occurrence: u64, stream: u64) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in number.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut x = splitmix(seed ^ h);
    x = splitmix(x ^ occurrence);
    x = splitmix(x ^ stream);
    // The top 53 bits make an exactly representable fraction in [0, 1).
    (x >> 11) as f64 / (1u64 << 53) as f64
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn digit_rule_matches_the_contract() {
        let expected = [
            Ending::Answered,
            Ending::Answered,
            Ending::Answered,
            Ending::Answered,
            Ending::Answered,
            Ending::Answered,
            Ending::Busy,
            Ending::NoAnswer,
            Ending::Failed,
            Ending::Voicemail,
        ];
        for (digit, ending) in expected.iter().enumerate() {
            assert_eq!(
                Ending::by_last_digit(&format!("+1201555010{digit}")),
                *ending
            );
        }
        assert_eq!(Ending::by_last_digit(""), Ending::Failed);
    }

    #[test]
    fn mix_parses_and_normalises() {
        let mix: Mix = "answered=7, busy=1,no-answer=2".parse().unwrap();
        assert!((mix.probability(Ending::Answered) - 0.7).abs() < 1e-9);
        assert!((mix.probability(Ending::NoAnswer) - 0.2).abs() < 1e-9);
        assert_eq!(mix.probability(Ending::Voicemail), 0.0);
        assert_eq!(mix.pick(0.0), Ending::Answered);
        assert_eq!(mix.pick(0.75), Ending::Busy);
        assert_eq!(mix.pick(0.999_999), Ending::NoAnswer);
    }

    #[test]
    fn bad_mixes_are_rejected() {
        for bad in [
            "", "answered", "hangup=1", "busy=-1", "busy=x", "busy=0", "busy=NaN",
        ] {
            assert!(bad.parse::<Mix>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn talk_time_forms() {
        assert_eq!("2000".parse::<TalkTime>().unwrap(), TalkTime::Fixed(2000));
        assert_eq!(
            "50-500".parse::<TalkTime>().unwrap(),
            TalkTime::Uniform(50, 500)
        );
        assert_eq!("7-7".parse::<TalkTime>().unwrap(), TalkTime::Fixed(7));
        assert!("500-50".parse::<TalkTime>().is_err());
        assert!("soon".parse::<TalkTime>().is_err());
        let t = TalkTime::Uniform(50, 500);
        assert_eq!(t.pick(0.0), Duration::from_millis(50));
        assert_eq!(t.pick(0.999_999_9), Duration::from_millis(500));
    }

    #[test]
    fn seeded_mix_follows_its_weights() {
        let planner = Planner {
            mix: Some("answered=0.7,busy=0.1,no-answer=0.2".parse().unwrap()),
            talk: TalkTime::Fixed(0),
            seed: 42,
        };
        let n = 20_000;
        let mut counts = [0usize; 5];
        for i in 0..n {
            let plan = planner.plan(&format!("+1201{i:07}"), 0);
            counts[Ending::ALL.iter().position(|e| *e == plan.ending).unwrap()] += 1;
        }
        let share = |i: usize| counts[i] as f64 / n as f64;
        assert!((share(0) - 0.7).abs() < 0.02, "{counts:?}");
        assert!((share(1) - 0.1).abs() < 0.02, "{counts:?}");
        assert!((share(2) - 0.2).abs() < 0.02, "{counts:?}");
        assert_eq!(counts[3] + counts[4], 0);
    }

    proptest! {
        #[test]
        fn plans_are_reproducible(seed: u64, number in "\\+1[2-9][0-9]{9}", occurrence in 0u64..10) {
            let planner = Planner {
                mix: Some("answered=1,busy=1,no-answer=1,failed=1,voicemail=1".parse().unwrap()),
                talk: TalkTime::Uniform(50, 500),
                seed,
            };
            prop_assert_eq!(planner.plan(&number, occurrence), planner.clone().plan(&number, occurrence));
        }

        #[test]
        fn draws_stay_in_range(seed: u64, number in ".{0,20}", occurrence: u64, stream in 0u64..4) {
            let u = unit(seed, &number, occurrence, stream);
            prop_assert!((0.0..1.0).contains(&u));
        }

        #[test]
        fn talk_range_is_inclusive_and_bounded(lo in 0u64..10_000, width in 0u64..10_000, u in 0.0f64..1.0) {
            let t = TalkTime::Uniform(lo, lo + width + 1).pick(u).as_millis() as u64;
            prop_assert!(t >= lo && t <= lo + width + 1);
        }

        #[test]
        fn pick_never_chooses_a_zero_weight(weights in proptest::collection::vec(0u8..4, 5), u in 0.0f64..1.0) {
            prop_assume!(weights.iter().any(|w| *w > 0));
            let spec: Vec<String> = Ending::ALL.iter().zip(&weights).map(|(e, w)| format!("{}={w}", e.as_str())).collect();
            let mix: Mix = spec.join(",").parse().unwrap();
            let picked = mix.pick(u);
            prop_assert!(mix.probability(picked) > 0.0);
        }

        #[test]
        fn digit_rule_is_total(number in "\\+[1-9][0-9]{7,14}") {
            let last = number.bytes().last().unwrap() - b'0';
            let ending = Ending::by_last_digit(&number);
            prop_assert_eq!(ending.connects(), last <= 5 || last == 9);
        }
    }
}
