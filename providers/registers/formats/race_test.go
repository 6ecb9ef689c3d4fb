//go:build race

package formats

// raceEnabled: the race detector's instrumentation makes the 200 000-row
// heap test take minutes and distorts the heap it measures.
const raceEnabled = true
