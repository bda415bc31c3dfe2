//! `MultiRegionApp`: one application run across regions.

// Each printcolumn(...) repeats `type_ = "string"`; clippy reads that as a
// duplicated attribute although kube-derive needs one per column.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::json_schema;
use serde::{Deserialize, Serialize};

use super::region::{three, two};
use super::{Health, MoveReason, Reason, Role};

/// An application placed in several regions, with health checks and
/// traffic weights that move away from a failing region.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "multiregion.io",
    version = "v1alpha1",
    kind = "MultiRegionApp",
    namespaced,
    status = "MultiRegionAppStatus",
    shortname = "mra",
    category = "multiregion",
    doc = "One application run in several regions (clusters): the workload placed in each, how traffic is shared (ActiveActive, ActivePassive, FollowTheSun), how each region's health is judged round by round, and how traffic moves away from a failing region and back. Status holds the weights published to the traffic sinks, each region's role and health, and conditions; Ready is True while a Healthy region carries traffic.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Strategy", type_ = "string", json_path = ".spec.strategy"),
    printcolumn(name = "Active", type_ = "string", json_path = ".status.activeRegion"),
    printcolumn(name = "Weights", type_ = "string", json_path = ".status.weights"),
    printcolumn(name = "Healthy", type_ = "string", json_path = ".status.healthy"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.strategy == 'ActiveActive' || self.regions.size() >= 2").message("ActivePassive and FollowTheSun need at least 2 regions").field_path(".regions"))]
#[x_kube(validation = Rule::new("self.strategy != 'FollowTheSun' || self.regions.all(r, has(r.activeWindow))").message("spec.regions[].activeWindow: FollowTheSun needs an activeWindow on every region").field_path(".regions"))]
#[x_kube(validation = Rule::new("self.strategy != 'ActiveActive' || self.regions.exists(r, r.weight > 0)").message("spec.regions[].weight: ActiveActive needs at least one region with weight > 0").field_path(".regions"))]
#[x_kube(validation = Rule::new("self.standby.replicas <= self.workload.replicas").message("must not be larger than spec.workload.replicas").field_path(".standby.replicas"))]
#[x_kube(validation = Rule::new("self.failover.activeOverride == '' || self.regions.exists(r, r.name == self.failover.activeOverride)").message("must name a region listed in spec.regions").field_path(".failover.activeOverride"))]
#[x_kube(validation = Rule::new("self.strategy == 'ActiveActive' || self.regions.all(r, !has(r.home))").message("spec.regions[].home: home-region routing needs strategy ActiveActive").field_path(".regions"))]
#[serde(rename_all = "camelCase")]
pub struct MultiRegionAppSpec {
    /// How traffic is spread: ActiveActive (every healthy region serves by
    /// weight), ActivePassive (one region serves, the others stand by, in
    /// list order of preference) or FollowTheSun (the region whose UTC
    /// activeWindow contains now serves).
    pub strategy: Strategy,

    /// The regions the app runs in. For ActivePassive the order is the order
    /// of preference.
    #[schemars(length(min = 1, max = 32))]
    #[x_kube(validation = Rule::new("self.all(r, self.filter(s, s.name == r.name).size() == 1)").message("region names must be unique"))]
    pub regions: Vec<AppRegion>,

    /// What is placed in every region.
    pub workload: Workload,

    /// Size of the warm standby in regions that are not active
    /// (ActivePassive, FollowTheSun). 0 is a pilot light.
    #[serde(default)]
    pub standby: Standby,

    /// How each region's health is judged, round by round.
    #[serde(default)]
    pub health_check: HealthCheck,

    /// What happens when a region fails and when it recovers.
    #[serde(default)]
    pub failover: Failover,

    /// Where weights are published besides status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<Traffic>,

    /// ConfigMaps and Secrets of the app's hub namespace copied into every
    /// region before the workload is placed, kept in sync, and removed
    /// when dropped from this list or when the app is deleted. A change
    /// rolls the pods. A region missing a copy is not promoted
    /// (ConfigNotPropagated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagate: Option<Propagate>,

    /// Extra namespaced objects placed in every region before the workload:
    /// each a whole manifest (apiVersion, kind, metadata.name, and the
    /// rest), such as a ServiceAccount, HorizontalPodAutoscaler,
    /// PodDisruptionBudget, Ingress, ConfigMap or a custom resource. They go
    /// into the app's namespace (metadata.namespace, if set, must be it)
    /// with server-side apply and the operator's labels, under the
    /// Deployment's rules: a same-named object the operator did not create
    /// is never adopted (the region is in `Conflict`), and each is removed
    /// from every region when dropped from this list or when the app is
    /// deleted. `regions[].overrides.resources` changes what one region
    /// gets. The kind must be served in every region, and a member joined
    /// with least privilege must allow it (`join --allow-resource`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "manifests")]
    pub resources: Vec<serde_json::Value>,
}

/// The schema of `spec.resources`: whole manifests, each with its
/// apiVersion, kind and name; everything else is the kind's own.
fn manifests(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    json_schema!({
        "type": "array",
        "maxItems": 32,
        "items": {
            "type": "object",
            "required": ["apiVersion", "kind", "metadata"],
            "properties": {
                "apiVersion": {"type": "string", "minLength": 1, "maxLength": 253},
                "kind": {"type": "string", "minLength": 1, "maxLength": 63},
                "deletionPolicy": {
                    "type": "string",
                    "enum": ["Delete", "Orphan"],
                    "description": "What becomes of the placed objects when this manifest leaves the list, its region leaves the app, or the app is deleted: Delete, or Orphan (left as they are, with their data). Default: Orphan for PersistentVolumeClaims and StatefulSets, Delete otherwise. Not part of the placed object."
                },
                "metadata": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1, "maxLength": 253},
                        "namespace": {"type": "string", "maxLength": 63}
                    },
                    "x-kubernetes-preserve-unknown-fields": true
                }
            },
            "x-kubernetes-preserve-unknown-fields": true
        }
    })
}

