//! One app's reconcile, as named phases:
//! gather (observe, client needed) -> decide (pure) -> scale up -> publish
//! to the traffic sinks -> write status -> scale down -> announce.
//! Each phase is a function returning what it did; `plan::settle` folds
//! those results into the status, so the status is built in one place.
//!
//! A move is complete only when every sink has it: the old active region
//! is scaled down only after every configured sink confirmed the new
//! weights. Every status write carries the resourceVersion its decision
//! was made from, so a stale writer gets a conflict, never the last word.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as Finalizer, finalizer};

use super::context::{LastRound, Placeable};
use super::{Context, cleanup, events, gather, placement, sinks, status};
use crate::api::{
    ANNOTATION_DRILL_REQUESTED, FINALIZER, MultiRegionApp, MultiRegionAppSpec,
    MultiRegionAppStatus, ResourceRef, Strategy,
};
use crate::error::{Error, Result};
use crate::metrics::{AppLabels, DrillLabels, FailoverLabels};
use crate::plan::manifest::{self, AppKey};
use crate::plan::propagate::{self, Propagation};
use crate::plan::replication::{self, ReplicaLag};
use crate::plan::{
    self, Applied, Decision, EventReason, Inputs, Placement, SinkOutcome, StatusWrite,
};
use crate::plan::{overrides, resources, tenancy};

