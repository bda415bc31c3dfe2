//! Day-2 commands: `status`, `plan`, and the routing controls people use
//! in an incident or a maintenance window (`failover`, `release`, `drain`,
//! `undrain`, `cordon`, `uncordon`), and `drill` to practise a failover. Each control is one patch of the spec,
//! the same a person could make with kubectl: the operator does the rest.
//! With `--dry-run` the API server validates the patch and changes nothing.

use anyhow::{Context as _, Result, bail};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use super::args::{
    AppArgs, Change, Connection, DrillArgs, FailoverArgs, HubArgs, Output, PlanArgs, PlanOutput,
    RegionArgs, RegionOfAppArgs,
};
use crate::api::{
    ANNOTATION_DRAINED, ANNOTATION_DRILL_REQUESTED, ANNOTATION_MOVE_REQUESTED_AT,
    ANNOTATION_MOVE_TO, MultiRegionApp, Region, Strategy,
};
use crate::plan::controls;
use crate::plan::playbook;

/// The field manager of the commands' patches, shown in managedFields.
const CLI_MANAGER: &str = "multiregion-cli";

/// A client of the hub, and its context's namespace.
async fn connect(args: &Connection) -> Result<(Client, String)> {
    let mut config = super::hub::config(args.kubeconfig.as_deref(), args.context.as_ref()).await?;
    if let Some(limit) = args.request_timeout {
        config.connect_timeout = Some(limit);
        config.read_timeout = Some(limit);
        config.write_timeout = Some(limit);
    }
    let default_namespace = config.default_namespace.clone();
    let client = crate::metrics::counted_client(config, "hub")?;
    Ok((client, default_namespace))
}

/// The hub and the namespace the command works in (`-n`, else the
/// context's namespace, as kubectl).
async fn hub(args: &HubArgs) -> Result<(Client, String)> {
    let (client, default_namespace) = connect(&args.connection).await?;
    let namespace = args.namespace.clone().unwrap_or(default_namespace);
    Ok((client, namespace))
}

fn patch_params(change: &Change) -> PatchParams {
    PatchParams {
        dry_run: change.dry_run.is_some(),
        field_manager: Some(CLI_MANAGER.to_string()),
        ..PatchParams::default()
    }
}

/// What a command changed, as kubectl prints it.
fn report(kind: &str, name: &str, what: &str, before: &str, after: &str, dry_run: bool) {
    let suffix = if dry_run { " (server dry run)" } else { "" };
    if before == after {
        println!("{kind}/{name} unchanged: {what} is already {after}{suffix}");
    } else {
        println!("{kind}/{name} {what}: {before} -> {after}{suffix}");
    }
}

fn shown(value: &str) -> &str {
    if value.is_empty() { "(none)" } else { value }
}

pub async fn status(args: super::args::StatusArgs) -> Result<()> {
    let (client, namespace) = hub(&args.hub).await?;
    let api: Api<MultiRegionApp> = if args.all_namespaces {
        Api::all(client)
    } else {
        Api::namespaced(client, &namespace)
    };
    let mut apps = match &args.name {
        Some(name) => vec![
            api.get(name)
                .await
                .with_context(|| format!("multiregionapp {name} in namespace {namespace}"))?,
        ],
        None => api.list(&ListParams::default()).await?.items,
    };
    for app in &mut apps {
        app.metadata.managed_fields = None;
    }
    print_status(&apps, &args, &namespace)?;
    if args.watch {
        watch_status(api, &apps, &args).await?;
    }
    Ok(())
}

fn print_status(
    apps: &[MultiRegionApp],
    args: &super::args::StatusArgs,
    namespace: &str,
) -> Result<()> {
    match &args.output {
        Output::Table | Output::Wide if apps.is_empty() => {
            let scope = if args.all_namespaces {
                "any namespace".to_string()
            } else {
                format!("namespace {namespace}")
            };
            println!("No MultiRegionApps found in {scope}.");
        }
        Output::Table | Output::Wide | Output::Name => {
            for app in apps {
                print!("{}", shown_change(app, &args.output)?);
            }
        }
        Output::JsonPath(template) => {
            let shown = super::jsonpath::render(template, &shown_apps(apps, args)?)
                .map_err(anyhow::Error::msg)?;
            // As kubectl: no newline of its own.
            print!("{shown}");
        }
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&shown_apps(apps, args)?)?
        ),
        Output::Yaml => print!("{}", serde_saphyr::to_string(&shown_apps(apps, args)?)?),
    }
    Ok(())
}

