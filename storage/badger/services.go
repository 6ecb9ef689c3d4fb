package badger

import (
	"context"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/iapd/iapd/storage"
)

// EnsureService creates the service or updates its policy (AutoRegister,
// TrialCredits, Description, UnitName) and returns what is stored. The key
// and creation time of an existing service are kept; a new service gets
// s's key if s.HasKey (Exists if another service has it) and the current
// time as CreatedAt. Invalid for a bad name, trial credits outside
// [0, MaxCredits], a zero key hash or over-long texts.
func (l *Ledger) EnsureService(ctx context.Context, s storage.Service) (storage.Service, error) {
	const op = "ensure service"
	if err := l.enter(op, ctx); err != nil {
		return storage.Service{}, err
	}
	defer l.leave()
	if err := s.Check(op); err != nil {
		return storage.Service{}, err
	}
	var out storage.Service
	defer l.services.writing()()
	err := l.write(op, nil, func(tx *wtxn, now time.Time) (error, error) {
		cur, found, err := tx.service(s.Name)
		if err != nil {
			return nil, err
		}
		if found {
			next := cur
			next.AutoRegister = s.AutoRegister
			next.TrialCredits = s.TrialCredits
			next.Description = s.Description
			next.UnitName = s.UnitName
			out = next
			if next == cur {
				return nil, nil
			}
			return nil, putService(tx, &next)
		}
		next := s
		next.CreatedAt = now
		if !next.HasKey {
			next.KeyHash = [32]byte{}
		} else {
			taken, err := tx.get(keyHashKey(next.KeyHash), func([]byte) error { return nil })
			if err != nil {
				return nil, err
			}
			if taken {
				return nil, storage.E(op, storage.Exists, "another service has this key")
			}
			if err := tx.set(keyHashKey(next.KeyHash), encodeName(next.Name)); err != nil {
				return nil, err
			}
		}
		out = next
		return nil, putService(tx, &next)
	})
	if err != nil {
		return storage.Service{}, err
	}
	return out, nil
}

// Service returns one service. Invalid for a bad name, NotFound if
// unknown.
func (l *Ledger) Service(ctx context.Context, name storage.ServiceName) (storage.Service, error) {
	const op = "service"
	if err := l.enter(op, ctx); err != nil {
		return storage.Service{}, err
	}
	defer l.leave()
	if !storage.ValidServiceName(string(name)) {
		return storage.Service{}, storage.E(op, storage.Invalid, "invalid service name")
	}
	var s storage.Service
	found, err := l.pointRead(op, serviceKey(name), func(b []byte) (err error) {
		s, err = decodeService(b)
		return err
	})
	if err == nil && !found {
		err = storage.E(op, storage.NotFound, "no such service")
	}
	return s, err
}

// Services lists all services by name.
func (l *Ledger) Services(ctx context.Context) ([]storage.Service, error) {
	const op = "services"
	if err := l.enter(op, ctx); err != nil {
		return nil, err
	}
	defer l.leave()
	var out []storage.Service
	err := l.view(op, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{pService}, PrefetchValues: true, PrefetchSize: 16})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var s storage.Service
			if err := it.Item().Value(func(b []byte) (err error) {
				s, err = decodeService(b)
				return err
			}); err != nil {
				return err
			}
			out = append(out, s)
		}
		return nil
	})
	return out, err
}

// SetServiceKey stores the hash of a new key, replacing any previous one
// (rotation: the old key stops working at once). Setting the key the
// service already has changes nothing. NotFound if the service is unknown;
// Exists if another service already has that key; Invalid for a bad name
// or a zero hash.
func (l *Ledger) SetServiceKey(ctx context.Context, name storage.ServiceName, keyHash [32]byte) error {
	const op = "set service key"
	if err := l.enter(op, ctx); err != nil {
		return err
	}
	defer l.leave()
	if err := storage.CheckServiceKey(op, name, keyHash); err != nil {
		return err
	}
	defer l.services.writing()()
	return l.write(op, nil, func(tx *wtxn, now time.Time) (error, error) {
		s, found, err := tx.service(name)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, storage.E(op, storage.NotFound, "no such service")
		}
		if s.HasKey && s.KeyHash == keyHash {
			return nil, nil
		}
		var owner storage.ServiceName
		taken, err := tx.get(keyHashKey(keyHash), func(b []byte) (err error) {
			owner, err = decodeName(b)
			return err
		})
		if err != nil {
			return nil, err
		}
		if taken && owner != name {
			return nil, storage.E(op, storage.Exists, "another service has this key")
		}
		if s.HasKey {
			if err := tx.del(keyHashKey(s.KeyHash)); err != nil {
				return nil, err
			}
		}
		if err := tx.set(keyHashKey(keyHash), encodeName(name)); err != nil {
			return nil, err
		}
		s.HasKey, s.KeyHash = true, keyHash
		return nil, putService(tx, &s)
	})
}

// ServiceByKey returns the service whose key hashes to keyHash.
// Unauthorized if none. Found services are cached (cache.go) until the next
// service write.
func (l *Ledger) ServiceByKey(ctx context.Context, keyHash [32]byte) (storage.Service, error) {
	const op = "service by key"
	if err := l.enter(op, ctx); err != nil {
		return storage.Service{}, err
	}
	defer l.leave()
	if keyHash == ([32]byte{}) {
		return storage.Service{}, storage.E(op, storage.Unauthorized, "unknown service key")
	}
	s, ok, gen := l.services.get(keyHash)
	if ok {
		return s, nil
	}
	var name storage.ServiceName
	found, err := l.pointRead(op, keyHashKey(keyHash), func(b []byte) (err error) {
		name, err = decodeName(b)
		return err
	})
	if err == nil && !found {
		err = storage.E(op, storage.Unauthorized, "unknown service key")
	}
	if err == nil {
		found, err = l.pointRead(op, serviceKey(name), func(b []byte) (err error) {
			s, err = decodeService(b)
			return err
		})
		if err == nil && (!found || !s.HasKey || s.KeyHash != keyHash) {
			// A stale index entry: never trust it.
			err = storage.E(op, storage.Unauthorized, "unknown service key")
		}
	}
	if err != nil {
		return storage.Service{}, err
	}
	l.services.put(gen, keyHash, s) // durable: pointRead waited for it
	return s, nil
}
