//! Home-region routing (ActiveActive): who serves each home region's users.
//!
//! A home region serves its own users while it carries traffic. When it
//! does not (Unhealthy, drained, cordoned), they go to the first region in
//! list order that does, and come back once the home region has been
//! Healthy for `failover.failbackHoldSeconds` (a region that has just come
//! back is not trusted with its users at once).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::rounds::RegionView;
use super::{Event, EventReason, Inputs};
use crate::api::HomeRoute;

/// For each region with a `home`, in spec order, the region that serves its
/// users after this decision. `weights` are the decided weights and
/// `ramping` whether each region is still climbing the failback steps, in
/// the order of `regions`: users go home only to a region at full weight.
pub(super) fn route(
    inputs: &Inputs,
    regions: &[RegionView],
    weights: &[i32],
    ramping: &[bool],
) -> Vec<HomeRoute> {
    let serving = |name: &str| {
        regions
            .iter()
            .zip(weights)
            .zip(ramping.iter().chain(std::iter::repeat(&false)))
            .any(|((r, w), ramp)| r.name() == name && *w > 0 && !ramp)
    };
    regions
        .iter()
        .filter(|r| r.spec.home.is_some())
        .map(|home| {
            let previous = inputs.previous.homes.iter().find(|h| h.home == home.name());
            let served_by = served_by(inputs, home, previous, regions, &serving);
            let since = match previous {
                Some(p) if p.served_by == served_by => p.since.clone(),
                _ => Some(Time(inputs.now)),
            };
            HomeRoute {
                home: home.name().to_string(),
                served_by,
                since,
            }
        })
        .collect()
}

fn served_by(
    inputs: &Inputs,
    home: &RegionView,
    previous: Option<&HomeRoute>,
    regions: &[RegionView],
    serving: &dyn Fn(&str) -> bool,
) -> String {
    let name = home.name();
    let elsewhere = previous
        .map(|p| p.served_by.as_str())
        .filter(|by| *by != name && serving(by));
    if serving(name) {
        return match elsewhere {
            Some(by) if !held_long_enough(inputs, home) => by.to_string(),
            _ => name.to_string(),
        };
    }
    elsewhere
        .or_else(|| {
            regions
                .iter()
                .map(|r| r.name())
                .find(|r| *r != name && serving(r))
        })
        .unwrap_or(name)
        .to_string()
}

/// A `HomeRouted` Event for each home whose users go somewhere new (not
/// for a home seen for the first time).
pub(super) fn moves(inputs: &Inputs, homes: &[HomeRoute]) -> Vec<Event> {
    homes
        .iter()
        .filter_map(|now| {
            let before = inputs.previous.homes.iter().find(|h| h.home == now.home)?;
            (before.served_by != now.served_by).then(|| {
                Event::normal(
                    EventReason::HomeRouted,
                    format!(
                        "users of {} sent to {} (were on {})",
                        now.home, now.served_by, before.served_by
                    ),
                )
            })
        })
        .collect()
}

/// Healthy for the failback hold.
fn held_long_enough(inputs: &Inputs, region: &RegionView) -> bool {
    let hold = i64::from(inputs.spec.failover.failback_hold_seconds);
    region
        .counters
        .since
        .is_some_and(|since| inputs.now.as_second() - since.as_second() >= hold)
}