/// Longest a placement or removal in one member may take: a member that
/// accepts connections but does not answer (an API server still starting,
/// a half-open link) must not hold the reconcile.
pub(super) const MEMBER_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a status or sink write to the hub may take (and never past the
/// fence).
const HUB_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// Reconciles one app: its finalizer's Apply or Cleanup. A status conflict
/// (someone else wrote since the app was read) means: read it again and
/// decide again, once, here. A cached copy that lacks the finalizer this
/// replica just added waits for the cache (`finalizer_not_seen_yet`).
#[tracing::instrument(skip_all, fields(app = %app.name_any(), namespace = app.namespace().unwrap_or_default()))]
pub(super) async fn reconcile_app(app: Arc<MultiRegionApp>, ctx: Arc<Context>) -> Result<Action> {
    if ctx.finalizer_not_seen_yet(&app, FINALIZER) {
        // The watch event of the finalizer's patch triggers it again.
        return Ok(Action::requeue(Duration::from_secs(2)));
    }
    let _timer = ctx.metrics.time(&ctx.metrics.reconcile_duration);
    let api: Api<MultiRegionApp> =
        Api::namespaced(ctx.hub.clone(), &app.namespace().unwrap_or_default());
    let adds_finalizer = app.metadata.deletion_timestamp.is_none()
        && !app.finalizers().iter().any(|f| f == FINALIZER);
    let result = run_finalizer(&api, app.clone(), &ctx).await;
    if adds_finalizer && result.is_ok() {
        ctx.finalizer_added(&app);
    }
    match result {
        Err(Error::StatusConflict { .. }) => {
            let fresh = api
                .get(&app.name_any())
                .await
                .map_err(Error::hub("re-read an app after a status conflict"))?;
            run_finalizer(&api, Arc::new(fresh), &ctx).await
        }
        other => other,
    }
}

async fn run_finalizer(
    api: &Api<MultiRegionApp>,
    app: Arc<MultiRegionApp>,
    ctx: &Arc<Context>,
) -> Result<Action> {
    let started = Instant::now();
    finalizer(api, FINALIZER, app, |event| async {
        match event {
            Finalizer::Apply(app) => apply(app, ctx.clone(), started).await,
            Finalizer::Cleanup(app) => cleanup::run(app, ctx.clone()).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(e)
        | kube::runtime::finalizer::Error::CleanupFailed(e) => e,
        other => Error::Finalizer(Box::new(other)),
    })
}

/// What one reconcile works with: the app (with the last valid spec when
/// the current one cannot be placed), what can be placed, and why the
/// current spec cannot, if it cannot.
struct Prepared {
    app: Arc<MultiRegionApp>,
    placeable: Option<Arc<Placeable>>,
    /// The placeable spec's pod template with its config checksum, built
    /// once for this reconcile.
    template: Option<PodTemplateSpec>,
    invalid: Option<Refusal>,
}

/// Why the current spec cannot be placed: InvalidSpec or NotAllowed, and a
/// message naming the field.
type Refusal = (EventReason, String);

impl Prepared {
    /// What is placed in every region, when something can be.
    fn workload(&self) -> Option<Workload<'_>> {
        Some(Workload {
            template: self.template.as_ref()?,
            propagation: &self.placeable.as_deref()?.propagation,
        })
    }

    /// The status marked `InvalidSpec` when the spec cannot be placed.
    fn marked(&self, status: MultiRegionAppStatus, previous: &MultiRegionAppStatus) -> Marked {
        match &self.invalid {
            Some((reason, message)) => {
                let generation = self.app.metadata.generation;
                let refusal = (*reason, message.as_str());
                plan::with_refusal(status, previous, generation, refusal, Timestamp::now())
            }
            None => (status, None),
        }
    }
}

type Marked = (MultiRegionAppStatus, Option<plan::Event>);

/// Health never stops for a spec problem: rounds, failover and fencing go
/// on with the last spec that could be placed. None while the hub's
/// ConfigMaps and Secrets are not listed yet and no spec was placeable.
fn prepared(ctx: &Context, app: Arc<MultiRegionApp>, key: &AppKey) -> Option<Prepared> {
    let last = || ctx.last_placeable(key);
    let (app, placeable, invalid) = match prepare(ctx, &app, key) {
        Ok(Some((ready, template))) => {
            ctx.remember_placeable(key, &ready);
            return Some(Prepared {
                app,
                placeable: Some(ready),
                template: Some(template),
                invalid: None,
            });
        }
        Ok(None) => {
            let last = last()?;
            (with_spec(&app, last.spec()), Some(last), None)
        }
        Err(message) => match last() {
            Some(last) => (with_spec(&app, last.spec()), Some(last), Some(message)),
            None => (app, None, Some(message)),
        },
    };
    let template = placeable.as_deref().and_then(|last| {
        let template = last.template();
        if template.is_none() {
            tracing::warn!(app = %key.name, namespace = %key.namespace, "the last placeable spec's pod template no longer parses: nothing is placed");
        }
        template
    });
    Some(Prepared {
        app,
        placeable,
        template,
        invalid,
    })
}

/// The phases, in order.
pub(super) async fn apply(
    app: Arc<MultiRegionApp>,
    ctx: Arc<Context>,
    started: Instant,
) -> Result<Action> {
    let key = ctx.key_of(&app);
    let (on_hub, version) = ctx.fresh_status(&key, &app);
    let previous = ctx.basis(&key, version.as_deref(), &on_hub);
    // An app's first weights are no move to time.
    let moving_weights = previous.weights.is_some();
    let Some(mut prepared) = prepared(&ctx, app, &key) else {
        return Ok(Action::requeue(Duration::from_millis(500)));
    };
    if let Some(spec) = plan::controls::with_drains(&prepared.app.spec, prepared.app.annotations())
    {
        prepared.app = with_spec(&prepared.app, &spec);
    }
    let app = prepared.app.clone();
    let wanted = resources::wanted(&app.spec);
    if prepared.placeable.is_some()
        && record_ahead(&ctx, &key, &wanted, &previous, &version).await?
    {
        return Ok(Action::requeue(Duration::from_millis(100)));
    }
    let kept = previous.primary_position.as_ref();
    let replicas = ctx.data.read(&app, &key, kept).await;
    record_lag(&ctx, &app, &key, &replicas);
    let (mut decision, round, next_round) = decide(&ctx, &prepared, &key, &previous, &replicas);
    if let Some(why) = &decision.hold {
        tracing::info!(app = %key.name, namespace = %key.namespace, why = %why, "nothing applied yet");
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    // One active region: the database follows before the traffic does.
    // ActiveActive: every region serves, so the weights go first (below).
    let data_first = app.spec.strategy != Strategy::ActiveActive;
    let followed = match data_first {
        true => follow_data(&ctx, &app, &key, &decision, &replicas, &previous).await,
        false => None,
    };
    if let Some(followed) = followed {
        match followed.failed {
            None => decision.status.data_steps = followed.stages,
            Some(why) => {
                tracing::warn!(app = %key.name, namespace = %key.namespace, step = %why, "a data step failed: the move waits");
                let now = Timestamp::now();
                let generation = app.metadata.generation;
                let blocked = replication::blocked(&previous, followed.stages, generation, now);
                write(&ctx, &key, &on_hub, version, &blocked).await?;
                return Ok(Action::requeue(Duration::from_secs(2)));
            }
        }
    }
    let workload = prepared.workload();
    let ups = scale(&ctx, &key, &app, workload.as_ref(), &decision, false).await;
    let moving = Move {
        decision: &decision,
        round: round.as_ref(),
    };
    let decided_over = version.clone();
    // What PromotionBlocked was before this reconcile wrote anything.
    let blocked_before = previous.clone();
    let (previous, version) = record_move(&ctx, &key, &prepared, previous, version, moving).await?;
    // A move recorded ahead is what the hub holds now.
    let on_hub = match version == decided_over {
        true => on_hub,
        false => previous.clone(),
    };
    let (sinks, retry_sinks) = publish(&ctx, &app, &key, &decision).await;
    if !data_first {
        let seen = (&previous, &blocked_before);
        follow_data_after(&ctx, &app, &key, &mut decision, &replicas, seen).await;
    }
    let applied = clean_up(&ctx, &key, &app.spec, &decision, &previous, sinks).await;
    let confirmed = applied.sinks.confirmed();
    let status = plan::settle(&decision, &previous, app.metadata.generation, &applied);
    let (status, invalid_event) = prepared.marked(status, &previous);
    let moment = plan::Moment {
        between_rounds: round.is_none(),
        settling_in: ctx.settling_in(&key, round.as_ref(), settling_time(&app.spec)),
        announcing: !decision.events.is_empty(),
    };
    // Judged against what the hub holds: a held first status is not
    // written yet, whatever the basis it was decided from.
    let fate = plan::status_write(&on_hub, &status, moment);
    match fate {
        StatusWrite::Write => {
            write(&ctx, &key, &on_hub, version, &status).await?;
        }
        StatusWrite::HoldBack => ctx.hold(&key, version.as_deref(), status.clone()),
        StatusWrite::Skip => {}
    }
    let written = fate == StatusWrite::Write;
    tracing::debug!(
        app = %key.name,
        namespace = %key.namespace,
        round = round.is_some(),
        written,
        regions = ?status.regions.iter().map(judged).collect::<Vec<_>>(),
        weights = status.weights.as_deref().unwrap_or_default(),
        took_ms = started.elapsed().as_millis() as u64,
        "decided"
    );
    if let Some(round) = &round {
        ctx.round_recorded(&key, round);
    }
    if decision.weights_changed && moving_weights {
        let latency = started.elapsed().as_secs_f64();
        ctx.metrics.decision_latency.observe(latency);
    }
    count_move(&ctx, &key, &decision);
    count_drill(&ctx, &key, &decision, &status);
    // Make-before-break: the old active scales down only once every sink
    // sends traffic elsewhere.
    let downs = match confirmed {
        true => scale(&ctx, &key, &app, workload.as_ref(), &decision, true).await,
        false => Vec::new(),
    };
    let events: Vec<plan::Event> = decision
        .events
        .iter()
        .cloned()
        .chain(invalid_event)
        .collect();
    events::announce(&ctx, &app, &events).await;
    ctx.record_metrics(&key, &status);
    let next = retry_sinks.map_or(next_round, |wait| wait.min(next_round));
    Ok(requeue(next, &status, ups.iter().chain(&downs)))
}

/// A region's verdict as the `decided` debug line shows it: health, why
/// (reason or unknown cause), failed rounds in a row.
fn judged(region: &crate::api::RegionAppStatus) -> String {
    let why = match (&region.reason, &region.unknown) {
        (_, Some(unknown)) => unknown.cause.clone(),
        (Some(reason), None) => reason.to_string(),
        (None, None) => String::new(),
    };
    let failures = region.consecutive_failures;
    format!("{} {}({why}) x{failures}", region.name, region.health)
}

/// How long a new app's first status may wait for every region's first
/// verdict (`plan::nothing_judged_yet`): two health intervals, or its
/// `startupSeconds` if longer, up to a minute (the user waits that long
/// at most to see a status while some regions already serve).
fn settling_time(spec: &MultiRegionAppSpec) -> Duration {
    const LONGEST_STARTUP_WAIT: u64 = 60;
    let check = &spec.health_check;
    let intervals = 2 * check.interval_seconds.max(1) as u64;
    let startup = (check.startup_seconds.max(0) as u64).min(LONGEST_STARTUP_WAIT);
    Duration::from_secs(intervals.max(startup))
}

/// Gathers what each region reports and decides; also returns the health
/// round this decision takes, if one is due (to be remembered once its
/// status is written), and when the next is due.
fn decide(
    ctx: &Context,
    prepared: &Prepared,
    key: &AppKey,
    previous: &MultiRegionAppStatus,
    replicas: &BTreeMap<String, ReplicaLag>,
) -> (Decision, Option<LastRound>, Duration) {
    let app = &prepared.app;
    let no_propagation = Propagation::default();
    let propagation = prepared
        .placeable
        .as_ref()
        .map_or(&no_propagation, |p| &p.propagation);
    let observations = gather::observe(ctx, app, key, previous, propagation, replicas);
    let interval = Duration::from_secs(app.spec.health_check.interval_seconds.max(1) as u64);
    let (round, next_round) = ctx.round_due(key, interval, &gather::evidence(&observations));
    let published = ctx.sinks.published(app, key);
    let now = Timestamp::now();
    let (sightings, observers) = ctx.observers(now);
    let move_request = plan::controls::move_request(app.annotations());
    let primary_mark = ctx.data.mark(key);
    let decision = plan::decide(&Inputs {
        spec: &app.spec,
        generation: app.metadata.generation,
        previous,
        observations: &observations,
        round: round.is_some(),
        published: &published,
        drill_requested: drill_requested(app),
        move_request: move_request.as_ref(),
        sightings: &sightings,
        observers: &observers,
        primary_mark: primary_mark.as_ref(),
        now,
    });
    (decision, round, next_round)
}

/// Removes what left the spec (regions, `spec.resources` objects); returns
/// everything applying reported, with the sinks' outcome.
async fn clean_up(
    ctx: &Context,
    key: &AppKey,
    spec: &MultiRegionAppSpec,
    decision: &Decision,
    previous: &MultiRegionAppStatus,
    sinks: SinkOutcome,
) -> Applied {
    let wanted = resources::wanted(spec);
    let placed_resources = resources::recorded(&wanted, &previous.resources);
    let cleaned_up = cleanup::removed_regions(ctx, key, &decision.cleanup, &placed_resources).await;
    let resources =
        cleanup::dropped_resources(ctx, key, spec, &decision.cleanup, &previous.resources).await;
    Applied {
        sinks,
        cleaned_up,
        resources,
        now: Timestamp::now(),
    }
}

/// The app as it was last valid: its metadata, with `spec`.
fn with_spec(app: &MultiRegionApp, spec: &MultiRegionAppSpec) -> Arc<MultiRegionApp> {
    let mut last = app.clone();
    last.spec = spec.clone();
    Arc::new(last)
}

/// The pod template (with the checksum of the propagated config) and the
/// propagation, once the spec is checked and its namespace allowed it;
/// None while the hub's ConfigMaps, Secrets and Namespaces are not listed
/// yet. An error names the field that cannot be placed.
fn prepare(
    ctx: &Context,
    app: &Arc<MultiRegionApp>,
    key: &AppKey,
) -> std::result::Result<Option<(Arc<Placeable>, PodTemplateSpec)>, Refusal> {
    let invalid = |e: String| (EventReason::InvalidSpec, e);
    let template = manifest::validate_template(&app.spec).map_err(|e| invalid(e.to_string()))?;
    let Some(labels) = ctx.tenants.labels(&key.namespace) else {
        return Ok(None);
    };
    if !ctx.hub_config.listed(app) {
        return Ok(None);
    }
    let propagation = ctx.hub_config.resolve(app);
    let template = propagate::with_checksum(template, propagation.checksum().as_deref());
    overrides::validate(key, &app.spec, &template).map_err(|e| invalid(e.to_string()))?;
    let taken = resources::taken(
        key,
        &propagation.config_map_names(),
        &propagation.secret_names(),
    );
    resources::check(key, &app.spec, &taken).map_err(|e| invalid(e.to_string()))?;
    admit(ctx, app, key, &template, &labels)?;
    let placeable = Placeable {
        app: app.clone(),
        propagation,
    };
    Ok(Some((Arc::new(placeable), template)))
}

/// What the app asks for, its namespace may have (`plan::tenancy`), by the
/// Regions as they are now.
fn admit(
    ctx: &Context,
    app: &MultiRegionApp,
    key: &AppKey,
    template: &PodTemplateSpec,
    labels: &BTreeMap<String, String>,
) -> std::result::Result<(), Refusal> {
    let regions = app
        .spec
        .regions
        .iter()
        .filter_map(|r| Some((r.name.clone(), ctx.registry.get(&r.name)?.spec())))
        .collect();
    let domains = ctx.tenants.allowed_domains(&key.namespace);
    let kinds = ctx.tenants.allowed_kinds(&key.namespace);
    let tenant = tenancy::Tenant {
        namespace: &key.namespace,
        labels,
        operator_namespace: &ctx.tenants.operator_namespace,
        allowed_domains: domains.as_deref(),
        allowed_kinds: kinds.as_deref(),
    };
    tenancy::admit(key, &app.spec, template, &regions, &tenant)
        .map_err(|e| (EventReason::NotAllowed, e.to_string()))
}

/// When a person last asked for a drill: the app's annotation, if it is a
/// timestamp.
fn drill_requested(app: &MultiRegionApp) -> Option<Timestamp> {
    app.annotations()
        .get(ANNOTATION_DRILL_REQUESTED)
        .and_then(|t| t.parse().ok())
}

/// Writes `status.resources` with what the spec newly asks for before
/// anything is placed (`plan::resources::record_ahead`); returns whether
/// it wrote.
async fn record_ahead(
    ctx: &Context,
    key: &AppKey,
    wanted: &[ResourceRef],
    previous: &MultiRegionAppStatus,
    version: &Option<String>,
) -> Result<bool> {
    let Some(ahead) = resources::record_ahead(wanted, &previous.resources) else {
        return Ok(false);
    };
    let mut recorded = previous.clone();
    recorded.resources = ahead;
    write(ctx, key, previous, version.clone(), &recorded).await?;
    Ok(true)
}

/// A decision that moves weights is written to the status before any
/// sink gets the new weights: if that write fails nothing is published
/// (the next reconcile decides again), and once it is in, a later failed
/// write cannot make the operator republish the old weights. Returns the
/// status and version the final write starts from.
async fn record_move(
    ctx: &Context,
    key: &AppKey,
    prepared: &Prepared,
    previous: MultiRegionAppStatus,
    version: Option<String>,
    Move { decision, round }: Move<'_>,
) -> Result<(MultiRegionAppStatus, Option<String>)> {
    let app = &prepared.app;
    if !decision.weights_changed || app.spec.traffic.is_none() {
        return Ok((previous, version));
    }
    let recording = Applied {
        sinks: SinkOutcome::Pending,
        cleaned_up: Vec::new(),
        resources: previous.resources.clone(),
        now: Timestamp::now(),
    };
    let recorded = plan::settle(decision, &previous, app.metadata.generation, &recording);
    // Still InvalidSpec when it is: Ready never flips to True in between.
    let (recorded, _) = prepared.marked(recorded, &previous);
    let version = write(ctx, key, &previous, version, &recorded).await?;
    // The recorded status counts the round: a later failure must not count
    // it again.
    if let Some(round) = round {
        ctx.round_recorded(key, round);
    }
    Ok((recorded, version))
}

/// A decision and the health round it took, if any.
#[derive(Clone, Copy)]
struct Move<'a> {
    decision: &'a Decision,
    round: Option<&'a LastRound>,
}

/// Writes the status when it changed, over the resourceVersion the
/// decision was made from, and remembers the write; returns the version
/// the app has now.
async fn write(
    ctx: &Context,
    key: &AppKey,
    previous: &MultiRegionAppStatus,
    version: Option<String>,
    status: &MultiRegionAppStatus,
) -> Result<Option<String>> {
    if status == previous {
        return Ok(version);
    }
    let writing = status::write(&ctx.hub, key, status, version.as_deref());
    let late = || Error::Unreachable {
        region: "hub".into(),
        reason: format!("status write not answered within {HUB_WRITE_TIMEOUT:?}"),
    };
    let written = ctx.fence.bounded(HUB_WRITE_TIMEOUT, writing, late).await?;
    ctx.metrics.wrote("hub", "status");
    ctx.remember_write(key, version, status.clone(), written.clone());
    Ok(written)
}

/// What is placed in every region: the pod template (with the checksum of
/// the propagated config) and the propagated ConfigMaps and Secrets.
struct Workload<'a> {
    template: &'a PodTemplateSpec,
    propagation: &'a Propagation,
}