/// What is copied from the app's hub namespace into every region.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Propagate {
    /// ConfigMaps to copy, by name or label selector.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub config_maps: Vec<PropagatedObjects>,
    /// Secrets to copy, by name or label selector. The operator reads
    /// Secrets in app namespaces only when installed with
    /// `propagation.secrets=true`.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub secrets: Vec<PropagatedObjects>,
}

/// One object by name, or every object whose labels match.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.name) != has(self.selector)").message("set exactly one of name and selector"))]
pub struct PropagatedObjects {
    /// Name of one object in the app's namespace of the hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub name: Option<String>,
    /// Every object in the app's namespace of the hub with these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<MatchLabels>,
}

/// Labels an object must carry, all of them.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("size(self.matchLabels) > 0").message("name at least one label").field_path(".matchLabels"))]
pub struct MatchLabels {
    /// Label keys and values; an object matches when it has every one.
    pub match_labels: std::collections::BTreeMap<String, String>,
}

/// How traffic is spread across regions.
#[derive(schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Strategy {
    /// Every healthy region serves, by weight.
    ActiveActive,
    /// One region serves; the others run a standby and take over in list order.
    ActivePassive,
    /// The region whose UTC activeWindow contains now serves.
    FollowTheSun,
}

/// One region of the app.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppRegion {
    /// Name of a Region (a DNS-1123 label).
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub name: String,

    /// ActiveActive: this region's relative share of traffic (0..1000),
    /// normalised so healthy regions sum to 100.
    #[serde(default = "hundred")]
    #[schemars(range(min = 0, max = 1000))]
    pub weight: i32,

    /// Replicas here when active, instead of workload.replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,

    /// This app's entry point in this region, instead of the Region's
    /// spec.endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048))]
    pub endpoint: Option<String>,

    /// FollowTheSun: the UTC window in which this region is active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_window: Option<ActiveWindow>,

    /// Manual drain: weight 0 here, replicas kept.
    #[serde(default)]
    pub drain: bool,

    /// What this region gets differently: container images, environment
    /// variables, and JSON patches of its Deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<Overrides>,

    /// ActiveActive home-region routing: the users who live here (by
    /// continent and country), sent to this region first by the traffic
    /// sinks, and to the next healthy region in list order while it is
    /// not Healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<Home>,
}

fn hundred() -> i32 {
    100
}

/// Per-region changes to the Deployment placed there, applied in this
/// order: images, env, patches. Checked when the app is applied: a
/// container that does not exist or a patch that does not apply makes the
/// app `InvalidSpec`, naming the field.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Overrides {
    /// Image per container name (a region's own registry, for example).
    #[serde(default)]
    pub images: std::collections::BTreeMap<String, String>,
    /// Environment variables set (added or replaced) in the containers.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub env: Vec<EnvOverride>,
    /// JSON patch operations (RFC 6902 add, replace, remove) on this
    /// region's Deployment, under `/spec/template/` or other `/spec/`
    /// fields the operator does not own (not `/spec/replicas`, use
    /// `regions[].replicas`; not `/spec/selector`).
    #[serde(default)]
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.all(p, p.path.startsWith('/spec/') && !p.path.startsWith('/spec/replicas') && !p.path.startsWith('/spec/selector'))").message("a path must be under /spec/, not /spec/replicas or /spec/selector"))]
    pub patches: Vec<PatchOperation>,
    /// JSON patches of this region's copy of objects in `spec.resources`
    /// (for example a larger `maxReplicas` of an autoscaler).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub resources: Vec<ResourceOverride>,
}

/// Patches of one object of `spec.resources` in one region.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceOverride {
    /// The object's kind, as in `spec.resources`.
    #[schemars(length(min = 1, max = 63))]
    pub kind: String,
    /// The object's metadata.name, as in `spec.resources`.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// JSON patch operations (add, replace, remove) on the object; not of
    /// its apiVersion, kind, name, namespace or the operator's labels.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("self.all(p, !(p.path in ['/apiVersion', '/kind', '/metadata', '/metadata/name', '/metadata/namespace', '/metadata/labels']) && !p.path.startsWith('/metadata/labels/multiregion.io'))").message("a path must not change the object's apiVersion, kind, name, namespace or labels"))]
    pub patches: Vec<PatchOperation>,
}

/// One environment variable for a region.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvOverride {
    /// Variable name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Value.
    #[serde(default)]
    pub value: String,
    /// Containers to set it in; empty: every container.
    #[serde(default)]
    pub containers: Vec<String>,
}

/// One JSON patch operation.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PatchOperation {
    /// add, replace or remove.
    pub op: PatchOp,
    /// A JSON pointer into the object, e.g.
    /// `/spec/template/spec/nodeSelector`.
    #[schemars(length(min = 1, max = 1024))]
    pub path: String,
    /// The value to add or replace with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "any_value")]
    pub value: Option<serde_json::Value>,
}

fn any_value(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    json_schema!({ "x-kubernetes-preserve-unknown-fields": true, "nullable": true })
}

/// A JSON patch operation's kind.
#[derive(schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchOp {
    /// Add a member or array element (`-` appends).
    Add,
    /// Replace an existing value.
    Replace,
    /// Remove an existing value.
    Remove,
}

/// One object of `spec.resources`, by apiVersion, kind and name.
#[derive(
    schemars::JsonSchema,
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRef {
    /// The manifest's apiVersion.
    pub api_version: String,
    /// The manifest's kind.
    pub kind: String,
    /// The manifest's metadata.name.
    pub name: String,
    /// What becomes of the placed objects when this one leaves
    /// `spec.resources`, its region leaves the app, or the app is deleted
    /// (the manifest's `deletionPolicy`). Unset: Orphan for
    /// PersistentVolumeClaims and StatefulSets, Delete otherwise. Delete
    /// of a PersistentVolumeClaim or StatefulSet when the app is deleted
    /// waits for the app's `multiregion.io/delete-data` annotation
    /// (condition `DeletionHeld`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub deletion_policy: Option<DeletionPolicy>,
}