/// One app as `status` shows it, alone (a table block, its name line, or
/// one JSON or YAML document).
fn shown_change(app: &MultiRegionApp, output: &Output) -> Result<String> {
    Ok(match output {
        Output::Table | Output::Wide => super::render::status_table(
            std::slice::from_ref(app),
            *output == Output::Wide,
            super::style(),
        ),
        Output::JsonPath(template) => {
            let shown = super::jsonpath::render(template, &serde_json::to_value(app)?)
                .map_err(anyhow::Error::msg)?;
            format!("{shown}\n")
        }
        Output::Name => format!("multiregionapp.multiregion.io/{}\n", app.name_any()),
        Output::Json => format!("{}\n", serde_json::to_string_pretty(app)?),
        Output::Yaml => format!("---\n{}", serde_saphyr::to_string(app)?),
    })
}

/// `status -w`: each app again whenever what is shown of it changes (for
/// `-o json|yaml|name`, whenever the object changes), and a line when one
/// is deleted; until interrupted. A lost watch is resumed by kube's
/// watcher, and a re-list prints only what changed meanwhile.
async fn watch_status(
    api: Api<MultiRegionApp>,
    listed: &[MultiRegionApp],
    args: &super::args::StatusArgs,
) -> Result<()> {
    use futures::StreamExt as _;
    use kube::runtime::WatchStreamExt as _;
    use kube::runtime::watcher::{self, Event};
    let key = |app: &MultiRegionApp| {
        format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any())
    };
    let mut last: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for app in listed {
        last.insert(key(app), change_key(app, &args.output)?);
    }
    let mut config = watcher::Config::default();
    if let Some(name) = &args.name {
        config = config.fields(&format!("metadata.name={name}"));
    }
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(mut app) | Event::InitApply(mut app)) => {
                app.metadata.managed_fields = None;
                let seen = change_key(&app, &args.output)?;
                if last.insert(key(&app), seen.clone()).as_ref() != Some(&seen) {
                    print!("{}", shown_change(&app, &args.output)?);
                }
            }
            Ok(Event::Delete(app)) => {
                if last.remove(&key(&app)).is_some()
                    && matches!(args.output, Output::Table | Output::Wide | Output::Name)
                {
                    println!("{} deleted", key(&app));
                }
            }
            Ok(Event::Init | Event::InitDone) => {}
            Err(err) => eprintln!("watch: {err} (retrying)"),
        }
    }
    Ok(())
}

/// What must change for `status -w` to print an app again: what the table
/// shows of it, or (for the other formats) the object itself.
fn change_key(app: &MultiRegionApp, output: &Output) -> Result<String> {
    match output {
        Output::Table | Output::Wide => shown_change(app, output),
        _ => {
            let mut app = app.clone();
            app.metadata.resource_version = None;
            app.metadata.managed_fields = None;
            Ok(serde_json::to_string(&app)?)
        }
    }
}

/// One named app as itself, several as a `List`, as `kubectl get` prints them.
fn shown_apps(apps: &[MultiRegionApp], args: &super::args::StatusArgs) -> Result<Value> {
    match (&args.name, apps) {
        (Some(_), [app]) => Ok(serde_json::to_value(app)?),
        _ => list(apps),
    }
}

/// The apps as a `List`, as `kubectl get -o json` prints several objects.
fn list(apps: &[MultiRegionApp]) -> Result<Value> {
    Ok(json!({
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": serde_json::to_value(apps)?,
    }))
}

