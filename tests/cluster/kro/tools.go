//go:build tools

// Package tools pins kro's own controller, built by scripts/cluster for the test that hands an
// instance from kroxide back to kro (host/tests/controller.rs).
package tools

import _ "github.com/kubernetes-sigs/kro/cmd/controller"