/// Scale-ups and creates (`downs` false), or scale-downs (`downs` true),
/// in parallel across the regions the operator can reach; nothing without
/// a workload that can be placed.
async fn scale(
    ctx: &Context,
    key: &AppKey,
    app: &MultiRegionApp,
    workload: Option<&Workload<'_>>,
    decision: &Decision,
    downs: bool,
) -> Vec<Result<bool>> {
    let Some(workload) = workload else {
        return Vec::new();
    };
    let placements = decision
        .placements
        .iter()
        .filter(|p| p.touch && p.scale_down == downs);
    futures::future::join_all(placements.map(|p| place_in(ctx, key, app, workload, p))).await
}

async fn place_in(
    ctx: &Context,
    key: &AppKey,
    app: &MultiRegionApp,
    workload: &Workload<'_>,
    p: &Placement,
) -> Result<bool> {
    ctx.fence.check()?;
    let Some(member) = ctx.registry.get(&p.region) else {
        return Err(Error::Unreachable {
            region: p.region.clone(),
            reason: "no such Region".into(),
        });
    };
    let placing = placement::place(
        &member,
        key,
        &app.spec,
        workload.template,
        workload.propagation,
        p,
    );
    let late = || Error::Unreachable {
        region: p.region.clone(),
        reason: format!("no answer within {MEMBER_WRITE_TIMEOUT:?}"),
    };
    // Bounded by the fence too: a placement never lands after this
    // replica stopped being the leader.
    let result = ctx.fence.bounded(MEMBER_WRITE_TIMEOUT, placing, late).await;
    match &result {
        Ok(true) => ctx.metrics.wrote("member", "placement"),
        Ok(false) => {}
        Err(err) => {
            tracing::info!(app = %key.name, namespace = %key.namespace, region = %p.region, error = %err, "placement not applied")
        }
    }
    result
}

