package providers

import "strings"

// SelectContacts returns at most n of cs (none when n <= 0), chosen as
// lead mining and website reveal ask (PROTOCOL §10.1, §11): with roles,
// the contacts whose Role is one of them (compared ignoring case), those
// of the first role first, then the second's, …; otherwise, with
// seniorities, the contacts whose Seniority is one of them; otherwise the
// first n. Contacts keep their order within a rank. cs is not modified;
// the result shares no memory with it.
func SelectContacts(cs []Contact, n int, roles, seniorities []string) []Contact {
	if n <= 0 || len(cs) == 0 {
		return nil
	}
	out := make([]Contact, 0, min(n, len(cs)))
	switch {
	case len(roles) > 0:
		taken := make([]bool, len(cs))
		for _, r := range roles {
			for i, c := range cs {
				if len(out) == n {
					return out
				}
				if !taken[i] && r != "" && strings.EqualFold(c.Role, r) {
					taken[i] = true
					out = append(out, c)
				}
			}
		}
	case len(seniorities) > 0:
		for _, c := range cs {
			if len(out) == n {
				break
			}
			for _, s := range seniorities {
				if s != "" && strings.EqualFold(c.Seniority, s) {
					out = append(out, c)
					break
				}
			}
		}
	default:
		out = append(out, cs[:min(n, len(cs))]...)
	}
	return out
}
