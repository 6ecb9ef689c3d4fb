// Package failpoint names the steps of a send at which the crash tests of
// cmd/iapd kill the process (kill -9 at every step of an SMS send and of
// a letter, issue 13). Hit(step) is a no-op in every normal build; only a
// binary built with the tag iapd_failpoints (the abuse suite builds one)
// SIGKILLs itself at the step named by the environment variable
// IAPD_FAILPOINT. The production binary carries no failpoint code.
//
// It imports only the standard library.
package failpoint