/// The weights, into every traffic sink the app names; failed sinks are
/// retried with back-off (the wait comes back with the outcome).
async fn publish(
    ctx: &Context,
    app: &MultiRegionApp,
    key: &AppKey,
    decision: &Decision,
) -> (SinkOutcome, Option<Duration>) {
    if app.spec.traffic.is_none() {
        return (SinkOutcome::NotConfigured, None);
    }
    // A new move goes out at once; otherwise a failing sink waits its turn.
    if !decision.weights_changed && !ctx.sink_attempt_due(key) {
        let waiting = SinkOutcome::Failed("waiting to retry the traffic sinks".into());
        let reported = previous_sink_failure(app).map_or(waiting, SinkOutcome::Failed);
        return (reported, Some(Duration::from_secs(1)));
    }
    let time = match ctx.fence.time_for(HUB_WRITE_TIMEOUT) {
        Ok(time) => time,
        Err(err) => return (SinkOutcome::Failed(err.to_string()), None),
    };
    let publishing = sinks::publish(
        &ctx.hub,
        &ctx.sinks,
        &ctx.registry,
        app,
        key,
        &decision.weights,
        &decision.status.homes,
    );
    // Bounded by the fence: no sink is written after this replica stopped
    // being the leader.
    let (outcome, written) = tokio::time::timeout(time, publishing)
        .await
        .unwrap_or_else(|_| {
            let why = "the traffic sinks did not answer in time (or the Lease ran out)";
            (SinkOutcome::Failed(why.into()), 0)
        });
    for _ in 0..written {
        ctx.metrics.wrote("hub", "sink");
    }
    if let SinkOutcome::Failed(why) | SinkOutcome::Conflict(why) = &outcome {
        tracing::warn!(app = %key.name, namespace = %key.namespace, error = %why, "traffic sinks not published");
    }
    let retry = ctx.sinks_published(key, outcome.confirmed());
    (outcome, retry)
}

