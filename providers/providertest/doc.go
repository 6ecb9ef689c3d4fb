// Package providertest holds the conformance suites of the provider SPI:
// one function per capability (TestSMSSender, TestEmailSender, …) that
// every adapter's own tests call with a harness describing the instance
// under test and its (local, fake) vendor, as go-cloud's drivertest does.
//
// A suite checks the contract the services rely on — results in order,
// one per message, failures classified Invalid / Unavailable /
// Indeterminate, delivery reports only from authentic callbacks — not a
// vendor's wire format, which each adapter's tests pin against a local
// server speaking that vendor's API.
//
// It imports testing, providers and the standard library only; it is
// imported only from _test files.
package providertest