pub fn plan(args: PlanArgs) -> Result<()> {
    let mut apps = Vec::new();
    let mut hub = super::tenancy::Hub::default();
    for file in &args.file {
        let text = if file.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())?
        } else {
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
        };
        let found =
            stream_in(&text, &mut hub).with_context(|| format!("reading {}", file.display()))?;
        apps.extend(found);
    }
    if apps.is_empty() {
        let files: Vec<String> = args.file.iter().map(|f| f.display().to_string()).collect();
        bail!("{} holds no MultiRegionApp", files.join(", "));
    }
    let mut refused = Vec::new();
    let mut reports = Vec::new();
    for app in &apps {
        let name = app.metadata.name.clone().unwrap_or_else(|| "app".into());
        let invalid = super::validate::refusals(app)?;
        if !invalid.is_empty() {
            refused.extend(
                invalid
                    .iter()
                    .map(|i| format!("MultiRegionApp {name:?} is invalid: {i}")),
            );
            continue;
        }
        if let Some(why) = hub.refusal(app) {
            refused.push(format!("MultiRegionApp {name:?} is not allowed: {why}"));
            continue;
        }
        let report = plan_one(app, &name, &args)?;
        if report.serves_nothing {
            refused.push(format!("MultiRegionApp {name:?} serves no traffic with every region healthy (every weight is 0)"));
        }
        reports.push(report);
    }
    print_reports(&reports, args.output)?;
    if !refused.is_empty() {
        bail!("the hub would refuse this:\n  {}", refused.join("\n  "));
    }
    Ok(())
}

/// Every MultiRegionApp of a YAML or JSON stream (documents split by
/// `---`); its Regions and Namespaces go to `hub`; other kinds are
/// skipped, as a GitOps folder mixes them.
fn stream_in(text: &str, hub: &mut super::tenancy::Hub) -> Result<Vec<MultiRegionApp>> {
    let mut apps = Vec::new();
    for (i, document) in documents(text).into_iter().enumerate() {
        let value: Value = match serde_saphyr::from_str(&document) {
            Ok(Value::Null) => continue,
            Ok(value) => value,
            Err(err) => bail!("document {}: {err}", i + 1),
        };
        if hub
            .take(&value)
            .with_context(|| format!("document {}", i + 1))?
        {
            continue;
        }
        if value["kind"] != "MultiRegionApp" {
            continue;
        }
        let app = serde_json::from_value(value)
            .with_context(|| format!("document {}: not a valid MultiRegionApp", i + 1))?;
        apps.push(app);
    }
    Ok(apps)
}

/// The documents of a YAML stream.
fn documents(text: &str) -> Vec<String> {
    let mut documents = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" || line.starts_with("--- ") {
            documents.push(String::new());
            continue;
        }
        if let Some(current) = documents.last_mut() {
            current.push_str(line);
            current.push('\n');
        }
    }
    documents.retain(|d| !d.trim().is_empty());
    documents
}

/// One app's plan: as a table, and as data for `-o json|yaml`.
struct Report {
    table: String,
    data: Value,
    /// No region carries weight before any failure.
    serves_nothing: bool,
}

fn print_reports(reports: &[Report], output: PlanOutput) -> Result<()> {
    let data = || match reports {
        [one] => one.data.clone(),
        many => Value::Array(many.iter().map(|r| r.data.clone()).collect()),
    };
    match output {
        PlanOutput::Table => {
            let tables: Vec<&str> = reports.iter().map(|r| r.table.as_str()).collect();
            print!("{}", tables.join("\n"));
        }
        PlanOutput::Json => println!("{}", serde_json::to_string_pretty(&data())?),
        PlanOutput::Yaml => print!("{}", serde_saphyr::to_string(&data())?),
    }
    Ok(())
}

/// The what-if and the playbook of one app.
fn plan_one(app: &MultiRegionApp, name: &str, args: &PlanArgs) -> Result<Report> {
    // A drain the app's annotation records counts as the operator counts it.
    let drained = controls::with_drains(&app.spec, app.annotations());
    let app = &match drained {
        Some(spec) => MultiRegionApp {
            spec,
            ..app.clone()
        },
        None => app.clone(),
    };
    let now = jiff::Timestamp::now();
    let failed = match &args.fail {
        Some(region) if app.spec.regions.iter().any(|r| &r.name == region) => region.clone(),
        Some(region) => bail!("--fail {region}: not one of spec.regions of {name}"),
        None => playbook::busiest_region(&app.spec, now),
    };
    if let Some(a) = args.region_availability
        && !(0.0..=1.0).contains(&a)
    {
        bail!("--region-availability must be between 0 and 1");
    }
    let whatif = crate::plan::whatif::simulate(&app.spec, &failed, now, args.region_availability);
    let strategies = playbook::compare(
        &app.spec,
        args.fail.as_deref(),
        now,
        args.region_availability,
    );
    let style = super::style();
    let table = super::render::plan_report(name, &failed, &whatif, style);
    if whatif.after.weights.iter().all(|(_, w)| *w == 0) {
        eprintln!("warning: MultiRegionApp {name:?} serves no traffic once {failed} fails");
    }
    let recovery = strategies[0].figures.as_ref().map_or(String::new(), |f| {
        format!("\nrecovery: RTO {}\n          RPO {}\n", f.rto, f.rpo)
    });
    Ok(Report {
        table: format!(
            "{table}{recovery}\n{}",
            super::render::playbook_table(&strategies, style)
        ),
        data: plan_json(name, &failed, &whatif, &strategies)?,
        serves_nothing: whatif.before.weights.iter().all(|(_, w)| *w == 0),
    })
}