/// The message of the app's last failed sink publication, to keep it
/// while a retry waits.
fn previous_sink_failure(app: &MultiRegionApp) -> Option<String> {
    app.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "TrafficPublished" && c.status == "False")
        .map(|c| c.message.clone())
}

fn count_move(ctx: &Context, key: &AppKey, decision: &Decision) {
    if let Some(moved) = &decision.moved {
        ctx.metrics
            .failovers
            .get_or_create(&FailoverLabels::new(
                &key.namespace,
                &key.name,
                &moved.reason.to_string(),
            ))
            .inc();
    }
}

/// A drill that ended in this decision, counted by result; its time to
/// move is the app's last.
fn count_drill(ctx: &Context, key: &AppKey, decision: &Decision, status: &MultiRegionAppStatus) {
    let ended = decision.events.iter().any(|e| {
        matches!(
            e.reason,
            EventReason::DrillSucceeded | EventReason::DrillAborted
        )
    });
    let Some(outcome) = status.drills.first().filter(|_| ended) else {
        return;
    };
    ctx.metrics
        .drills
        .get_or_create(&DrillLabels {
            namespace: key.namespace.clone(),
            app: key.name.clone(),
            result: outcome.result.clone(),
        })
        .inc();
    if let Some(seconds) = outcome.seconds_to_move {
        ctx.metrics
            .drill_move_seconds
            .get_or_create(&AppLabels {
                namespace: key.namespace.clone(),
                app: key.name.clone(),
            })
            .set(seconds);
    }
}

