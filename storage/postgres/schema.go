package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one forward-only schema step.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in version order; file names
// are NNNN_name.sql, versions 1, 2, … without gaps.
func migrations() ([]migration, error) {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, n := range names {
		base := strings.TrimPrefix(n, "migrations/")
		num, _, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: name is not NNNN_name.sql", base)
		}
		b, err := migrationFiles.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: base, sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %s: version %d, want %d", m.name, m.version, i+1)
		}
	}
	return out, nil
}

// SchemaVersion is the newest schema this build knows.
func SchemaVersion() int {
	ms, err := migrations()
	if err != nil {
		panic(err) // the embedded files are part of the build
	}
	return len(ms)
}

// migrateLockKey is the pg_advisory_lock key under which nodes migrate
// ("iapd" in ASCII).
const migrateLockKey = 0x69617064

// SchemaTooNewError is Open's and Migrate's refusal of a database whose
// schema a newer iapd wrote.
type SchemaTooNewError struct{ Have, Know int }

func (e *SchemaTooNewError) Error() string {
	return fmt.Sprintf("the database schema is version %d, this iapd knows up to %d: upgrade iapd on this node (never downgrade a shared ledger)", e.Have, e.Know)
}

// migrate brings the schema to SchemaVersion under the advisory lock, one
// transaction per migration, and returns the versions before and after.
// With apply false it only reads the version (and still refuses one that
// is too new).
func migrate(ctx context.Context, pool *pgxpool.Pool, apply bool) (from, to int, err error) {
	ms, err := migrations()
	if err != nil {
		return 0, 0, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Release()
	if apply {
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(migrateLockKey)); err != nil {
			return 0, 0, err
		}
		defer func() {
			// A failed unlock ends with the connection: release it broken.
			if _, uerr := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(migrateLockKey)); uerr != nil {
				_ = conn.Conn().Close(context.WithoutCancel(ctx))
			}
		}()
		if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS iapd_schema (
	version    integer PRIMARY KEY,
	name       text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`); err != nil {
			return 0, 0, err
		}
	}
	var have int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM iapd_schema").Scan(&have); err != nil {
		if !apply && sqlState(err) == "42P01" { // undefined_table: never migrated
			return 0, 0, nil
		}
		return 0, 0, err
	}
	if have > len(ms) {
		return have, have, &SchemaTooNewError{Have: have, Know: len(ms)}
	}
	if !apply {
		return have, have, nil
	}
	for _, m := range ms[have:] {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return have, have, err
		}
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			_ = tx.Rollback(ctx)
			return have, m.version - 1, fmt.Errorf("migration %s: %w", m.name, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO iapd_schema (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
			_ = tx.Rollback(ctx)
			return have, m.version - 1, fmt.Errorf("migration %s: %w", m.name, err)
		}
		if err := tx.Commit(ctx); err != nil {
			return have, m.version - 1, fmt.Errorf("migration %s: %w", m.name, err)
		}
	}
	return have, len(ms), nil
}