/// `plan -o json`: the what-if and the playbook's numbers, for tools.
fn plan_json(
    name: &str,
    failed: &str,
    whatif: &crate::plan::whatif::WhatIf,
    strategies: &[playbook::StrategyFigures],
) -> Result<Value> {
    let snapshot = |s: &crate::plan::whatif::Snapshot| {
        json!({
            "active": s.active,
            "regions": s.placements.iter().map(|p| json!({
                "region": p.region,
                "role": p.role,
                "replicas": p.replicas,
                "weight": s.weights.iter().find(|(r, _)| *r == p.region).map_or(0, |(_, w)| *w),
            })).collect::<Vec<_>>(),
        })
    };
    Ok(json!({
        "app": name,
        "failed": failed,
        "detectionSeconds": whatif.detection_seconds,
        "availability": whatif.availability,
        "before": snapshot(&whatif.before),
        "after": snapshot(&whatif.after),
        "strategies": serde_json::to_value(strategies)?,
    }))
}

/// Now, in whole seconds (RFC 3339), as the status records the requests
/// it answers.
fn whole_seconds_now() -> Result<String> {
    let second = jiff::Timestamp::now().as_second();
    Ok(jiff::Timestamp::from_second(second)?.to_string())
}

/// The app, or an error naming it and its namespace.
async fn app(api: &Api<MultiRegionApp>, name: &str, namespace: &str) -> Result<MultiRegionApp> {
    api.get(name)
        .await
        .with_context(|| format!("multiregionapp {name} in namespace {namespace}"))
}

/// The index of `region` in the app's spec.regions, or an error listing them.
fn region_index(app: &MultiRegionApp, region: &str) -> Result<usize> {
    let names: Vec<&str> = app.spec.regions.iter().map(|r| r.name.as_str()).collect();
    names.iter().position(|n| *n == region).with_context(|| {
        format!(
            "{region} is not one of spec.regions of {} ({})",
            app.name_any(),
            names.join(", ")
        )
    })
}

/// `failover APP --to REGION`: a one-shot move request, or with `--pin`
/// an override held until `release`; with `--wait`, until traffic is there.
pub async fn failover(args: FailoverArgs) -> Result<()> {
    let (client, namespace) = hub(&args.hub).await?;
    let api: Api<MultiRegionApp> = Api::namespaced(client, &namespace);
    let current = app(&api, &args.app, &namespace).await?;
    region_index(&current, &args.to)?;
    if current.spec.strategy == Strategy::ActiveActive {
        bail!(
            "{app} is ActiveActive: every region serves, there is no one region to move to; \
             take regions out instead (kubectl multiregion drain {app} REGION)",
            app = args.app
        );
    }
    let pinned = &current.spec.failover.active_override;
    if args.pin {
        set_override(&api, &current, &args.to, &args.change).await?;
        println!(
            "traffic is held in {} whatever the health rules say until `release {}`",
            args.to, args.app
        );
    } else if !pinned.is_empty() {
        bail!(
            "{} is pinned to {pinned} by spec.failover.activeOverride: release it first \
             (kubectl multiregion release {}), or move the pin with --pin",
            args.app,
            args.app
        );
    } else {
        request_move(&api, &current, &args.to, &args.change).await?;
    }
    if args.wait && args.change.dry_run.is_none() {
        wait_for_traffic(&api, &args.app, &args.to, args.timeout).await?;
    }
    Ok(())
}

