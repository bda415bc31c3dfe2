//! The command line, as clap reads it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "multiregion",
    version,
    about = "Run one application across several Kubernetes clusters and fail traffic over when a region fails"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the operator against the hub cluster.
    Run(RunArgs),
    /// Print the CustomResourceDefinitions (Region, MultiRegionApp) as YAML.
    Crd,
    /// Show each app's regions: role, health and reason, ready/desired, weight.
    Status(StatusArgs),
    /// What-if, without a cluster: placement and weights before and after a
    /// region fails, how long detection takes, and the playbook's numbers
    /// (cost, availability, traffic lost, RPO) for each strategy.
    Plan(PlanArgs),
    /// Move an app's traffic to a region once (a planned, make-before-break
    /// move, held for failbackHoldSeconds), or hold it there with --pin
    /// (spec.failover.activeOverride).
    Failover(FailoverArgs),
    /// Hand an app's traffic back to its health checks (clears activeOverride
    /// and a one-shot move still holding).
    Release(AppArgs),
    /// Run a failover drill of an app now: a planned move away from a region
    /// and back, which gives up at any real fault (spec.failover.drill).
    Drill(DrillArgs),
    /// Take one region of an app out of traffic, keeping its replicas.
    Drain(RegionOfAppArgs),
    /// Put a drained region of an app back into traffic.
    Undrain(RegionOfAppArgs),
    /// Maintenance: no app may be active in the region; its weights drain to 0.
    Cordon(RegionArgs),
    /// End the maintenance of a region.
    Uncordon(RegionArgs),
    /// Register a member cluster with least privilege: a ServiceAccount and a
    /// ClusterRole with exactly the operator's verbs in the member, a
    /// kubeconfig Secret from its token and the Region in the hub.
    Join(JoinArgs),
    /// Remove what `join` made, in the hub and in the member.
    Unjoin(UnjoinArgs),
    /// Print the member-side RBAC `join` creates, for applying it yourself.
    MemberRbac {
        /// With the rule on Secrets `join --allow-secrets` adds.
        #[arg(long)]
        allow_secrets: bool,
        /// With the rules `join --allow-resource` adds.
        #[arg(long, value_name = "RESOURCE[.GROUP]")]
        allow_resource: Vec<String>,
    },
    /// Print a shell completion script.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// How to reach the hub, as kubectl does. kubectl's habit of putting
/// these before the verb (`multiregion -n shop status`) works too
/// (`cli::hoist_connection_flags`).
#[derive(clap::Args, Clone, Debug)]
pub struct Connection {
    /// Kubeconfig of the hub (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long, env = "MULTIREGION_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Context of that kubeconfig.
    #[arg(long)]
    pub context: Option<String>,
    /// How long to wait for each answer of the hub's API server, as
    /// kubectl's `--request-timeout` (`30s`, `1m`, `500ms`; a bare number
    /// is seconds). Default: no limit.
    #[arg(long, value_parser = request_timeout)]
    pub request_timeout: Option<std::time::Duration>,
}

/// The hub and the namespace of the apps.
#[derive(clap::Args, Clone, Debug)]
pub struct HubArgs {
    #[command(flatten)]
    pub connection: Connection,
    /// Namespace of the apps (default: the context's namespace).
    #[arg(short, long)]
    pub namespace: Option<String>,
}

/// What the verbs that change something take besides the hub.
#[derive(clap::Args, Clone, Debug)]
pub struct Change {
    /// Server-side dry run: show what would change, change nothing
    /// (`--dry-run` or `--dry-run=server`, as kubectl).
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "server")]
    pub dry_run: Option<DryRun>,
}

/// Every flag of `command` and its verbs whose value is the next word
/// (`-n shop`), by the names typed (`-n`, `--namespace`). Flags whose
/// value must be joined (`--dry-run=server`) are not among them.
pub fn value_flags(command: &clap::Command) -> Vec<String> {
    fn collect(command: &clap::Command, names: &mut Vec<String>) {
        let valued = command.get_arguments().filter(|a| {
            !a.is_positional() && a.get_action().takes_values() && !a.is_require_equals_set()
        });
        for arg in valued {
            names.extend(arg.get_short().map(|s| format!("-{s}")));
            names.extend(arg.get_long().map(|l| format!("--{l}")));
        }
        for verb in command.get_subcommands() {
            collect(verb, names);
        }
    }
    let mut names = Vec::new();
    collect(command, &mut names);
    names.sort();
    names.dedup();
    names
}