/// What becomes of an object of `spec.resources` that is no longer wanted.
#[derive(
    schemars::JsonSchema,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
)]
pub enum DeletionPolicy {
    /// Deleted from every region.
    Delete,
    /// Left in every region as it is (its data kept); the operator stops
    /// managing it.
    Orphan,
}

impl ResourceRef {
    /// The placed objects are kept when no longer wanted: an explicit
    /// Orphan, or by default a PersistentVolumeClaim or a StatefulSet
    /// (their data).
    pub fn orphaned(&self) -> bool {
        match self.deletion_policy {
            Some(policy) => policy == DeletionPolicy::Orphan,
            None => self.holds_data(),
        }
    }

    /// A kind whose objects hold data: a PersistentVolumeClaim or a
    /// StatefulSet (through its claims).
    pub fn holds_data(&self) -> bool {
        matches!(
            (self.group(), self.kind.as_str()),
            ("", "PersistentVolumeClaim") | ("apps", "StatefulSet")
        )
    }

    /// The API group: what comes before the `/` of the apiVersion (empty
    /// for the core group, `v1`).
    pub fn group(&self) -> &str {
        self.api_version
            .rsplit_once('/')
            .map_or("", |(group, _)| group)
    }

    /// Names the same object: same group, kind and name; the version may
    /// differ (a cluster serves one object under each of its versions).
    pub fn same_object(&self, other: &ResourceRef) -> bool {
        self.group() == other.group() && self.kind == other.kind && self.name == other.name
    }
}

/// Where a region's users live.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new("size(self.continents) + size(self.countries) > 0").message("name at least one continent or country"))]
pub struct Home {
    /// Continents: AF, AN, AS, EU, NA, OC, SA.
    #[serde(default)]
    #[schemars(length(max = 7))]
    pub continents: Vec<Continent>,
    /// Countries, ISO 3166-1 alpha-2 codes in capitals (DE, JP, BR).
    #[serde(default)]
    #[schemars(length(max = 64), inner(regex(pattern = r"^[A-Z]{2}$")))]
    pub countries: Vec<String>,
}

/// A continent, as DNS geolocation names it.
#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize,
)]
pub enum Continent {
    /// Africa.
    AF,
    /// Antarctica.
    AN,
    /// Asia.
    AS,
    /// Europe.
    EU,
    /// North America.
    NA,
    /// Oceania.
    OC,
    /// South America.
    SA,
}

impl Continent {
    /// The two-letter code.
    pub fn code(self) -> &'static str {
        match self {
            Continent::AF => "AF",
            Continent::AN => "AN",
            Continent::AS => "AS",
            Continent::EU => "EU",
            Continent::NA => "NA",
            Continent::OC => "OC",
            Continent::SA => "SA",
        }
    }
}

/// A daily window in UTC, `HH:MM` to `HH:MM`; it may wrap midnight
/// (22:00 to 06:00).
#[derive(KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveWindow {
    /// Start, `HH:MM` UTC, inclusive.
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"), length(max = 5))]
    pub start: String,
    /// End, `HH:MM` UTC, exclusive.
    #[schemars(regex(pattern = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"), length(max = 5))]
    pub end: String,
}

/// The workload placed in every region.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    /// Replicas in an active region (ActiveActive: every region).
    #[serde(default = "one")]
    #[schemars(range(min = 0))]
    pub replicas: i32,

    /// Pod template of the Deployment placed in each region. Its labels are
    /// extended with the app's labels; the selector is set by the operator.
    /// Kept as free-form JSON here so that one malformed template is
    /// reported on its app instead of breaking the watch of all apps.
    #[schemars(schema_with = "any_object")]
    pub template: serde_json::Value,

    /// A Service placed next to the Deployment, selecting its pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<WorkloadService>,
}

fn one() -> i32 {
    1
}

fn any_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "description": "A PodTemplateSpec (metadata and spec), as in a Deployment."
    })
}

/// The Service placed with the workload.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new("self.type == 'NodePort' || self.type == 'LoadBalancer' || self.ports.all(p, !has(p.nodePort))").message("spec.workload.service.ports[].nodePort needs type NodePort or LoadBalancer").field_path(".ports"))]
pub struct WorkloadService {
    /// ClusterIP (default), NodePort or LoadBalancer: how the region's
    /// entry point reaches the pods (a NodePort makes every node of the
    /// region serve the app, for example kind clusters' mapped ports).
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// Ports of the Service.
    #[schemars(length(min = 1, max = 64))]
    pub ports: Vec<WorkloadServicePort>,
}

/// The kind of the placed Service.
#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize,
)]
pub enum ServiceType {
    /// Reachable inside the region only.
    #[default]
    ClusterIP,
    /// Also on a port of every node of the region.
    NodePort,
    /// Also through the region's load balancer.
    LoadBalancer,
}

impl ServiceType {
    /// The Service's `spec.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// One port of the placed Service.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadServicePort {
    /// Name of the port, e.g. http.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub name: Option<String>,
    /// Port the Service listens on.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Container port the traffic goes to; defaults to port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub target_port: Option<i32>,
    /// TCP (default), UDP or SCTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// With type NodePort or LoadBalancer: the node port (30000..32767) the
    /// same in every region; empty: each region picks one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 30000, max = 32767))]
    pub node_port: Option<i32>,
}

/// The warm standby.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Standby {
    /// Replicas in a standby region; 0 is a pilot light (nothing runs until
    /// a failover). At most workload.replicas.
    #[serde(default = "one")]
    #[schemars(range(min = 0))]
    pub replicas: i32,
}