/// Asks the operator to move traffic once: the app's move annotations.
async fn request_move(
    api: &Api<MultiRegionApp>,
    current: &MultiRegionApp,
    region: &str,
    change: &Change,
) -> Result<()> {
    let name = current.name_any();
    let before = current
        .annotations()
        .get(ANNOTATION_MOVE_TO)
        .cloned()
        .unwrap_or_default();
    let now = whole_seconds_now()?;
    let patch = json!({"metadata": {"annotations": {
        ANNOTATION_MOVE_TO: region,
        ANNOTATION_MOVE_REQUESTED_AT: now,
    }}});
    api.patch(&name, &patch_params(change), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("requesting a move of {name} to {region}"))?;
    report(
        "multiregionapp",
        &name,
        &format!("move requested ({ANNOTATION_MOVE_TO})"),
        shown(&before),
        region,
        change.dry_run.is_some(),
    );
    println!(
        "one-shot: traffic stays in {region} for failbackHoldSeconds ({}s) after it arrives, \
         then the usual rules apply (--pin holds it until release)",
        current.spec.failover.failback_hold_seconds
    );
    Ok(())
}

/// Waits until `region` is active with no move pending, and says so.
async fn wait_for_traffic(
    api: &Api<MultiRegionApp>,
    name: &str,
    region: &str,
    timeout: std::time::Duration,
) -> Result<()> {
    let arrived = |app: Option<&MultiRegionApp>| {
        app.and_then(|a| a.status.as_ref())
            .is_some_and(|s| s.active_region.as_deref() == Some(region) && s.pending_move.is_none())
    };
    let waited = kube::runtime::wait::await_condition(api.clone(), name, arrived);
    let app = tokio::time::timeout(timeout, waited)
        .await
        .map_err(|_| anyhow::anyhow!("traffic of {name} did not reach {region} within {timeout:?} (see kubectl multiregion status {name})"))?
        .with_context(|| format!("watching {name}"))?;
    let weights = app
        .and_then(|a| a.status)
        .and_then(|s| s.weights)
        .unwrap_or_default();
    println!("traffic of {name} is in {region}: {weights}");
    Ok(())
}

/// `release APP`: health decides again. Clears activeOverride and any
/// move request still holding traffic.
pub async fn release(args: AppArgs) -> Result<()> {
    let (client, namespace) = hub(&args.hub).await?;
    let api: Api<MultiRegionApp> = Api::namespaced(client, &namespace);
    let current = app(&api, &args.app, &namespace).await?;
    set_override(&api, &current, "", &args.change).await
}

/// Asks the operator for a drill now: the app's drill-requested annotation
/// set to the current time. The outcome appears in status.drills.
pub async fn drill(args: DrillArgs) -> Result<()> {
    let (client, namespace) = hub(&args.hub).await?;
    let api: Api<MultiRegionApp> = Api::namespaced(client, &namespace);
    let current = app(&api, &args.app, &namespace).await?;
    let before = current
        .annotations()
        .get(ANNOTATION_DRILL_REQUESTED)
        .cloned()
        .unwrap_or_default();
    let now = whole_seconds_now()?;
    let patch = json!({"metadata": {"annotations": {ANNOTATION_DRILL_REQUESTED: now}}});
    api.patch(
        &args.app,
        &patch_params(&args.change),
        &Patch::Merge(&patch),
    )
    .await
    .with_context(|| format!("requesting a drill of {}", args.app))?;
    report(
        "multiregionapp",
        &args.app,
        "drill requested",
        shown(&before),
        &now,
        args.change.dry_run.is_some(),
    );
    println!(
        "the outcome appears in status.drills (kubectl get mra {} -o yaml)",
        args.app
    );
    Ok(())
}