/// The flags that reach the hub (`HubArgs`), which kubectl users put
/// before the verb (`kubectl -n shop get mra`).
pub fn connection_flags() -> Vec<String> {
    use clap::Args as _;
    value_flags(&HubArgs::augment_args(clap::Command::new("hub")))
}

/// kubectl's forms: `30s`, `1m`, `500ms`, `1h`, or a number of seconds.
fn request_timeout(text: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a duration such as 30s, 1m or 500ms"))?;
    let seconds = |s: u64| std::time::Duration::from_secs(s);
    match unit {
        "ms" => Ok(std::time::Duration::from_millis(n)),
        "s" => Ok(seconds(n)),
        "m" => Ok(seconds(n * 60)),
        "h" => Ok(seconds(n * 3600)),
        _ => Err(format!("{text:?}: the unit must be ms, s, m or h")),
    }
}

/// A token lifetime: a duration of at least 10 minutes (TokenRequest's
/// floor).
fn token_ttl(text: &str) -> Result<std::time::Duration, String> {
    let ttl = request_timeout(text)?;
    if ttl < std::time::Duration::from_secs(600) {
        return Err(format!("{text:?}: a token must live at least 10m"));
    }
    Ok(ttl)
}

/// The one dry run the commands have: the API server's.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DryRun {
    Server,
}

#[derive(clap::Args)]
pub struct StatusArgs {
    /// Only this app.
    pub name: Option<String>,
    #[command(flatten)]
    pub hub: HubArgs,
    /// Every namespace.
    #[arg(short = 'A', long, conflicts_with = "name")]
    pub all_namespaces: bool,
    /// Output format: table, wide (also failed and good rounds in a row
    /// and Unknown evidence), name (`multiregionapp.multiregion.io/NAME`,
    /// one per line), json and yaml (a List for several apps), and
    /// jsonpath=TEMPLATE as kubectl reads it (`{.status.weights}`,
    /// `{range .items[*]}{.metadata.name}{"\n"}{end}`).
    #[arg(short, long, default_value = "table", value_parser = output)]
    pub output: Output,
    /// After the first listing, watch: print an app again each time what
    /// is shown of it changes (and when it is deleted), until interrupted.
    #[arg(short, long)]
    pub watch: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Table,
    Wide,
    Name,
    Json,
    Yaml,
    JsonPath(String),
}

/// `-o`: a format's name, or `jsonpath=TEMPLATE`.
fn output(text: &str) -> Result<Output, String> {
    match text {
        "table" => Ok(Output::Table),
        "wide" => Ok(Output::Wide),
        "name" => Ok(Output::Name),
        "json" => Ok(Output::Json),
        "yaml" => Ok(Output::Yaml),
        _ => match text.strip_prefix("jsonpath=") {
            Some(template) => Ok(Output::JsonPath(template.to_string())),
            None => Err(format!(
                "{text:?}: expected table, wide, name, json, yaml or jsonpath=TEMPLATE"
            )),
        },
    }
}

