//! Job priority: 1..=10, higher runs first.
//!
//! CRITICAL 10, HIGH 7–9, NORMAL 4–6, LOW 1–3. A value outside 1..=10 is refused at the
//! edge, so the store and the dispatcher only ever see valid priorities.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A validated priority in 1..=10.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u8")]
pub struct Priority(u8);

/// The named band a priority falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PriorityBand {
    Low,
    Normal,
    High,
    Critical,
}

/// A priority outside 1..=10.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("priority must be between 1 and 10, got {0}")]
pub struct InvalidPriority(pub i64);

impl Priority {
    pub const MIN: Priority = Priority(1);
    pub const MAX: Priority = Priority(10);
    pub const LOW: Priority = Priority(2);
    pub const NORMAL: Priority = Priority(5);
    pub const HIGH: Priority = Priority(7);
    pub const CRITICAL: Priority = Priority(10);

    /// Validates `value` into a priority.
    pub fn new(value: i64) -> Result<Self, InvalidPriority> {
        if (1..=10).contains(&value) {
            Ok(Priority(value as u8))
        } else {
            Err(InvalidPriority(value))
        }
    }

    pub const fn get(self) -> u8 {
        self.0
    }

    pub const fn band(self) -> PriorityBand {
        match self.0 {
            10 => PriorityBand::Critical,
            7..=9 => PriorityBand::High,
            4..=6 => PriorityBand::Normal,
            _ => PriorityBand::Low,
        }
    }

    /// The default priority of a job type when the caller gives none.
    pub fn default_for_type(job_type: &str) -> Priority {
        match job_type {
            "summarize" => Priority(7),
            "generate_podcast" => Priority(5),
            "calculate_similarity" => Priority(3),
            _ => Priority::NORMAL,
        }
    }
}

impl Default for Priority {
    fn default() -> Self {
        Priority::NORMAL
    }
}

impl TryFrom<i64> for Priority {
    type Error = InvalidPriority;
    fn try_from(v: i64) -> Result<Self, Self::Error> {
        Priority::new(v)
    }
}

impl From<Priority> for u8 {
    fn from(p: Priority) -> u8 {
        p.0
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_bands() {
        assert!(Priority::new(0).is_err());
        assert!(Priority::new(11).is_err());
        assert_eq!(Priority::new(10).unwrap().band(), PriorityBand::Critical);
        assert_eq!(Priority::new(7).unwrap().band(), PriorityBand::High);
        assert_eq!(Priority::new(4).unwrap().band(), PriorityBand::Normal);
        assert_eq!(Priority::new(3).unwrap().band(), PriorityBand::Low);
        assert_eq!(Priority::default_for_type("summarize").get(), 7);
    }

    #[test]
    fn serde_refuses_out_of_range() {
        assert!(serde_json::from_str::<Priority>("0").is_err());
        assert_eq!(serde_json::from_str::<Priority>("9").unwrap().get(), 9);
    }
}
