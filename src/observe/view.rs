//! What one observer publishes: per region, what its last probe said, and
//! since when a run of failed probes lasts.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::plan::observers::Seen;

/// One probe's word on a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Word {
    /// Its API server answered ready.
    Serving,
    /// Its API server did not answer (refused, timed out, not ready).
    Failing,
    /// Nothing either way: a troubled answer (429, 5xx, 401, 403), or no
    /// client (the Region's Secret is the hub's problem).
    Unknown,
}

/// One region in the published view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seen: Word,
    /// With `Failing`: the first failed probe of the current run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
}

/// An observer's view of every region, as published on its Lease.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct View(pub BTreeMap<String, Entry>);

impl View {
    /// The view after a round of probes at `now`: a run of failures keeps
    /// the time it began; regions no longer listed are dropped.
    pub fn next(&self, probed: BTreeMap<String, Word>, now: Timestamp) -> View {
        View(
            probed
                .into_iter()
                .map(|(region, seen)| {
                    let since = match seen {
                        Word::Failing => Some(
                            self.0
                                .get(&region)
                                .and_then(|e| e.since.filter(|_| e.seen == Word::Failing))
                                .unwrap_or(now),
                        ),
                        _ => None,
                    };
                    (region, Entry { seen, since })
                })
                .collect(),
        )
    }

    /// What it says of one region, as the decision reads it.
    pub fn seen(&self, region: &str) -> Seen {
        match self.0.get(region) {
            Some(Entry {
                seen: Word::Serving,
                ..
            }) => Seen::Serving,
            Some(Entry {
                seen: Word::Failing,
                since,
            }) => Seen::Failing {
                since: since.unwrap_or(Timestamp::UNIX_EPOCH),
            },
            _ => Seen::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn probed(words: &[(&str, Word)]) -> BTreeMap<String, Word> {
        words.iter().map(|(r, w)| (r.to_string(), *w)).collect()
    }

    #[test]
    fn a_run_of_failures_keeps_its_start_and_a_good_probe_ends_it() {
        let v = View::default().next(probed(&[("a", Word::Failing), ("b", Word::Serving)]), at(0));
        let v = v.next(probed(&[("a", Word::Failing), ("b", Word::Serving)]), at(5));
        assert_eq!(v.seen("a"), Seen::Failing { since: at(0) });
        assert_eq!(v.seen("b"), Seen::Serving);
        let v = v.next(probed(&[("a", Word::Serving)]), at(10));
        assert_eq!(v.seen("a"), Seen::Serving);
        assert_eq!(
            v.seen("b"),
            Seen::Unknown,
            "a region no longer listed is dropped"
        );
        let v = v.next(probed(&[("a", Word::Failing)]), at(15));
        assert_eq!(v.seen("a"), Seen::Failing { since: at(15) }, "a new run");
    }

    #[test]
    fn an_unchanged_view_is_equal_so_nothing_is_written_for_it() {
        let words = probed(&[("a", Word::Failing), ("b", Word::Unknown)]);
        let v = View::default().next(words.clone(), at(0));
        assert_eq!(v.next(words, at(5)), v);
    }

    #[test]
    fn the_published_form_reads_back() {
        let v = View::default().next(probed(&[("a", Word::Failing), ("b", Word::Serving)]), at(0));
        let text = serde_json::to_string(&v).unwrap();
        assert!(
            text.starts_with("{\"a\":{\"seen\":\"Failing\",\"since\":"),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<View>(&text).unwrap(), v);
    }
}
