// Pins the load generator that `make bench` builds (scripts/bench-tools.sh) from the Go module proxy.
module parley.local/benchtools

go 1.22

require github.com/tsenart/vegeta/v12 v12.12.0
