package main

// wireAlerts — issue 5 (alerts helper). In progress: replaced by the real
// wiring before this branch is committed.
func wireAlerts(w *wiring) error { return nil }
