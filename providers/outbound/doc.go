// Package outbound is iapd's outbound network policy: the dial Guard every
// connection iapd opens goes through (in air-gapped mode it refuses any
// host that was not allowed, a configured provider's or upstream's, before
// the name is resolved), the pooled Outbound transport on it that the
// providers' and the proxy's HTTP clients use, and CallerURL, the client
// for URLs a caller chose (SMS delivery-report webhooks, alert webhooks),
// which dials public addresses only unless the operator allows more (SSRF).
//
// It sits under providers because providers are its first users (their
// Deps.HTTP is an Outbound client); rpc/sms, proxy and cmd/iapd use it too,
// so it must stay a leaf: it imports only the standard library. It must
// not import providers, rpc/..., proxy, storage/..., metrics or cmd.
package outbound
