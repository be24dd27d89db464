// Command floorproxy is the CPU section's reference point (make bench): the
// least a proxy that makes the same round trips as stipend's can do. Each
// request first makes FLOOR_SIDE_CALLS sequential POSTs of a DynamoDB-sized
// body to FLOOR_SIDE (a server that answers "{}" at once: no signing, no
// JSON, no database), then goes through a bare httputil.ReverseProxy to
// FLOOR_UPSTREAM with FLOOR_UPSTREAM_KEY. With FLOOR_SIDE_CALLS=0 it is the
// bare reverse proxy. It listens on FLOOR_ADDR.
package main

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"time"
)

func main() {
	up, err := url.Parse(os.Getenv("FLOOR_UPSTREAM"))
	if err != nil || up.Host == "" {
		log.Fatalf("floorproxy: FLOOR_UPSTREAM %q is not a URL", os.Getenv("FLOOR_UPSTREAM"))
	}
	calls, err := strconv.Atoi(os.Getenv("FLOOR_SIDE_CALLS"))
	if err != nil || calls < 0 {
		log.Fatalf("floorproxy: FLOOR_SIDE_CALLS %q is not a count", os.Getenv("FLOOR_SIDE_CALLS"))
	}
	side, key := os.Getenv("FLOOR_SIDE"), os.Getenv("FLOOR_UPSTREAM_KEY")
	// About the size of the proxy's reserve UpdateItem.
	body := bytes.Repeat([]byte("x"), 700)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(up)
			r.Out.Header.Set("Authorization", "Bearer "+key)
		},
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, ResponseHeaderTimeout: 30 * time.Second},
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range calls {
			if err := post(r, client, side, body); err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
		}
		rp.ServeHTTP(w, r)
	})
	srv := &http.Server{Addr: os.Getenv("FLOOR_ADDR"), Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}

// post makes one side call and reads its answer.
func post(r *http.Request, c *http.Client, side string, body []byte) error {
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, side, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-amz-json-1.0")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("side call: %s", resp.Status)
	}
	return nil
}