impl Default for Standby {
    fn default() -> Self {
        Standby { replicas: 1 }
    }
}

/// Health rounds per region. A round fails when the Region is unreachable,
/// when fewer than ceil(minReadyRatio * desired) replicas are ready, or when
/// the optional HTTP probe fails.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.timeoutSeconds <= self.intervalSeconds").message("must not exceed spec.healthCheck.intervalSeconds").field_path(".timeoutSeconds"))]
pub struct HealthCheck {
    /// Seconds between rounds (1..3600).
    #[serde(default = "five")]
    #[schemars(range(min = 1, max = 3600))]
    pub interval_seconds: i32,
    /// Seconds the HTTP probe may take (at least 1, at most intervalSeconds).
    #[serde(default = "two")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: i32,
    /// Failed rounds in a row that make a region Unhealthy (>= 1).
    #[serde(default = "three")]
    #[schemars(range(min = 1, max = 100))]
    pub failure_threshold: i32,
    /// Good rounds in a row that make it Healthy again (>= 1).
    #[serde(default = "two")]
    #[schemars(range(min = 1, max = 100))]
    pub success_threshold: i32,
    /// Share of desired replicas that must be ready, in (0, 1].
    #[serde(default = "half")]
    #[x_kube(validation = Rule::new("self > 0.0 && self <= 1.0").message("must be greater than 0 and at most 1"))]
    pub min_ready_ratio: f64,
    /// Seconds after the operator scales a region up (a promoted standby, a
    /// new placement) during which its not-yet-ready pods do not fail
    /// rounds, so a new active region is not failed back while it starts.
    /// Unreachability and HTTP failures still count.
    #[serde(default = "thirty_i32")]
    #[schemars(range(min = 0, max = 3600))]
    pub startup_seconds: i32,
    /// Seconds a region's evidence may stay Unknown for reasons on the
    /// region's side (its API server answering 429, 5xx, 401 or 403; its
    /// watch silent; its Deployment missing or its pods starting) before
    /// each further round counts as failed, so no real failure is skipped
    /// for ever. Hub-side problems (a deleted Region, an unusable kubeconfig
    /// Secret) never count. With an HTTP check the check decides first.
    #[serde(default = "sixty_i32")]
    #[schemars(range(min = 1, max = 3600))]
    pub unknown_seconds: i32,
    /// Optional HTTP probe of the region's endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
}

fn thirty_i32() -> i32 {
    30
}

fn five() -> i32 {
    5
}

fn half() -> f64 {
    0.5
}

fn sixty_i32() -> i32 {
    60
}

impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            interval_seconds: 5,
            timeout_seconds: 2,
            failure_threshold: 3,
            success_threshold: 2,
            min_ready_ratio: 0.5,
            startup_seconds: 30,
            unknown_seconds: 60,
            http: None,
        }
    }
}

/// `GET endpoint + path`; an answer with one of `expectedCodes` (any 2xx
/// when empty) within timeoutSeconds passes. Redirects are never followed,
/// and pass only with `allowRedirects`.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpCheck {
    /// Path to request, e.g. /healthz.
    #[serde(default = "healthz")]
    #[schemars(length(max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("must start with /"))]
    pub path: String,
    /// Host header to send (an ingress routes on it); the endpoint's host
    /// when unset. TLS still names the endpoint's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub host: Option<String>,
    /// `http` or `https`, instead of the endpoint's scheme.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<CheckScheme>,
    /// Port to check instead of the endpoint's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Status codes that pass; empty: any 2xx.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(c, c >= 100 && c <= 599)").message("status codes are 100..599"))]
    pub expected_codes: Vec<i32>,
    /// Let a 3xx answer pass (it is still not followed). Off by default: an
    /// http-to-https redirect answers for dead backends too.
    #[serde(default)]
    pub allow_redirects: bool,
    /// CA certificates (PEM) that HTTPS checks trust instead of the
    /// system's roots: a ConfigMap in the app's namespace of the hub.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<CaBundleRef>,
}

/// A key of a ConfigMap in the app's namespace of the hub holding PEM
/// certificates.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaBundleRef {
    /// The ConfigMap's name.
    #[schemars(length(min = 1, max = 253))]
    pub config_map: String,
    /// The key holding the certificates.
    #[serde(default = "ca_crt")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn ca_crt() -> String {
    "ca.crt".to_string()
}

/// The scheme of an HTTP check.
#[derive(schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckScheme {
    Http,
    Https,
}

impl CheckScheme {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckScheme::Http => "http",
            CheckScheme::Https => "https",
        }
    }
}

impl HttpCheck {
    /// Whether an answer with `code` passes.
    pub fn passes(&self, code: u16) -> bool {
        if !self.expected_codes.is_empty() {
            return self.expected_codes.contains(&i32::from(code));
        }
        (200..300).contains(&code) || (self.allow_redirects && (300..400).contains(&code))
    }
}

fn healthz() -> String {
    "/healthz".to_string()
}

