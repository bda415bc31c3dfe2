// The region's stand-in workload and ingress: an HTTP server that answers
// with its region's name. localregions runs it as each local region's
// endpoint; the kind walkthrough runs it as the example app's container.
module multiregion.local/controlplane/regionapp

go 1.26.0
