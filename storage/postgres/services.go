package postgres

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/iapd/iapd/storage"
)

const serviceCols = "name, key_hash, auto_register, trial_credits, description, unit_name, created_at"

func scanService(row pgx.Row) (storage.Service, error) {
	var s storage.Service
	var key []byte
	err := row.Scan(&s.Name, &key, &s.AutoRegister, &s.TrialCredits, &s.Description, &s.UnitName, &s.CreatedAt)
	if len(key) == 32 {
		s.HasKey = true
		copy(s.KeyHash[:], key)
	}
	s.CreatedAt = s.CreatedAt.UTC()
	return s, err
}

// EnsureService creates the service or updates its policy (AutoRegister,
// TrialCredits, Description, UnitName) and returns what is stored; the key
// and creation time of an existing service are kept. Exists if a new
// service's key belongs to another (the unique key_hash decides); Invalid
// for a bad name, trial credits outside [0, MaxCredits], a zero key hash
// or over-long texts. One statement (INSERT … ON CONFLICT DO UPDATE).
func (l *Ledger) EnsureService(ctx context.Context, s storage.Service) (storage.Service, error) {
	const op = "ensure service"
	if err := l.enter(op, ctx); err != nil {
		return storage.Service{}, err
	}
	defer l.leave()
	if err := s.Check(op); err != nil {
		return storage.Service{}, err
	}
	var key []byte
	if s.HasKey {
		key = s.KeyHash[:]
	}
	var out storage.Service
	defer l.keys.drop()
	err := l.write(ctx, op, func(tx *wtx, now time.Time) (error, error) {
		var err error
		out, err = scanService(tx.QueryRow(ctx, `INSERT INTO iapd_services (`+serviceCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (name) DO UPDATE SET auto_register = excluded.auto_register, trial_credits = excluded.trial_credits,
	description = excluded.description, unit_name = excluded.unit_name
RETURNING `+serviceCols, s.Name, key, s.AutoRegister, s.TrialCredits, s.Description, s.UnitName, now))
		if sqlState(err) == "23505" {
			return nil, storage.E(op, storage.Exists, "another service has this key")
		}
		return nil, err
	})
	if err != nil {
		return storage.Service{}, err
	}
	return out, nil
}

// Service returns one service. Invalid for a bad name, NotFound if
// unknown. It reads the database each time: a key or policy another node
// changed is seen at once.
func (l *Ledger) Service(ctx context.Context, name storage.ServiceName) (storage.Service, error) {
	const op = "service"
	if err := l.enter(op, ctx); err != nil {
		return storage.Service{}, err
	}
	defer l.leave()
	if !storage.ValidServiceName(string(name)) {
		return storage.Service{}, storage.E(op, storage.Invalid, "invalid service name")
	}
	s, err := scanService(l.pool.QueryRow(ctx, "SELECT "+serviceCols+" FROM iapd_services WHERE name = $1", name))
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.Service{}, storage.E(op, storage.NotFound, "no such service")
	}
	if err != nil {
		return storage.Service{}, l.wrap(op, err)
	}
	return s, nil
}

// Services lists all services by name.
func (l *Ledger) Services(ctx context.Context) ([]storage.Service, error) {
	const op = "services"
	if err := l.enter(op, ctx); err != nil {
		return nil, err
	}
	defer l.leave()
	rows, err := l.pool.Query(ctx, "SELECT "+serviceCols+" FROM iapd_services ORDER BY name")
	if err != nil {
		return nil, l.wrap(op, err)
	}
	defer rows.Close()
	var out []storage.Service
	for rows.Next() {
		s, err := scanService(rows)
		if err != nil {
			return nil, l.wrap(op, err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, l.wrap(op, err)
	}
	return out, nil
}

// SetServiceKey stores the hash of a new key, replacing any previous one.
// NotFound if the service is unknown; Exists if another service already
// has that key (the unique key_hash decides); Invalid for a bad name or a
// zero hash.
func (l *Ledger) SetServiceKey(ctx context.Context, name storage.ServiceName, keyHash [32]byte) error {
	const op = "set service key"
	if err := l.enter(op, ctx); err != nil {
		return err
	}
	defer l.leave()
	if err := storage.CheckServiceKey(op, name, keyHash); err != nil {
		return err
	}
	defer l.keys.drop()
	return l.write(ctx, op, func(tx *wtx, now time.Time) (error, error) {
		tag, err := tx.Exec(ctx, "UPDATE iapd_services SET key_hash = $2 WHERE name = $1", name, keyHash[:])
		if sqlState(err) == "23505" {
			return nil, storage.E(op, storage.Exists, "another service has this key")
		}
		if err == nil && tag.RowsAffected() == 0 {
			return nil, storage.E(op, storage.NotFound, "no such service")
		}
		return nil, err
	})
}

// ServiceByKey returns the service whose key hashes to keyHash (an index
// lookup). A service found is kept in memory for Options.KeyCacheTTL (2 s
// by default): a key rotated or a policy changed on another node applies
// here within that time (at once on this node: its own writes drop the
// cache). Unknown keys are never cached. Unauthorized if none.
func (l *Ledger) ServiceByKey(ctx context.Context, keyHash [32]byte) (storage.Service, error) {
	const op = "service by key"
	if err := l.enter(op, ctx); err != nil {
		return storage.Service{}, err
	}
	defer l.leave()
	if keyHash == ([32]byte{}) {
		return storage.Service{}, storage.E(op, storage.Unauthorized, "unknown service key")
	}
	if s, ok := l.keys.get(keyHash, time.Now()); ok {
		return s, nil
	}
	gen := l.keys.generation()
	s, err := scanService(l.pool.QueryRow(ctx, "SELECT "+serviceCols+" FROM iapd_services WHERE key_hash = $1", keyHash[:]))
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.Service{}, storage.E(op, storage.Unauthorized, "unknown service key")
	}
	if err != nil {
		return storage.Service{}, l.wrap(op, err)
	}
	l.keys.put(keyHash, s, gen, time.Now())
	return s, nil
}

// keyCache holds services found by key for a bounded time.
type keyCache struct {
	ttl time.Duration // negative: off
	mu  sync.Mutex
	gen uint64 // bumped by this node's service writes
	m   map[[32]byte]cachedService
}

type cachedService struct {
	s  storage.Service
	at time.Time
}

// maxCachedKeys bounds the cache (keys of live services, and rotated ones
// until they age out).
const maxCachedKeys = 1024

func (c *keyCache) get(h [32]byte, now time.Time) (storage.Service, bool) {
	if c.ttl < 0 {
		return storage.Service{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[h]
	if !ok || now.Sub(e.at) >= c.ttl || now.Before(e.at) {
		return storage.Service{}, false
	}
	return e.s, true
}

func (c *keyCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// put keeps s unless this node changed a service since gen was read.
func (c *keyCache) put(h [32]byte, s storage.Service, gen uint64, now time.Time) {
	if c.ttl < 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if c.m == nil || len(c.m) >= maxCachedKeys {
		c.m = map[[32]byte]cachedService{}
	}
	c.m[h] = cachedService{s: s, at: now}
}

// drop empties the cache (a service written on this node).
func (c *keyCache) drop() {
	c.mu.Lock()
	c.gen++
	c.m = nil
	c.mu.Unlock()
}