/// Sets (or clears, with "") spec.failover.activeOverride of `current`
/// (its region already checked).
async fn set_override(
    api: &Api<MultiRegionApp>,
    current: &MultiRegionApp,
    region: &str,
    change: &Change,
) -> Result<()> {
    let name = &current.name_any();
    let mut patch = json!({"spec": {"failover": {"activeOverride": region}}});
    if region.is_empty() {
        // A release ends a one-shot move's hold too.
        patch["metadata"] = json!({"annotations": {
            ANNOTATION_MOVE_TO: null,
            ANNOTATION_MOVE_REQUESTED_AT: null,
        }});
    }
    let patched = api
        .patch(name, &patch_params(change), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("setting spec.failover.activeOverride of {name}"))?;
    if let Some(requested) = current.annotations().get(ANNOTATION_MOVE_TO)
        && region.is_empty()
    {
        println!("the move request to {requested} is withdrawn: health decides again");
    }
    report(
        "multiregionapp",
        name,
        "spec.failover.activeOverride",
        shown(&current.spec.failover.active_override),
        shown(&patched.spec.failover.active_override),
        change.dry_run.is_some(),
    );
    Ok(())
}

/// Drains (or undrains) one region of an app through the app's
/// `multiregion.io/drained` annotation, which a GitOps sync of the app's
/// manifest leaves alone (`plan::controls`). The patch carries the
/// resourceVersion it was computed from, so a concurrent change makes it
/// fail and it is computed again.
pub async fn drain(args: RegionOfAppArgs, drain: bool) -> Result<()> {
    let (client, namespace) = hub(&args.hub).await?;
    let api: Api<MultiRegionApp> = Api::namespaced(client, &namespace);
    for _attempt in 0..5 {
        let current = app(&api, &args.app, &namespace).await?;
        let index = region_index(&current, &args.region)?;
        let mut drained = controls::drained(current.annotations());
        let before = drained.contains(&args.region);
        if drain {
            drained.insert(args.region.clone());
        } else {
            drained.remove(&args.region);
        }
        let patch = json!({"metadata": {
            "resourceVersion": current.resource_version(),
            "annotations": {ANNOTATION_DRAINED: controls::drained_value(&drained)},
        }});
        match api
            .patch(
                &args.app,
                &patch_params(&args.change),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(err) => {
                return Err(err)
                    .with_context(|| format!("setting drain of {} in {}", args.region, args.app));
            }
        }
        report(
            "multiregionapp",
            &args.app,
            &format!("{} drained ({ANNOTATION_DRAINED})", args.region),
            &before.to_string(),
            &drain.to_string(),
            args.change.dry_run.is_some(),
        );
        if !drain && current.spec.regions[index].drain {
            println!(
                "{} stays drained: spec.regions[{index}].drain is true in the app's manifest; change it there",
                args.region
            );
        }
        return Ok(());
    }
    bail!(
        "{} changed five times while its drain was being set: try again",
        args.app
    )
}

/// Before a cordon: the apps that carry traffic in the region, which the
/// cordon moves (or, with no other region to take it, leaves at weight 0).
/// Only a note: without the right to list every app it says so.
async fn preview_cordon(client: &Client, region: &str) {
    let apps: Api<MultiRegionApp> = Api::all(client.clone());
    let listed = match apps.list(&ListParams::default()).await {
        Ok(listed) => listed.items,
        Err(err) => {
            println!("cannot list the apps to preview the cordon: {err}");
            return;
        }
    };
    let serving = crate::plan::controls::serving_in(&listed, region);
    if serving.is_empty() {
        println!("no app carries traffic in {region}: the cordon moves nothing");
    } else {
        println!(
            "the cordon takes {region}'s traffic away from: {}",
            serving.join(", ")
        );
    }
}

/// Sets spec.cordoned of a Region.
pub async fn cordon(args: RegionArgs, cordoned: bool) -> Result<()> {
    let (client, _) = connect(&args.hub).await?;
    if cordoned {
        preview_cordon(&client, &args.region).await;
    }
    let api: Api<Region> = Api::all(client);
    let current = api
        .get(&args.region)
        .await
        .with_context(|| format!("region {}", args.region))?;
    let patch = json!({"spec": {"cordoned": cordoned}});
    let patched = api
        .patch(
            &args.region,
            &patch_params(&args.change),
            &Patch::Merge(&patch),
        )
        .await
        .with_context(|| format!("setting spec.cordoned of region {}", args.region))?;
    report(
        "region",
        &args.region,
        "spec.cordoned",
        &current.spec.cordoned.to_string(),
        &patched.spec.cordoned.to_string(),
        args.change.dry_run.is_some(),
    );
    Ok(())
}
