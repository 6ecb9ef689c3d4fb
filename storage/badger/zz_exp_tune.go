package badger

// TEMPORARY (perf experiments; to be removed).

import (
	"os"
	"strconv"

	"github.com/dgraph-io/badger/v4"
)

func expTune(bo badger.Options) badger.Options {
	get := func(k string) (int64, bool) {
		v, err := strconv.ParseInt(os.Getenv(k), 10, 64)
		return v, err == nil
	}
	if v, ok := get("IAPD_EXP_BTS"); ok {
		bo = bo.WithBaseTableSize(v)
	}
	if v, ok := get("IAPD_EXP_MT"); ok {
		bo = bo.WithMemTableSize(v).WithValueThreshold(valueThreshold(v))
	}
	if v, ok := get("IAPD_EXP_NMT"); ok {
		bo = bo.WithNumMemtables(int(v))
	}
	if v, ok := get("IAPD_EXP_L0"); ok {
		bo = bo.WithNumLevelZeroTables(int(v))
	}
	if v, ok := get("IAPD_EXP_L0S"); ok {
		bo = bo.WithNumLevelZeroTablesStall(int(v))
	}
	if v, ok := get("IAPD_EXP_BLS"); ok {
		bo = bo.WithBaseLevelSize(v)
	}
	return bo
}