#[derive(clap::Args)]
pub struct PlanArgs {
    /// Manifests (YAML or JSON, several documents each; `-` reads standard
    /// input), as many as given: every MultiRegionApp is planned, and the
    /// Regions and Namespaces among them stand for the hub's in the
    /// tenancy checks. Other kinds are skipped.
    #[arg(short, long, required = true)]
    pub file: Vec<PathBuf>,
    /// The region to fail (default: the busiest one).
    #[arg(long)]
    pub fail: Option<String>,
    /// Availability of one region (for example 0.999), to compute the app's
    /// availability with independent failures.
    #[arg(long)]
    pub region_availability: Option<f64>,
    /// Output format; json and yaml are for tools.
    #[arg(short, long, value_enum, default_value_t = PlanOutput::Table)]
    pub output: PlanOutput,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum PlanOutput {
    Table,
    Json,
    Yaml,
}

#[derive(clap::Args)]
pub struct AppArgs {
    /// The MultiRegionApp.
    pub app: String,
    #[command(flatten)]
    pub hub: HubArgs,
    #[command(flatten)]
    pub change: Change,
}

#[derive(clap::Args)]
pub struct DrillArgs {
    /// The MultiRegionApp.
    pub app: String,
    /// Start the drill now (sets the app's multiregion.io/drill-requested).
    #[arg(long, required = true)]
    pub now: bool,
    #[command(flatten)]
    pub hub: HubArgs,
    #[command(flatten)]
    pub change: Change,
}

#[derive(clap::Args)]
pub struct FailoverArgs {
    /// The MultiRegionApp.
    pub app: String,
    /// The region to serve from.
    #[arg(long)]
    pub to: String,
    /// Hold traffic there whatever the health rules say, until `release`
    /// (sets spec.failover.activeOverride). Without it the move is
    /// one-shot: traffic stays there for failbackHoldSeconds after it
    /// arrives, then the usual rules (failback, the schedule) apply.
    #[arg(long)]
    pub pin: bool,
    /// Wait until traffic is there (the target ready and the weights
    /// moved), at most --timeout.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits (`5m`, `90s`).
    #[arg(long, default_value = "5m", value_parser = request_timeout, requires = "wait")]
    pub timeout: std::time::Duration,
    #[command(flatten)]
    pub hub: HubArgs,
    #[command(flatten)]
    pub change: Change,
}

#[derive(clap::Args)]
pub struct RegionOfAppArgs {
    /// The MultiRegionApp.
    pub app: String,
    /// One of its regions.
    pub region: String,
    #[command(flatten)]
    pub hub: HubArgs,
    #[command(flatten)]
    pub change: Change,
}

#[derive(clap::Args)]
pub struct RegionArgs {
    /// The Region.
    pub region: String,
    #[command(flatten)]
    pub hub: Connection,
    #[command(flatten)]
    pub change: Change,
}

/// The hub, for commands whose `--kubeconfig` names a member.
#[derive(clap::Args, Clone, Debug)]
pub struct HubOnly {
    /// Kubeconfig of the hub (default: $KUBECONFIG or ~/.kube/config).
    #[arg(long, env = "MULTIREGION_KUBECONFIG")]
    pub hub_kubeconfig: Option<PathBuf>,
    /// Context of that kubeconfig.
    #[arg(long)]
    pub hub_context: Option<String>,
    /// Namespace of the operator in the hub (where Region Secrets live).
    #[arg(long, default_value = "multiregion-system")]
    pub operator_namespace: String,
}

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("member").required(true).args(["member_kubeconfig", "kubeconfig"])))]
pub struct JoinArgs {
    /// Name of the Region to create.
    pub name: String,
    /// Kubeconfig with admin rights in the member: used once to create the
    /// operator's identity there, never stored. (The hub's is
    /// `--hub-kubeconfig`, as karmadactl names them.)
    #[arg(long, value_name = "PATH")]
    pub member_kubeconfig: Option<PathBuf>,
    /// Deprecated: the old name of `--member-kubeconfig`.
    #[arg(long, hide = true, conflicts_with = "member_kubeconfig")]
    pub kubeconfig: Option<PathBuf>,
    /// Context of the member's kubeconfig.
    #[arg(long, visible_alias = "context")]
    pub member_context: Option<String>,
    /// Store the member's kubeconfig even though it skips TLS verification
    /// (refused otherwise: the operator would trust whoever answers).
    #[arg(long)]
    pub insecure_skip_tls_verify: bool,
    /// The region's traffic entry point (Region spec.endpoint).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// The member API server's address as the operator in the hub reaches
    /// it, when it differs from the kubeconfig's (kind: the node's address
    /// on the Docker network).
    #[arg(long)]
    pub internal_server: Option<String>,
    /// Let the operator create, read and delete Secrets in this region, so
    /// that apps can propagate Secrets there (spec.propagate.secrets). Off:
    /// the operator's identity cannot read any Secret in the member.
    #[arg(long)]
    pub allow_secrets: bool,
    /// Let the operator place, read and delete this kind in this region,
    /// for apps' spec.resources: RESOURCE[.GROUP] as kubectl names it
    /// (serviceaccounts, horizontalpodautoscalers.autoscaling,
    /// poddisruptionbudgets.policy). Repeat for each kind.
    #[arg(long, value_name = "RESOURCE[.GROUP]")]
    pub allow_resource: Vec<String>,
    /// Let apps of this hub namespace use the region (Region
    /// spec.allowedNamespaces). Repeat for each namespace. Without it (or
    /// --allow-all-namespaces) no app may use the region until its
    /// spec.allowedNamespaces is set.
    #[arg(
        long,
        value_name = "NAMESPACE",
        conflicts_with = "allow_all_namespaces"
    )]
    pub allow_namespace: Vec<String>,
    /// Let apps of every hub namespace use the region
    /// (spec.allowedNamespaces: {}).
    #[arg(long)]
    pub allow_all_namespaces: bool,
    /// How long the identity's token is valid (`24h`, `90m`; at least
    /// 10m). The operator renews it once two thirds of that have passed.
    #[arg(long, default_value = "24h", value_parser = token_ttl)]
    pub token_ttl: std::time::Duration,
    #[command(flatten)]
    pub hub: HubOnly,
}

