package providers

// Sandboxed is the capability of an instance that may do nothing for real
// (the outbox writes SMS and e-mail to files, the folder's default letters
// directory is inside the data directory, the sample company directory is
// fictitious): Odoo is told "sent" or given data, credit is captured, and
// nothing leaves the machine. cmd/iapd reports every service served by such
// an instance (log, /readyz, the iap_provider_sandbox gauge) and refuses to
// start on one when told to. An instance that does not implement it is real.
type Sandboxed interface {
	// Sandbox reports whether the instance, as configured, sends or
	// answers nothing real. Constant for the instance's life.
	Sandbox() bool
}
