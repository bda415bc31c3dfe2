// Command regionapp answers every request with the name of the region it
// serves, so a client sees which region answered: in the body (one line),
// and in the X-Region header. /healthz answers 200 for health checks.
//
// Configuration, by flag or environment (flags win):
//
//	-region / REGION   the region's name (default "unknown")
//	-listen / LISTEN   the address to listen on (default ":8080")
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
	"syscall"
	"time"
)

func setting(name, env, fallback, usage string) *string {
	value := os.Getenv(env)
	if value == "" {
		value = fallback
	}
	return flag.String(name, value, usage)
}

func handler(region string) http.Handler {
	host, _ := os.Hostname()
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
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
	flag.Parse()

	server := &http.Server{Addr: *listen, Handler: handler(*region), ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
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