/// Failover and failback policy.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failover {
    /// Move traffic automatically when a region turns Unhealthy. When false
    /// the operator only reports health.
    #[serde(default = "yes")]
    pub automatic: bool,
    /// Automatic: return to the preferred region once it has been Healthy
    /// for failbackHoldSeconds. Manual: stay, and set FailbackPending until
    /// a person sets activeOverride.
    #[serde(default)]
    pub failback: Failback,
    /// Seconds a recovered region must stay Healthy before failback.
    #[serde(default = "three_hundred")]
    #[schemars(range(min = 0, max = 86400))]
    pub failback_hold_seconds: i32,
    /// Flap damping: past this many moves in a sliding hour the weights
    /// freeze and FlapDamped is raised.
    #[serde(default = "six")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_failovers_per_hour: i32,
    /// Manual routing control: make this region active regardless of health
    /// (planned, make-before-break). Empty: no override.
    #[serde(default)]
    #[schemars(length(max = 63))]
    pub active_override: String,
    /// FollowTheSun: seconds before its window opens that the next region
    /// is scaled to full replicas.
    #[serde(default = "three_hundred")]
    #[schemars(range(min = 0, max = 86400))]
    pub prewarm_seconds: i32,
    /// What weights do when no region is Healthy: KeepLast keeps the last
    /// published weights (fail static), Even spreads them equally.
    #[serde(default)]
    pub all_unhealthy: AllUnhealthy,
    /// Optional RPO gate: do not promote a standby whose replication lag is
    /// too high. With `lagFrom.postgres` the operator also promotes and
    /// fences the databases, the traffic's step. ActiveActive with
    /// `lagFrom.postgres` (one primary behind every serving region): the
    /// primary stays in its region while that region may carry traffic;
    /// when it may not (Unhealthy, drained, cordoned, drilled), it moves
    /// through this gate to the region that may and lacks least, and the
    /// weights move whether it can or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<Replication>,
    /// Stepped failback, in percent, step by step (for example [10, 50]):
    /// ActivePassive, the returning region's share of traffic while the
    /// current active keeps the rest; ActiveActive, the share of its weight
    /// a region coming back gets. After the last step it gets everything.
    /// A failed round of the returning region takes its share back to 0 at
    /// once. Empty: one step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10), inner(range(min = 1, max = 100)))]
    #[x_kube(validation = Rule::new("self.isSorted() && self.all(x, self.filter(y, y == x).size() == 1)").message("steps must grow"))]
    pub failback_steps: Vec<i32>,
    /// Seconds each failback step lasts before the next one.
    #[serde(default = "sixty")]
    #[schemars(range(min = 1, max = 3600))]
    pub failback_step_seconds: i32,
    /// Failover drills: practice moves away from a region and back, on a
    /// schedule and on request (`kubectl multiregion drill APP --now`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<Drill>,
    /// Seconds an operator replica that cannot renew its observer Lease
    /// (its region cut off from the rest of the hub) waits before it fences,
    /// in its own region, the apps active there: role label `standby`,
    /// standby replicas. The other replicas promote another region in its
    /// place only after that region's replicas have been gone this long
    /// plus 2 s of allowed clock skew. 0: off (the promotion does not wait,
    /// and status says the old region was not fenced).
    #[serde(default = "ten")]
    #[schemars(range(min = 0, max = 3600))]
    pub self_fence_seconds: i32,
}

/// A practice failover: a planned move away from a region and back, which
/// gives up at any real fault.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Drill {
    /// Days (UTC) on which a scheduled drill may start: Mon, Tue, Wed, Thu,
    /// Fri, Sat, Sun. Empty: no scheduled drills (on request only).
    #[serde(default)]
    #[schemars(length(max = 7))]
    pub weekdays: Vec<Weekday>,
    /// The UTC window in which a scheduled drill may start (at most one a
    /// day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<ActiveWindow>,
    /// The region to move traffic away from. Default: the active region
    /// (ActiveActive: the first region in the list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub away_from: Option<String>,
    /// Seconds traffic stays away once it has moved.
    #[serde(default = "sixty")]
    #[schemars(range(min = 1, max = 86400))]
    pub away_seconds: i32,
    /// Longest a drill may take, from its start until traffic is back;
    /// past it the drill is aborted.
    #[serde(default = "six_hundred")]
    #[schemars(range(min = 10, max = 86400))]
    pub max_duration_seconds: i32,
    /// Dates (`YYYY-MM-DD`, UTC) on which no scheduled drill starts.
    #[serde(default)]
    #[schemars(
        length(max = 366),
        inner(regex(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"))
    )]
    pub blocked_dates: Vec<String>,
    /// Outcomes kept in `status.drills`.
    #[serde(default = "ten")]
    #[schemars(range(min = 1, max = 50))]
    pub keep: i32,
}

impl Default for Drill {
    fn default() -> Self {
        Drill {
            weekdays: Vec::new(),
            window: None,
            away_from: None,
            away_seconds: 60,
            max_duration_seconds: 600,
            blocked_dates: Vec::new(),
            keep: 10,
        }
    }
}

fn six_hundred() -> i32 {
    600
}

fn ten() -> i32 {
    10
}

/// A day of the week.
#[derive(schemars::JsonSchema, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

fn sixty() -> i32 {
    60
}

fn yes() -> bool {
    true
}
fn three_hundred() -> i32 {
    300
}
fn six() -> i32 {
    6
}

impl Default for Failover {
    fn default() -> Self {
        Failover {
            automatic: true,
            failback: Failback::Automatic,
            failback_hold_seconds: 300,
            max_failovers_per_hour: 6,
            active_override: String::new(),
            prewarm_seconds: 300,
            all_unhealthy: AllUnhealthy::KeepLast,
            replication: None,
            failback_steps: Vec::new(),
            failback_step_seconds: 60,
            drill: None,
            self_fence_seconds: 10,
        }
    }
}

/// Whether traffic returns to the preferred region by itself.
#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize,
)]
pub enum Failback {
    /// After failbackHoldSeconds of health.
    #[default]
    Automatic,
    /// Only when a person sets activeOverride.
    Manual,
}

/// Weights when no region is Healthy.
#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize,
)]
pub enum AllUnhealthy {
    /// Keep the last published weights (fail static).
    #[default]
    KeepLast,
    /// Spread traffic equally over every non-drained, non-cordoned region.
    Even,
}