#[derive(clap::Args)]
pub struct UnjoinArgs {
    /// Name of the Region.
    pub name: String,
    /// Kubeconfig with admin rights in the member, to remove its side too
    /// (without it only the hub's side goes).
    #[arg(long, value_name = "PATH", visible_alias = "kubeconfig")]
    pub member_kubeconfig: Option<PathBuf>,
    /// Context of the member's kubeconfig.
    #[arg(long, visible_alias = "context")]
    pub member_context: Option<String>,
    /// Remove the Region even while apps still list it in spec.regions.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub hub: HubOnly,
}

#[derive(clap::Args)]
pub struct RunArgs {
    /// Kubeconfig of the hub. Default: in-cluster config, else $KUBECONFIG or ~/.kube/config.
    #[arg(long, env = "MULTIREGION_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Context of that kubeconfig.
    #[arg(long, env = "MULTIREGION_CONTEXT")]
    pub context: Option<String>,
    /// Namespace the operator runs in; Region Secrets are read from here.
    #[arg(
        long,
        env = "MULTIREGION_NAMESPACE",
        default_value = "multiregion-system"
    )]
    pub namespace: String,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "MULTIREGION_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
    /// Who may read /metrics: everyone who reaches the port (none), or
    /// only bearer tokens the hub authenticates and allows `get` on the
    /// non-resource URL /metrics (kubernetes: a TokenReview and a
    /// SubjectAccessReview, remembered for a minute). The chart sets
    /// kubernetes.
    #[arg(long, env = "MULTIREGION_METRICS_AUTH", value_enum, default_value_t = MetricsAuth::None)]
    pub metrics_auth: MetricsAuth,
    /// Log format.
    #[arg(long, env = "MULTIREGION_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Name of this instance in Events and the Lease (defaults to the pod name or host name).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Leader election: only the holder of the Lease `multiregion-operator`
    /// in --namespace writes; other replicas stand by.
    #[arg(long, env = "MULTIREGION_LEADER_ELECTION", default_value_t = false)]
    pub leader_election: bool,
    /// Lease duration in seconds: a standby takes over within it. The leader
    /// stops writing when it could not renew for two thirds of it.
    #[arg(long, env = "MULTIREGION_LEASE_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(2..=300))]
    pub lease_seconds: u64,
    /// This hub's identity, put on every object placed in the regions
    /// (label multiregion.io/hub) so that two hubs never fight over one
    /// member cluster. Default: the UID of the hub's kube-system namespace.
    #[arg(long, env = "MULTIREGION_HUB_NAME", default_value = "")]
    pub hub_name: String,
    /// The region this replica runs in: it probes every Region from there
    /// and publishes what it sees (its observer Lease). Default: the
    /// `topology.kubernetes.io/region` label of the node named by
    /// $NODE_NAME, if any.
    #[arg(long, env = "MULTIREGION_REGION")]
    pub region: Option<String>,
    /// Read Secrets in every namespace of the hub, so that apps can copy
    /// them into their regions (spec.propagate.secrets). Off by default:
    /// it needs cluster-wide read access to Secrets on the hub.
    #[arg(long, env = "MULTIREGION_PROPAGATE_SECRETS", default_value_t = false)]
    pub propagate_secrets: bool,
    /// Renew a member's token (made by `join --token-ttl`) once it expires
    /// within this much, if that comes before two thirds of its life
    /// (`30m`, `2h`). Default 0: at two thirds.
    #[arg(long, env = "MULTIREGION_RENEW_MEMBER_TOKENS_WITHIN", default_value = "0s", value_parser = request_timeout)]
    pub renew_member_tokens_within: std::time::Duration,
    /// Keep a short-lived token of this ServiceAccount (in --namespace) in
    /// the Secret NAME-bearer-token (key `token`), renewed at two thirds
    /// of its life: for a scraper that sends a token read from a Secret
    /// (the chart's `metrics.scraperToken`). The Secret must exist.
    #[arg(long, env = "MULTIREGION_SCRAPER_SERVICE_ACCOUNT")]
    pub scraper_service_account: Option<String>,
    /// How long each scraper token lives (at least 10m).
    #[arg(long, env = "MULTIREGION_SCRAPER_TOKEN_TTL", default_value = "1h", value_parser = token_ttl)]
    pub scraper_token_ttl: std::time::Duration,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MetricsAuth {
    None,
    Kubernetes,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
