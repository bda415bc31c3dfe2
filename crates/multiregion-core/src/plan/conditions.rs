//! Status conditions that keep their lastTransitionTime while their status
//! stays the same, so rewriting them changes nothing.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Builds the new condition list from the previous one.
pub struct Conditions<'a> {
    previous: &'a [Condition],
    now: Timestamp,
    generation: Option<i64>,
    out: Vec<Condition>,
}

impl<'a> Conditions<'a> {
    pub fn new(previous: &'a [Condition], now: Timestamp, generation: Option<i64>) -> Self {
        Conditions {
            previous,
            now,
            generation,
            out: Vec::new(),
        }
    }

    pub fn set(&mut self, type_: &str, status: bool, reason: &str, message: impl Into<String>) {
        let status = if status { "True" } else { "False" };
        self.put(type_, status, reason, message.into());
    }

    /// A condition nothing is known of yet.
    pub fn unknown(&mut self, type_: &str, reason: &str, message: impl Into<String>) {
        self.put(type_, "Unknown", reason, message.into());
    }

    fn put(&mut self, type_: &str, status: &str, reason: &str, message: String) {
        let last_transition_time = self
            .previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or(Time(self.now));
        self.out.push(Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            last_transition_time,
            observed_generation: self.generation,
        });
    }

    pub fn finish(self) -> Vec<Condition> {
        self.out
    }

    /// Puts the conditions set here into an existing list, replacing those
    /// of the same types.
    pub fn merge_into(self, list: &mut Vec<Condition>) {
        for condition in self.out {
            list.retain(|c| c.type_ != condition.type_);
            list.push(condition);
        }
    }
}

/// True when the named condition is True in the list.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let t0 = Timestamp::from_second(1_800_000_000).unwrap();
        let t1 = Timestamp::from_second(1_800_000_100).unwrap();
        let mut c = Conditions::new(&[], t0, Some(1));
        c.set("Ready", true, "Serving", "on us-east");
        let first = c.finish();
        let mut c = Conditions::new(&first, t1, Some(1));
        c.set("Ready", true, "Serving", "on eu-west");
        let second = c.finish();
        assert_eq!(second[0].last_transition_time, Time(t0));
        let mut c = Conditions::new(&second, t1, Some(1));
        c.set("Ready", false, "NoHealthyRegion", "");
        assert_eq!(c.finish()[0].last_transition_time, Time(t1));
        assert!(is_true(&first, "Ready"));
    }
}