/// RPO gate for promotions.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode != 'Asynchronous' || has(self.maxLagSeconds)").message("required when mode is Asynchronous").field_path(".maxLagSeconds"))]
pub struct Replication {
    /// Highest replication lag, in seconds, at which a standby may be
    /// promoted. Required when mode is Asynchronous; not used otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub max_lag_seconds: Option<i32>,
    /// How the app's data is replicated between regions; it sets the RPO a
    /// promotion can promise. Asynchronous (the default): a standby may be
    /// promoted while it lags up to maxLagSeconds, and writes within that
    /// lag may be lost. SemiSynchronous (a write is acknowledged once one
    /// replica has it) and Synchronous (once every replica has it): a
    /// standby is promoted only when its reported lag is 0 (in sync), so no
    /// acknowledged write is lost; maxLagSeconds is then not used.
    #[serde(default)]
    pub mode: ReplicationMode,
    /// Where the standby's lag is read.
    #[serde(default)]
    pub lag_from: LagSource,
    /// Wait (consistency: keep the failed region active and raise
    /// PromotionBlocked; ActiveActive: the traffic moves, the primary stays
    /// and PromotionBlocked says why) or Promote (availability: promote and
    /// record a Warning Event about possible data loss).
    #[serde(default)]
    pub on_exceeded: OnLagExceeded,
}

/// Where replication lag is read from: the databases themselves
/// (`postgres`), an exporter's metric (`metrics`), or else an annotation
/// someone writes on the standby's Deployment.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.postgres) && has(self.metrics))").message("set at most one of postgres or metrics"))]
pub struct LagSource {
    /// Annotation on the standby's placed Deployment holding the lag in
    /// seconds. Beside it, `multiregion.io/replication-lag-observed-at`
    /// (RFC 3339) says when it was measured: a lag undated, older than 60 s,
    /// negative or not finite counts as not reported. Used when neither
    /// postgres nor metrics is set.
    #[serde(default = "lag_annotation")]
    #[schemars(length(max = 317))]
    pub annotation: String,
    /// PostgreSQL streaming replication between the regions: the operator
    /// reads each region's database every round (the primary's
    /// `pg_stat_replication`, the standbys' received and replayed WAL).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub postgres: Option<PostgresLagSource>,
    /// An OpenMetrics endpoint per region that exports the lag in seconds
    /// (for other stores: Redis, Kafka MirrorMaker, object storage
    /// replication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<MetricsLagSource>,
}

impl Default for LagSource {
    fn default() -> Self {
        LagSource {
            annotation: lag_annotation(),
            postgres: None,
            metrics: None,
        }
    }
}

/// Where each region's PostgreSQL is reached.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PostgresLagSource {
    /// A Secret in the app's namespace of the hub with one key per region
    /// (the region's name), each a libpq URI of that region's database
    /// (`postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=verify-full`), and
    /// optionally `ca.crt`: the PEM certificates every region's server is
    /// checked against (`sslmode` as libpq reads it: `verify-full` checks
    /// the chain and the host, `verify-ca` the chain; `sslrootcert=system`
    /// trusts the Mozilla roots instead), and optionally `tls.crt` and
    /// `tls.key`: a client certificate (PEM chain and private key) shown
    /// to every region's server that asks for one. Its role needs
    /// `pg_monitor` and `pg_file_settings` to read the lag (docs/behaviour.md lists what
    /// promotion and fencing need). A region without a key has no lag.
    pub secret_ref: LocalSecretRef,
}

/// A Secret in the app's namespace.
#[derive(KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalSecretRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// An exporter's metric holding each region's replication lag.
#[derive(KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricsLagSource {
    /// The exporter's URL (http or https, Prometheus text or OpenMetrics);
    /// `{region}` in it is replaced by each region's name, for example
    /// `http://redis-exporter.{region}.example:9121/metrics`.
    #[schemars(length(min = 1, max = 2048))]
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message("must be an http:// or https:// URL"))]
    pub url: String,
    /// The metric holding the lag in seconds; when the exporter labels its
    /// samples with `region`, the sample of that region is read, else the
    /// first.
    #[schemars(length(min = 1, max = 200))]
    pub metric: String,
}

fn lag_annotation() -> String {
    "multiregion.io/replication-lag-seconds".to_string()
}

/// How the app's data is replicated between regions.
#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize,
)]
pub enum ReplicationMode {
    /// Writes are acknowledged before any other region has them: RPO up to
    /// the lag at the failure (bounded by maxLagSeconds through the gate).
    #[default]
    Asynchronous,
    /// Writes are acknowledged once one other replica has them: RPO 0 when
    /// the promoted region is that replica (reports lag 0).
    SemiSynchronous,
    /// Writes are acknowledged once every replica has them: RPO 0.
    Synchronous,
}

impl Replication {
    /// The highest lag, in seconds, at which a standby may be promoted:
    /// maxLagSeconds when asynchronous, 0 (in sync) otherwise.
    pub fn allowed_lag_seconds(&self) -> f64 {
        match self.mode {
            ReplicationMode::Asynchronous => f64::from(self.max_lag_seconds.unwrap_or_default()),
            ReplicationMode::SemiSynchronous | ReplicationMode::Synchronous => 0.0,
        }
    }
}

/// What to do when the standby lags more than maxLagSeconds.
#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize,
)]
pub enum OnLagExceeded {
    /// Do not promote; raise PromotionBlocked.
    #[default]
    Wait,
    /// Promote anyway; record a Warning Event.
    Promote,
}

/// Traffic sinks that receive the weights.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Traffic {
    /// A Gateway API HTTPRoute in the app's namespace of the hub with one
    /// weighted backendRef per region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_route: Option<HttpRouteSink>,
    /// An ExternalDNS DNSEndpoint with one weighted record per region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_endpoint: Option<DnsEndpointSink>,
}

/// The HTTPRoute sink.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSink {
    /// Name of the HTTPRoute.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Gateways the route attaches to.
    #[serde(default)]
    #[schemars(length(max = 32))]
    pub parent_refs: Vec<ParentRef>,
    /// Host names the route answers for (the HTTPRoute's `hostnames`;
    /// `*.` wildcards as Gateway API allows). Empty: every host on the
    /// listener. A hub namespace annotated
    /// `multiregion.io/allowed-domains` must name at least one, each
    /// inside those domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub hostnames: Vec<String>,
    /// Home-region routing (`regions[].home`): the request header, set by
    /// your edge, that carries the user's home region by name. A request
    /// whose header names a home region goes to whichever region serves
    /// that home now (`status.homes`); other requests go by weight.
    #[serde(default = "home_header")]
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = r"^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$")
    )]
    pub home_header: String,
}

