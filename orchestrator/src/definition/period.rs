//! Lengths of time as operators write them: humantime durations (`30m`,
//! `2h`, `15days`) or counts of working days (`15 working days`).

use std::fmt;
use std::time::Duration;

const DAY: u64 = 24 * 60 * 60;

/// A length of time in a workflow file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// Elapsed time, as humantime parses it.
    Elapsed(Duration),
    /// A number of working days on a calendar: weekends and public holidays
    /// are skipped and make-up workdays count.
    WorkingDays(u32),
}

impl Period {
    /// Parses `15 working days`, `1 working day` or a humantime duration.
    pub fn parse(text: &str) -> Result<Period, String> {
        let trimmed = text.trim();
        let words: Vec<&str> = trimmed.split_whitespace().collect();
        if let [count, "working", unit] = words.as_slice()
            && matches!(*unit, "day" | "days")
        {
            return match count.parse::<u32>() {
                Ok(n) if n > 0 => Ok(Period::WorkingDays(n)),
                _ => Err(format!(
                    "`{trimmed}`: the number of working days must be a whole number greater than 0"
                )),
            };
        }
        if words.contains(&"working") {
            return Err(format!(
                "`{trimmed}` is not a period: write working days as `15 working days`"
            ));
        }
        match humantime::parse_duration(trimmed) {
            Ok(d) if d.is_zero() => Err(format!(
                "`{trimmed}` is zero: a period must be longer than that"
            )),
            Ok(d) => Ok(Period::Elapsed(d)),
            Err(e) => Err(format!(
                "`{trimmed}` is not a duration ({e}); write e.g. `30s`, `10m`, `2h`, `15days` or `15 working days`"
            )),
        }
    }

    /// The number of whole calendar days, if this is an elapsed period of
    /// whole days. Deadlines are counted in days, never in hours.
    pub fn whole_days(self) -> Option<u32> {
        match self {
            Period::Elapsed(d) if d.as_secs() % DAY == 0 && d.subsec_nanos() == 0 => {
                u32::try_from(d.as_secs() / DAY).ok()
            }
            _ => None,
        }
    }

    pub fn is_working_days(self) -> bool {
        matches!(self, Period::WorkingDays(_))
    }

    /// A lower bound on the elapsed days this period spans, used to compare
    /// periods of different kinds: N working days never take fewer than N
    /// calendar days.
    pub fn min_days(self) -> f64 {
        match self {
            Period::Elapsed(d) => d.as_secs_f64() / DAY as f64,
            Period::WorkingDays(n) => f64::from(n),
        }
    }

    /// An upper bound on the elapsed days this period spans. A run of N
    /// working days fits in N weeks plus the longest holiday (Spring
    /// Festival, 9 days) only loosely, so this is deliberately generous.
    pub fn max_days(self) -> f64 {
        match self {
            Period::Elapsed(d) => d.as_secs_f64() / DAY as f64,
            Period::WorkingDays(n) => f64::from(n) * 7.0 / 5.0 + 10.0,
        }
    }
}

/// Stored in case state as the text an operator would write, so a stored
/// extension reads the same as the workflow file.
impl serde::Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Period::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // humantime would write 35 days as `1month 4days 13h 26m 24s`.
            Period::Elapsed(_) if self.whole_days() == Some(1) => f.write_str("1day"),
            Period::Elapsed(_) if let Some(n) = self.whole_days() => write!(f, "{n}days"),
            Period::Elapsed(d) => write!(f, "{}", humantime::format_duration(*d)),
            Period::WorkingDays(1) => f.write_str("1 working day"),
            Period::WorkingDays(n) => write!(f, "{n} working days"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_and_working_days() {
        assert_eq!(
            Period::parse("30m"),
            Ok(Period::Elapsed(Duration::from_secs(1800)))
        );
        assert_eq!(
            Period::parse("15days").map(Period::whole_days),
            Ok(Some(15))
        );
        assert_eq!(
            Period::parse("15 days").map(Period::whole_days),
            Ok(Some(15))
        );
        assert_eq!(
            Period::parse("15 working days"),
            Ok(Period::WorkingDays(15))
        );
        assert_eq!(Period::parse("1 working day"), Ok(Period::WorkingDays(1)));
        assert_eq!(Period::parse("36h").map(Period::whole_days), Ok(None));
    }

    #[test]
    fn rejects_nonsense_with_a_hint() {
        for bad in [
            "",
            "2 hourz",
            "0s",
            "0 working days",
            "three working days",
            "15 working",
            "x",
        ] {
            let err = Period::parse(bad).expect_err(bad);
            assert!(err.contains('`'), "{bad}: {err}");
        }
        assert!(Period::parse("2 weeks working").is_err());
    }

    #[test]
    fn displays_as_written() {
        assert_eq!(Period::WorkingDays(3).to_string(), "3 working days");
        assert_eq!(Period::Elapsed(Duration::from_secs(7200)).to_string(), "2h");
    }
}
