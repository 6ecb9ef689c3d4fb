package rpc

import "github.com/iapd/iapd/storage"

// ServiceInfo is the "service" object a post-19.0 client reads from
// get-accounts-information (PROTOCOL §4.4): the service's description,
// its price description and the packs it sells. The client replaces its
// local iap.service.pack rows with Packs; 18.0 and 19.0 build their
// account values key by key and ignore it.
type ServiceInfo struct {
	Description      string        `json:"description"`
	PriceDescription string        `json:"price_description"`
	Packs            []ServicePack `json:"packs"`
}

// ServicePack is one pack of ServiceInfo; the client indexes id, name,
// credit and price directly.
type ServicePack struct {
	ID     int             `json:"id"`
	Name   string          `json:"name"`
	Credit storage.Credits `json:"credit"`
	Price  storage.Credits `json:"price"`
}

// ServiceInfoFunc returns the ServiceInfo of a service, and false when
// there is none to send (the answer then has no "service" key).
type ServiceInfoFunc func(storage.ServiceName) (ServiceInfo, bool)

// SetServiceInfo makes get-accounts-information answer f's ServiceInfo
// for each account whose service has one (the portal's packs). It may be
// called at any time; nil removes it.
func (s *Server) SetServiceInfo(f ServiceInfoFunc) {
	if f == nil {
		s.serviceInfo.Store(nil)
		return
	}
	s.serviceInfo.Store(&f)
}

// serviceInfoOf returns the ServiceInfo to send for svc, if any.
func (s *Server) serviceInfoOf(svc storage.ServiceName) *ServiceInfo {
	f := s.serviceInfo.Load()
	if f == nil {
		return nil
	}
	info, ok := (*f)(svc)
	if !ok {
		return nil
	}
	if info.Packs == nil {
		info.Packs = []ServicePack{}
	}
	return &info
}