fn home_header() -> String {
    "X-Home-Region".to_string()
}

/// A Gateway reference.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParentRef {
    /// Name of the Gateway.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Gateway; defaults to the app's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 63))]
    pub namespace: Option<String>,
    /// The Gateway's listener to attach to (its name); unset: every
    /// listener that admits the route.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "sectionName"
    )]
    #[schemars(length(min = 1, max = 253))]
    pub section_name: Option<String>,
}

/// The DNSEndpoint sink.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DnsEndpointSink {
    /// The record name, e.g. checkout.example.com.
    #[schemars(length(min = 1, max = 253))]
    pub dns_name: String,
    /// TTL of the records in seconds.
    #[serde(default = "thirty", rename = "recordTTL")]
    #[schemars(range(min = 0, max = 86400))]
    pub record_ttl: i64,
    /// Weighted: one record per region, each with its weight
    /// (providerSpecific aws/weight, for providers with weighted routing).
    /// Failover: one record holding only the regions that carry weight, no
    /// set identifiers, for DNS providers without weights (CoreDNS, most
    /// others), which would otherwise answer with every region, failed
    /// ones included.
    #[serde(default)]
    pub mode: DnsMode,
}

/// How weights become DNS records.
#[derive(
    schemars::JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize,
)]
pub enum DnsMode {
    /// One weighted record per region.
    #[default]
    Weighted,
    /// Only the regions that carry weight.
    Failover,
}

fn thirty() -> i64 {
    30
}

/// What the operator decided and observed.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MultiRegionAppStatus {
    /// The generation of the spec this status reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The region serving traffic (ActivePassive, FollowTheSun).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_region: Option<String>,
    /// One-line summary of the weights in spec order, e.g.
    /// `us-east=0 eu-west=100`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<String>,
    /// Healthy regions out of all, e.g. `2/3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<String>,
    /// Per region: role, health, weight and replicas.
    #[serde(default)]
    pub regions: Vec<RegionAppStatus>,
    /// The last move of traffic from one region to another.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failover: Option<FailoverRecord>,
    /// Moves in the last hour.
    #[serde(default)]
    pub failovers_in_last_hour: i32,
    /// When each move of the last hour happened (flap damping).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_failovers: Vec<Time>,
    /// The last one-shot move a person asked for (`kubectl multiregion
    /// failover APP --to REGION`): where to, when it was asked for, and when
    /// traffic got there. Traffic stays there for
    /// `failover.failbackHoldSeconds` after it arrived; then the usual
    /// rules (failback, the schedule) apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub move_request: Option<MoveRequestRecord>,
    /// A planned move waiting for its target to be ready (make-before-break).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_move: Option<PendingMove>,
    /// Regions removed from spec whose placed objects are still being deleted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cleanup_pending: Vec<String>,
    /// The failover drill in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillRun>,
    /// The last drills' outcomes, newest first (`failover.drill.keep`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drills: Vec<DrillOutcome>,
    /// Home-region routing: for each region with a `home`, the region that
    /// serves its users now.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub homes: Vec<HomeRoute>,
    /// The objects of `spec.resources` the operator may have placed in the
    /// regions: those in the spec, and those dropped from it that are not
    /// yet removed from every region.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceRef>,
    /// The data tier's last steps to follow the traffic (fence the old
    /// primary, wait for the target's replay, promote it), in order, each
    /// with its outcome. A failed step stops the move: the weights stay.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_steps: Vec<DataStage>,
    /// The primary database's position as last read (`lagFrom.postgres`):
    /// while the primary does not answer, standbys are measured against
    /// it. Kept here so that an operator that never read the primary
    /// itself (restarted, or a new leader after the old one's region was
    /// lost) can still measure them and promote one; as the primary may
    /// have written unrecorded until the next refresh was due, such an
    /// operator counts a standby's lag up to `readAt` + 30 s +
    /// `intervalSeconds` (or the latest commit a standby replayed).
    /// Rewritten when the primary changes, else at most every 30 s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_position: Option<PrimaryPosition>,
    /// Ready, Degraded, FailedOver, FailbackPending, PromotionBlocked,
    /// FlapDamped, AllRegionsUnhealthy, Conflict, OverrideUnhealthy and
    /// TrafficPublished (with traffic sinks). Ready is Unknown until a
    /// region has been judged.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// A failover drill in progress.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillRun {
    /// The region traffic moves away from.
    pub away_from: String,
    /// Schedule or Request.
    pub trigger: String,
    /// When the drill started.
    pub started: Time,
    /// When traffic had left the region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_at: Option<Time>,
}

/// How one drill ended.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillOutcome {
    /// The region traffic moved away from.
    pub away_from: String,
    /// Schedule or Request.
    pub trigger: String,
    /// When the drill started.
    pub started: Time,
    /// When traffic had left the region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_at: Option<Time>,
    /// Seconds from the start until traffic had left the region: the
    /// measured time to move.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds_to_move: Option<i64>,
    /// When traffic was back on the region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back_at: Option<Time>,
    /// Succeeded or Aborted.
    pub result: String,
    /// Why it was aborted; empty when it succeeded.
    #[serde(default)]
    pub reason: String,
}

/// Who serves one home region's users.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HomeRoute {
    /// The region whose `home` this is.
    pub home: String,
    /// The region its users are sent to: the home region while it is
    /// Healthy and carries traffic, else the next such region in list order.
    pub served_by: String,
    /// Since when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Time>,
}

