// Command regionapp answers every request with the name of the region it
// serves, so a client sees which region answered: in the body (one line),
// and in the X-Region header. /healthz answers 200 for health checks.
//
// With a database, POST /writes?id=N inserts the row (N, region) into the
// table "writes" and answers 200 with the region's name only after the
// commit returned (with synchronous replication: after the standbys the
// primary waits for confirmed it). A refused or failed write answers 503
// with the database's message (a standby or a fenced primary refuses
// writes). Load clients count acknowledged writes this way, and after a
// failover read which of them the new primary lacks.
//
// Configuration, by flag or environment (flags win):
//
//	-region / REGION          the region's name (default "unknown")
//	-listen / LISTEN          the address to listen on (default ":8080")
//	-database / DATABASE_URL  a libpq URI of the region's database (none: no write path)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

func setting(name, env, fallback, usage string) *string {
	value := os.Getenv(env)
	if value == "" {
		value = fallback
	}
	return flag.String(name, value, usage)
}

// writes answers POST /writes?id=N: the row is inserted, then the answer
// is the region's name.
func writes(region string, db *pgxpool.Pool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST /writes?id=N", http.StatusMethodNotAllowed)
			return
		}
		id, err := strconv.ParseInt(r.URL.Query().Get("id"), 10, 64)
		if err != nil {
			http.Error(w, "id: want an integer", http.StatusBadRequest)
			return
		}
		if db == nil {
			http.Error(w, "region "+region+" has no database (-database)", http.StatusNotFound)
			return
		}
		_, err = db.Exec(r.Context(), "INSERT INTO writes (id, region) VALUES ($1, $2)", id, region)
		if err != nil {
			http.Error(w, "write refused: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("X-Region", region)
		fmt.Fprintln(w, region)
	}
}

func handler(region string, db *pgxpool.Pool) http.Handler {
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/writes", writes(region, db))
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Region", region)
		w.Header().Set("X-Served-By", host)
		fmt.Fprintln(w, region)
	})
	return mux
}

func main() {
	region := setting("region", "REGION", "unknown", "the region's name")
	listen := setting("listen", "LISTEN", ":8080", "address to listen on")
	database := setting("database", "DATABASE_URL", "", "libpq URI of the region's database (enables POST /writes)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var db *pgxpool.Pool
	if *database != "" {
		// The pool connects lazily: the endpoint serves reads while its
		// database is down, and writes once it is back.
		config, err := pgxpool.ParseConfig(*database)
		if err != nil {
			log.Fatalf("-database: %v", err)
		}
		// Enough connections that commits waiting on a distant standby
		// do not queue behind each other (pgx's default is 4).
		config.MaxConns = 32
		pool, err := pgxpool.NewWithConfig(ctx, config)
		if err != nil {
			log.Fatalf("-database: %v", err)
		}
		defer pool.Close()
		db = pool
	}
	server := &http.Server{Addr: *listen, Handler: handler(*region, db), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		done, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = server.Shutdown(done)
	}()
	log.Printf("region %q answering on %s", *region, *listen)
	if err := server.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
