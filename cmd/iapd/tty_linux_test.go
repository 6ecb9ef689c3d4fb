package main

import (
	"os"
	"testing"
)

// The master side of a pseudo-terminal is a terminal; a pipe is not.
func TestIsTerminal(t *testing.T) {
	pty, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("opening a pseudo-terminal: %v", err)
	}
	defer pty.Close()
	if !isTerminal(pty) || !writesToTerminal(pty) {
		t.Error("a pseudo-terminal not taken for a terminal")
	}
	if newProgress(pty, nil) == nil {
		t.Error("no progress on a terminal")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if isTerminal(w) {
		t.Error("a pipe taken for a terminal")
	}
}