/// One region of the app, as decided and observed.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegionAppStatus {
    /// The region's name.
    pub name: String,
    /// Active, Standby or Drained.
    #[schemars(with = "String")]
    pub role: Role,
    /// Healthy, Degraded (serving on its endpoint alone while its API
    /// server is out of reach: it keeps its traffic, nothing is placed or
    /// scaled there), Unhealthy or Unknown.
    #[schemars(with = "String")]
    pub health: Health,
    /// Why the last round failed (RegionUnreachable, NotEnoughReadyReplicas,
    /// HttpProbeFailed, Conflict, ...), or the last good state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub reason: Option<Reason>,
    /// Details of the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Traffic weight published for this region (0..100).
    pub weight: i32,
    /// Replicas the operator asks for here.
    pub desired_replicas: i32,
    /// Replicas ready here at the last observation.
    pub ready_replicas: i32,
    /// Failed rounds in a row (counts up to failureThreshold).
    pub consecutive_failures: i32,
    /// Good rounds in a row (counts up to successThreshold).
    pub consecutive_successes: i32,
    /// When health last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    /// When the operator last raised the replicas here (startupSeconds
    /// counts from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scaled_up_at: Option<Time>,
    /// ActiveActive flap damping: when this region lost its traffic in the
    /// last hour because it turned Unhealthy. Past maxFailoversPerHour it
    /// keeps weight 0 until the hour has room.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent_drops: Vec<Time>,
    /// ActiveActive stepped recovery (`failover.failbackSteps`): while this
    /// region comes back, the percent of its weight it gets now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp: Option<Ramp>,
    /// While the operator has no evidence either way about this region
    /// (no round counted): why, and since when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown: Option<UnknownEvidence>,
    /// The region's database as `failover.replication.lagFrom` reads it
    /// (postgres or metrics): its role, lag and where it was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicaStatus>,
}

/// Where a primary database's WAL was, and when that was read.
#[derive(KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrimaryPosition {
    /// The region whose database was the primary.
    pub region: String,
    /// Its position, as PostgreSQL writes an LSN (`0/3000148`): with
    /// synchronous replication, the last position the standbys confirmed.
    pub lsn: String,
    /// When it was read.
    pub read_at: Time,
    /// Its timeline (PostgreSQL's history number, which every promotion
    /// raises): a primary on a lower one is an old primary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeline: Option<i64>,
}

/// One step the data tier took.
#[derive(KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataStage {
    /// Fence, AwaitReplay or Promote.
    pub stage: String,
    /// The region whose database it acted on.
    pub region: String,
    /// Done, Skipped (for example an old primary that does not answer: it
    /// is fenced when it comes back) or Failed.
    pub outcome: String,
    /// What happened, as the database said it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the step ended.
    pub at: Time,
}

/// One region's database, as last read. Rewritten when its role, its
/// verdict against the RPO gate or its problem changes, else at most
/// every 30 s: `kubectl multiregion status` and the
/// `multiregion_replication_lag_seconds` metric show every round's.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaStatus {
    /// Primary, Standby, NeedsRejoin (a fenced primary outside the active
    /// region: rewind it and stream it from the new primary) or Unknown
    /// (not read).
    pub role: String,
    /// Seconds of writes the region lacks (whole seconds, rounded up).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<i64>,
    /// Bytes of WAL the region lacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_bytes: Option<i64>,
    /// Where the lag was read: Primary (what the primary says of this
    /// standby), Standby (its own reading against the primary's last
    /// reported position) or Metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_from: Option<String>,
    /// When it was read.
    pub observed_at: Time,
    /// Read from the standby: how old the primary's position it was
    /// measured against is, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_age_seconds: Option<i64>,
    /// A primary that refuses writes (fenced).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fenced: bool,
    /// Why the lag is not known (the Secret's key, the database's error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A run of observations that said nothing either way about a region.
#[derive(KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnknownEvidence {
    /// MemberTroubled (429, 5xx, 401, 403 from its API server), WatchStale,
    /// WorkloadPending, HttpPending, NotObservedYet, HubSide (a deleted
    /// Region, an unusable kubeconfig Secret: never counted),
    /// ObserversSeeItServing (the leader lost sight of the region but most
    /// operator replicas reach it: never counted) or ObserversDisagree (no
    /// majority of replicas either way yet).
    pub cause: String,
    /// Details, as the member or the hub said them (capped).
    pub message: String,
    /// When the run began. Past `healthCheck.unknownSeconds` a region-side
    /// cause counts as failed rounds.
    pub since: Time,
}

/// One step of a region's way back to its full weight.
#[derive(KubeSchema, Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ramp {
    /// Percent of the region's weight it carries in this step.
    pub share: i32,
    /// When this step began.
    pub since: Time,
}

/// A move of traffic.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailoverRecord {
    /// Region traffic left (empty when there was none).
    pub from: String,
    /// Region traffic went to.
    pub to: String,
    /// Why: the failed region's reason, or Failback, Override, Schedule.
    #[schemars(with = "String")]
    pub reason: MoveReason,
    /// When the failure (or the need to move) was decided.
    pub detected_at: Time,
    /// When the new weights were published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
}

/// A one-shot move a person asked for, as the status records it.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MoveRequestRecord {
    /// The region traffic was asked to move to.
    pub region: String,
    /// When it was asked for (the app's `multiregion.io/move-requested-at`).
    pub requested_at: Time,
    /// When traffic got there; the hold counts from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
}

/// A planned move in progress.
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingMove {
    /// Region being scaled up to take traffic.
    pub to: String,
    /// Failback, Override or Schedule.
    #[schemars(with = "String")]
    pub reason: MoveReason,
    /// When the move started.
    pub since: Time,
    /// Stepped failback: the returning region's share of traffic now, in
    /// percent (the active region keeps the rest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<i32>,
    /// Stepped failback: when the current step began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_since: Option<Time>,
}