/// The next reconcile: the next round, or sooner when a placement hit a
/// new conflict or refusal (judged right away) or cleanup is pending.
fn requeue<'a>(
    next_round: Duration,
    status: &MultiRegionAppStatus,
    placed: impl Iterator<Item = &'a Result<bool>>,
) -> Action {
    let mut placed = placed;
    let changed_outcome =
        placed.any(|r| matches!(r, Err(Error::Conflict { .. } | Error::Refused { .. })));
    let wait = if changed_outcome || !status.cleanup_pending.is_empty() {
        next_round.min(Duration::from_secs(2))
    } else {
        next_round
    };
    Action::requeue(wait.max(Duration::from_millis(100)))
}

/// The lag the data tier read, as `multiregion_replication_lag_seconds`
/// (removed for a region whose lag is not known).
fn record_lag(
    ctx: &Context,
    app: &MultiRegionApp,
    key: &AppKey,
    replicas: &BTreeMap<String, ReplicaLag>,
) {
    // Only the spec's regions: the data tier also reads the region the
    // primary was last seen in after it left the spec.
    let in_spec = |region: &String| app.spec.regions.iter().any(|r| &r.name == region);
    for (region, lag) in replicas.iter().filter(|(region, _)| in_spec(region)) {
        let labels = crate::metrics::AppRegionLabels {
            namespace: key.namespace.clone(),
            app: key.name.clone(),
            region: region.clone(),
        };
        match lag.seconds {
            Some(seconds) => {
                ctx.metrics
                    .replication_lag
                    .get_or_create(&labels)
                    .set(seconds);
            }
            None => {
                ctx.metrics.replication_lag.remove(&labels);
            }
        }
    }
}

