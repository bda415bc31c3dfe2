// The region's stand-in workload and ingress: an HTTP server that answers
// with its region's name. localregions runs it as each local region's
// endpoint; the kind walkthrough runs it as the example app's container.
module multiregion.local/controlplane/regionapp

go 1.26.0

require github.com/jackc/pgx/v5 v5.13.0

require (
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/jackc/puddle/v2 v2.2.3 // indirect
	golang.org/x/sync v0.22.0 // indirect
	golang.org/x/text v0.41.0 // indirect
)