/// ActiveActive: the database follows the writer region once the weights
/// are published; a failed step raises PromotionBlocked (`DataStepFailed`)
/// on the decided status, and the next round tries again. `seen`: the
/// status the hub holds now (its data steps), and as it was before this
/// reconcile wrote (PromotionBlocked's transition time).
async fn follow_data_after(
    ctx: &Context,
    app: &MultiRegionApp,
    key: &AppKey,
    decision: &mut Decision,
    replicas: &BTreeMap<String, ReplicaLag>,
    seen: (&MultiRegionAppStatus, &MultiRegionAppStatus),
) {
    let (held, before) = seen;
    let Some(followed) = follow_data(ctx, app, key, decision, replicas, held).await else {
        return;
    };
    match followed.failed {
        None => decision.status.data_steps = followed.stages,
        Some(why) => {
            tracing::warn!(app = %key.name, namespace = %key.namespace, step = %why, "a data step failed: the database waits");
            let generation = app.metadata.generation;
            let now = Timestamp::now();
            replication::mark_blocked(
                &mut decision.status,
                before,
                followed.stages,
                generation,
                now,
            );
        }
    }
}

/// The data tier follows the decided writer region (the active one, or
/// ActiveActive's choice): fence, replay, promote, each step announced;
/// the caller runs it before anything of the decision is applied, or for
/// ActiveActive after the weights are published.
async fn follow_data(
    ctx: &Context,
    app: &MultiRegionApp,
    key: &AppKey,
    decision: &Decision,
    replicas: &BTreeMap<String, ReplicaLag>,
    previous: &MultiRegionAppStatus,
) -> Option<crate::data::Followed> {
    let writer = decision.writer.as_ref()?;
    let mut followed = ctx
        .data
        .follow(
            app,
            key,
            &writer.region,
            writer.moving,
            replicas,
            &ctx.fence,
        )
        .await?;
    // The same steps with the same outcomes as last time (a step that keeps
    // failing): the status and the Events stay as they were.
    if replication::same_steps(&previous.data_steps, &followed.stages) {
        followed.stages = previous.data_steps.clone();
    } else {
        let events = replication::stage_events(&followed.stages);
        events::announce(ctx, app, &events).await;
    }
    Some(followed)
}
